"""The blob-store port: artifacts and pipeline specs in Cloud Storage (or its emulator)."""

from __future__ import annotations

from typing import Protocol


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    bucket: str

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes at `path` in the bucket; returns the gs:// URI."""

    def get(self, uri_or_path: str) -> bytes:
        """Bytes at a gs:// URI or a path in the bucket; raises BlobNotFound."""

    def exists(self, uri_or_path: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Paths under a prefix."""


def split_uri(uri_or_path: str, default_bucket: str) -> tuple[str, str]:
    """`gs://b/p` -> (b, p); a bare path is in the default bucket."""
    if uri_or_path.startswith("gs://"):
        bucket, _, path = uri_or_path[5:].partition("/")
        return bucket, path
    return default_bucket, uri_or_path.lstrip("/")

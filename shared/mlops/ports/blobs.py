"""The blob-store port: artifacts and pipeline specs in Cloud Storage (or its emulator).

`mlops.adapters.gcs.GcsBlobStore` and the in-memory store in `mlops.testing.memory` both pass
`mlops.testing.contracts.blobs`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class BlobNotFound(KeyError):
    """No object at that path (or no such bucket)."""


class BucketNotFound(BlobNotFound):
    """A write named a bucket that does not exist: no store creates buckets implicitly."""


@runtime_checkable
class BlobStore(Protocol):
    bucket: str

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes at a path of the bucket (or at a gs:// URI, in any existing bucket), replacing
        what was there; returns the gs:// URI. Raises BucketNotFound for a bucket that does not exist."""

    def get(self, uri_or_path: str) -> bytes:
        """Bytes at a gs:// URI or a path in the bucket; raises BlobNotFound."""

    def exists(self, uri_or_path: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Paths in this bucket (only) starting with `prefix` (a plain string prefix, not a folder),
        sorted."""

    def delete(self, uri_or_path: str) -> None:
        """Remove the object; nothing to remove is no error (a retried delete succeeds)."""


def split_uri(uri_or_path: str, default_bucket: str) -> tuple[str, str]:
    """`gs://b/p` -> (b, p); a bare path is in the default bucket."""
    if uri_or_path.startswith("gs://"):
        bucket, _, path = uri_or_path[5:].partition("/")
        return bucket, path
    return default_bucket, uri_or_path.lstrip("/")

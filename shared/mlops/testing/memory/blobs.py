"""The blob store in memory: objects by (bucket, path), as Cloud Storage keeps them."""

from __future__ import annotations

from mlops.ports.blobs import BlobNotFound, split_uri


class InMemoryBlobStore:
    def __init__(self, bucket: str = "test-bucket"):
        self.bucket = bucket
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        bucket, name = split_uri(path, self.bucket)
        self.blobs[(bucket, name)] = data
        return f"gs://{bucket}/{name}"

    def get(self, uri_or_path: str) -> bytes:
        try:
            return self.blobs[split_uri(uri_or_path, self.bucket)]
        except KeyError:
            raise BlobNotFound(uri_or_path) from None

    def exists(self, uri_or_path: str) -> bool:
        return split_uri(uri_or_path, self.bucket) in self.blobs

    def list(self, prefix: str) -> list[str]:
        return sorted(name for bucket, name in self.blobs if bucket == self.bucket and name.startswith(prefix))

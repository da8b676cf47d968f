"""The blob store in memory: objects by (bucket, path), as Cloud Storage keeps them.

Like Cloud Storage, it knows which buckets exist (its own, and any named in `other_buckets`) and
refuses a write to any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlops.ports.blobs import BlobNotFound, BucketNotFound, split_uri


class InMemoryBlobStore:
    def __init__(self, bucket: str = "test-bucket", other_buckets: Iterable[str] = ()) -> None:
        self.bucket = bucket
        self.buckets: set[str] = {bucket, *other_buckets}
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        key = split_uri(path, self.bucket)
        if key[0] not in self.buckets:
            raise BucketNotFound(f"no bucket {key[0]!r}")
        self.blobs[key] = bytes(data)
        return f"gs://{key[0]}/{key[1]}"

    def get(self, uri_or_path: str) -> bytes:
        try:
            return self.blobs[split_uri(uri_or_path, self.bucket)]
        except KeyError:
            raise BlobNotFound(uri_or_path) from None

    def exists(self, uri_or_path: str) -> bool:
        return split_uri(uri_or_path, self.bucket) in self.blobs

    def list(self, prefix: str) -> list[str]:
        return sorted(name for bucket, name in self.blobs if bucket == self.bucket and name.startswith(prefix))

    def delete(self, uri_or_path: str) -> None:
        self.blobs.pop(split_uri(uri_or_path, self.bucket), None)

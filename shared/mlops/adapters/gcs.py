"""BlobStore over google-cloud-storage; locally `STORAGE_EMULATOR_HOST` points it at the emulator."""

from __future__ import annotations

import google.cloud.storage as storage
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials

from mlops.ports.blobs import BlobNotFound, BucketNotFound, split_uri


def storage_client(project: str, emulator_host: str | None = None) -> storage.Client:
    """A client of Cloud Storage, or of gcp-storage-emulator at `emulator_host` (`http://host:port`)."""
    if emulator_host:
        return storage.Client(project=project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": emulator_host})
    return storage.Client(project=project)


class GcsBlobStore:
    def __init__(self, client: storage.Client, bucket: str):
        self._client = client
        self.bucket = bucket

    def _blob(self, uri_or_path: str) -> storage.Blob:
        bucket, path = split_uri(uri_or_path, self.bucket)
        return self._client.bucket(bucket).blob(path)

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        blob = self._blob(path)
        try:
            blob.upload_from_string(data, content_type=content_type)
        except NotFound:
            raise BucketNotFound(f"no bucket {blob.bucket.name!r}") from None
        return f"gs://{blob.bucket.name}/{blob.name}"

    def get(self, uri_or_path: str) -> bytes:
        try:
            return self._blob(uri_or_path).download_as_bytes()
        except NotFound:
            raise BlobNotFound(uri_or_path) from None

    def exists(self, uri_or_path: str) -> bool:
        return self._blob(uri_or_path).exists()

    def list(self, prefix: str) -> list[str]:
        return sorted(blob.name for blob in self._client.list_blobs(self.bucket, prefix=prefix))

    def delete(self, uri_or_path: str) -> None:
        try:
            self._blob(uri_or_path).delete()
        except NotFound:
            pass  # already gone: what the caller wanted

    def ensure_bucket(self, location: str) -> None:
        if self._client.lookup_bucket(self.bucket) is None:
            self._client.create_bucket(self.bucket, location=location)

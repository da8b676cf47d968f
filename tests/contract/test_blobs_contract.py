"""The blob-store contract, run against each implementation.

- in memory (`mlops.testing.memory.InMemoryBlobStore`), what the unit tests use;
- the Cloud Storage adapter (`mlops.adapters.gcs.GcsBlobStore`) on gcp-storage-emulator, each test
  with buckets of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from google.cloud import storage

from mlops.adapters.gcs import GcsBlobStore, storage_client
from mlops.ports.blobs import BlobStore
from mlops.stack.emulators import StorageEmulator
from mlops.testing.contracts.blobs import BlobStoreContract
from mlops.testing.memory import InMemoryBlobStore


class TestInMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def other_bucket(self) -> str:
        return "contract-other-bucket"

    @pytest.fixture
    def blobs(self, other_bucket: str) -> BlobStore:
        return InMemoryBlobStore("contract-bucket", other_buckets=[other_bucket])


@pytest.mark.integration
class TestGcsBlobStore(BlobStoreContract):
    @pytest.fixture
    def client(self, storage_emulator: StorageEmulator) -> Iterator[storage.Client]:
        client = storage_client("contract-project", storage_emulator.endpoint)
        yield client
        client.close()

    def new_bucket(self, client: storage.Client, prefix: str) -> GcsBlobStore:
        store = GcsBlobStore(client, f"{prefix}-{uuid.uuid4().hex[:10]}")
        store.ensure_bucket("US")
        return store

    @pytest.fixture
    def other_bucket(self, client: storage.Client) -> str:
        return self.new_bucket(client, "contract-other").bucket

    @pytest.fixture
    def blobs(self, client: storage.Client) -> BlobStore:
        return self.new_bucket(client, "contract")

"""The trainer-backend contract, run against each backend that can train here.

- the scikit-learn backend over the in-memory warehouse and blob store;
- the scikit-learn backend over bqemulator and the Cloud Storage emulator (the local stack's setup);
- the scripted backend the unit tests use (`mlops.testing.memory.trainer`): real split, real
  artifact checks, scripted metrics.

The BigQuery ML backend is not here: bqemulator accepts CREATE MODEL but trains nothing, so it is
covered by tests/unit/test_bqml_backend.py (the statements it sends, and what it calls permanent).
"""

from __future__ import annotations

import uuid

import pytest

from mlops.ports.blobs import BlobStore
from mlops.ports.trainer import TrainerBackend
from mlops.ports.warehouse import Warehouse
from mlops.stack.emulators import BigQueryEmulator, StorageEmulator
from mlops.testing.contracts.trainer import TrainerBackendContract
from mlops.testing.memory import InMemoryBlobStore, InMemoryWarehouse, ScriptedTrainerBackend

PROJECT = "contract-project"


class InMemoryPorts:
    @pytest.fixture
    def warehouse(self) -> Warehouse:
        return InMemoryWarehouse(project=PROJECT)

    @pytest.fixture
    def blobs(self) -> BlobStore:
        return InMemoryBlobStore("contract-bucket")


class TestSklearnBackendInMemory(InMemoryPorts, TrainerBackendContract):
    @pytest.fixture
    def backend(self, warehouse: Warehouse, blobs: BlobStore) -> TrainerBackend:
        from mlops.adapters.sklearn_backend import SklearnBackend

        return SklearnBackend(warehouse, blobs)


class TestScriptedTrainerBackend(InMemoryPorts, TrainerBackendContract):
    @pytest.fixture
    def backend(self, warehouse: Warehouse, blobs: BlobStore) -> TrainerBackend:
        return ScriptedTrainerBackend(warehouse, blobs)


@pytest.mark.integration
class TestSklearnBackendOnEmulators(TrainerBackendContract):
    @pytest.fixture
    def warehouse(self, bigquery_emulator: BigQueryEmulator) -> Warehouse:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        from mlops.adapters.bigquery import BigQueryWarehouse

        client = bigquery.Client(
            project=PROJECT, credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=bigquery_emulator.env()["BIGQUERY_EMULATOR_HOST"]),
        )
        dataset = f"contract_{uuid.uuid4().hex[:8]}"
        client.create_dataset(f"{PROJECT}.{dataset}", exists_ok=True)
        return BigQueryWarehouse(client, PROJECT, dataset, dataset)

    @pytest.fixture
    def blobs(self, storage_emulator: StorageEmulator) -> BlobStore:
        from mlops.adapters.gcs import GcsBlobStore, storage_client

        client = storage_client(PROJECT, storage_emulator.endpoint)
        bucket = f"contract-{uuid.uuid4().hex[:10]}"
        client.create_bucket(bucket)
        return GcsBlobStore(client, bucket)

    @pytest.fixture
    def backend(self, warehouse: Warehouse, blobs: BlobStore) -> TrainerBackend:
        from mlops.adapters.sklearn_backend import SklearnBackend

        return SklearnBackend(warehouse, blobs)

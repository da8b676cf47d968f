"""The warehouse contract, run against each implementation.

- in memory (`mlops.testing.memory.InMemoryWarehouse`), what the unit tests use;
- the BigQuery adapter (`mlops.adapters.bigquery.BigQueryWarehouse`) on bqemulator, each test in a
  project of its own, provisioned by `mlops.stack.provision.provision_bigquery` as `mlops up` does.
"""

from __future__ import annotations

import pytest

from mlops.ports.warehouse import Warehouse
from mlops.stack.emulators import BigQueryEmulator
from mlops.testing.contracts.warehouse import WarehouseContract
from mlops.testing.memory import InMemoryWarehouse
from tests.integration.harness import unique_project

# bqemulator answers a row it cannot convert with HTTP 500, retried until this deadline: keep the
# refused-row case short (production keeps the adapter's default).
INSERT_TIMEOUT_S = 1.0


class TestInMemoryWarehouse(WarehouseContract):
    @pytest.fixture
    def warehouse(self) -> Warehouse:
        return InMemoryWarehouse(project=unique_project())


@pytest.mark.integration
class TestBigQueryWarehouse(WarehouseContract):
    @pytest.fixture
    def warehouse(self, bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
        from mlops.adapters import bigquery_storage
        from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client, storage_clients
        from mlops.stack.emulators import STORAGE_API_ENV_VAR
        from mlops.stack.provision import provision_bigquery

        # Small requests, so the contract's 30,000-row load spans several AppendRows requests.
        monkeypatch.setattr(bigquery_storage, "MAX_REQUEST_BYTES", 256 * 1024)
        project = unique_project()
        # Reads and inserts through the Storage Read/Write APIs on the emulator's gRPC port, as in the stack.
        warehouse = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops", "mlops_snapshots",
                                      insert_timeout=INSERT_TIMEOUT_S,
                                      storage=storage_clients(bigquery_emulator.env()[STORAGE_API_ENV_VAR]))
        provision_bigquery(warehouse)
        return warehouse

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
    def warehouse(self, bigquery_emulator: BigQueryEmulator) -> Warehouse:
        from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client
        from mlops.stack.provision import provision_bigquery

        project = unique_project()
        warehouse = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops", "mlops_snapshots",
                                      insert_timeout=INSERT_TIMEOUT_S)
        provision_bigquery(warehouse)
        return warehouse

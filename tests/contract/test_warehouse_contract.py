"""The warehouse contract, run against each implementation.

- in memory (`mlops.testing.memory.InMemoryWarehouse`), what the unit tests use;
- the BigQuery adapter (`mlops.adapters.bigquery.BigQueryWarehouse`) on bqemulator, each test in a
  project of its own, provisioned by `mlops.stack.provision.provision_bigquery` as `mlops up` does,
  once with Arrow appends (the default) and once with proto rows (MLOPS_BIGQUERY_APPEND_FORMAT=proto).

Beside the contract: an append whose answer is lost is sent again at the same offset and lands once.
"""

from __future__ import annotations

import pytest

from mlops.adapters.bigquery_storage import AppendFormat
from mlops.core.topology import PREDICTIONS_TABLE
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


def bigquery_warehouse(emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch,
                       append_format: AppendFormat) -> Warehouse:
    from mlops.adapters import bigquery_storage
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client, storage_clients
    from mlops.stack.emulators import STORAGE_API_ENV_VAR
    from mlops.stack.provision import provision_bigquery

    # Small requests, so the contract's 30,000-row load spans several AppendRows requests.
    monkeypatch.setattr(bigquery_storage, "MAX_REQUEST_BYTES", 256 * 1024)
    project = unique_project()
    # Reads and inserts through the Storage Read/Write APIs on the emulator's gRPC port, as in the stack.
    warehouse = BigQueryWarehouse(bigquery_client(project, emulator.endpoint), project, "mlops", "mlops_snapshots",
                                  insert_timeout=INSERT_TIMEOUT_S,
                                  storage=storage_clients(emulator.env()[STORAGE_API_ENV_VAR]),
                                  append_format=append_format)
    provision_bigquery(warehouse)
    return warehouse


@pytest.mark.integration
class TestBigQueryWarehouse(WarehouseContract):
    append_format: AppendFormat = "arrow"

    @pytest.fixture
    def warehouse(self, bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
        return bigquery_warehouse(bigquery_emulator, monkeypatch, self.append_format)


@pytest.mark.integration
class TestBigQueryWarehouseProtoAppends(TestBigQueryWarehouse):
    append_format: AppendFormat = "proto"


def _prediction_rows(count: int, prefix: str) -> list[dict[str, object]]:
    return [{"event_id": f"{prefix}-event", "pipeline": "abalone", "request_id": f"{prefix}-{index}",
             "model_version": "1", "features": "{}", "score": 0.5, "latency_ms": 1.0,
             "predicted_at": "2026-12-01T10:00:00+00:00"} for index in range(count)]


@pytest.mark.integration
@pytest.mark.parametrize("append_format", ["arrow", "proto"])
def test_an_append_whose_answer_is_lost_is_resent_at_its_offset_and_lands_once(
        bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, append_format: AppendFormat) -> None:
    from google.api_core import exceptions as api_errors

    from mlops.adapters import bigquery_storage

    warehouse = bigquery_warehouse(bigquery_emulator, monkeypatch, append_format)
    warehouse.insert_rows(PREDICTIONS_TABLE, _prediction_rows(3, "before"))  # the stream exists, offset 3
    real_call = bigquery_storage._append_call
    answers_lost = []

    def call_then_lose_the_answer(*args, **kwargs):
        real_call(*args, **kwargs)  # lands ...
        if not answers_lost:
            answers_lost.append(args[3])
            raise api_errors.ServiceUnavailable("the connection dropped before the answer")  # ... unheard

    monkeypatch.setattr(bigquery_storage, "_append_call", call_then_lose_the_answer)
    warehouse.insert_rows(PREDICTIONS_TABLE, _prediction_rows(500, "resent"))
    warehouse.insert_rows(PREDICTIONS_TABLE, _prediction_rows(2, "after"))  # and the offsets go on from there

    assert answers_lost == [3]
    rows = warehouse.read_rows(PREDICTIONS_TABLE, ["request_id"])
    ids = [row["request_id"] for row in rows]
    assert len(ids) == 505 and len(set(ids)) == 505

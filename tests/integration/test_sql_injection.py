"""The warehouse adapter on bqemulator, handed hostile table and column names: each call is refused
before a statement is sent, and a canary table in the same dataset keeps every row.

(What stops such names at the door is the spec: tests/unit/test_sql_injection.py. This is the second
wall, for a name that reached an adapter some other way.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client
from mlops.core.sql import SqlBuildError
from mlops.stack.emulators import BigQueryEmulator
from mlops.stack.provision import provision_bigquery
from tests.integration.harness import unique_project
from tests.unit.test_sql_injection import PAYLOADS

pytestmark = pytest.mark.integration

CANARY = "sqli_canary"
HOSTILE = [p for p in PAYLOADS if p.strip() and not p.replace("-", "").replace("_", "").isalnum()]


@pytest.fixture(scope="module")
def warehouse(bigquery_emulator: BigQueryEmulator) -> BigQueryWarehouse:
    project = unique_project()
    warehouse = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops",
                                  "mlops_snapshots", insert_timeout=2.0)
    provision_bigquery(warehouse)
    warehouse.ensure_table(CANARY, [("_row_id", "STRING", "REQUIRED"), ("_ingested_at", "TIMESTAMP", "REQUIRED"),
                                    ("x", "FLOAT64", "NULLABLE")])
    warehouse.insert_rows(CANARY, [{"_row_id": str(i), "_ingested_at": datetime(2026, 12, 1, tzinfo=UTC), "x": i}
                                   for i in range(5)])
    return warehouse


def _canary_rows(warehouse: BigQueryWarehouse) -> int:
    return len(warehouse.read_rows(CANARY, ["_row_id"]))


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_names_are_refused_and_the_canary_keeps_its_rows(warehouse: BigQueryWarehouse, payload: str) -> None:
    calls = {
        "has_rows column": lambda: warehouse.has_rows(CANARY, payload, "1"),
        "read_rows column": lambda: warehouse.read_rows(CANARY, ["_row_id", payload]),
        "read_rows table": lambda: warehouse.read_rows(payload, ["_row_id"]),
        "source_status table": lambda: warehouse.source_status(payload, None),
        "create_snapshot source": lambda: warehouse.create_snapshot(payload, "snap", datetime.now(UTC)),
        "create_snapshot target": lambda: warehouse.create_snapshot(CANARY, payload, datetime.now(UTC)),
    }
    for name, call in calls.items():
        with pytest.raises(SqlBuildError):
            call()
            pytest.fail(f"{name} ran with {payload!r}")
    assert warehouse.table_columns(CANARY) is not None
    assert _canary_rows(warehouse) == 5

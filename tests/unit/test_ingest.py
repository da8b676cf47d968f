"""Landing rows: system columns added, a file landed whole in one load, bad files refused with every problem."""

from __future__ import annotations

import pytest

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, parse_spec
from mlops.ops.ingest import IngestError, batch_row_ids, ingest_labels, ingest_rows, read_csv
from mlops.ports.warehouse import WarehouseError
from mlops.testing.memory import InMemoryWarehouse

SPEC = parse_spec("""
name: tiny
source: {table: tiny, label: y, features: [a, b]}
model: {type: LOGISTIC_REG}
promotion: {metric: roc_auc}
""")


def test_rows_get_an_identity_and_a_file_lands_in_one_load_with_one_stamp():
    class Loads(InMemoryWarehouse):
        loads: list[int] = []

        def insert_rows(self, table, rows, row_ids=None):
            raise AssertionError("source rows land with a load, not streaming inserts")

        def load_rows(self, table, rows):
            self.loads.append(len(rows))
            super().load_rows(table, rows)

    warehouse = Loads()
    rows = [{"a": float(i), "b": "x", "y": i % 2} for i in range(1200)]
    assert ingest_rows(warehouse, SPEC, rows).rows == 1200
    assert warehouse.loads == [1200]
    landed = warehouse.tables[warehouse.qualified("tiny")]
    assert len({r[ROW_ID_COLUMN] for r in landed}) == 1200
    assert len({r[INGESTED_AT_COLUMN] for r in landed}) == 1  # the watcher sees all of it or none
    assert warehouse.table_columns("tiny")[:2] == [(ROW_ID_COLUMN, "STRING"), (INGESTED_AT_COLUMN, "TIMESTAMP")]


def test_a_file_without_the_specs_columns_is_refused_naming_them():
    with pytest.raises(IngestError, match=r"\['b', 'y'\]"):
        ingest_rows(InMemoryWarehouse(), SPEC, [{"a": 1.0, "c": 2}])


def test_csv_values_are_typed_and_labels_need_a_request_id(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,y\n1.5,x,1\n,y,0\n")
    assert read_csv(path) == [{"a": 1.5, "b": "x", "y": 1}, {"a": None, "b": "y", "y": 0}]
    with pytest.raises(IngestError, match="request_id"):
        ingest_labels(InMemoryWarehouse(), "tiny", [{"y": 1}], "y")


def test_ingesting_the_same_file_again_lands_nothing_twice():
    warehouse = InMemoryWarehouse()
    rows = [{"a": float(i), "b": "x", "y": i % 2} for i in range(700)]
    first = ingest_rows(warehouse, SPEC, rows)
    again = ingest_rows(warehouse, SPEC, [dict(r) for r in rows])
    assert (first.rows, first.already_there) == (700, 0)
    assert (again.rows, again.already_there) == (0, 700)
    assert len(warehouse.tables[warehouse.qualified("tiny")]) == 700


def test_a_retry_after_a_failed_load_lands_each_row_once():
    class FailsFirstLoad(InMemoryWarehouse):
        calls = 0

        def load_rows(self, table, rows):
            type(self).calls += 1
            if type(self).calls == 1:
                raise WarehouseError("the connection dropped")
            super().load_rows(table, rows)

    warehouse = FailsFirstLoad()
    rows = [{"a": float(i), "b": "x", "y": i % 2} for i in range(1200)]
    with pytest.raises(IngestError, match="none landed"):
        ingest_rows(warehouse, SPEC, rows)
    assert warehouse.tables[warehouse.qualified("tiny")] == []
    retried = ingest_rows(warehouse, SPEC, rows)
    assert (retried.rows, retried.already_there) == (1200, 0)
    again = ingest_rows(warehouse, SPEC, rows)  # it did land, but the caller never heard so
    assert (again.rows, again.already_there) == (0, 1200)
    landed = warehouse.tables[warehouse.qualified("tiny")]
    assert len(landed) == len({r[ROW_ID_COLUMN] for r in landed}) == 1200


def test_identical_lines_in_one_file_stay_two_rows_and_other_files_get_other_ids():
    same = [{"a": 1.0, "b": "x", "y": 1}, {"a": 1.0, "b": "x", "y": 1}]
    ids = batch_row_ids(same)
    assert len(set(ids)) == 2
    assert batch_row_ids([dict(r) for r in same]) == ids  # the same file, the same ids
    assert not set(batch_row_ids([{"a": 2.0, "b": "x", "y": 1}])) & set(ids)
    assert batch_row_ids([{ROW_ID_COLUMN: "abalone-7", "a": 1.0}]) == ["abalone-7"]  # its own id wins


def test_a_large_file_ingested_again_lands_nothing_twice():
    warehouse = InMemoryWarehouse()
    rows = [{"a": float(i), "b": "x", "y": i % 2} for i in range(12_000)]  # above one presence query's ids
    assert ingest_rows(warehouse, SPEC, rows).rows == 12_000
    again = ingest_rows(warehouse, SPEC, [dict(r) for r in rows])
    assert (again.rows, again.already_there) == (0, 12_000)
    assert len(warehouse.tables[warehouse.qualified("tiny")]) == 12_000

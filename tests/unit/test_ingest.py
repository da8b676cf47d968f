"""Landing rows: system columns added, chunks stamped in order, bad files refused with every problem."""

from __future__ import annotations

import pytest

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, parse_spec
from mlops.ops.ingest import IngestError, ingest_labels, ingest_rows, read_csv
from mlops.testing.memory import InMemoryWarehouse

SPEC = parse_spec("""
name: tiny
source: {table: tiny, label: y, features: [a, b]}
model: {type: LOGISTIC_REG}
promotion: {metric: roc_auc}
""")


def test_rows_get_an_identity_and_chunks_are_stamped_in_order():
    warehouse = InMemoryWarehouse()
    rows = [{"a": float(i), "b": "x", "y": i % 2} for i in range(1200)]
    assert ingest_rows(warehouse, SPEC, rows) == 1200
    landed = warehouse.tables[warehouse.qualified("tiny")]
    assert len({r[ROW_ID_COLUMN] for r in landed}) == 1200
    stamps = [r[INGESTED_AT_COLUMN] for r in landed]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # one per 500-row chunk
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

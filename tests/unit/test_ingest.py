"""Landing rows: system columns added, a file landed whole in one load, bad files refused with every problem.

A file is read and typed column by column in Arrow; `_read_rows` (the row-by-row reader it replaced)
is the reference the column-wise reading is held to: the same values, column types, row ids and
error messages for any file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, parse_spec
from mlops.ops.ingest import (
    Batch,
    IngestError,
    _bq_type,
    _read_rows,
    batch_row_ids,
    ingest_labels,
    ingest_rows,
    read_csv,
)
from mlops.ops.validate import coerce_rows, coerce_value, one_line
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
            raise AssertionError("a file lands as one Arrow table")

        def load_arrow(self, table, data):
            self.loads.append(data.num_rows)
            super().load_arrow(table, data)

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
    assert read_csv(path).rows() == [{"a": 1.5, "b": "x", "y": 1}, {"a": None, "b": "y", "y": 0}]
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

        def load_arrow(self, table, data):
            type(self).calls += 1
            if type(self).calls == 1:
                raise WarehouseError("the connection dropped")
            super().load_arrow(table, data)

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


# ------------------------------------------------------------------------- files, column by column

def write(tmp_path: Path, text: str, name: str = "rows.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_file_gets_the_row_ids_it_always_got(tmp_path):
    # Pinned from the row-by-row reader: a file ingested before the column-wise reading keeps its ids,
    # so ingesting it again now lands nothing twice.
    assert read_csv(write(tmp_path, "a,b,y\n1.5,x,1\n,y,0\n1e-05,é,1\n")).row_ids().to_pylist() == [
        "84b33d32edfe3c79-0000000", "84b33d32edfe3c79-0000001", "84b33d32edfe3c79-0000002"]
    assert read_csv(write(tmp_path, 'a,b,y\n1.5,"x, ""y""",1\n007,,0\n')).row_ids().to_pylist() == [
        "4472263b2fd44a5d-0000000", "4472263b2fd44a5d-0000001"]


def test_a_file_landed_row_by_row_and_ingested_again_column_wise_lands_nothing_new(tmp_path):
    lines = ["a,b,y"] + [f"{i / 7},{'xyz'[i % 3]},{i % 2}" for i in range(15_000)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    warehouse = InMemoryWarehouse()
    first = ingest_rows(warehouse, SPEC, _read_rows(path))  # as dicts, as every ingest before this one
    again = ingest_rows(warehouse, SPEC, read_csv(path))
    assert (first.rows, again.rows, again.already_there) == (15_000, 0, 15_000)
    assert (ingest_rows(warehouse, SPEC, read_csv(path)).rows, len(warehouse.tables[warehouse.qualified("tiny")])) == (
        0, 15_000)


def test_column_types_and_values_of_a_new_table_are_inferred_as_before(tmp_path):
    path = write(tmp_path, "a,b,y,extra\n1,x,1,\n2.5,007,0,\n,+5,1,\n")
    warehouse = InMemoryWarehouse()
    assert ingest_rows(warehouse, SPEC, read_csv(path)).rows == 3
    assert warehouse.table_columns("tiny")[2:] == [("a", "FLOAT64"), ("b", "STRING"), ("y", "INT64")]
    landed = [{k: r[k] for k in ("a", "b", "y")} for r in warehouse.tables[warehouse.qualified("tiny")]]
    # A number in a STRING column is its Python text, as when each value went through int()/float().
    assert landed == [{"a": 1.0, "b": "x", "y": 1}, {"a": 2.5, "b": "7", "y": 0}, {"a": None, "b": "5", "y": 1}]


def test_a_bad_value_in_a_file_is_named_as_before_and_lands_nothing(tmp_path):
    warehouse = InMemoryWarehouse()
    ingest_rows(warehouse, SPEC, read_csv(write(tmp_path, "a,b,y\n1.5,x,1\n")))
    path = write(tmp_path, "a,b,y\n1.0,x,1\nyes,y,0\n2,z,1.5\n", "bad.csv")
    with pytest.raises(IngestError) as refused:
        ingest_rows(warehouse, SPEC, read_csv(path))
    assert str(refused.value) == (
        "2 value(s) do not fit table tiny: row 2, column 'a': 'yes' is not a number (the column is FLOAT64); "
        "row 3, column 'y': 1.5 is not a whole number (the column is INT64). Fix them and ingest the file "
        "again; nothing landed")
    assert len(warehouse.tables[warehouse.qualified("tiny")]) == 1


@pytest.mark.parametrize(("text", "message"), [
    ("a,b,y\n1,2,3,4\n", "row 1 has more values than the header has columns"),
    ("a,b,y\n", "has no data rows"),
    ("", "has no data rows"),
])
def test_a_file_that_cannot_be_read_is_refused_in_the_same_words(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(IngestError, match=message):
        read_csv(path)
    (tmp_path / "latin1.csv").write_bytes("a,b,y\n\xe9,1,0\n".encode("latin-1"))
    with pytest.raises(IngestError, match="is not UTF-8 text"):
        read_csv(tmp_path / "latin1.csv")
    with pytest.raises(IngestError, match="no file"):
        read_csv(tmp_path / "nope.csv")


# Values that each take another path through the column-wise typing: whole numbers, decimals Arrow
# writes as Python does and ones it does not (1e-05, 1e+16), what only Python reads as a number
# (' 5', '1_000', '١', '+5'), text that looks numeric ('Tiffany', 'nan', '-'), integers beyond INT64,
# text JSON escapes, and text that needs quoting in a CSV file.
CELLS = ["", "0", "1", "-0", "007", "+5", "12", "9223372036854775807", "9223372036854775808",
         "123456789012345678901234", "1.5", "-2.25", "1e5", ".5", "5.", "1e-05", "0.0001", "1e16", "1e22",
         "1e400", "100.0", "nan", "inf", "-inf", "Infinity", "1_000", " 5", "5 ", "١٢", "-", "e", "x", "M",
         "Tiffany", "é", "ü ber", "tab\there", "back\\slash", "a,b", 'say "hi"', "line\nbreak", "\r"]


@st.composite
def csv_files(draw, header: list[str] | None = None) -> str:
    width = len(header) if header else draw(st.integers(1, 4))
    names = header or draw(st.lists(st.sampled_from(["a", "b", "y", "_row_id", "Z", "é"]), min_size=width,
                                    max_size=width, unique=True))
    rows = draw(st.lists(st.lists(st.sampled_from(CELLS), min_size=width - 1 if draw(st.booleans()) else width,
                                  max_size=width), min_size=0, max_size=8))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerows([names, *rows])
    text = out.getvalue()
    if draw(st.booleans()):
        text += ending  # a blank line at the end
    return text


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_files())
def test_reading_column_wise_agrees_with_reading_row_by_row(tmp_path, text):
    path = write(tmp_path, text)
    try:
        expected = _read_rows(path)
    except IngestError as error:
        with pytest.raises(IngestError) as refused:
            read_csv(path)
        assert str(refused.value) == str(error)
        return
    batch = read_csv(path)
    assert _same(batch.rows(), expected)
    assert batch.row_ids().to_pylist() == batch_row_ids(expected)
    for name in batch.names:
        values = [row.get(name) for row in expected]
        column = batch.column(name)
        assert column.bq_type() == _bq_type(values), name
        for kind in ("INT64", "FLOAT64", "STRING", "BOOL"):
            try:
                coerced = [coerce_value(v, kind) for v in values]
            except ValueError:
                coerced = None
            try:
                typed = column.typed(kind, name)
            except IngestError:
                assert kind == "INT64" and any(isinstance(v, int) and abs(v) >= 2**63 for v in coerced or [])
                continue
            assert (typed is None) == (coerced is None), (name, kind)
            if typed is not None:
                got = typed.to_pylist()
                assert _same(got, coerced) or all(
                    g == c or (isinstance(g, float) and math.isnan(g) and math.isnan(c)) for g, c in zip(got, coerced))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_files(header=["a", "b", "y"]),
       kinds=st.lists(st.sampled_from(["INT64", "FLOAT64", "STRING", "BOOL", "NUMERIC"]), min_size=3, max_size=3))
def test_values_that_do_not_fit_are_named_as_the_row_by_row_check_names_them(tmp_path, text, kinds):
    path = write(tmp_path, text)
    try:
        rows = _read_rows(path)
    except IngestError:
        return
    names, spec = ["a", "b", "y"], SPEC
    columns = dict(zip(names, kinds, strict=True))
    warehouse = InMemoryWarehouse()
    warehouse.ensure_table("tiny", [(ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED"),
                                    *((name, kind, "NULLABLE") for name, kind in columns.items())])
    _, problems = coerce_rows(rows, columns, names)
    try:
        landed = ingest_rows(warehouse, spec, read_csv(path))
    except IngestError as error:
        assert problems or "beyond the range of INT64" in str(error), str(error)
        if problems:
            assert str(error) == (f"{len(problems)} value(s) do not fit table tiny: {one_line(problems)}. "
                                  "Fix them and ingest the file again; nothing landed")
        assert warehouse.tables[warehouse.qualified("tiny")] == []
        return
    assert not problems and landed.rows == len(rows)


def test_rows_as_dicts_take_the_same_path(tmp_path):
    path = write(tmp_path, "a,b,y\n1.5,x,1\n,y,0\n")
    assert Batch.of_rows(_read_rows(path)).row_ids().to_pylist() == read_csv(path).row_ids().to_pylist()

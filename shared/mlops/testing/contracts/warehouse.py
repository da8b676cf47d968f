"""The contract of the warehouse port (`mlops.ports.warehouse`), written once.

`WarehouseContract` needs a `warehouse` fixture: a warehouse of its own for each test (the emulator
suite takes a project of its own), provisioned as `mlops up` provisions one: both datasets and the
system tables of `mlops.core.topology.TABLES`, nothing else.

What is pinned here is what the BigQuery adapter does on bqemulator and what the loop relies on: the
data-watcher (source status, snapshots and their records, late labels), the trainer and evaluator
(reading a snapshot's rows in a stable order), the inference-logger (has_rows before inserting) and
`mlops ingest` (all-or-nothing inserts into tables that must exist).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.core.topology import LABELS_TABLE, PREDICTIONS_TABLE, SNAPSHOTS_TABLE, TABLES
from mlops.ml.split import SPLIT_BUCKET_COLUMN
from mlops.ports.warehouse import Column, Condition, Row, SnapshotRecord, TableNotFound, Warehouse, WarehouseError

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
T1, T2, T3 = (T0 + timedelta(hours=h) for h in (1, 2, 3))
SOURCE = "source"
SOURCE_COLUMNS: list[Column] = [
    (ROW_ID_COLUMN, "STRING", "REQUIRED"),
    (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED"),
    ("x", "FLOAT64", "NULLABLE"),
    ("n", "INT64", "NULLABLE"),
    ("flag", "BOOL", "NULLABLE"),
    ("label", "STRING", "NULLABLE"),
]


# Row key -> ABS(MOD(FARM_FINGERPRINT(key), 10000)). The first three keys are BigQuery's documented
# FARM_FINGERPRINT examples (hash functions reference: "1footrue" -1541654101129638711, "2applefalse"
# 2794438866806483259, "3true" -4880158226897771312); the others, of 13 to 200 UTF-8 bytes (FarmHash
# takes another path at 17, 33 and 65), are Google's FarmHash C++ (pyfarmhash), which bqemulator
# 1.4.0's own port gets wrong above 64 bytes (mlops.stack.bqemulator_safe serves the C++ instead).
SPLIT_BUCKETS = {
    "1footrue": 8711, "2applefalse": 3259, "3true": 1312, "abalone-00001": 6008,
    "é" * 12 + "-漢字": 8107, "r-" + "x" * 70: 7353, "k" * 200: 335,
}


def source_rows(ids: list[str], at: datetime) -> list[Row]:
    """Rows of the source table landed at `at`, their values derived from the row id."""
    return [{ROW_ID_COLUMN: rid, INGESTED_AT_COLUMN: at.isoformat(), "x": float(len(rid)), "n": len(rid),
             "flag": True, "label": f"label-of-{rid}"} for rid in ids]


def with_source(warehouse: Warehouse, *batches: tuple[list[str], datetime]) -> Warehouse:
    warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
    for ids, at in batches:
        warehouse.insert_rows(SOURCE, source_rows(ids, at))
    return warehouse


def row_ids(warehouse: Warehouse, table: str, dataset: str | None = None) -> list[str]:
    return [r[ROW_ID_COLUMN] for r in warehouse.read_rows(table, [ROW_ID_COLUMN], dataset=dataset)]


def prediction(pipeline: str, request_id: str, features: dict[str, Any], event_id: str = "evt-1") -> Row:
    return {"event_id": event_id, "pipeline": pipeline, "request_id": request_id, "model_version": "1",
            "features": json.dumps(features), "predicted_label": "1", "predicted_value": None, "score": 0.7,
            "latency_ms": 1.5, "predicted_at": T1.isoformat()}


def label(pipeline: str, request_id: str, value: str) -> Row:
    return {"pipeline": pipeline, "request_id": request_id, "label": value, "labeled_at": T2.isoformat()}


def snapshot_record(pipeline: str, version: int, created_at: datetime, *, drift: float | None = None,
                    spec_hash: str | None = None) -> SnapshotRecord:
    return SnapshotRecord(
        pipeline=pipeline, data_version=f"d{version:04d}", snapshot_table=f"p.s.{pipeline}__d{version:04d}",
        total_rows=10 * version, new_rows=version, watermark=T1 + timedelta(minutes=version), trigger="new_rows",
        source_event_id=f"tick-{pipeline}-{version}", created_at=created_at, drift_score=drift, spec_hash=spec_hash,
    )


class WarehouseContract:
    """Every Warehouse: tables, typed rows, snapshots and the loop's queries, as BigQuery keeps them."""

    @pytest.fixture
    def warehouse(self) -> Warehouse:
        raise NotImplementedError("a concrete contract test class provides the `warehouse` fixture")

    def test_it_implements_the_port(self, warehouse: Warehouse) -> None:
        assert isinstance(warehouse, Warehouse)

    # -- tables ----------------------------------------------------------------------------------
    def test_a_table_that_does_not_exist_has_no_columns(self, warehouse: Warehouse) -> None:
        assert warehouse.table_columns("no_such_table") is None

    def test_the_system_tables_exist_once_provisioned(self, warehouse: Warehouse) -> None:
        for table, columns in TABLES.items():
            assert warehouse.table_columns(table) == [(name, kind) for name, kind, _ in columns], table

    def test_an_ensured_table_has_its_columns_in_order(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        assert warehouse.table_columns(SOURCE) == [(name, kind) for name, kind, _ in SOURCE_COLUMNS]
        assert warehouse.table_columns(warehouse.qualified(SOURCE)) == warehouse.table_columns(SOURCE)

    def test_column_types_come_back_in_googlesql_names(self, warehouse: Warehouse) -> None:
        # BigQuery's API answers INTEGER/FLOAT/BOOLEAN; the data-watcher casts labels by these names.
        warehouse.ensure_table("legacy", [("i", "INTEGER", "NULLABLE"), ("f", "FLOAT", "NULLABLE"),
                                          ("b", "BOOLEAN", "NULLABLE")])
        assert warehouse.table_columns("legacy") == [("i", "INT64"), ("f", "FLOAT64"), ("b", "BOOL")]

    def test_ensuring_an_existing_table_keeps_it_and_its_rows(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1"], T1))
        warehouse.ensure_table(SOURCE, [("other", "STRING", "NULLABLE")])
        assert warehouse.table_columns(SOURCE) == [(name, kind) for name, kind, _ in SOURCE_COLUMNS]
        assert row_ids(warehouse, SOURCE) == ["r1"]

    # -- inserting -------------------------------------------------------------------------------
    def test_rows_come_back_typed_by_their_columns(self, warehouse: Warehouse) -> None:
        self._typed_rows_land(warehouse, warehouse.insert_rows)

    def test_a_load_types_values_as_an_insert_does(self, warehouse: Warehouse) -> None:
        self._typed_rows_land(warehouse, warehouse.load_rows)

    def test_a_load_refuses_a_boolean_for_a_number(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        rows = source_rows(["r1", "r2"], T1)
        rows[1]["x"] = True  # BigQuery refuses it in a FLOAT64 column, whatever the client would coerce
        with pytest.raises(WarehouseError):
            warehouse.load_rows(SOURCE, rows)
        assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN]) == []

    @staticmethod
    def _typed_rows_land(warehouse: Warehouse, land: Callable[[str, list[Row]], None]) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        plus_two = timezone(timedelta(hours=2))
        land(SOURCE, [
            # JSON-ready values as the loop writes them: numbers, words, RFC 3339 times ...
            {ROW_ID_COLUMN: "r1", INGESTED_AT_COLUMN: "2026-11-22T07:00:00Z", "x": 1, "n": "7", "flag": "true",
             "label": "a"},
            # ... and a datetime, in any zone, or without one (read as UTC, as BigQuery does).
            {ROW_ID_COLUMN: "r2", INGESTED_AT_COLUMN: datetime(2026, 11, 22, 9, 0, tzinfo=plus_two), "x": 2.5,
             "n": 8, "flag": False, "label": None},
            {ROW_ID_COLUMN: "r3", INGESTED_AT_COLUMN: datetime(2026, 11, 22, 7, 30), "x": None, "n": None,
             "flag": None, "label": "c"},
        ])
        columns = [name for name, _, _ in SOURCE_COLUMNS]
        r1, r2, r3 = warehouse.read_rows(SOURCE, columns)
        assert r1 == {ROW_ID_COLUMN: "r1", INGESTED_AT_COLUMN: T1, "x": 1.0, "n": 7, "flag": True, "label": "a"}
        assert r2 == {ROW_ID_COLUMN: "r2", INGESTED_AT_COLUMN: T1, "x": 2.5, "n": 8, "flag": False, "label": None}
        assert r3 == {ROW_ID_COLUMN: "r3", INGESTED_AT_COLUMN: T1 + timedelta(minutes=30), "x": None, "n": None,
                      "flag": None, "label": "c"}
        assert type(r1["x"]) is float and type(r1["n"]) is int and type(r1["flag"]) is bool
        assert all(r[INGESTED_AT_COLUMN].utcoffset() == timedelta(0) for r in (r1, r2, r3))

    def test_a_row_that_does_not_fit_refuses_the_whole_batch(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        good, bad = source_rows(["r1", "r2"], T1)
        bad["n"] = "not a number"
        with pytest.raises(WarehouseError):
            warehouse.insert_rows(SOURCE, [good, bad])
        assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN]) == []  # all or none: a retry cannot duplicate

    def test_a_load_lands_a_large_batch_whole(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        ids = [f"r{i:05d}" for i in range(30_000)]  # several Storage Write API requests in BigQuery
        warehouse.load_rows(SOURCE, source_rows(ids, T1))
        assert row_ids(warehouse, SOURCE) == ids

    def test_a_load_with_a_row_that_does_not_fit_lands_nothing(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        rows = source_rows([f"r{i:05d}" for i in range(1000)], T1)
        rows[-1]["n"] = "not a number"
        with pytest.raises(WarehouseError):
            warehouse.load_rows(SOURCE, rows)
        with pytest.raises(TableNotFound):
            warehouse.load_rows("no_such_table", rows[:1])
        assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN]) == []

    def test_an_arrow_load_lands_its_columns_by_name_typed_by_the_table(self, warehouse: Warehouse) -> None:
        # What `mlops ingest` lands: its columns in any order, narrower types widened, one left out NULL.
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        warehouse.load_arrow(SOURCE, pa.table({
            "label": ["a", None, "c"],
            ROW_ID_COLUMN: ["r1", "r2", "r3"],
            INGESTED_AT_COLUMN: pa.array([datetime(2026, 11, 22, 7, 0), datetime(2026, 11, 22, 7, 0),
                                          datetime(2026, 11, 22, 7, 30)], pa.timestamp("ms")),  # no zone: UTC
            "x": pa.array([1, 2**53 + 1, None], pa.int64()),  # to the nearest double, as float() does
            "n": pa.array([7, 8, None], pa.int32()),
        }))
        rows = warehouse.read_rows(SOURCE, [name for name, _, _ in SOURCE_COLUMNS])
        assert rows == [
            {ROW_ID_COLUMN: "r1", INGESTED_AT_COLUMN: T1, "x": 1.0, "n": 7, "flag": None, "label": "a"},
            {ROW_ID_COLUMN: "r2", INGESTED_AT_COLUMN: T1, "x": float(2**53 + 1), "n": 8, "flag": None, "label": None},
            {ROW_ID_COLUMN: "r3", INGESTED_AT_COLUMN: T1 + timedelta(minutes=30), "x": None, "n": None, "flag": None,
             "label": "c"},
        ]
        assert type(rows[0]["x"]) is float and type(rows[0]["n"]) is int
        assert all(r[INGESTED_AT_COLUMN].utcoffset() == timedelta(0) for r in rows)

    def test_an_arrow_load_refuses_what_it_would_have_to_parse_and_lands_nothing(self, warehouse: Warehouse) -> None:
        # Arrow columns arrive typed: text for a number or a boolean for one is the caller's mistake,
        # not something to guess at (BigQuery refuses a Parquet column of another type likewise).
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        good = {ROW_ID_COLUMN: pa.array(["r1"]), INGESTED_AT_COLUMN: pa.array([T1], pa.timestamp("us", tz="UTC"))}
        for bad in ({"n": pa.array(["7"])}, {"x": pa.array([True])}, {"flag": pa.array([1])},
                    {"colour": pa.array(["red"])}, {ROW_ID_COLUMN: pa.array([None], pa.string())}):
            with pytest.raises(WarehouseError):
                warehouse.load_arrow(SOURCE, pa.table({**good, **bad}))
        with pytest.raises(WarehouseError):  # a REQUIRED column left out
            warehouse.load_arrow(SOURCE, pa.table({ROW_ID_COLUMN: pa.array(["r1"])}))
        with pytest.raises(TableNotFound):
            warehouse.load_arrow("no_such_table", pa.table(good))
        assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN]) == []

    def test_an_arrow_load_lands_a_large_table_whole(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        ids = [f"r{i:05d}" for i in range(30_000)]
        warehouse.load_arrow(SOURCE, pa.table({
            ROW_ID_COLUMN: ids, INGESTED_AT_COLUMN: pa.repeat(pa.scalar(T1, pa.timestamp("us", tz="UTC")), len(ids)),
            "x": pa.array([float(i) for i in range(len(ids))]), "label": [f"label-of-{i}" for i in ids]}))
        assert row_ids(warehouse, SOURCE) == ids
        assert warehouse.source_status(SOURCE, None).total_rows == len(ids)

    def test_inserting_into_a_table_that_does_not_exist_raises(self, warehouse: Warehouse) -> None:
        with pytest.raises(TableNotFound):
            warehouse.insert_rows("no_such_table", source_rows(["r1"], T1))
        assert warehouse.table_columns("no_such_table") is None  # and did not create it

    def test_row_ids_are_one_per_row(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        with pytest.raises(ValueError):
            warehouse.insert_rows(SOURCE, source_rows(["r1", "r2"], T1), row_ids=["only-one"])
        assert row_ids(warehouse, SOURCE) == []

    def test_row_ids_do_not_deduplicate_a_retried_insert(self, warehouse: Warehouse) -> None:
        # bqemulator ignores insertIds and BigQuery honours them on a best-effort basis only, so the
        # loop never counts on them (see the port): both copies land here, in memory as on the emulator.
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        for _ in range(2):
            warehouse.insert_rows(SOURCE, source_rows(["r1"], T1), row_ids=["evt-1/0"])
        assert row_ids(warehouse, SOURCE) == ["r1", "r1"]

    def test_has_rows_finds_a_value_in_a_column(self, warehouse: Warehouse) -> None:
        # The inference-logger's guard: a redelivered prediction batch is found by its event id.
        warehouse.insert_rows(PREDICTIONS_TABLE, [prediction("p", "req-1", {"a": 1}, event_id="evt-1")],
                              row_ids=["evt-1/0"])
        assert warehouse.has_rows(PREDICTIONS_TABLE, "event_id", "evt-1")
        assert not warehouse.has_rows(PREDICTIONS_TABLE, "event_id", "evt-2")
        assert not warehouse.has_rows(PREDICTIONS_TABLE, "request_id", "evt-1")
        with pytest.raises(TableNotFound):
            warehouse.has_rows("no_such_table", "event_id", "evt-1")

    def test_present_values_finds_which_of_a_batch_is_there_already(self, warehouse: Warehouse) -> None:
        # The inference-logger's guard: a batch re-published under another event id is found by its
        # request ids, one query per batch, within its pipeline.
        warehouse.insert_rows(PREDICTIONS_TABLE, [prediction("p", "req-1", {}, event_id="evt-1"),
                                                  prediction("p", "req-2", {}, event_id="evt-1"),
                                                  prediction("q", "req-3", {}, event_id="evt-2")])
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", ["req-2", "req-3", "req-9"],
                                        where={"pipeline": "p"}) == {"req-2"}
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", ["req-1", "req-3", "req-9"]) == {
            "req-1", "req-3"}
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", []) == set()
        with pytest.raises(TableNotFound):
            warehouse.present_values("no_such_table", "request_id", ["req-1"])

    def test_present_values_looks_back_only_as_far_as_asked(self, warehouse: Warehouse) -> None:
        # The inference-logger bounds its look by the batch's prediction times (partition pruning).
        old, new = prediction("p", "req-old", {}), prediction("p", "req-new", {})
        old["predicted_at"], new["predicted_at"] = T1.isoformat(), T2.isoformat()
        warehouse.insert_rows(PREDICTIONS_TABLE, [old, new])
        ids = ["req-old", "req-new", "req-none"]
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", ids, where={"pipeline": "p"},
                                        since=("predicted_at", T2)) == {"req-new"}
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", ids, where={"pipeline": "p"},
                                        since=("predicted_at", T1)) == {"req-old", "req-new"}
        assert warehouse.present_values(PREDICTIONS_TABLE, "request_id", ids,
                                        since=("predicted_at", T2 + timedelta(seconds=1))) == set()

    # -- source status and snapshots -------------------------------------------------------------
    def test_source_status_counts_rows_new_after_a_time_and_the_watermark(self, warehouse: Warehouse) -> None:
        with_source(warehouse)
        empty = warehouse.source_status(SOURCE, None)
        assert (empty.total_rows, empty.new_rows, empty.watermark) == (0, 0, None)
        with_source(warehouse, (["r1", "r2", "r3"], T1), (["r4", "r5"], T2))
        everything = warehouse.source_status(SOURCE, None)
        assert (everything.total_rows, everything.new_rows, everything.watermark) == (5, 5, T2)
        assert warehouse.source_status(SOURCE, T1).new_rows == 2  # strictly after
        assert warehouse.source_status(SOURCE, T2).new_rows == 0
        assert warehouse.source_status(SOURCE, T0).new_rows == 5
        with pytest.raises(TableNotFound):
            warehouse.source_status("no_such_table", None)

    def test_a_snapshot_holds_the_rows_ingested_up_to_its_time(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1", "r2"], T1), (["r3"], T2), (["r4"], T3))
        assert warehouse.create_snapshot(SOURCE, "source__d0001", T2) == 3  # up to, inclusive
        snapshot = warehouse.qualified("source__d0001", warehouse.snapshot_dataset)
        assert row_ids(warehouse, snapshot) == ["r1", "r2", "r3"]
        # The source's columns, and the split bucket the warehouse computed from each row's key.
        assert warehouse.table_columns(snapshot) == [*(warehouse.table_columns(SOURCE) or []),
                                                     (SPLIT_BUCKET_COLUMN, "INT64")]
        assert warehouse.table_columns("source__d0001") is None  # not in the main dataset

    def test_an_existing_snapshot_is_kept_as_it_is(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1"], T1))
        assert warehouse.create_snapshot(SOURCE, "source__d0001", T1) == 1
        with_source(warehouse, (["r2", "r3"], T2))
        assert warehouse.create_snapshot(SOURCE, "source__d0001", T3) == 1
        assert row_ids(warehouse, "source__d0001", dataset=warehouse.snapshot_dataset) == ["r1"]

    def test_a_snapshot_of_a_table_that_does_not_exist_raises(self, warehouse: Warehouse) -> None:
        with pytest.raises(TableNotFound):
            warehouse.create_snapshot("no_such_table", "no_such_table__d0001", T1)

    def test_a_snapshot_stores_each_rows_split_bucket_as_bigquery_computes_it(self, warehouse: Warehouse) -> None:
        # ABS(MOD(FARM_FINGERPRINT(CAST(_row_id AS STRING)), 10000)), the bucket BigQuery ML's eval
        # predicate compares: the same values in memory, on the emulator and in BigQuery.
        with_source(warehouse, (list(SPLIT_BUCKETS), T1))
        warehouse.create_snapshot(SOURCE, "source__d0001", T1)
        stored = warehouse.read_rows("source__d0001", [ROW_ID_COLUMN, SPLIT_BUCKET_COLUMN],
                                     dataset=warehouse.snapshot_dataset)
        assert {r[ROW_ID_COLUMN]: r[SPLIT_BUCKET_COLUMN] for r in stored} == SPLIT_BUCKETS

    def test_the_split_bucket_is_null_for_a_null_row_key(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, [(ROW_ID_COLUMN, "STRING", "NULLABLE"), *SOURCE_COLUMNS[1:]])
        rows = source_rows(["3true", "none"], T1)
        rows[1][ROW_ID_COLUMN] = None
        warehouse.insert_rows(SOURCE, rows)
        warehouse.create_snapshot(SOURCE, "source__d0001", T1)
        stored = warehouse.read_rows("source__d0001", [ROW_ID_COLUMN, SPLIT_BUCKET_COLUMN],
                                     dataset=warehouse.snapshot_dataset)
        assert stored == [{ROW_ID_COLUMN: None, SPLIT_BUCKET_COLUMN: None},
                          {ROW_ID_COLUMN: "3true", SPLIT_BUCKET_COLUMN: SPLIT_BUCKETS["3true"]}]

    def test_a_read_restricted_to_the_split_bucket_keeps_only_those_rows(self, warehouse: Warehouse) -> None:
        # What the evaluator pushes down to read only a RANDOM/AUTO_SPLIT split's eval rows.
        with_source(warehouse, (list(SPLIT_BUCKETS), T1))
        warehouse.create_snapshot(SOURCE, "source__d0001", T1)
        kept = warehouse.read_rows("source__d0001", [ROW_ID_COLUMN], dataset=warehouse.snapshot_dataset,
                                   where=[Condition(SPLIT_BUCKET_COLUMN, "<", 6008)])
        assert [r[ROW_ID_COLUMN] for r in kept] == sorted(k for k, b in SPLIT_BUCKETS.items() if b < 6008)

    def test_a_snapshot_of_a_source_without_a_row_key_has_no_split_bucket(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS[1:])
        warehouse.insert_rows(SOURCE, [{INGESTED_AT_COLUMN: T1.isoformat(), "x": 1.0}])
        assert warehouse.create_snapshot(SOURCE, "source__d0001", T1) == 1
        snapshot = warehouse.qualified("source__d0001", warehouse.snapshot_dataset)
        assert warehouse.table_columns(snapshot) == warehouse.table_columns(SOURCE)

    def test_a_source_with_a_column_named_like_the_split_bucket_is_refused(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, [*SOURCE_COLUMNS, (SPLIT_BUCKET_COLUMN, "INT64", "NULLABLE")])
        with pytest.raises(WarehouseError, match=SPLIT_BUCKET_COLUMN):
            warehouse.create_snapshot(SOURCE, "source__d0001", T1)
        assert warehouse.table_columns(warehouse.qualified("source__d0001", warehouse.snapshot_dataset)) is None

    # -- reading ---------------------------------------------------------------------------------
    def test_rows_are_read_in_row_id_order_with_only_the_columns_asked(self, warehouse: Warehouse) -> None:
        # The eval split and drift samples depend on a stable order, whatever the order of arrival.
        with_source(warehouse, (["r3", "r1"], T1), (["r2", "R0"], T2))
        assert warehouse.read_rows(SOURCE, ["n", ROW_ID_COLUMN]) == [
            {"n": 2, ROW_ID_COLUMN: "R0"}, {"n": 2, ROW_ID_COLUMN: "r1"},
            {"n": 2, ROW_ID_COLUMN: "r2"}, {"n": 2, ROW_ID_COLUMN: "r3"},
        ]
        assert warehouse.read_rows(SOURCE, ["label"])[0] == {"label": "label-of-R0"}

    def test_rows_after_a_time_are_only_those_ingested_later(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1", "r2"], T1), (["r3"], T2), (["r4"], T3))
        assert [r[ROW_ID_COLUMN] for r in warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where_after=T1)] == ["r3", "r4"]
        assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where_after=T3) == []

    def test_a_read_keeps_only_the_rows_meeting_every_condition(self, warehouse: Warehouse) -> None:
        # What the evaluator pushes down to read only its held-out rows (a row restriction in BigQuery).
        with_source(warehouse, (["a", "bb", "ccc"], T1), (["dddd"], T2))

        def ids(*where: Condition, after: datetime | None = None) -> list[str]:
            return [r[ROW_ID_COLUMN] for r in warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where_after=after,
                                                                     where=list(where))]

        assert ids(Condition("n", "<", 3)) == ["a", "bb"]
        assert ids(Condition("n", ">=", 2), Condition("x", "<=", 3.0)) == ["bb", "ccc"]
        assert ids(Condition(ROW_ID_COLUMN, "in", ["a", "dddd", "zz"])) == ["a", "dddd"]
        assert ids(Condition(ROW_ID_COLUMN, "in", [])) == []
        assert ids(Condition("label", "=", "label-of-bb")) == ["bb"]
        assert ids(Condition("label", "!=", "label-of-bb"), after=T1) == ["dddd"]
        assert ids(Condition(INGESTED_AT_COLUMN, ">", T1)) == ["dddd"]

    def test_a_condition_value_is_a_value_never_sql(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1"], T1))
        for text in ["x' OR TRUE OR 'a'='a", "label-of-r1\\' OR TRUE --", "'); DROP TABLE source; --"]:
            assert warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where=[Condition("label", "=", text)]) == []
        assert row_ids(warehouse, SOURCE) == ["r1"]

    def test_conditions_follow_sql_null_rules(self, warehouse: Warehouse) -> None:
        # A CUSTOM split's eval rows are those whose BOOL column is TRUE or NULL (`is not false`).
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        rows = source_rows(["t", "f", "u"], T1)
        rows[1]["flag"], rows[2]["flag"], rows[2]["n"] = False, None, None
        warehouse.insert_rows(SOURCE, rows)

        def ids(*where: Condition) -> list[str]:
            return [r[ROW_ID_COLUMN] for r in warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where=list(where))]

        assert ids(Condition("flag", "is not false")) == ["t", "u"]
        assert ids(Condition("flag", "=", True)) == ["t"]
        assert ids(Condition("flag", "is null")) == ["u"]
        assert ids(Condition("flag", "is not null")) == ["f", "t"]
        assert ids(Condition("n", "!=", 5)) == ["f", "t"]  # NULL != 5 is not true

    def test_a_condition_on_a_missing_column_raises(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1"], T1))
        with pytest.raises(WarehouseError):
            warehouse.read_rows(SOURCE, [ROW_ID_COLUMN], where=[Condition("no_such_column", "=", 1)])

    def test_rows_are_read_from_another_dataset_by_name(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1", "r2"], T1))
        warehouse.create_snapshot(SOURCE, "source__d0001", T1)
        assert warehouse.read_rows("source__d0001", ["x"], dataset=warehouse.snapshot_dataset) == [{"x": 2.0}] * 2

    def test_reading_what_does_not_exist_raises(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1"], T1))
        with pytest.raises(TableNotFound):
            warehouse.read_rows("no_such_table", [ROW_ID_COLUMN])
        with pytest.raises(WarehouseError):
            warehouse.read_rows(SOURCE, ["no_such_column"])

    def test_a_float_column_keeps_nan_and_infinity(self, warehouse: Warehouse) -> None:
        warehouse.ensure_table(SOURCE, SOURCE_COLUMNS)
        rows = source_rows(["r1", "r2"], T1)
        rows[0]["x"], rows[1]["x"] = "NaN", "inf"
        warehouse.insert_rows(SOURCE, rows)
        first, second = warehouse.read_rows(SOURCE, ["x"])
        assert math.isnan(first["x"]) and second["x"] == math.inf

    # -- snapshot records ------------------------------------------------------------------------
    def test_recorded_snapshots_are_found_by_pipeline_and_by_input_event(self, warehouse: Warehouse) -> None:
        first, second = snapshot_record("p", 1, T1), snapshot_record("p", 2, T2, drift=0.25, spec_hash="0f" * 8)
        other = snapshot_record("q", 1, T3)
        for record in (first, second, other):
            warehouse.record_snapshot(record)
        assert warehouse.last_snapshot("p") == second
        assert warehouse.last_snapshot("q") == other
        assert warehouse.last_snapshot("nobody") is None
        assert warehouse.snapshot_for_event(first.source_event_id) == first
        assert warehouse.snapshot_for_event("tick-unknown") is None
        assert warehouse.has_rows(SNAPSHOTS_TABLE, "source_event_id", other.source_event_id)

    def test_the_last_snapshot_is_the_newest_created_not_the_last_recorded(self, warehouse: Warehouse) -> None:
        newer, older = snapshot_record("p", 2, T3), snapshot_record("p", 1, T1)
        warehouse.record_snapshot(newer)
        warehouse.record_snapshot(older)
        assert warehouse.last_snapshot("p") == newer

    # -- late labels -----------------------------------------------------------------------------
    def test_labeled_predictions_are_those_labeled_and_not_yet_absorbed(self, warehouse: Warehouse) -> None:
        with_source(warehouse, (["r1", "label-b"], T1))  # b was absorbed by an earlier tick
        warehouse.insert_rows(PREDICTIONS_TABLE, [
            prediction("p", "a", {"f": 1}), prediction("p", "b", {"f": 2}), prediction("p", "c", {"f": 3}),
            prediction("p", "d", {"f": 4}), prediction("p", "d", {"f": 4}, event_id="evt-2"),  # logged twice
            prediction("p", "e", {"f": 5}), prediction("q", "a", {"g": 9}),
        ])
        warehouse.insert_rows(LABELS_TABLE, [
            label("p", "d", "0"), label("p", "a", "1"), label("p", "b", "1"), label("p", "z", "1"),  # z: never served
            label("q", "c", "1"),  # c has a label, but in another pipeline
        ])
        assert warehouse.labeled_predictions("p", SOURCE, "label-") == [
            {"request_id": "a", "features": json.dumps({"f": 1}), "label": "1"},
            {"request_id": "d", "features": json.dumps({"f": 4}), "label": "0"},
        ]
        assert warehouse.labeled_predictions("nobody", SOURCE, "label-") == []
        with pytest.raises(TableNotFound):
            warehouse.labeled_predictions("p", "no_such_table", "label-")

    # -- names -----------------------------------------------------------------------------------
    def test_names_are_qualified_by_project_and_dataset(self, warehouse: Warehouse) -> None:
        project, dataset = warehouse.project, warehouse.dataset
        assert warehouse.qualified("t") == f"{project}.{dataset}.t"
        assert warehouse.qualified("t", warehouse.snapshot_dataset) == f"{project}.{warehouse.snapshot_dataset}.t"
        assert warehouse.qualified("other-project.other_dataset.t") == "other-project.other_dataset.t"

"""The warehouse in memory: tables as lists of typed rows, with the loop's queries written in Python.

It behaves as the BigQuery adapter does on bqemulator (`mlops.testing.contracts.warehouse` runs the
same cases on both): tables exist only once ensured (the system tables from the start, as after
`mlops up`), a row is checked against its table's columns and stored typed as BigQuery returns it,
a batch with a bad row lands not at all, and row ids deduplicate nothing. Where BigQuery proper is
stricter than the emulator (a missing REQUIRED value, an unknown column, a fractional INT64) this
follows BigQuery, so a unit test cannot pass on a row the cloud would refuse.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.core.topology import LABELS_TABLE, PREDICTIONS_TABLE, SNAPSHOTS_TABLE, TABLES
from mlops.ml.split import EVAL_BUCKETS, SPLIT_BUCKET_COLUMN
from mlops.ports.warehouse import (
    Column,
    Condition,
    Row,
    SnapshotRecord,
    SourceStatus,
    TableNotFound,
    WarehouseError,
    standard_type,
)

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _int64(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def _float64(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, (int, float, str)):
        return float(value)
    raise TypeError(f"{value!r} is not a number")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[str(value).strip().lower()]
    raise ValueError(f"{value!r} is not a boolean")


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"{value!r} is not a string")
    return str(value)  # a StrEnum member becomes its plain word, as BigQuery hands it back


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise TypeError(f"{value!r} is not a timestamp")
    # BigQuery reads a time without an offset as UTC, and answers every TIMESTAMP in UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "INT64": _int64, "FLOAT64": _float64, "BOOL": _bool, "STRING": _string, "TIMESTAMP": _timestamp,
}


def _arrow_widens(given: Any, kind: str) -> bool:
    """Whether an Arrow column of type `given` loads into a `kind` column (the BigQuery adapter's
    `arrow_table` rule): the column's own Arrow type, or a narrower one of the same family."""
    import pyarrow as pa  # only where a test loads Arrow

    checks = {"INT64": pa.types.is_integer, "TIMESTAMP": pa.types.is_timestamp, "BOOL": pa.types.is_boolean,
              "FLOAT64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t), "DATE": pa.types.is_date32}
    # STRING, and as text the types Arrow has no twin of (NUMERIC, JSON...)
    return checks.get(kind, lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))(given)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _holds(condition: Condition, value: Any, kind: str) -> bool:
    """A row restriction's predicate with SQL's NULL rules: a comparison with NULL is not true."""
    if condition.op == "is null":
        return value is None
    if condition.op == "is not null":
        return value is not None
    if condition.op == "is not false":
        return value is not False
    if value is None:
        return False
    convert = _CONVERTERS.get(kind, lambda v: v)
    if condition.op == "in":
        return value in {convert(v) for v in condition.value or ()}
    compare = _COMPARISONS.get(condition.op)
    if compare is None:
        raise WarehouseError(f"unsupported row restriction operator {condition.op!r}")
    return condition.value is not None and compare(value, convert(condition.value))


def split_bucket(key: Any) -> int | None:
    """ABS(MOD(FARM_FINGERPRINT(CAST(key AS STRING)), 10000)), what the BigQuery adapter's snapshot
    computes. FARM_FINGERPRINT is FarmHash's Fingerprint64 of the UTF-8 bytes, as a signed INT64:
    Google's C++ through `pyfarmhash`, not bqemulator's Python port (wrong above 64 bytes; the stack's
    launcher replaces it, see mlops.stack.bqemulator_safe). Imported here, when a snapshot is taken."""
    if key is None:
        return None
    import farmhash

    unsigned = farmhash.fingerprint64(key if isinstance(key, str) else str(key))
    signed = unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned
    return abs(signed) % EVAL_BUCKETS  # = ABS(MOD(x, n)): MOD keeps the sign of x, ABS drops it


def _snapshot_of(row: Row) -> SnapshotRecord:
    return SnapshotRecord(
        pipeline=row["pipeline"], data_version=row["data_version"], snapshot_table=row["snapshot_table"],
        total_rows=row["total_rows"], new_rows=row["new_rows"], watermark=row["watermark"], trigger=row["trigger"],
        source_event_id=row["source_event_id"], created_at=row["created_at"], drift_score=row["drift_score"],
        spec_hash=row.get("spec_hash"),
    )


class InMemoryWarehouse:
    """`tables` are created at construction (default: the system tables, as `mlops up` provisions)."""

    def __init__(self, project: str = "test-project", dataset: str = "mlops", snapshot_dataset: str = "mlops_snapshots",
                 tables: Mapping[str, Sequence[Column]] = TABLES) -> None:
        self.project, self.dataset, self.snapshot_dataset = project, dataset, snapshot_dataset
        self.tables: dict[str, list[Row]] = {}  # qualified name -> rows, in insertion order
        self._schemas: dict[str, list[Column]] = {}
        self._lock = threading.RLock()
        for table, columns in tables.items():
            self.ensure_table(table, columns)

    # -- helpers ---------------------------------------------------------------------------------
    def _schema(self, name: str) -> list[Column]:
        try:
            return self._schemas[name]
        except KeyError:
            raise TableNotFound(f"Not found: table {name}") from None

    def _rows(self, name: str, needs: Sequence[str] = ()) -> list[Row]:
        present = {column for column, _, _ in self._schema(name)}
        missing = [c for c in needs if c not in present]
        if missing:
            raise WarehouseError(f"table {name} has no column(s) {missing}")
        return self.tables[name]

    @staticmethod
    def _fit(schema: Sequence[Column], row: Row, index: int) -> tuple[Row, list[str]]:
        problems = [f"row {index}: no such field {key!r}" for key in row if key not in {c for c, _, _ in schema}]
        fitted: Row = {}
        for column, kind, mode in schema:
            value = row.get(column)
            if value is None:
                if mode == "REQUIRED":
                    problems.append(f"row {index}: missing required field {column!r}")
                fitted[column] = None
                continue
            convert = _CONVERTERS.get(kind)
            try:
                fitted[column] = convert(value) if convert else value
            except (TypeError, ValueError):
                problems.append(f"row {index}: cannot convert {value!r} to {kind} for {column!r}")
        return fitted, problems

    def _insert(self, name: str, rows: Sequence[Row]) -> None:
        schema = self._schema(name)
        fitted, problems = [], []
        for index, row in enumerate(rows):
            typed, wrong = self._fit(schema, row, index)
            fitted.append(typed)
            problems.extend(wrong)
        if problems:  # all or none, as a streaming insert without skipInvalidRows
            raise WarehouseError(f"{len(problems)} problem(s) with rows for {name}: {problems[:5]}")
        self.tables[name].extend(fitted)

    def _snapshot_rows(self) -> list[Row]:
        return self._rows(self.qualified(SNAPSHOTS_TABLE))

    @property
    def snapshots(self) -> list[SnapshotRecord]:
        """Every recorded snapshot, in the order recorded (for tests to inspect)."""
        return [_snapshot_of(row) for row in self._snapshot_rows()]

    # -- the port --------------------------------------------------------------------------------
    def qualified(self, table: str, dataset: str | None = None) -> str:
        return table if table.count(".") == 2 else f"{self.project}.{dataset or self.dataset}.{table}"

    def ensure_table(self, table: str, columns: Sequence[Column]) -> None:
        name = self.qualified(table)
        with self._lock:
            if name not in self._schemas:
                self._schemas[name] = [(c, standard_type(t), m.upper()) for c, t, m in columns]
                self.tables[name] = []

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        schema = self._schemas.get(self.qualified(table))
        return None if schema is None else [(column, kind) for column, kind, _ in schema]

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        if row_ids is not None and len(row_ids) != len(rows):
            raise ValueError(f"{len(row_ids)} row ids for {len(rows)} rows")
        # Row ids are accepted and dropped: bqemulator keeps a retried row twice, and so does this.
        with self._lock:
            self._insert(self.qualified(table), rows)

    def load_rows(self, table: str, rows: Sequence[Row]) -> None:
        with self._lock:
            self._insert(self.qualified(table), rows)

    def load_arrow(self, table: str, data: Any) -> None:
        """As the BigQuery adapter conforms an Arrow table (see the port): each column of its table
        column's Arrow type or one widening to it, never text parsed as a number; then the rows are
        checked and stored as `load_rows` stores them."""
        name = self.qualified(table)
        with self._lock:
            kinds = {column: kind for column, kind, _ in self._schema(name)}
            problems = [f"no such field {field.name!r}" if field.name not in kinds else
                        f"{field.name!r} is {field.type}, the table's column is {kinds[field.name]}"
                        for field in data.schema
                        if field.name not in kinds or not _arrow_widens(field.type, kinds[field.name])]
            if problems:
                raise WarehouseError(f"{len(problems)} problem(s) with rows for {name}: {problems[:5]}")
            self._insert(name, data.to_pylist())

    def has_rows(self, table: str, column: str, value: str) -> bool:
        return any(r[column] == value for r in self._rows(self.qualified(table), [column]))

    def present_values(self, table: str, column: str, values: Sequence[str],
                       where: Mapping[str, str] | None = None,
                       since: tuple[str, datetime] | None = None) -> set[str]:
        conditions = dict(where or {})
        wanted = set(values)
        rows = self._rows(self.qualified(table), [column, *conditions, *([since[0]] if since else [])])
        return {r[column] for r in rows if r[column] in wanted and all(r[k] == v for k, v in conditions.items())
                and (since is None or (r[since[0]] is not None and r[since[0]] >= since[1]))}

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        rows = self._rows(self.qualified(table), [INGESTED_AT_COLUMN])
        times = [r[INGESTED_AT_COLUMN] for r in rows if r[INGESTED_AT_COLUMN] is not None]
        new = sum(1 for t in times if after is None or t > after)
        return SourceStatus(len(rows), new, max(times) if times else None)

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        target = self.qualified(snapshot_table, self.snapshot_dataset)
        with self._lock:
            if target not in self._schemas:
                source = self.qualified(source_table)
                rows = self._rows(source, [INGESTED_AT_COLUMN])
                kept = [dict(r) for r in rows if r[INGESTED_AT_COLUMN] is not None and r[INGESTED_AT_COLUMN] <= up_to]
                # CREATE TABLE AS SELECT keeps names and types; every column comes out NULLABLE.
                schema = [(c, t, "NULLABLE") for c, t, _ in self._schema(source)]
                names = {c for c, _, _ in schema}
                if SPLIT_BUCKET_COLUMN in names:
                    raise WarehouseError(f"{source} has a column {SPLIT_BUCKET_COLUMN!r}, a name its snapshots "
                                         "reserve for the split bucket: rename it")
                if ROW_ID_COLUMN in names:  # the bucket BigQuery computes in the snapshot's SELECT
                    schema.append((SPLIT_BUCKET_COLUMN, "INT64", "NULLABLE"))
                    for row in kept:
                        row[SPLIT_BUCKET_COLUMN] = split_bucket(row[ROW_ID_COLUMN])
                self._schemas[target] = schema
                self.tables[target] = kept
            return len(self.tables[target])

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None, where: Sequence[Condition] = ()) -> list[Row]:
        needs = [*columns, ROW_ID_COLUMN, *(c.column for c in where)] + (
            [INGESTED_AT_COLUMN] if where_after is not None else [])
        name = self.qualified(table, dataset)
        rows = self._rows(name, needs)
        if where_after is not None:
            rows = [r for r in rows if r[INGESTED_AT_COLUMN] is not None and r[INGESTED_AT_COLUMN] > where_after]
        kinds = {column: kind for column, kind, _ in self._schema(name)}
        rows = [r for r in rows if all(_holds(c, r[c.column], kinds[c.column]) for c in where)]
        # ORDER BY in BigQuery puts NULL first.
        ordered = sorted(rows, key=lambda r: (r[ROW_ID_COLUMN] is not None, r[ROW_ID_COLUMN] or ""))
        return [{c: r[c] for c in columns} for r in ordered]

    def last_snapshot(self, pipeline: str) -> SnapshotRecord | None:
        mine = [r for r in self._snapshot_rows() if r["pipeline"] == pipeline]
        return _snapshot_of(max(mine, key=lambda r: r["created_at"])) if mine else None

    def snapshot_for_event(self, source_event_id: str) -> SnapshotRecord | None:
        mine = [r for r in self._snapshot_rows() if r["source_event_id"] == source_event_id]
        return _snapshot_of(max(mine, key=lambda r: r["created_at"])) if mine else None

    def record_snapshot(self, record: SnapshotRecord) -> None:
        self.insert_rows(SNAPSHOTS_TABLE, [{
            "pipeline": record.pipeline, "data_version": record.data_version,
            "snapshot_table": record.snapshot_table, "total_rows": record.total_rows,
            "new_rows": record.new_rows, "watermark": record.watermark, "trigger": record.trigger,
            "source_event_id": record.source_event_id, "created_at": record.created_at,
            "drift_score": record.drift_score, "spec_hash": record.spec_hash,
        }])

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        present = {r[ROW_ID_COLUMN] for r in self._rows(self.qualified(source_table), [ROW_ID_COLUMN])}
        labels: dict[str, str] = {}
        for label in self._rows(self.qualified(LABELS_TABLE)):
            if label["pipeline"] == pipeline:
                labels.setdefault(label["request_id"], label["label"])
        found: dict[str, Row] = {}
        for p in self._rows(self.qualified(PREDICTIONS_TABLE)):
            rid = p["request_id"]
            if p["pipeline"] == pipeline and rid in labels and row_id_prefix + rid not in present:
                found.setdefault(rid, {"request_id": rid, "features": p["features"], "label": labels[rid]})
        return [found[k] for k in sorted(found)]

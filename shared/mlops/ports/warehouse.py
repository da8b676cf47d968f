"""The warehouse port: the few things the loop asks of BigQuery, in the loop's own words.

Services depend on this interface, never on google-cloud-bigquery. The BigQuery adapter speaks SQL
to BigQuery or to bqemulator (only the endpoint differs); the in-memory one serves unit tests. Both
pass one contract suite (`mlops.testing.contracts.warehouse`, run by
`tests/contract/test_warehouse_contract.py`), so what a unit test sees here is what a stage sees on
the emulator.

`Warehouse` is what every stage needs and what the in-memory warehouse can honestly do. Raw SQL is
apart, in `SqlReader`, for the few users that need BigQuery itself (the BigQuery ML trainer backend,
the operator tools that read the event archive); `SqlWarehouse` is both, the BigQuery adapter.

Values: rows go in as JSON-ready values (a `datetime` is accepted for a TIMESTAMP column) and come
back typed by their column: INT64 -> int, FLOAT64 -> float, BOOL -> bool, STRING -> str, TIMESTAMP ->
an aware `datetime` in UTC. Column types are GoogleSQL names (INT64, FLOAT64, BOOL, STRING,
TIMESTAMP, ...), never BigQuery's legacy ones (INTEGER, FLOAT, BOOLEAN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # only `load_arrow` speaks Arrow: a service without pyarrow imports this port too
    import pyarrow as pa

Row = dict[str, Any]
Column = tuple[str, str, str]  # (name, GoogleSQL type, mode: NULLABLE | REQUIRED | REPEATED)

# What BigQuery's API answers for a column declared with the GoogleSQL name on the right.
LEGACY_TYPE_NAMES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


def standard_type(name: str) -> str:
    """The GoogleSQL name of a column type (`INTEGER` -> `INT64`)."""
    upper = name.upper()
    return LEGACY_TYPE_NAMES.get(upper, upper)


class WarehouseError(RuntimeError):
    """The warehouse refused a request: rows that do not fit their table, or a column it lacks."""


class TableNotFound(WarehouseError):
    """The table (or its dataset) does not exist: nothing creates one implicitly but `ensure_table`
    (and `create_snapshot` for its snapshot)."""


Operator = Literal["=", "!=", "<", "<=", ">", ">=", "in", "is null", "is not null", "is not false"]


@dataclass(frozen=True)
class Condition:
    """One predicate of a read's row restriction, `column op value`, ANDed with the others. Values are
    typed (int, float, bool, str, datetime; a sequence for `in`), never SQL text: the BigQuery adapter
    renders them as literals through `mlops.core.sql`. NULL compares as in SQL: `=`, `<`... are false
    for it; `is not false` keeps TRUE and NULL (BigQuery ML's CUSTOM split: those are eval rows)."""

    column: str
    op: Operator
    value: Any = None


@dataclass(frozen=True)
class SourceStatus:
    total_rows: int
    new_rows: int  # rows ingested after the watermark asked about
    watermark: datetime | None  # highest ingest time in the table


@dataclass(frozen=True)
class SnapshotRecord:
    pipeline: str
    data_version: str
    snapshot_table: str
    total_rows: int
    new_rows: int
    watermark: datetime
    trigger: str
    source_event_id: str
    created_at: datetime
    drift_score: float | None = None
    spec_hash: str | None = None  # the spec's fingerprint when taken; None in rows older than the column


@runtime_checkable
class Warehouse(Protocol):
    """Tables by bare name live in `dataset` of `project`; snapshots in `snapshot_dataset`. Every
    method but `ensure_table`, `table_columns` and `qualified` raises `TableNotFound` for a table
    that does not exist (the system tables `snapshots`, `predictions` and `labels` exist once the
    warehouse is provisioned, see `mlops.core.topology.TABLES`)."""

    project: str
    dataset: str
    snapshot_dataset: str

    def ensure_table(self, table: str, columns: Sequence[Column]) -> None:
        """Create `table` (in the main dataset) with (name, type, mode) columns unless it exists; an
        existing table is left as it is, whatever columns are asked for."""

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        """(name, GoogleSQL type) of each column in declared order, or None when the table does not
        exist."""

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        """Append rows (a Storage Write API append; insertAll without the Storage API clients), all or
        none: a row that does not fit the table (a value its column's type cannot hold) raises
        `WarehouseError` and none of the batch lands.

        The adapter's own resend of an append lands once (stream offsets), but a second call with
        the same rows adds them again. `row_ids` (one per row, else ValueError) are insertIds on the
        insertAll path only, and NOT a dedupe guarantee there: BigQuery drops a retried row with a
        known insertId on a best-effort basis only, and bqemulator 1.4.0 ignores insertIds (both
        copies land), as the in-memory warehouse does.
        A stage that must not write twice checks `has_rows` on its input event id first (the
        inference-logger does); row ids only thin out the duplicates of a client-side retry."""

    def load_rows(self, table: str, rows: Sequence[Row]) -> None:
        """Land a batch of any size whole or not at all (a load: in BigQuery one load job
        from Parquet, whose job id derives from the content, so a retried load is the same job), as `insert_rows` checks rows: a row that does
        not fit raises `WarehouseError` and nothing lands. No dedupe: the caller skips rows already
        there (`mlops ingest` checks its row ids first)."""

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """`load_rows` for rows already in columns (a `pyarrow.Table`; what `mlops ingest` lands).
        Its columns are matched by name, a subset of the table's (one the table lacks, or a REQUIRED
        one it lacks, raises `WarehouseError`; a NULLABLE one it lacks is NULL). Each holds the Arrow
        type of its table column, or one that widens to it without loss of meaning: int64 (or a
        narrower integer) for INT64, float64 (float32, an integer) for FLOAT64, bool for BOOL, string
        for STRING (and for the types without an Arrow twin, as text), timestamp (any unit; without a
        zone read as UTC) for TIMESTAMP, date32 for DATE. Any other type, or a null in a REQUIRED
        column, raises `WarehouseError` and nothing lands: no value is parsed or guessed here."""

    def has_rows(self, table: str, column: str, value: str) -> bool:
        """Whether any row has `column = value` (a stage's idempotence check on its input event id)."""

    def present_values(self, table: str, column: str, values: Sequence[str],
                       where: Mapping[str, str] | None = None,
                       since: tuple[str, datetime] | None = None) -> set[str]:
        """Which of `values` some row already holds in `column`, among the rows whose `where` columns
        equal their values and, with `since` = (time column, moment), whose time is at or after the
        moment: one query for a batch keyed on its items (the inference-logger writes only the
        request ids of a pipeline it has not logged yet, looking back a bounded time, so that
        BigQuery reads the partitions of that time only). A column the table lacks raises
        `WarehouseError`."""

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        """Rows in a source table, and how many were ingested (`_ingested_at`) after `after` (all of
        them when `after` is None); the watermark is the highest ingest time, None for no rows."""

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        """Freeze the source rows ingested up to `up_to` (inclusive) into a new table of the snapshot
        dataset, with the source's columns and, when the source has `_row_id`, `_split_bucket` INT64:
        ABS(MOD(FARM_FINGERPRINT(CAST(_row_id AS STRING)), 10000)), computed by the warehouse (NULL for
        a NULL key; the train/eval split reads it, `mlops.ml.split`); a source that has a column of
        that name is refused (`WarehouseError`). Returns the snapshot's row count. Idempotent: an
        existing snapshot of that name is kept as it is (and its count returned)."""

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None, where: Sequence[Condition] = ()) -> list[Row]:
        """The named columns of a table's rows (only those ingested after `where_after` if given, and
        only those meeting every `where` condition), ordered by `_row_id`; a column the table lacks
        (selected or in a condition) raises `WarehouseError`. BigQuery reads with the Storage Read API,
        the conditions pushed down as its row restriction, so a filtered read costs the rows it keeps."""

    def last_snapshot(self, pipeline: str) -> SnapshotRecord | None:
        """The newest (by `created_at`) snapshot recorded for a pipeline."""

    def snapshot_for_event(self, source_event_id: str) -> SnapshotRecord | None:
        """The snapshot made for a given input event, if any (the watcher's idempotence record)."""

    def record_snapshot(self, record: SnapshotRecord) -> None:
        """Add a row to the `snapshots` table."""

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        """Served predictions whose label has arrived and that are not yet rows of the source table
        (`<prefix><request_id>` not among its row ids): request_id, features (JSON), label; one per
        request id (a prediction logged twice counts once), ordered by request id."""

    def qualified(self, table: str, dataset: str | None = None) -> str:
        """`project.dataset.table` for a table id (`dataset` defaults to the main one); an already
        qualified name is returned as it is."""


@runtime_checkable
class SqlReader(Protocol):
    """Runs GoogleSQL on BigQuery (or bqemulator): what the operator tools that read the event
    archive need, and what the BigQuery ML backend trains with. No in-memory stand-in: SQL is
    BigQuery's own."""

    def qualified(self, table: str, dataset: str | None = None) -> str: ...

    def table_columns(self, table: str) -> list[tuple[str, str]] | None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run SQL with named parameters (`@name`); values always travel as parameters."""


@runtime_checkable
class SqlWarehouse(Warehouse, SqlReader, Protocol):
    """A warehouse that also runs SQL: the BigQuery adapter."""

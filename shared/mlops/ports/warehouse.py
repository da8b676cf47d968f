"""The warehouse port: the few things the loop asks of BigQuery, in the loop's own words.

Services depend on this interface, never on google-cloud-bigquery; the BigQuery adapter speaks SQL
to BigQuery or to bqemulator (only the endpoint differs), the in-memory one serves unit tests.
`tests/contract/test_warehouse_contract.py` runs the same cases against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Row = dict[str, Any]


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


class Warehouse(Protocol):
    def ensure_table(self, table: str, columns: Sequence[tuple[str, str, str]]) -> None:
        """Create `table` (in the main dataset) with (name, type, mode) columns unless it exists."""

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        """(name, type) of each column, or None when the table does not exist."""

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        """Append rows (streaming insert); raises on any rejected row. `row_ids` let the warehouse drop
        a row it already has from a retried insert (BigQuery's insertId; best effort)."""

    def has_rows(self, table: str, column: str, value: str) -> bool:
        """Whether any row has `column = value` (a stage's idempotence check on its input event id)."""

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        """Rows in a source table, and how many were ingested after `after`."""

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        """Freeze the source rows ingested up to `up_to` into a new table; returns its row count.
        Idempotent: an existing snapshot of that name is kept as it is."""

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None) -> list[Row]:
        """Rows of a table (optionally only those ingested after a time), ordered by row id."""

    def last_snapshot(self, pipeline: str) -> SnapshotRecord | None:
        """The newest snapshot recorded for a pipeline."""

    def snapshot_for_event(self, source_event_id: str) -> SnapshotRecord | None:
        """The snapshot made for a given input event, if any (the watcher's idempotence record)."""

    def record_snapshot(self, record: SnapshotRecord) -> None: ...

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        """Served predictions whose label has arrived and that are not yet rows of the source table
        (`<prefix><request_id>` not among its row ids): request_id, features (JSON), label."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Escape hatch for the CLI and tests: run SQL with named parameters."""

    def qualified(self, table: str, dataset: str | None = None) -> str:
        """`project.dataset.table` for a table id."""

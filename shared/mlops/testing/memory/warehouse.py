"""The warehouse in memory: tables as lists of rows, with the loop's queries written in Python."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.ports.warehouse import Row, SnapshotRecord, SourceStatus


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class InMemoryWarehouse:
    def __init__(self, project: str = "test-project", dataset: str = "mlops", snapshot_dataset: str = "mlops_snapshots"):
        self.project, self.dataset, self.snapshot_dataset = project, dataset, snapshot_dataset
        self.tables: dict[str, list[Row]] = {}
        self.columns: dict[str, list[tuple[str, str]]] = {}
        self.snapshots: list[SnapshotRecord] = []
        self._lock = threading.Lock()

    def qualified(self, table: str, dataset: str | None = None) -> str:
        return table if table.count(".") == 2 else f"{self.project}.{dataset or self.dataset}.{table}"

    def ensure_table(self, table: str, columns: Sequence[tuple[str, str, str]]) -> None:
        name = self.qualified(table)
        self.tables.setdefault(name, [])
        self.columns.setdefault(name, [(c, t) for c, t, _ in columns])

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        name = self.qualified(table)
        if name in self.columns:
            return self.columns[name]
        if name not in self.tables:
            return None
        first = self.tables[name][0] if self.tables[name] else {}
        kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64"}
        return [(column, kinds.get(type(value), "STRING")) for column, value in first.items()]

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        with self._lock:
            self.tables.setdefault(self.qualified(table), []).extend(dict(r) for r in rows)

    def has_rows(self, table: str, column: str, value: str) -> bool:
        return any(r.get(column) == value for r in self.tables.get(self.qualified(table), []))

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        rows = self.tables.get(self.qualified(table), [])
        times = [_ts(r[INGESTED_AT_COLUMN]) for r in rows]
        new = sum(1 for t in times if after is None or t > after)
        return SourceStatus(len(rows), new, max(times) if times else None)

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        target = self.qualified(snapshot_table, self.snapshot_dataset)
        if target not in self.tables:
            source = self.qualified(source_table)
            self.tables[target] = [dict(r) for r in self.tables.get(source, []) if _ts(r[INGESTED_AT_COLUMN]) <= up_to]
            self.columns[target] = list(self.columns.get(source, []))
        return len(self.tables[target])

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None) -> list[Row]:
        rows = self.tables.get(self.qualified(table, dataset), [])
        if where_after is not None:
            rows = [r for r in rows if _ts(r[INGESTED_AT_COLUMN]) > where_after]
        rows = sorted(rows, key=lambda r: str(r.get(ROW_ID_COLUMN, "")))
        return [{c: r.get(c) for c in columns} for r in rows]

    def last_snapshot(self, pipeline: str) -> SnapshotRecord | None:
        mine = [s for s in self.snapshots if s.pipeline == pipeline]
        return max(mine, key=lambda s: s.created_at) if mine else None

    def snapshot_for_event(self, source_event_id: str) -> SnapshotRecord | None:
        return next((s for s in self.snapshots if s.source_event_id == source_event_id), None)

    def record_snapshot(self, record: SnapshotRecord) -> None:
        self.snapshots.append(record)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        raise NotImplementedError("the in-memory warehouse runs no SQL; use the emulator-backed adapter")

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        present = {r.get(ROW_ID_COLUMN) for r in self.tables.get(self.qualified(source_table), [])}
        labels = {r["request_id"]: r["label"] for r in self.tables.get(self.qualified("labels"), [])
                  if r["pipeline"] == pipeline}
        found: dict[str, Row] = {}
        for p in self.tables.get(self.qualified("predictions"), []):
            rid = p["request_id"]
            if p["pipeline"] == pipeline and rid in labels and row_id_prefix + rid not in present:
                found.setdefault(rid, {"request_id": rid, "features": p["features"], "label": labels[rid]})
        return [found[k] for k in sorted(found)]

"""Landing data: CSV rows into a pipeline's source table (what a daily load job does in the cloud).

Each row gets `_row_id` (its identity: the eval split hashes it, so a row keeps its side forever)
and `_ingested_at` (one time per batch: the watermark the data-watcher counts new rows by). The
table is created on first use with column types inferred from the data.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, PipelineSpec
from mlops.core.topology import LABELS_TABLE

BATCH_ROWS = 500


class IngestError(ValueError):
    pass


def _typed(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _bq_type(values: Iterable[Any]) -> str:
    seen = {type(v) for v in values if v is not None}
    if seen <= {int}:
        return "INT64"
    if seen <= {int, float}:
        return "FLOAT64"
    return "STRING"


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: _typed(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def source_columns(spec: PipelineSpec, rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    columns = [(ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED")]
    for name in [*spec.source.features, spec.source.label]:
        columns.append((name, _bq_type(r.get(name) for r in rows), "NULLABLE"))
    return columns


def ingest_rows(warehouse, spec: PipelineSpec, rows: Sequence[dict[str, Any]],
                now: datetime | None = None) -> int:
    """Append rows to the spec's source table; every problem with the rows is reported at once."""
    needed = [*spec.source.features, spec.source.label]
    if not rows:
        return 0
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise IngestError(f"the data has no column(s) {missing} that pipeline {spec.name} needs; "
                          f"it has {sorted(rows[0])}")
    existing = warehouse.table_columns(spec.source.table)
    if existing is None:
        warehouse.ensure_table(spec.source.table, source_columns(spec, rows))
    prepared = [{ROW_ID_COLUMN: str(r.get(ROW_ID_COLUMN) or uuid.uuid4().hex), **{c: r.get(c) for c in needed}}
                for r in rows]
    for start in range(0, len(prepared), BATCH_ROWS):
        # Each chunk is stamped just before it is written: if the data-watcher snapshots while a large
        # file is still landing, the rows not yet written carry a later time and count as new next time
        # (one stamp for the whole file would leave them at the watermark, never counted).
        stamp = (now or datetime.now(UTC)).isoformat()
        chunk = [{**row, INGESTED_AT_COLUMN: stamp} for row in prepared[start:start + BATCH_ROWS]]
        warehouse.insert_rows(spec.source.table, chunk)
    return len(prepared)


def ingest_labels(warehouse, pipeline: str, rows: Sequence[dict[str, Any]], label_column: str) -> int:
    """Late labels for served predictions, joined on `request_id` by the next snapshot."""
    if rows and ("request_id" not in rows[0] or label_column not in rows[0]):
        raise IngestError(f"a label file needs columns request_id and {label_column}; it has {sorted(rows[0])}")
    stamp = datetime.now(UTC).isoformat()
    prepared = [{"pipeline": pipeline, "request_id": str(r["request_id"]), "label": str(r[label_column]),
                 "labeled_at": stamp} for r in rows]
    for start in range(0, len(prepared), BATCH_ROWS):
        warehouse.insert_rows(LABELS_TABLE, prepared[start:start + BATCH_ROWS])
    return len(prepared)

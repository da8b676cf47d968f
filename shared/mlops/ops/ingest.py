"""Landing data: CSV rows into a pipeline's source table (what a daily load job does in the cloud).

Each row gets `_row_id` (its identity: the eval split hashes it, so a row keeps its side forever)
and `_ingested_at` (one time per batch: the watermark the data-watcher counts new rows by). The
table is created on first use with column types inferred from the data.

Idempotent: a row without a `_row_id` of its own gets one derived from the batch's content and its
position, and rows whose id the table already holds are not written again. So re-running an ingest
that failed (or that did land, but whose caller never heard so) lands each row once.

Rows land with `Warehouse.load_rows`: in BigQuery a load job from Parquet, so a file lands whole or
not at all (no streaming inserts: insertAll was 150-390 ms per 500 rows on the emulator, 156 s for
300,000 rows; a pending Write API stream 146 s for 1,000,000; see docs/performance.md, `train-size`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, PipelineSpec
from mlops.core.topology import LABELS_TABLE
from mlops.ops.errors import OperatorError
from mlops.ops.validate import coerce_rows, one_line, spec_problems
from mlops.ports.warehouse import Warehouse, WarehouseError

BATCH_ROWS = 500  # label rows per insert
PRESENCE_CHECK_IDS = 10_000  # ids per query parameter array


class IngestError(OperatorError, ValueError):
    """Rows that cannot land as they are; nothing of them was written."""


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
    """The data rows of a CSV file with a header row, values typed (int, float, text, None for empty)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = []
            for number, row in enumerate(reader, 1):
                if None in row:  # DictReader files values beyond the header under the key None
                    raise IngestError(f"{path}: row {number} has more values than the header has columns")
                rows.append({k: _typed(v) if v is not None else None for k, v in row.items()})
    except FileNotFoundError:
        raise IngestError(f"no file {path}") from None
    except IsADirectoryError:
        raise IngestError(f"{path} is a folder, not a CSV file") from None
    except UnicodeDecodeError as error:
        raise IngestError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise IngestError(f"{path} is not a readable CSV file: {error}") from None
    if not rows:
        raise IngestError(f"{path} has no data rows (a header row, then one row per line): nothing landed")
    return rows


def source_columns(spec: PipelineSpec, rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    columns = [(ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED")]
    for name in [*spec.source.features, spec.source.label]:
        columns.append((name, _bq_type(r.get(name) for r in rows), "NULLABLE"))
    return columns


@dataclass(frozen=True)
class Landed:
    rows: int            # written now
    already_there: int   # the table had them from an earlier run of the same ingest


def batch_row_ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each row's `_row_id`: its own when it has one, else `<digest of the batch>-<position>`, the same
    for the same file every time (an identical line twice in a file stays two rows)."""
    # The digest of `json.dumps(rows, sort_keys=True, default=str)`, fed row by row: the same ids as
    # ever for the same file, without building one string of the whole file (1,000,000 rows: 100s of MB).
    hasher = hashlib.sha256(b"[")
    for index, row in enumerate(rows):
        hasher.update((", " if index else "").encode() + json.dumps(row, sort_keys=True, default=str).encode())
    hasher.update(b"]")
    digest = hasher.hexdigest()[:16]
    return [str(r[ROW_ID_COLUMN]) if r.get(ROW_ID_COLUMN) not in (None, "") else f"{digest}-{i:07d}"
            for i, r in enumerate(rows)]


def ingest_rows(warehouse: Warehouse, spec: PipelineSpec, rows: Sequence[dict[str, Any]],
                now: datetime | None = None) -> Landed:
    """Append rows to the spec's source table, or land none of them: the rows are checked against
    the table's columns (or, for a new table, the columns they make) first, every problem at once."""
    needed = [*spec.source.features, spec.source.label]
    if not rows:
        raise IngestError("no data rows: nothing landed")
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise IngestError(f"the data has no column(s) {missing} that pipeline {spec.name} needs; "
                          f"it has {sorted(rows[0])}")
    existing = warehouse.table_columns(spec.source.table)
    planned = source_columns(spec, rows) if existing is None else None
    columns = [(name, kind) for name, kind, _ in planned] if planned else existing or []
    problems = spec_problems(spec, columns)
    if problems:
        fix = "fix the data" if planned else "fix the spec (`mlops pipeline apply`) or the data"
        raise IngestError(f"pipeline {spec.name} cannot train on {'these rows' if planned else 'its table'}: "
                          f"{one_line(problems)}; {fix}. Nothing landed")
    typed, problems = coerce_rows(rows, dict(columns), needed)
    if problems:
        raise IngestError(f"{len(problems)} value(s) do not fit table {spec.source.table}: {one_line(problems)}. "
                          "Fix them and ingest the file again; nothing landed")
    if planned is not None:
        warehouse.ensure_table(spec.source.table, planned)
    prepared = [{ROW_ID_COLUMN: row_id, **values} for row_id, values in zip(batch_row_ids(rows), typed, strict=True)]
    already: set[str] = set()
    if planned is None:  # an existing table may hold rows of an earlier run of this very batch
        ids = [row[ROW_ID_COLUMN] for row in prepared]
        if len(ids) > PRESENCE_CHECK_IDS:
            # One read of the table's row ids (Storage Read API, Arrow) costs less than a query per
            # 10,000 ids once a file is that large.
            wanted = set(ids)
            already = {r[ROW_ID_COLUMN] for r in warehouse.read_rows(spec.source.table, [ROW_ID_COLUMN])} & wanted
        else:
            already = warehouse.present_values(spec.source.table, ROW_ID_COLUMN, ids)
        prepared = [row for row in prepared if row[ROW_ID_COLUMN] not in already]
    # One stamp for the file: the load commits every row at once, so the data-watcher never sees a
    # file half landed (a snapshot taken before the commit has none of it, and its watermark is older).
    stamp = now or datetime.now(UTC)  # a datetime: the load's Arrow column takes it as is
    try:
        warehouse.load_rows(spec.source.table, [{**row, INGESTED_AT_COLUMN: stamp} for row in prepared])
    except WarehouseError as error:
        raise IngestError(f"the warehouse refused the rows (none landed): {error}") from None
    return Landed(rows=len(prepared), already_there=len(already))


def ingest_labels(warehouse: Warehouse, pipeline: str, rows: Sequence[dict[str, Any]], label_column: str) -> int:
    """Late labels for served predictions, joined on `request_id` by the next snapshot."""
    if rows and ("request_id" not in rows[0] or label_column not in rows[0]):
        raise IngestError(f"a label file needs columns request_id and {label_column}; it has {sorted(rows[0])}")
    stamp = datetime.now(UTC).isoformat()
    prepared = [{"pipeline": pipeline, "request_id": str(r["request_id"]), "label": str(r[label_column]),
                 "labeled_at": stamp} for r in rows]
    for start in range(0, len(prepared), BATCH_ROWS):
        warehouse.insert_rows(LABELS_TABLE, prepared[start:start + BATCH_ROWS])
    return len(prepared)

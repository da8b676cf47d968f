"""Warehouse over google-cloud-bigquery: BigQuery in the cloud, bqemulator locally.

Only the client's endpoint differs between the two (`BIGQUERY_EMULATOR_HOST`); the SQL is plain
GoogleSQL that both accept. Client errors become the port's: a missing table `TableNotFound`, a bad
row or column `WarehouseError`. bqemulator quirks handled here: a streamed row it cannot convert
comes back as HTTP 500 (BigQuery answers 200 with insertErrors), which the client would retry for
ten minutes, so inserts carry a short retry deadline (`insert_timeout`) and a 500 still failing at
its end is reported as a refused insert.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import BadRequest, InternalServerError, NotFound, RetryError
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery import AutoRowIDs

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.core.sql import quote_column, quote_qualified
from mlops.core.topology import LABELS_TABLE, PREDICTIONS_TABLE, SNAPSHOTS_TABLE
from mlops.ports.warehouse import (
    Column,
    Row,
    SnapshotRecord,
    SourceStatus,
    TableNotFound,
    WarehouseError,
    standard_type,
)

__all__ = ["BigQueryWarehouse", "TableNotFound", "WarehouseError", "bigquery_client"]

INSERT_TIMEOUT_S = 20.0


def bigquery_client(project: str, emulator_host: str | None = None) -> bigquery.Client:
    """A client of BigQuery, or of bqemulator at `emulator_host` (`http://host:port`: the scheme is
    required) with anonymous credentials."""
    if emulator_host:
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": emulator_host})
    return bigquery.Client(project=project)


def _param(name: str, value: Any) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, (list, tuple)):  # an ARRAY<STRING>, for `IN UNNEST(@name)`
        return bigquery.ArrayQueryParameter(name, "STRING", [str(v) for v in value])
    if isinstance(value, datetime):
        return bigquery.ScalarQueryParameter(name, "TIMESTAMP", value)
    if isinstance(value, bool):
        return bigquery.ScalarQueryParameter(name, "BOOL", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(name, "INT64", value)
    if isinstance(value, float):
        return bigquery.ScalarQueryParameter(name, "FLOAT64", value)
    return bigquery.ScalarQueryParameter(name, "STRING", value)


def _json_ready(row: Row) -> Row:
    """A row for insertAll's JSON body: a datetime is sent as RFC 3339 (BigQuery reads it as UTC)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@contextmanager
def _port_errors(table: str) -> Iterator[None]:
    """The client's errors for a missing table or a bad column, as the port names them."""
    try:
        yield
    except NotFound as error:
        raise TableNotFound(f"{table}: {error.message}") from error
    except BadRequest as error:
        raise WarehouseError(f"{table}: {error.message}") from error


def _as_utc(value: Any) -> datetime | None:
    return None if value is None else _utc(value)


def _utc(value: datetime | str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class BigQueryWarehouse:
    def __init__(self, client: bigquery.Client, project: str, dataset: str, snapshot_dataset: str,
                 insert_timeout: float = INSERT_TIMEOUT_S):
        self._client = client
        self.project = project
        self.dataset = dataset
        self.snapshot_dataset = snapshot_dataset
        self._insert_retry = Retry(initial=0.2, maximum=2.0, timeout=insert_timeout)

    def _table(self, table: str, dataset: str | None = None) -> str:
        """A table's id as SQL: qualified, checked and quoted (mlops.core.sql), never pasted."""
        return quote_qualified(self.qualified(table, dataset))

    def qualified(self, table: str, dataset: str | None = None) -> str:
        if table.count(".") == 2:
            return table
        return f"{self.project}.{dataset or self.dataset}.{table}"

    def ensure_datasets(self, location: str = "US") -> None:
        for dataset in (self.dataset, self.snapshot_dataset):
            ref = bigquery.Dataset(f"{self.project}.{dataset}")
            ref.location = location
            self._client.create_dataset(ref, exists_ok=True)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        config = bigquery.QueryJobConfig(query_parameters=[_param(k, v) for k, v in (params or {}).items()])
        return [dict(row.items()) for row in self._client.query(sql, job_config=config).result()]

    def _select(self, table: str, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        with _port_errors(table):
            return self.query(sql, params)

    def ensure_table(self, table: str, columns: Sequence[Column]) -> None:
        schema = [bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in columns]
        self._client.create_table(bigquery.Table(self.qualified(table), schema=schema), exists_ok=True)

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        try:
            fetched = self._client.get_table(self.qualified(table))
        except NotFound:
            return None
        return [(field.name, standard_type(field.field_type)) for field in fetched.schema]

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        """Streaming insert. `row_ids` become insertIds (best-effort dedupe in BigQuery, none in
        bqemulator: see the port)."""
        if row_ids is not None and len(row_ids) != len(rows):
            raise ValueError(f"{len(row_ids)} row ids for {len(rows)} rows")
        if not rows:
            return
        try:
            with _port_errors(table):
                errors = self._client.insert_rows_json(
                    self.qualified(table), [_json_ready(r) for r in rows], retry=self._insert_retry, timeout=30,
                    row_ids=list(row_ids) if row_ids is not None else AutoRowIDs.GENERATE_UUID,
                )
        except RetryError as error:
            if not isinstance(error.cause, InternalServerError):
                raise
            raise WarehouseError(f"rows refused by {table} (HTTP 500 until the retry deadline; bqemulator "
                                 f"answers a row it cannot convert so): {error.cause.message}") from error
        if errors:
            raise WarehouseError(f"{len(errors)} rows rejected by {table}: {errors[:3]}")

    def has_rows(self, table: str, column: str, value: str) -> bool:
        sql = f"SELECT 1 AS hit FROM {self._table(table)} WHERE {quote_column(column)} = @value LIMIT 1"
        return bool(self._select(table, sql, {"value": value}))

    def present_values(self, table: str, column: str, values: Sequence[str],
                       where: Mapping[str, str] | None = None) -> set[str]:
        if not values:
            return set()
        params: dict[str, Any] = {"values": list(values)}
        conditions = [f"{quote_column(column)} IN UNNEST(@values)"]
        for index, (name, value) in enumerate((where or {}).items()):
            conditions.append(f"{quote_column(name)} = @where{index}")
            params[f"where{index}"] = value
        sql = (f"SELECT DISTINCT {quote_column(column)} AS value FROM {self._table(table)} "
               f"WHERE {' AND '.join(conditions)}")
        return {row["value"] for row in self._select(table, sql, params)}

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        sql = (
            f"SELECT COUNT(*) AS total_rows, MAX({INGESTED_AT_COLUMN}) AS watermark, "
            f"COUNTIF(@after IS NULL OR {INGESTED_AT_COLUMN} > @after) AS new_rows "
            f"FROM {self._table(table)}"
        )
        row = self._select(table, sql, {"after": after or datetime(1970, 1, 1, tzinfo=UTC)})[0]
        return SourceStatus(int(row["total_rows"]), int(row["new_rows"] or 0), _as_utc(row["watermark"]))

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        target = self.qualified(snapshot_table, self.snapshot_dataset)
        if self.table_columns(target) is None:
            # A CTAS copy, not CREATE SNAPSHOT TABLE: it filters by watermark so the snapshot is
            # exactly the rows the watcher counted, and bqemulator runs it too.
            self._select(
                source_table,
                f"CREATE TABLE {quote_qualified(target)} AS SELECT * FROM {self._table(source_table)} "
                f"WHERE {INGESTED_AT_COLUMN} <= @up_to",
                {"up_to": up_to},
            )
        return int(self._select(target, f"SELECT COUNT(*) AS n FROM {quote_qualified(target)}")[0]["n"])

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None) -> list[Row]:
        selected = ", ".join(quote_column(c) for c in columns)
        sql = f"SELECT {selected} FROM {self._table(table, dataset)}"
        params: dict[str, Any] = {}
        if where_after is not None:
            sql += f" WHERE {INGESTED_AT_COLUMN} > @after"
            params["after"] = where_after
        return self._select(table, sql + f" ORDER BY {ROW_ID_COLUMN}", params)

    def _snapshot_rows(self, where: str, params: dict[str, Any]) -> SnapshotRecord | None:
        rows = self._select(
            SNAPSHOTS_TABLE,
            f"SELECT * FROM {self._table(SNAPSHOTS_TABLE)} WHERE {where} ORDER BY created_at DESC LIMIT 1", params,
        )
        if not rows:
            return None
        row = rows[0]
        return SnapshotRecord(
            pipeline=row["pipeline"], data_version=row["data_version"], snapshot_table=row["snapshot_table"],
            total_rows=int(row["total_rows"]), new_rows=int(row["new_rows"]), watermark=_utc(row["watermark"]),
            trigger=row["trigger"], source_event_id=row["source_event_id"], created_at=_utc(row["created_at"]),
            drift_score=row.get("drift_score"), spec_hash=row.get("spec_hash"),
        )

    def last_snapshot(self, pipeline: str) -> SnapshotRecord | None:
        return self._snapshot_rows("pipeline = @pipeline", {"pipeline": pipeline})

    def snapshot_for_event(self, source_event_id: str) -> SnapshotRecord | None:
        return self._snapshot_rows("source_event_id = @event_id", {"event_id": source_event_id})

    def record_snapshot(self, record: SnapshotRecord) -> None:
        self.insert_rows(SNAPSHOTS_TABLE, [{
            "pipeline": record.pipeline, "data_version": record.data_version,
            "snapshot_table": record.snapshot_table, "total_rows": record.total_rows,
            "new_rows": record.new_rows, "watermark": record.watermark.isoformat(),
            "trigger": record.trigger, "source_event_id": record.source_event_id,
            "created_at": record.created_at.isoformat(), "drift_score": record.drift_score,
            "spec_hash": record.spec_hash,
        }])

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        return self._select(
            source_table,
            f"SELECT p.request_id AS request_id, ANY_VALUE(p.features) AS features, ANY_VALUE(l.label) AS label "
            f"FROM {self._table(PREDICTIONS_TABLE)} AS p "
            f"JOIN {self._table(LABELS_TABLE)} AS l ON l.request_id = p.request_id AND l.pipeline = p.pipeline "
            f"LEFT JOIN {self._table(source_table)} AS s ON s.{ROW_ID_COLUMN} = CONCAT(@prefix, p.request_id) "
            f"WHERE p.pipeline = @pipeline AND s.{ROW_ID_COLUMN} IS NULL GROUP BY p.request_id ORDER BY p.request_id",
            {"pipeline": pipeline, "prefix": row_id_prefix},
        )

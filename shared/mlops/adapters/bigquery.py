"""Warehouse over google-cloud-bigquery: BigQuery in the cloud, bqemulator locally.

Only the client's endpoint differs between the two (`BIGQUERY_EMULATOR_HOST`); the SQL is plain
GoogleSQL that both accept. bqemulator quirks handled here: a streamed row it dislikes comes back as
HTTP 500, which the client would retry for ten minutes, so inserts carry a short retry deadline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import NotFound
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.core.topology import LABELS_TABLE, PREDICTIONS_TABLE, SNAPSHOTS_TABLE
from mlops.ports.warehouse import Row, SnapshotRecord, SourceStatus

INSERT_RETRY = Retry(initial=0.2, maximum=2.0, timeout=20.0)


class WarehouseError(RuntimeError):
    pass


def bigquery_client(project: str) -> bigquery.Client:
    host = os.environ.get("BIGQUERY_EMULATOR_HOST")
    if host:
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": host})
    return bigquery.Client(project=project)


def _param(name: str, value: Any) -> bigquery.ScalarQueryParameter:
    if isinstance(value, datetime):
        return bigquery.ScalarQueryParameter(name, "TIMESTAMP", value)
    if isinstance(value, bool):
        return bigquery.ScalarQueryParameter(name, "BOOL", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(name, "INT64", value)
    if isinstance(value, float):
        return bigquery.ScalarQueryParameter(name, "FLOAT64", value)
    return bigquery.ScalarQueryParameter(name, "STRING", value)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class BigQueryWarehouse:
    def __init__(self, client: bigquery.Client, project: str, dataset: str, snapshot_dataset: str):
        self._client = client
        self.project = project
        self.dataset = dataset
        self.snapshot_dataset = snapshot_dataset

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

    def ensure_table(self, table: str, columns: Sequence[tuple[str, str, str]]) -> None:
        schema = [bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in columns]
        self._client.create_table(bigquery.Table(self.qualified(table), schema=schema), exists_ok=True)

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        try:
            fetched = self._client.get_table(self.qualified(table))
        except NotFound:
            return None
        return [(field.name, field.field_type) for field in fetched.schema]

    def insert_rows(self, table: str, rows: Sequence[Row], row_ids: Sequence[str] | None = None) -> None:
        """Streaming insert. `row_ids` become insertIds, which BigQuery uses to drop a retried row."""
        if not rows:
            return
        ids = {"row_ids": list(row_ids)} if row_ids is not None else {}
        errors = self._client.insert_rows_json(self.qualified(table), list(rows), retry=INSERT_RETRY, timeout=30, **ids)
        if errors:
            raise WarehouseError(f"{len(errors)} rows rejected by {table}: {errors[:3]}")

    def has_rows(self, table: str, column: str, value: str) -> bool:
        sql = f"SELECT 1 AS hit FROM `{self.qualified(table)}` WHERE `{column}` = @value LIMIT 1"
        return bool(self.query(sql, {"value": value}))

    def source_status(self, table: str, after: datetime | None) -> SourceStatus:
        sql = (
            f"SELECT COUNT(*) AS total_rows, MAX({INGESTED_AT_COLUMN}) AS watermark, "
            f"COUNTIF(@after IS NULL OR {INGESTED_AT_COLUMN} > @after) AS new_rows "
            f"FROM `{self.qualified(table)}`"
        )
        row = self.query(sql, {"after": after or datetime(1970, 1, 1, tzinfo=UTC)})[0]
        return SourceStatus(int(row["total_rows"]), int(row["new_rows"] or 0), _as_utc(row["watermark"]))

    def create_snapshot(self, source_table: str, snapshot_table: str, up_to: datetime) -> int:
        target = self.qualified(snapshot_table, self.snapshot_dataset)
        if self.table_columns(target) is None:
            # A CTAS copy, not CREATE SNAPSHOT TABLE: it filters by watermark so the snapshot is
            # exactly the rows the watcher counted, and bqemulator runs it too.
            self.query(
                f"CREATE TABLE `{target}` AS SELECT * FROM `{self.qualified(source_table)}` "
                f"WHERE {INGESTED_AT_COLUMN} <= @up_to",
                {"up_to": up_to},
            )
        return int(self.query(f"SELECT COUNT(*) AS n FROM `{target}`")[0]["n"])

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None) -> list[Row]:
        selected = ", ".join(f"`{c}`" for c in columns)
        sql = f"SELECT {selected} FROM `{self.qualified(table, dataset)}`"
        params: dict[str, Any] = {}
        if where_after is not None:
            sql += f" WHERE {INGESTED_AT_COLUMN} > @after"
            params["after"] = where_after
        return self.query(sql + f" ORDER BY {ROW_ID_COLUMN}", params)

    def _snapshot_rows(self, where: str, params: dict[str, Any]) -> SnapshotRecord | None:
        rows = self.query(
            f"SELECT * FROM `{self.qualified(SNAPSHOTS_TABLE)}` WHERE {where} ORDER BY created_at DESC LIMIT 1", params
        )
        if not rows:
            return None
        row = rows[0]
        return SnapshotRecord(
            pipeline=row["pipeline"], data_version=row["data_version"], snapshot_table=row["snapshot_table"],
            total_rows=int(row["total_rows"]), new_rows=int(row["new_rows"]), watermark=_as_utc(row["watermark"]),
            trigger=row["trigger"], source_event_id=row["source_event_id"], created_at=_as_utc(row["created_at"]),
            drift_score=row.get("drift_score"),
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
        }])

    def labeled_predictions(self, pipeline: str, source_table: str, row_id_prefix: str) -> list[Row]:
        return self.query(
            f"SELECT p.request_id AS request_id, ANY_VALUE(p.features) AS features, ANY_VALUE(l.label) AS label "
            f"FROM `{self.qualified(PREDICTIONS_TABLE)}` AS p "
            f"JOIN `{self.qualified(LABELS_TABLE)}` AS l ON l.request_id = p.request_id AND l.pipeline = p.pipeline "
            f"LEFT JOIN `{self.qualified(source_table)}` AS s ON s.{ROW_ID_COLUMN} = CONCAT(@prefix, p.request_id) "
            f"WHERE p.pipeline = @pipeline AND s.{ROW_ID_COLUMN} IS NULL GROUP BY p.request_id ORDER BY p.request_id",
            {"pipeline": pipeline, "prefix": row_id_prefix},
        )

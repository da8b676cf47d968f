"""Warehouse over google-cloud-bigquery: BigQuery in the cloud, bqemulator locally.

Only the clients' endpoints differ between the two (`BIGQUERY_EMULATOR_HOST` for REST,
`BIGQUERY_STORAGE_EMULATOR_HOST` for the gRPC Storage APIs); the SQL is plain GoogleSQL that both
accept. Rows move through the Storage APIs (`mlops.adapters.bigquery_storage`): `read_rows` is a Read
API session (Arrow, columns and row restriction pushed down), `insert_rows` a Write API append (a
committed stream with offsets), `load_rows` a load job from Parquet. Built without storage clients
(`storage=None`), the adapter falls back to query results and insertAll (REST only). Client errors become the port's: a missing table `TableNotFound`, a bad
row or column `WarehouseError`. bqemulator quirks handled here: a streamed row it cannot convert
comes back as HTTP 500 (BigQuery answers 200 with insertErrors), which the client would retry for
ten minutes, so inserts carry a short retry deadline (`insert_timeout`) and a 500 still failing at
its end is reported as a refused insert.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from google.api_core.exceptions import BadRequest, Conflict, InternalServerError, NotFound, RetryError
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery import AutoRowIDs

from mlops.adapters.bigquery_storage import (
    AppendFormat,
    RestrictionRefused,
    StorageReader,
    StorageWriter,
    arrow_rows,
    arrow_table,
    condition_sql,
    storage_clients,
)
from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.core.sql import quote_column, quote_qualified
from mlops.core.topology import LABELS_TABLE, PREDICTIONS_TABLE, SNAPSHOTS_TABLE
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

__all__ = ["BigQueryWarehouse", "TableNotFound", "WarehouseError", "bigquery_client", "storage_clients"]

INSERT_TIMEOUT_S = 20.0
LOAD_TIMEOUT_S = 600.0
ID_SEPARATOR = "\x1f"  # ASCII unit separator: no request or row id holds it


def bigquery_client(project: str, emulator_host: str | None = None) -> bigquery.Client:
    """A client of BigQuery, or of bqemulator at `emulator_host` (`http://host:port`: the scheme is
    required) with anonymous credentials."""
    if emulator_host:
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": emulator_host})
    return bigquery.Client(project=project)


def _param(name: str, value: Any) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, (list, tuple)):  # an ARRAY, for `IN UNNEST(@name)`: of its items' type, else STRING
        kinds = {getattr(_param("item", v), "type_", "STRING") for v in value if v is not None}
        if len(kinds) == 1 and (kind := kinds.pop()) != "STRING":
            return bigquery.ArrayQueryParameter(name, kind, list(value))
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


def split_bucket_sql(key_column: str = ROW_ID_COLUMN) -> str:
    """Each row's split bucket in SQL: the expression BigQuery ML's eval predicate compares
    (`mlops.adapters.bqml.eval_predicate_sql`), so both backends put a row on the same side. MOD before
    ABS: ABS of the one INT64 FARM_FINGERPRINT can return without a positive twin (-2^63) is an error
    in BigQuery; MOD keeps the dividend's sign, so ABS(MOD(x, n)) is |x| mod n for every x."""
    return f"ABS(MOD(FARM_FINGERPRINT(CAST({quote_column(key_column)} AS STRING)), {EVAL_BUCKETS}))"


def _split_bucket_sql(source_table: str, columns: Sequence[tuple[str, str]]) -> str:
    """`, <bucket> AS _split_bucket` for a snapshot of a source with a row key; nothing without one
    (a RANDOM split of it then fails on the missing key, as it did before snapshots had buckets)."""
    names = {name for name, _ in columns}
    if SPLIT_BUCKET_COLUMN in names:
        raise WarehouseError(f"{source_table} has a column {SPLIT_BUCKET_COLUMN!r}, a name its snapshots "
                             "reserve for the split bucket: rename it")
    if ROW_ID_COLUMN not in names:
        return ""
    return f", {split_bucket_sql()} AS {quote_column(SPLIT_BUCKET_COLUMN)}"


class BigQueryWarehouse:
    def __init__(self, client: bigquery.Client, project: str, dataset: str, snapshot_dataset: str,
                 insert_timeout: float = INSERT_TIMEOUT_S, storage: tuple[Any, Any] | None = None,
                 append_format: AppendFormat = "arrow"):
        """`storage`: (BigQueryReadClient, BigQueryWriteClient), see `storage_clients`; without it rows
        move through REST (query results, insertAll). `append_format`: how appends encode rows
        (`mlops.adapters.bigquery_storage`)."""
        self._client = client
        self.project = project
        self.dataset = dataset
        self.snapshot_dataset = snapshot_dataset
        self._insert_retry = Retry(initial=0.2, maximum=2.0, timeout=insert_timeout)
        self._reader = StorageReader(storage[0], project) if storage else None
        self._writer = StorageWriter(storage[1], self._declared_columns, append_format) if storage else None
        self._known_columns: dict[str, set[str]] = {}

    def _declared_columns(self, qualified: str) -> list[Column] | None:
        try:
            fetched = self._client.get_table(qualified)
        except NotFound:
            return None
        return [(f.name, standard_type(f.field_type), f.mode or "NULLABLE") for f in fetched.schema]

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
        """A Storage Write API append (offsets make the adapter's own resend land once; `row_ids` are
        then unused). Without storage clients: insertAll, `row_ids` as insertIds (best-effort dedupe in
        BigQuery, none in bqemulator: see the port)."""
        if row_ids is not None and len(row_ids) != len(rows):
            raise ValueError(f"{len(row_ids)} row ids for {len(rows)} rows")
        if not rows:
            return
        if self._writer is not None:
            self._writer.append(self.qualified(table), rows)
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
                       where: Mapping[str, str] | None = None,
                       since: tuple[str, datetime] | None = None) -> set[str]:
        if not values:
            return set()
        # A query, not a read session: bqemulator translates a row restriction's IN list id by id
        # (10,000 ids: 10 s). The ids travel as ONE string parameter split in SQL when none holds the
        # separator (10,000 ids: 1.0 s on the emulator against 3.2 s as an ARRAY parameter).
        if any(ID_SEPARATOR in value for value in values):
            params: dict[str, Any] = {"values": list(values)}
            conditions = [f"{quote_column(column)} IN UNNEST(@values)"]
        else:
            params = {"values": ID_SEPARATOR.join(values), "separator": ID_SEPARATOR}
            conditions = [f"{quote_column(column)} IN UNNEST(SPLIT(@values, @separator))"]
        for index, (name, value) in enumerate((where or {}).items()):
            conditions.append(f"{quote_column(name)} = @where{index}")
            params[f"where{index}"] = value
        if since is not None:  # on a table partitioned by that column, BigQuery reads those partitions only
            conditions.append(f"{quote_column(since[0])} >= @since")
            params["since"] = since[1]
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
            target_sql, source_sql = quote_qualified(target), self._table(source_table)  # names checked first
            source = self.table_columns(source_table)
            if source is None:
                raise TableNotFound(f"Not found: table {self.qualified(source_table)}")
            # A CTAS copy, not CREATE SNAPSHOT TABLE: it filters by watermark so the snapshot is
            # exactly the rows the watcher counted, adds each row's split bucket, and bqemulator runs it too.
            self._select(
                source_table,
                f"CREATE TABLE {target_sql} AS SELECT *{_split_bucket_sql(source_table, source)} "
                f"FROM {source_sql} WHERE {INGESTED_AT_COLUMN} <= @up_to",
                {"up_to": up_to},
            )
        return int(self._select(target, f"SELECT COUNT(*) AS n FROM {quote_qualified(target)}")[0]["n"])

    def load_rows(self, table: str, rows: Sequence[Row]) -> None:
        """Rows landed all at once by a load job from Parquet (uploaded with the job, no bucket): atomic,
        free of streaming charges, and on bqemulator 7x faster than a pending Write API stream, whose
        rows the emulator decodes one by one (1,000,000 rows: 21 s against 146 s; docs/performance.md,
        `train-size`). Rows are checked against the table's columns first, so a bad row sends nothing.

        The job id is the content's digest: a load retried after its answer was lost is the same job
        (BigQuery answers 409 and the existing job is awaited), so it lands once. bqemulator accepts a
        job id twice; `mlops ingest`'s row-id check before the load keeps it idempotent there too."""
        if not rows:
            return
        qualified = self.qualified(table)
        self._load_parquet(table, arrow_rows(self._load_columns(qualified), rows, qualified))

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """`load_rows` for an Arrow table: conformed to the table's columns (`arrow_table`: widened,
        never parsed), then the same load job from Parquet."""
        if not data.num_rows:
            return
        qualified = self.qualified(table)
        self._load_parquet(table, arrow_table(self._load_columns(qualified), data, qualified))

    def _load_columns(self, qualified: str) -> list[Column]:
        columns = self._declared_columns(qualified)
        if columns is None:
            raise TableNotFound(f"Not found: table {qualified}")
        return columns

    def _load_parquet(self, table: str, rows: pa.Table) -> None:
        qualified = self.qualified(table)
        parquet = io.BytesIO()
        pq.write_table(rows, parquet)
        job_id = f"mlops_load_{hashlib.sha256(qualified.encode() + parquet.getvalue()).hexdigest()[:40]}"
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        with _port_errors(table):
            try:
                parquet.seek(0)
                job = self._client.load_table_from_file(parquet, qualified, job_id=job_id, job_config=config)
            except Conflict:  # this very load was started before (a retry): wait for that one
                job = self._client.get_job(job_id)  # type: ignore[assignment]
            try:
                job.result(timeout=LOAD_TIMEOUT_S)
            except (BadRequest, InternalServerError) as error:  # the job ran and failed: nothing landed
                raise WarehouseError(f"load into {table} failed: {error.message}") from error

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None, where: Sequence[Condition] = ()) -> list[Row]:
        conditions = list(where)
        if where_after is not None:
            conditions.insert(0, Condition(INGESTED_AT_COLUMN, ">", where_after))
        if self._reader is not None:
            try:
                return self._storage_read(self.qualified(table, dataset), columns, conditions)
            except RestrictionRefused:
                pass  # bqemulator only (see RestrictionRefused): the same read as a query
        return self._query_read(table, dataset, columns, conditions, f" ORDER BY {ROW_ID_COLUMN}")

    def _query_read(self, table: str, dataset: str | None, columns: Sequence[str], conditions: Sequence[Condition],
                    tail: str = "") -> list[Row]:
        selected = ", ".join(quote_column(c) for c in columns)
        sql = f"SELECT {selected} FROM {self._table(table, dataset)}"
        where, params = condition_sql(conditions)
        if where:
            sql += f" WHERE {where}"
        return self._select(table, sql + tail, params)

    def read_arrow(self, table: str, columns: Sequence[str], where: Sequence[Condition] = (),
                   dataset: str | None = None) -> Any:
        """The rows as one Arrow table, unordered (Storage Read API only)."""
        if self._reader is None:
            raise WarehouseError("read_arrow needs the Storage Read API client")
        return self._reader.read_arrow(self.qualified(table, dataset), columns, where)

    def _storage_read(self, qualified: str, columns: Sequence[str], conditions: Sequence[Condition],
                      ordered: bool = True) -> list[Row]:
        assert self._reader is not None
        needed = [*columns, *(c.column for c in conditions)]
        present = self._known_columns.get(qualified, set())
        if any(c not in present for c in needed):  # columns only get added: a cached set that has them is right
            declared = self.table_columns(qualified)
            if declared is None:
                raise TableNotFound(f"Not found: table {qualified}")
            present = self._known_columns[qualified] = {name for name, _ in declared}
        missing = [c for c in needed if c not in present]
        if missing:  # the Read API would answer with an opaque error; say which column
            raise WarehouseError(f"{qualified}: no column(s) {missing}")
        order = ordered and ROW_ID_COLUMN in present
        fetched = [*columns, *([ROW_ID_COLUMN] if order and ROW_ID_COLUMN not in columns else [])]
        arrow = self._reader.read_arrow(qualified, fetched, conditions)
        if order:  # ORDER BY in BigQuery puts NULL first
            arrow = arrow.take(pc.sort_indices(arrow, sort_keys=[(ROW_ID_COLUMN, "ascending", "at_start")]))
        return arrow.select(list(columns)).to_pylist()

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

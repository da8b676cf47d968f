"""The BigQuery Storage APIs: table reads (Read API) and row appends (Write API), both as Arrow.

Both speak gRPC to `bigquerystorage.googleapis.com`, or to bqemulator's gRPC port locally
(`BIGQUERY_STORAGE_EMULATOR_HOST`, host:port, no TLS, anonymous), which serves the same services.

Reads: one read session per call, Arrow format, `selected_fields` and a `row_restriction` pushed down
(the restriction is built by `restriction_sql` from checked names and rendered literals: the Read API
takes no query parameters). Streams of a session are read concurrently and concatenated.

Writes (`StorageWriter`):
- `append` (what a stage's insert is): the rows go to a COMMITTED stream that the writer keeps per table,
  each request carrying its `offset`. A request whose answer was lost is sent again with the same offset:
  BigQuery answers ALREADY_EXISTS if the first one landed, so a client retry never doubles a row. A stream
  BigQuery no longer knows (expired, finalized, the emulator restarted) is replaced by a new one; a request
  that failed on it did not land, so resending it there doubles nothing either.
Rows are checked against the table's columns before any request (unknown field, missing REQUIRED value,
a value the column's type cannot hold), so a batch with a bad row sends nothing: all or none, as
insertAll without skipInvalidRows. They travel as an Arrow record batch (`arrow_rows`), or as protocol
buffers with `append_format="proto"` (MLOPS_BIGQUERY_APPEND_FORMAT): Arrow appends were an allowlisted
preview when the API gained them (2024; the 2.43 client no longer says so), proto rows are the API's
first format. Arrow is the default: one conversion per column instead of one message per row, and on
bqemulator, which decodes proto rows one by one in Python, a 5,000-row append took a quarter of the
time (docs/performance.md, section 6).

Loads (`mlops ingest`) are not appends: the adapter runs a load job from Parquet, whose rows
`arrow_rows` builds and checks the same way, or `arrow_table` conforms when they come as Arrow columns
(a pending stream was 7x slower on bqemulator, which decodes proto rows one by one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import uuid4

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from mlops.core.sql import quote_column, sql_literal
from mlops.ports.warehouse import Condition, Row, TableNotFound, WarehouseError

__all__ = ["AppendFormat", "RestrictionRefused", "StorageReader", "StorageWriter", "arrow_rows", "arrow_table", "condition_sql",
           "restriction_sql", "storage_clients"]

# AppendRows refuses requests above 10 MB; stay well under it (a row's encoded size is measured).
MAX_REQUEST_BYTES = 8 * 1024 * 1024
APPEND_TIMEOUT_S = 60.0
READ_STREAMS = 4  # asked of BigQuery; it may give fewer (bqemulator gives one)
_GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def storage_clients(emulator_host: str | None = None) -> tuple[bigquery_storage_v1.BigQueryReadClient,
                                                               bigquery_storage_v1.BigQueryWriteClient]:
    """Read and write clients of BigQuery, or of bqemulator's gRPC port at `emulator_host` (host:port,
    a leading http:// is dropped), over an insecure channel as the other emulator clients use."""
    if not emulator_host:
        return bigquery_storage_v1.BigQueryReadClient(), bigquery_storage_v1.BigQueryWriteClient()
    target = emulator_host.split("://", 1)[-1].rstrip("/")
    anonymous = AnonymousCredentials()
    read = BigQueryReadGrpcTransport(channel=grpc.insecure_channel(target, options=_GRPC_OPTIONS),
                                     credentials=anonymous)
    write = BigQueryWriteGrpcTransport(channel=grpc.insecure_channel(target, options=_GRPC_OPTIONS),
                                       credentials=anonymous)
    return bigquery_storage_v1.BigQueryReadClient(transport=read), bigquery_storage_v1.BigQueryWriteClient(transport=write)


def _table_path(qualified: str) -> str:
    project, dataset, table = qualified.split(".")
    return f"projects/{project}/datasets/{dataset}/tables/{table}"


# ---------------------------------------------------------------------------------------------- reads

_OPERATORS = {"=", "!=", "<", "<=", ">", ">=", "in", "is null", "is not null", "is not false"}


class RestrictionRefused(WarehouseError):
    """The read session refused its row restriction. bqemulator refuses any restriction in which a
    token such as DROP, SELECT, UNION or `--` appears, even inside a string literal (a request id
    `drop-1`); BigQuery takes such literals. The adapter then runs the read as a query."""


def condition_sql(conditions: Sequence[Condition]) -> tuple[str, dict[str, Any]]:
    """The conditions as a WHERE clause with query parameters (@c0, @c1...), for the query path."""
    parts, params = [], {}
    for index, condition in enumerate(conditions):
        column, op, name = quote_column(condition.column), condition.op, f"c{index}"
        if op not in _OPERATORS:
            raise WarehouseError(f"unsupported row restriction operator {op!r}; use one of {sorted(_OPERATORS)}")
        if op in ("is null", "is not null", "is not false"):
            parts.append(f"{column} {op.upper()}")
            continue
        if op == "in":
            parts.append(f"{column} IN UNNEST(@{name})")
            params[name] = list(condition.value or ())
        else:
            parts.append(f"{column} {op} @{name}")
            params[name] = condition.value
    return " AND ".join(f"({p})" for p in parts), params


def restriction_sql(conditions: Sequence[Condition]) -> str:
    """A row restriction (GoogleSQL boolean expression) from conditions ANDed: the column through the
    validating quoting function, the value rendered as a literal (`sql_literal`, strings escaped), the
    operator from a fixed set. Never user text."""
    parts = []
    for condition in conditions:
        column, op = quote_column(condition.column), condition.op
        if op not in _OPERATORS:
            raise WarehouseError(f"unsupported row restriction operator {op!r}; use one of {sorted(_OPERATORS)}")
        if op in ("is null", "is not null", "is not false"):
            parts.append(f"{column} {op.upper()}")
        elif op == "in":
            values = list(condition.value or ())
            parts.append(f"{column} IN ({', '.join(_literal(v) for v in values)})" if values else "FALSE")
        else:
            parts.append(f"{column} {op} {_literal(condition.value)}")
    return " AND ".join(f"({p})" for p in parts)


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        stamp = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return f"TIMESTAMP {sql_literal(stamp.isoformat())}"
    return sql_literal(value)


class StorageReader:
    def __init__(self, client: bigquery_storage_v1.BigQueryReadClient, project: str):
        self._client = client
        self._project = project  # billed for the read session

    def read_arrow(self, qualified: str, columns: Sequence[str], conditions: Sequence[Condition] = ()) -> pa.Table:
        """The named columns of the rows matching `conditions`, as one Arrow table (no order)."""
        options = types.ReadSession.TableReadOptions(selected_fields=list(columns),
                                                     row_restriction=restriction_sql(conditions))
        requested = types.ReadSession(table=_table_path(qualified), data_format=types.DataFormat.ARROW,
                                      read_options=options)
        try:
            session = self._client.create_read_session(parent=f"projects/{self._project}", read_session=requested,
                                                       max_stream_count=READ_STREAMS)
        except api_errors.NotFound as error:
            raise TableNotFound(f"{qualified}: {error.message}") from error
        except (api_errors.BadRequest, api_errors.InvalidArgument) as error:
            if "row_restriction" in str(error.message):
                raise RestrictionRefused(f"{qualified}: {error.message}") from error
            raise WarehouseError(f"{qualified}: {error.message}") from error
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        if not session.streams:  # no rows match: BigQuery hands out no stream at all
            return schema.empty_table()

        def read(stream: types.ReadStream) -> pa.Table:
            return self._client.read_rows(stream.name).to_arrow(session)

        if len(session.streams) == 1:
            parts = [read(session.streams[0])]
        else:
            with ThreadPoolExecutor(len(session.streams)) as pool:
                parts = list(pool.map(read, session.streams))
        return pa.concat_tables([p.cast(schema) if p.schema != schema else p for p in parts])


# --------------------------------------------------------------------------------------------- writes

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}
_PROTO_TYPES = {
    "INT64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "FLOAT64": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "BOOL": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "TIMESTAMP": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,  # microseconds since the epoch
    "DATE": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,  # days since the epoch
}


def _int64(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError(f"{value!r} is not an integer")


def _float64(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, (int, str)) else None
    if word not in _BOOL_WORDS:
        raise ValueError(f"{value!r} is not a boolean")
    return _BOOL_WORDS[word]


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise TypeError(f"{value!r} is not a string")
    return str(value)


def _micros(value: Any) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"{value!r} is not a timestamp")
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # BigQuery reads no offset as UTC
    delta = aware - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _days(value: Any) -> int:
    parsed = date.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(parsed, date):
        raise TypeError(f"{value!r} is not a date")
    return (parsed - date(1970, 1, 1)).days


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "INT64": _int64, "FLOAT64": _float64, "BOOL": _bool, "STRING": _string, "TIMESTAMP": _micros, "DATE": _days,
}


@dataclass(frozen=True)
class TableSchema:
    """A table's columns and the protocol buffer message its rows are encoded as."""

    columns: tuple[tuple[str, str, str], ...]  # (name, GoogleSQL type, mode)
    descriptor: descriptor_pb2.DescriptorProto
    message: Any  # the generated message class

    @classmethod
    def of(cls, columns: Sequence[tuple[str, str, str]]) -> TableSchema:
        proto = descriptor_pb2.DescriptorProto(name="Row")
        for number, (name, kind, _mode) in enumerate(columns, start=1):
            proto.field.add(name=name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                            type=_PROTO_TYPES.get(kind, descriptor_pb2.FieldDescriptorProto.TYPE_STRING))
        package = f"mlops_rows_{uuid4().hex}"
        file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
        file.message_type.add().CopyFrom(proto)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        message = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Row"))
        return cls(tuple(columns), proto, message)

    def encode(self, rows: Sequence[Row], table: str) -> list[bytes]:
        """Each row as serialized proto bytes; every problem of the batch at once as a WarehouseError."""
        names = {name for name, _, _ in self.columns}
        encoded: list[bytes] = []
        problems: list[str] = []
        for index, row in enumerate(rows):
            problems.extend(f"row {index}: no such field {key!r}" for key in row if key not in names)
            fields: dict[str, Any] = {}
            for name, kind, mode in self.columns:
                value = row.get(name)
                if value is None:
                    if mode == "REQUIRED":
                        problems.append(f"row {index}: missing required field {name!r}")
                    continue
                convert = _CONVERTERS.get(kind, _string)
                try:
                    fields[name] = convert(value)
                except (TypeError, ValueError, OverflowError):
                    problems.append(f"row {index}: cannot convert {value!r} to {kind} for {name!r}")
            if not problems:
                encoded.append(self.message(**fields).SerializeToString())
        if problems:
            raise WarehouseError(f"{len(problems)} problem(s) with rows for {table}: {problems[:5]}")
        return encoded


_ARROW_TYPES = {"INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(), "STRING": pa.string(),
                "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32()}


def arrow_rows(columns: Sequence[tuple[str, str, str]], rows: Sequence[Row], table: str) -> pa.Table:
    """The rows as an Arrow table of the table's columns (in its order, REQUIRED ones not nullable),
    checked as `TableSchema.encode` checks them: every problem of the batch at once as a WarehouseError.

    Column by column: Arrow converts a column in one call when its values already have the column's
    type; otherwise (strings for numbers or times, a boolean where a number goes) the column goes
    through the same converters as a Write API row, value by value."""
    names = {name for name, _, _ in columns}
    problems = [f"row {index}: no such field {key!r}"
                for index, row in enumerate(rows) for key in row if key not in names][:5]
    arrays, fields = [], []
    for name, kind, mode in columns:
        arrow_type = _ARROW_TYPES.get(kind, pa.string())
        values = [row.get(name) for row in rows]
        array = None
        if not (kind == "FLOAT64" and any(type(v) is bool for v in values)):  # Arrow takes True as 1.0
            try:
                array = pa.array(values, arrow_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                array = None
        if array is None:
            convert = _CONVERTERS.get(kind, _string)
            converted: list[Any] = []
            for index, value in enumerate(values):
                try:
                    converted.append(None if value is None else convert(value))
                except (TypeError, ValueError, OverflowError):
                    problems.append(f"row {index}: cannot convert {value!r} to {kind} for {name!r}")
                    converted.append(None)
            storage = {"TIMESTAMP": pa.int64(), "DATE": pa.int32()}.get(kind, arrow_type)
            array = pa.array(converted, storage).cast(arrow_type) if storage != arrow_type else pa.array(
                converted, arrow_type)
        if mode == "REQUIRED" and array.null_count:
            missing = [i for i, v in enumerate(values) if v is None][:5]
            problems.extend(f"row {index}: missing required field {name!r}" for index in missing)
        arrays.append(array)
        fields.append(pa.field(name, arrow_type, nullable=mode != "REQUIRED"))
    return _checked_table(arrays, fields, problems, table)


def _checked_table(arrays: list[Any], fields: list[Any], problems: list[str], table: str) -> pa.Table:
    """The converted columns as one Arrow table, or every problem found at once as a WarehouseError."""
    if problems:
        raise WarehouseError(f"{len(problems)} problem(s) with rows for {table}: {problems[:5]}")
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _widens(given: pa.DataType, kind: str) -> bool:
    """Whether a column of Arrow type `given` goes into a `kind` column as it is (`Warehouse.load_arrow`)."""
    if kind == "INT64":
        return pa.types.is_integer(given)
    if kind == "FLOAT64":
        return pa.types.is_floating(given) or pa.types.is_integer(given)
    if kind == "TIMESTAMP":
        return pa.types.is_timestamp(given)
    target = _ARROW_TYPES.get(kind, pa.string())
    return given == target or (target == pa.string() and given == pa.large_string())


def arrow_table(columns: Sequence[tuple[str, str, str]], data: pa.Table, table: str) -> pa.Table:
    """An Arrow table as the table's columns (in its order, REQUIRED ones not nullable, a NULLABLE one
    it lacks all NULL), checked as `Warehouse.load_arrow` says: every problem at once as a WarehouseError.
    Types are widened (int32 -> int64, int64 -> float64 to the nearest double as Python's float() does,
    a timestamp to microseconds in UTC), never parsed: text for a number is refused."""
    if len(set(data.column_names)) != len(data.column_names):
        raise WarehouseError(f"rows for {table} name a column twice: {data.column_names}")
    declared = {name for name, _, _ in columns}
    problems = [f"no such field {name!r}" for name in data.column_names if name not in declared]
    arrays, fields = [], []
    for name, kind, mode in columns:
        arrow_type = _ARROW_TYPES.get(kind, pa.string())
        if name not in data.column_names:
            if mode == "REQUIRED":
                problems.append(f"missing required field {name!r}")
            array = pa.nulls(data.num_rows, arrow_type)
        else:
            array = data.column(name)
            if not _widens(array.type, kind):
                problems.append(f"{name!r} is {array.type}, the table's column is {kind}")
            elif array.type != arrow_type:
                try:  # lossless, but for an integer beyond 2**53: its nearest double, as float() gives
                    array = pc.cast(array, arrow_type, safe=not pa.types.is_floating(arrow_type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    problems.append(f"cannot convert {name!r} to {kind}: {error}")
            if mode == "REQUIRED" and array.null_count:
                nulls = pc.indices_nonzero(pc.is_null(array)).to_pylist()[:5]
                problems.extend(f"row {index}: missing required field {name!r}" for index in nulls)
        arrays.append(array)
        fields.append(pa.field(name, arrow_type, nullable=mode != "REQUIRED"))
    return _checked_table(arrays, fields, problems, table)


AppendFormat = Literal["arrow", "proto"]


@dataclass(frozen=True)
class _Request:
    """The rows of one AppendRows request, encoded in the writer's format (the writer schema is added
    per connection)."""

    row_count: int
    proto_rows: list[bytes] | None = None
    arrow_batch: pa.RecordBatch | None = None


def _proto_requests(encoded: Sequence[bytes]) -> list[_Request]:
    chunks: list[list[bytes]] = [[]]
    size = 0
    for row in encoded:
        if chunks[-1] and size + len(row) + 16 > MAX_REQUEST_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += len(row) + 16  # per-row framing in the repeated field
    return [_Request(len(chunk), proto_rows=chunk) for chunk in chunks]


def _arrow_requests(table: pa.Table) -> list[_Request]:
    """The table as record batches of at most MAX_REQUEST_BYTES each, by each row's own size (a batch of
    archived events mixes rows of a few hundred bytes with rows of megabytes)."""
    sizes = np.full(table.num_rows, 16, dtype=np.int64)  # validity bits and offsets, generously
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy()
        else:
            sizes += column.type.bit_width // 8 or 8
    ends = np.cumsum(sizes)
    requests, start = [], 0
    while start < table.num_rows:
        budget = (ends[start - 1] if start else 0) + MAX_REQUEST_BYTES
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        batch = table.slice(start, stop - start).combine_chunks().to_batches()[0]
        requests.append(_Request(batch.num_rows, arrow_batch=batch))
        start = stop
    return requests


_STATUS_ERRORS = {5: api_errors.NotFound, 6: api_errors.AlreadyExists, 9: api_errors.FailedPrecondition,
                  11: api_errors.OutOfRange, 3: api_errors.InvalidArgument, 8: api_errors.TooManyRequests,
                  14: api_errors.ServiceUnavailable, 4: api_errors.DeadlineExceeded, 10: api_errors.Aborted,
                  13: api_errors.InternalServerError}


def _append_call(client: bigquery_storage_v1.BigQueryWriteClient, stream: str, schema: TableSchema,
                 offset: int, request: _Request) -> None:
    """One AppendRows connection for this request at this offset, closed once answered.

    A connection per call, not one kept open: bqemulator serves each open AppendRows connection with
    one of its few worker threads (asyncio's default executor: 6 on 2 cores), so connections kept open
    by a handful of processes starve it. In BigQuery a connection per call costs one round trip more,
    at the rates the loop appends (a few calls a second per writer) well within the connection quotas.
    The writer schema travels with the request, as on the first request of every connection."""
    if request.arrow_batch is not None:
        rows = types.AppendRowsRequest.ArrowData(
            writer_schema=types.ArrowSchema(serialized_schema=request.arrow_batch.schema.serialize().to_pybytes()),
            rows=types.ArrowRecordBatch(serialized_record_batch=request.arrow_batch.serialize().to_pybytes(),
                                        row_count=request.row_count))
        message = types.AppendRowsRequest(write_stream=stream, offset=offset, arrow_rows=rows)
    else:
        data = types.AppendRowsRequest.ProtoData(
            writer_schema=types.ProtoSchema(proto_descriptor=schema.descriptor),
            rows=types.ProtoRows(serialized_rows=request.proto_rows))
        message = types.AppendRowsRequest(write_stream=stream, offset=offset, proto_rows=data)
    responses = client.append_rows(iter([message]), timeout=APPEND_TIMEOUT_S,
                                   metadata=(("x-goog-request-params", f"write_stream={stream}"),))
    for response in responses:
        if response.row_errors:
            raise WarehouseError(f"rows refused: {[(e.index, e.message) for e in response.row_errors][:5]}")
        if response.error.code:
            error = _STATUS_ERRORS.get(response.error.code, api_errors.GoogleAPICallError)
            raise error(response.error.message)
        return
    raise api_errors.ServiceUnavailable("AppendRows closed without an answer")


class _CommittedStream:
    """One COMMITTED write stream of a table and its next offset."""

    def __init__(self, client: bigquery_storage_v1.BigQueryWriteClient, table_path: str, schema: TableSchema):
        self._client, self._schema = client, schema
        self.name = client.create_write_stream(
            parent=table_path, write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED)).name
        self.next_offset = 0

    def append(self, request: _Request) -> None:
        try:
            _append_call(self._client, self.name, self._schema, self.next_offset, request)
        except api_errors.AlreadyExists:
            pass  # this offset landed before (an earlier try whose answer was lost): nothing to add
        self.next_offset += request.row_count


class StorageWriter:
    """Appends rows with the Storage Write API (see the module's docstring for the guarantees)."""

    def __init__(self, client: bigquery_storage_v1.BigQueryWriteClient,
                 columns_of: Callable[[str], Sequence[tuple[str, str, str]] | None],
                 append_format: AppendFormat = "arrow"):
        self._client = client
        self._columns_of = columns_of  # qualified table -> (name, type, mode), None if missing
        self._format = append_format
        self._streams: dict[str, _CommittedStream] = {}
        self._schemas: dict[str, TableSchema] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, qualified: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(qualified, threading.Lock())

    def _schema(self, qualified: str, refresh: bool = False) -> TableSchema:
        if refresh or qualified not in self._schemas:
            columns = self._columns_of(qualified)
            if columns is None:
                raise TableNotFound(f"Not found: table {qualified}")
            self._schemas[qualified] = TableSchema.of(columns)
        return self._schemas[qualified]

    def append(self, qualified: str, rows: Sequence[Row]) -> None:
        """Rows onto the table's committed stream, offsets making a resend land once."""
        if not rows:
            return
        with self._lock(qualified):
            schema = self._schema(qualified)
            if self._format == "arrow":
                requests = _arrow_requests(arrow_rows(schema.columns, rows, qualified))
            else:
                requests = _proto_requests(schema.encode(rows, qualified))
            for request in requests:
                self._append_request(qualified, request)

    def _append_request(self, qualified: str, request: _Request) -> None:
        for attempt in range(3):
            stream = self._streams.get(qualified)
            try:
                if stream is None:
                    stream = self._streams[qualified] = _CommittedStream(
                        self._client, _table_path(qualified), self._schema(qualified))
                stream.append(request)
                return
            except (api_errors.NotFound, api_errors.FailedPrecondition) as error:
                # The stream is gone or finalized (or the table is): that request did not land.
                self._streams.pop(qualified, None)
                if isinstance(error, api_errors.NotFound) and self._columns_of(qualified) is None:
                    raise TableNotFound(f"{qualified}: {error.message}") from error
            except (api_errors.ServiceUnavailable, api_errors.DeadlineExceeded, api_errors.Aborted,
                    api_errors.InternalServerError):
                if attempt == 2:
                    raise  # same stream, same offset next time: a resend is still safe
            except (api_errors.InvalidArgument, api_errors.BadRequest) as error:
                self._streams.pop(qualified, None)
                raise WarehouseError(f"rows refused by {qualified}: {error.message}") from error
        raise WarehouseError(f"could not append to {qualified}: its write stream kept disappearing")

    def close(self) -> None:
        self._streams.clear()


def conditions_from(where: Mapping[str, Any]) -> list[Condition]:
    """Equality conditions from a column -> value mapping."""
    return [Condition(column, "=", value) for column, value in where.items()]

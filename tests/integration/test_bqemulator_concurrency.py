"""bqemulator answers REST queries and Storage API calls running at the same time, each with its own rows.

bqemulator 1.4.0 serves REST on its asyncio loop and the Storage Read/Write APIs on grpc's thread pool, all
on ONE DuckDB connection: unpatched, a read session could get a concurrent query's rows, or fail with
"closed pending query result". The stack starts it through `mlops.stack.bqemulator_safe`, which gives every
non-loop thread its own cursor; these tests hold it to that under load.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from mlops.stack.emulators import DEFAULT_PROJECT, STORAGE_API_ENV_VAR, BigQueryEmulator

pytestmark = pytest.mark.integration

TABLES = 8
THREADS = 8
OPERATIONS = 240
CALL_TIMEOUT = 60.0
SHORT_RETRY = Retry(deadline=30)


def rows_in(table_index: int) -> int:
    """A different row count per table, so a read answered with another table's rows is seen."""
    return 40 + 13 * table_index


def rest_client(emulator: BigQueryEmulator) -> bigquery.Client:
    return bigquery.Client(
        project=DEFAULT_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator.env()["BIGQUERY_EMULATOR_HOST"]),
    )


def storage_channel(emulator: BigQueryEmulator) -> grpc.Channel:
    return grpc.insecure_channel(emulator.env()[STORAGE_API_ENV_VAR])


@pytest.fixture(scope="module")
def tables(bigquery_emulator: BigQueryEmulator) -> Iterator[list[str]]:
    """TABLES tables `t<i>`, table i holding rows (tag=i, x=0..rows_in(i)-1)."""
    client = rest_client(bigquery_emulator)
    dataset = client.create_dataset(f"concurrency_{uuid.uuid4().hex[:8]}", timeout=30, retry=SHORT_RETRY)
    names = []
    for index in range(TABLES):
        name = f"{DEFAULT_PROJECT}.{dataset.dataset_id}.t{index}"
        client.query(
            f"CREATE TABLE `{name}` AS SELECT {index} AS tag, x FROM UNNEST(GENERATE_ARRAY(0, {rows_in(index) - 1})) AS x"
        ).result(timeout=CALL_TIMEOUT)
        names.append(name)
    yield names
    client.delete_dataset(dataset.dataset_id, delete_contents=True, timeout=30, retry=SHORT_RETRY)


def check_rows(what: str, index: int, rows: list[tuple[int, int]]) -> str | None:
    """None when rows are exactly table index's rows, else what was wrong."""
    if sorted(rows) == [(index, x) for x in range(rows_in(index))]:
        return None
    tags = sorted({tag for tag, _ in rows})
    return f"{what} of t{index}: {len(rows)} rows (expected {rows_in(index)}) with tags {tags}"


def run_concurrently(operations: list[Callable[[], str | None]]) -> list[str]:
    """Run all operations from THREADS threads at once; the problems they report or raise."""
    problems: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(share: list[Callable[[], str | None]]) -> None:
        start.wait()
        for operation in share:
            try:
                problem = operation()
            except Exception as error:  # noqa: BLE001 - every failure is a finding, collected below
                problem = f"{type(error).__name__}: {str(error)[:200]}"
            if problem is not None:
                with lock:
                    problems.append(problem)

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(worker, operations[i::THREADS]) for i in range(THREADS)]:
            future.result()
    return problems


def summary(problems: list[str], total: int) -> str:
    return f"{len(problems)} of {total} calls went wrong, e.g.:\n" + "\n".join(problems[:8])


def test_rest_queries_and_read_sessions_each_get_their_own_rows(
    bigquery_emulator: BigQueryEmulator, tables: list[str]
) -> None:
    client = rest_client(bigquery_emulator)
    transport = BigQueryReadGrpcTransport(channel=storage_channel(bigquery_emulator),
                                          credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    reader = bigquery_storage_v1.BigQueryReadClient(transport=transport)

    def query(index: int) -> str | None:
        result = client.query(f"SELECT tag, x FROM `{tables[index]}`").result(timeout=CALL_TIMEOUT)
        return check_rows("query", index, [(row.tag, row.x) for row in result])

    def read(index: int) -> str | None:
        project, dataset, table = tables[index].split(".")
        session = reader.create_read_session(
            parent=f"projects/{project}",
            read_session=types.ReadSession(table=f"projects/{project}/datasets/{dataset}/tables/{table}",
                                           data_format=types.DataFormat.ARROW),
            max_stream_count=1,
            timeout=CALL_TIMEOUT,
        )
        parts = [reader.read_rows(stream.name, timeout=CALL_TIMEOUT).to_arrow(session) for stream in session.streams]
        rows = [(row["tag"], row["x"]) for part in parts for row in part.to_pylist()]
        return check_rows("read session", index, rows)

    rng = random.Random(7)
    operations: list[Callable[[], str | None]] = []
    for n in range(OPERATIONS):
        index = rng.randrange(TABLES)
        operations.append((lambda i=index: query(i)) if n % 2 else (lambda i=index: read(i)))

    problems = run_concurrently(operations)
    transport.close()
    assert problems == [], summary(problems, OPERATIONS)


def _row_message() -> Any:
    """The proto message of a (tag INT64, x INT64) row, and its descriptor."""
    proto = descriptor_pb2.DescriptorProto(name="Row")
    for number, name in enumerate(("tag", "x"), start=1):
        proto.field.add(name=name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64)
    package = f"concurrency_{uuid.uuid4().hex}"
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    file.message_type.add().CopyFrom(proto)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Row")), proto


def test_write_api_appends_while_queries_run_land_exactly_once(bigquery_emulator: BigQueryEmulator) -> None:
    """Appends on the default stream into fresh tables, with REST queries of the same tables in between."""
    client = rest_client(bigquery_emulator)
    dataset = client.create_dataset(f"appends_{uuid.uuid4().hex[:8]}", timeout=30, retry=SHORT_RETRY)
    names = []
    for index in range(TABLES):
        name = f"{DEFAULT_PROJECT}.{dataset.dataset_id}.w{index}"
        client.create_table(bigquery.Table(name, schema=[bigquery.SchemaField("tag", "INT64"),
                                                         bigquery.SchemaField("x", "INT64")]),
                            timeout=30, retry=SHORT_RETRY)
        names.append(name)
    transport = BigQueryWriteGrpcTransport(channel=storage_channel(bigquery_emulator),
                                           credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    writer = bigquery_storage_v1.BigQueryWriteClient(transport=transport)
    row_class, descriptor = _row_message()
    batches = 6

    def append(index: int, batch: int) -> str | None:
        project, dataset_id, table = names[index].split(".")
        stream = f"projects/{project}/datasets/{dataset_id}/tables/{table}/streams/_default"
        size = rows_in(index) // batches + (1 if batch < rows_in(index) % batches else 0)
        first = sum(rows_in(index) // batches + (1 if b < rows_in(index) % batches else 0) for b in range(batch))
        rows = types.ProtoRows(serialized_rows=[row_class(tag=index, x=first + k).SerializeToString()
                                                for k in range(size)])
        request = types.AppendRowsRequest(
            write_stream=stream,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=descriptor), rows=rows),
        )
        for response in writer.append_rows(iter([request]), timeout=CALL_TIMEOUT):
            if response.error.code:
                return f"append to w{index}: {response.error.message}"
        return None

    def query(index: int) -> str | None:
        result = client.query(f"SELECT tag, x FROM `{names[index]}`").result(timeout=CALL_TIMEOUT)
        rows = [(row.tag, row.x) for row in result]
        # Appends are still landing: any prefix of batches is fine, another table's rows are not.
        wrong = [row for row in rows if row[0] != index]
        return f"query of w{index}: rows of tags {sorted({t for t, _ in wrong})}" if wrong else None

    operations: list[Callable[[], str | None]] = []
    for batch in range(batches):
        for index in range(TABLES):
            operations.append(lambda i=index, b=batch: append(i, b))
            operations.append(lambda i=index: query(i))

    problems = run_concurrently(operations)
    transport.close()
    for index, name in enumerate(names):
        rows = [(row.tag, row.x) for row in client.query(f"SELECT tag, x FROM `{name}`").result(timeout=CALL_TIMEOUT)]
        problem = check_rows("final query", index, rows)
        if problem:
            problems.append(problem)
    client.delete_dataset(dataset.dataset_id, delete_contents=True, timeout=30, retry=SHORT_RETRY)
    assert problems == [], summary(problems, len(operations))

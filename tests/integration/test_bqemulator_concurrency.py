"""bqemulator answers REST queries and Storage API calls running at the same time, each with its own rows.

bqemulator 1.4.0 serves REST on its asyncio loop and the Storage Read/Write APIs on grpc's thread pool, all
on ONE DuckDB connection, which holds one pending result: calls can get another call's rows, fail with
"closed pending query result", or (unpatched, Write API appends beside REST queries) deadlock the whole
emulator. The stack starts it through `mlops.stack.bqemulator_safe`, which gives every non-loop thread its
own cursor; these tests hold it to that under load.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
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

from mlops.stack.emulators import DEFAULT_PROJECT, STORAGE_API_ENV_VAR, BigQueryEmulator, install_duckdb_spatial

pytestmark = pytest.mark.integration

TABLES = 8
THREADS = 8
OPERATIONS = 240
CALL_TIMEOUT = 60.0
SHORT_RETRY = Retry(deadline=30)
GIVE_UP_AFTER_S = 300.0


def rows_in(table_index: int) -> int:
    """A different row count per table, so a read answered with another table's rows is seen."""
    return 20_000 + 1_371 * table_index


def rest_client(emulator: BigQueryEmulator) -> bigquery.Client:
    return bigquery.Client(
        project=DEFAULT_PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=emulator.env()["BIGQUERY_EMULATOR_HOST"]),
    )


def storage_channel(emulator: BigQueryEmulator) -> grpc.Channel:
    return grpc.insecure_channel(emulator.env()[STORAGE_API_ENV_VAR])


def run_query(client: bigquery.Client, sql: str) -> bigquery.table.RowIterator:
    # Without the cache: a cached answer never reaches DuckDB, so it could not race anything.
    job = client.query(sql, job_config=bigquery.QueryJobConfig(use_query_cache=False),
                       timeout=CALL_TIMEOUT, retry=SHORT_RETRY)
    return job.result(timeout=CALL_TIMEOUT, retry=SHORT_RETRY)


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
        ).result(timeout=CALL_TIMEOUT, retry=SHORT_RETRY)
        names.append(name)
    yield names
    client.delete_dataset(dataset.dataset_id, delete_contents=True, timeout=30, retry=SHORT_RETRY)


def check_rows(what: str, index: int, rows: list[tuple[int, int]], count: int) -> str | None:
    """None when rows are exactly (index, 0..count-1), else what was wrong."""
    if sorted(rows) == [(index, x) for x in range(count)]:
        return None
    tags = sorted({tag for tag, _ in rows})
    return f"{what} of table {index}: {len(rows)} rows (expected {count}) with tags {tags}"


def appended_rows(table_index: int) -> int:
    return 200 + 13 * table_index


def run_concurrently(operations: list[Callable[[], str | None]]) -> list[str]:
    """Run all operations from THREADS threads at once; the problems they report or raise."""
    problems: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)
    give_up_at = time.monotonic() + GIVE_UP_AFTER_S

    def worker(share: list[Callable[[], str | None]]) -> None:
        start.wait()
        for operation in share:
            if time.monotonic() > give_up_at:  # a stuck emulator must fail the test, not hang the session
                with lock:
                    problems.append("not run: the calls before it took too long")
                continue
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
                                          credentials=AnonymousCredentials())
    reader = bigquery_storage_v1.BigQueryReadClient(transport=transport)

    def query(index: int) -> str | None:
        # An aggregate with a hash per row: DuckDB works for a while (the connection's lock is held,
        # read sessions queue behind it), and the answer stays small on the wire.
        result = run_query(client, f"SELECT tag, COUNT(*) AS n, SUM(x) AS total, "
                                   f"SUM(LENGTH(TO_HEX(SHA256(CAST(x AS STRING))))) AS hex_chars "
                                   f"FROM `{tables[index]}` GROUP BY tag")
        got = [(row.tag, row.n, row.total, row.hex_chars) for row in result]
        count = rows_in(index)
        expected = [(index, count, count * (count - 1) // 2, 64 * count)]
        return None if got == expected else f"query of t{index}: {got} (expected {expected})"

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
        return check_rows("read session", index, rows, rows_in(index))

    rng = random.Random(7)
    operations: list[Callable[[], str | None]] = []
    for n in range(OPERATIONS):
        index = rng.randrange(TABLES)
        operations.append(partial(query if n % 4 == 0 else read, index))

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
                                           credentials=AnonymousCredentials())
    writer = bigquery_storage_v1.BigQueryWriteClient(transport=transport)
    row_class, descriptor = _row_message()
    batches = 6

    def append(index: int, batch: int) -> str | None:
        project, dataset_id, table = names[index].split(".")
        stream = f"projects/{project}/datasets/{dataset_id}/tables/{table}/streams/_default"
        size = appended_rows(index) // batches + (1 if batch < appended_rows(index) % batches else 0)
        first = sum(appended_rows(index) // batches + (1 if b < appended_rows(index) % batches else 0)
                    for b in range(batch))
        rows = types.ProtoRows(serialized_rows=[row_class(tag=index, x=first + k).SerializeToString()
                                                for k in range(size)])
        request = types.AppendRowsRequest(
            write_stream=stream,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=descriptor), rows=rows),
        )
        # bqemulator keeps an AppendRows connection open after the last request (holding one of its
        # few worker threads): close it once the one answer is in.
        for response in writer.append_rows(iter([request]), timeout=CALL_TIMEOUT):
            return f"append to w{index}: {response.error.message}" if response.error.code else None
        return f"append to w{index}: no answer"

    def query(index: int) -> str | None:
        result = run_query(client, f"SELECT tag, x FROM `{names[index]}`")
        rows = [(row.tag, row.x) for row in result]
        # Appends are still landing: any prefix of batches is fine, another table's rows are not.
        wrong = [row for row in rows if row[0] != index]
        return f"query of w{index}: rows of tags {sorted({t for t, _ in wrong})}" if wrong else None

    operations: list[Callable[[], str | None]] = []
    for batch in range(batches):
        for index in range(TABLES):
            operations.append(partial(append, index, batch))
            operations.append(partial(query, index))

    problems = run_concurrently(operations)
    transport.close()
    for index, name in enumerate(names):
        rows = [(row.tag, row.x) for row in run_query(client, f"SELECT tag, x FROM `{name}`")]
        problem = check_rows("final query", index, rows, appended_rows(index))
        if problem:
            problems.append(problem)
    client.delete_dataset(dataset.dataset_id, delete_contents=True, timeout=30, retry=SHORT_RETRY)
    assert problems == [], summary(problems, len(operations))


def test_the_patched_engine_gives_other_threads_their_own_cursor_of_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the gRPC threads rely on: own result slot, same data, built-in UDFs, spatial, UTC."""
    import asyncio

    from bqemulator.config import Settings
    from bqemulator.storage.engine import DuckDBEngine

    from mlops.stack.bqemulator_safe import patch_engine

    install_duckdb_spatial(tmp_path)  # offline, as the stack does
    monkeypatch.setenv("HOME", str(tmp_path))
    patch_engine()
    engine = DuckDBEngine(Settings(persistence_mode="ephemeral", enable_format_extensions=False))
    asyncio.run(engine.start())
    try:
        engine.execute("CREATE TABLE t AS SELECT range AS x FROM range(10)")
        seen: dict[str, Any] = {}

        def other_thread() -> None:
            try:
                checks()
            except Exception as error:  # noqa: BLE001 - reported by the assert below
                seen["error"] = error

        def checks() -> None:
            seen["connection"] = engine.connection
            seen["again"] = engine.connection
            seen["rows"] = engine.fetch_arrow("SELECT COUNT(*) AS n FROM t").column("n")[0].as_py()
            seen["udf"] = engine.execute("SELECT bqemu_farm_fingerprint('a')").fetchone()
            seen["spatial"] = engine.execute("SELECT ST_AsText(ST_Point(1, 2))").fetchone()
            seen["tz"] = engine.execute("SELECT current_setting('TimeZone')").fetchone()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert "error" not in seen, seen.get("error")
        assert seen["connection"] is not engine.connection  # the loop's connection stays the loop's
        assert seen["again"] is seen["connection"]  # one cursor per thread, not one per call
        assert seen["rows"] == 10
        assert seen["udf"] == engine.execute("SELECT bqemu_farm_fingerprint('a')").fetchone()
        assert seen["spatial"] == ("POINT (1 2)",)
        assert seen["tz"] == ("UTC",)
    finally:
        asyncio.run(engine.stop())


def test_writes_copy_no_table_and_a_time_travel_read_is_refused_with_the_reason(
    bigquery_emulator: BigQueryEmulator,
) -> None:
    """Upstream copies the whole table after every write (for time travel); the launcher turns that off.

    The copies made each append cost as much as the table was big. Nothing in the project reads with
    `FOR SYSTEM_TIME AS OF`; a query that does is refused with the reason, never answered from the
    live table as if it were the past.
    """
    from mlops.stack.bqemulator_safe import TIME_TRAVEL_REFUSED

    client = rest_client(bigquery_emulator)
    dataset = client.create_dataset(f"travel_{uuid.uuid4().hex[:8]}", timeout=30, retry=SHORT_RETRY)
    table = f"{DEFAULT_PROJECT}.{dataset.dataset_id}.appended"
    client.create_table(bigquery.Table(table, schema=[bigquery.SchemaField("x", "INT64")]))
    for start in (0, 10, 20):
        assert client.insert_rows_json(table, [{"x": x} for x in range(start, start + 10)]) == []
    assert [tuple(row) for row in run_query(client, f"SELECT COUNT(*) FROM `{table}`")] == [(30,)]
    with pytest.raises(Exception) as refused:
        run_query(client, f"SELECT x FROM `{table}` FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP()")
    assert TIME_TRAVEL_REFUSED in str(refused.value)
    client.delete_dataset(dataset.dataset_id, delete_contents=True, timeout=30, retry=SHORT_RETRY)

"""`bqemulator`'s CLI with its one DuckDB connection made safe to use from the gRPC threads.

    python -m mlops.stack.bqemulator_safe start --rest-port P --grpc-port G ...   (same CLI as `bqemulator`)

Why: bqemulator 1.4.0 opens ONE `duckdb.DuckDBPyConnection` (`storage.engine.DuckDBEngine`) and runs
every statement on it. Its REST API runs on the asyncio loop, but its Storage Read/Write servicers
(`grpc_api/read_servicer.py`, `write_servicer.py`) are sync handlers that grpc.aio runs on a thread
pool, and they call `engine.fetch_arrow` / `engine.execute` / `engine.connection.register` on that same
connection while a REST query runs. A DuckDB connection holds one pending result: a read session was
answered with a concurrent query's rows, or failed with "closed pending query result".

The patch: `DuckDBEngine.connection` (which `execute` and `fetch_arrow` go through) returns, on any
thread other than the one that started the engine (the loop thread), that thread's own
`connection.cursor()`. The loop thread keeps the original connection, so the REST paths run exactly as
upstream wrote them. A cursor is a second connection to the same database instance, which DuckDB
supports from concurrent threads; each thread runs a statement and fetches its result on the same
thread (`execute` returns the cursor; the servicers fetch right after, and `register`/`INSERT ...
SELECT`/`unregister` in the write servicer all go through `engine.connection`, so all hit that
thread's cursor). What a cursor shares with the loop's connection, checked on DuckDB 1.5.5:
committed data, persistent tables and macros (bqemulator's SQL UDFs), Python UDFs made with
`create_function` (bqemulator's built-ins, JS UDFs) and loaded extensions (spatial). What it does
NOT share: session settings (bqemulator sets `TimeZone = 'UTC'`: re-applied to each cursor by
upstream's own `_apply_session_pragmas`), TEMP objects and registered Arrow views (the loop thread's
own, used only by REST paths) and open transactions (the gRPC paths run autocommit statements).

Left as upstream has it: the catalog's in-memory cache is updated from both threads without a lock
(a table's `num_rows` can miss a concurrent append's count), and two threads updating the same row
at once get DuckDB's transaction-conflict error instead of corrupt results.

Remove this module (and start `bqemulator` directly again) once bqemulator uses a connection or
cursor per thread itself.

Second patch, time travel off (`patch_time_travel`): for `FOR SYSTEM_TIME AS OF`, bqemulator copies the
WHOLE table into a snapshot table after every write (`versioning.snapshots.SnapshotManager.record_change`
-> `capture`: `CREATE TABLE ... AS SELECT * FROM <table>`), kept 7 days. On an append-only table
written many times a second (`predictions`, the event archive) every 5,000-row insert copied the whole
table again: the copies grew with the table (quadratic work) and made the emulator's RSS reach 7.66 GiB
in the logging benchmark. The project never reads with time travel, so the launcher captures no AUTO
snapshots; `CREATE SNAPSHOT TABLE` (kind USER) still does. A query that asks for time travel is refused
with a 400 that says why, rather than silently answered from the live table (which is what upstream
does when a table has no snapshot): the stand-in fails where a change would start to depend on it.

Third patch, FARM_FINGERPRINT (`patch_farm_fingerprint`): bqemulator 1.4.0 serves it with a Python port
of FarmHash's Fingerprint64 (`sql.builtin_udfs.bqemu_farm_fingerprint`) that matches BigQuery's
documented values but not inputs longer than 64 bytes: its long-input path seeds `x` with
`seed * k2 + Fetch(s)` and then applies `x * k2 + Fetch(s)` again, where farmhashna's `Hash64` starts
from `x = seed` (every one of 1,950 random 65-259-byte strings differed from Google's C++). Snapshots
store each row's split bucket from FARM_FINGERPRINT of its row id (`mlops.ml.split`), so a wrong hash
would put a long-keyed row on another side than BigQuery does. The launcher registers Google's own
implementation instead (`pyfarmhash`, the C++ library), over Arrow batches, which is also faster: a
1,000,000-row CTAS with the bucket column took 3.0 s against 1.8 s without it, and 13.5 s with the
per-row Python port (one run each on the shared 2-core machine).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

PATCHED_MARK = "_mlops_thread_cursors"


def patch_engine() -> None:
    """Give each non-loop thread its own cursor of `DuckDBEngine`'s connection. Idempotent."""
    from bqemulator.storage.engine import DuckDBEngine

    if getattr(DuckDBEngine, PATCHED_MARK, False):
        return
    upstream_connection: property = DuckDBEngine.connection  # type: ignore[assignment]
    upstream_start: Callable[[Any], Awaitable[None]] = DuckDBEngine.start
    upstream_pragmas: Callable[[Any], None] = DuckDBEngine._apply_session_pragmas  # noqa: SLF001

    @functools.wraps(upstream_start)
    async def start(self: Any) -> None:
        await upstream_start(self)
        # start() runs on the event loop, the thread of every REST request.
        self._mlops_owner = threading.get_ident()
        self._mlops_cursors = threading.local()

    def connection(self: Any) -> duckdb.DuckDBPyConnection:
        main: duckdb.DuckDBPyConnection = upstream_connection.fget(self)  # type: ignore[misc]
        owner = getattr(self, "_mlops_owner", None)
        if owner is None or owner == threading.get_ident():
            return main
        mine = self._mlops_cursors
        # A restarted engine has a new connection: a cursor of the old one is closed with it.
        if getattr(mine, "parent", None) is not main:
            cursor = main.cursor()
            upstream_pragmas(SimpleNamespace(_connection=cursor))
            mine.parent, mine.cursor = main, cursor
        return mine.cursor

    connection.__doc__ = upstream_connection.__doc__
    DuckDBEngine.start = start  # type: ignore[method-assign]
    DuckDBEngine.connection = property(connection)  # type: ignore[assignment,method-assign]
    setattr(DuckDBEngine, PATCHED_MARK, True)


TIME_TRAVEL_REFUSED = (
    "FOR SYSTEM_TIME AS OF is not served by this local BigQuery stand-in: it keeps no per-write table copies "
    "(see mlops.stack.bqemulator_safe); BigQuery itself serves time travel"
)


def patch_time_travel() -> None:
    """Capture no AUTO snapshot on writes; refuse time-travel reads. Idempotent."""
    from bqemulator.domain.errors import ValidationError
    from bqemulator.versioning.snapshots import SnapshotManager

    if getattr(SnapshotManager, PATCHED_MARK, False):
        return
    upstream_capture = SnapshotManager.capture

    @functools.wraps(upstream_capture)
    def capture(self: Any, project_id: str, dataset_id: str, table_id: str, *, kind: str = "AUTO") -> Any:
        if kind == "AUTO":
            return None
        return upstream_capture(self, project_id, dataset_id, table_id, kind=kind)

    def resolve_time_travel(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(TIME_TRAVEL_REFUSED)

    SnapshotManager.capture = capture  # type: ignore[method-assign]
    SnapshotManager.resolve_time_travel = resolve_time_travel  # type: ignore[method-assign]
    setattr(SnapshotManager, PATCHED_MARK, True)


FARM_FINGERPRINT_UDF = "bqemu_farm_fingerprint"  # what bqemulator translates FARM_FINGERPRINT(s) into
FARMHASH_MARK = "_mlops_farmhash"


def farm_fingerprint_batch(values: Any) -> Any:
    """FARM_FINGERPRINT of a batch of strings (an Arrow array, NULL for NULL): Google's FarmHash
    Fingerprint64 of the UTF-8 bytes, as BigQuery's signed INT64."""
    import farmhash
    import pyarrow as pa

    def signed(text: str) -> int:
        unsigned = farmhash.fingerprint64(text)
        return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned

    return pa.array([None if text is None else signed(text) for text in values.to_pylist()], type=pa.int64())


def patch_farm_fingerprint() -> None:
    """Serve FARM_FINGERPRINT with `farm_fingerprint_batch` instead of bqemulator's port. Idempotent."""
    from bqemulator.storage.engine import DuckDBEngine

    if getattr(DuckDBEngine, FARMHASH_MARK, False):
        return
    upstream_register: Callable[[Any], None] = DuckDBEngine._register_builtin_udfs  # noqa: SLF001

    @functools.wraps(upstream_register)
    def register(self: Any) -> None:
        upstream_register(self)
        # On the engine's connection, before any cursor of it exists: cursors share its Python UDFs.
        self._connection.remove_function(FARM_FINGERPRINT_UDF)
        self._connection.create_function(FARM_FINGERPRINT_UDF, farm_fingerprint_batch, ["VARCHAR"], "BIGINT",
                                         type="arrow", null_handling="special")

    DuckDBEngine._register_builtin_udfs = register  # type: ignore[method-assign]  # noqa: SLF001
    setattr(DuckDBEngine, FARMHASH_MARK, True)


def main(argv: list[str] | None = None) -> int:
    """Patch, then run bqemulator's own CLI with argv (default: ours)."""
    patch_engine()
    patch_time_travel()
    patch_farm_fingerprint()
    from bqemulator.cli import main as bqemulator_main

    bqemulator_main.main(args=sys.argv[1:] if argv is None else argv, prog_name="bqemulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())

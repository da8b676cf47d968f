"""An open-loop HTTP load generator: request i is due at t0 + i / rate, whatever happened to earlier ones.

Latency is measured from the *scheduled* send time to the end of the response, so a request that
waits (for a free connection, for the generator's own CPU, for the server) shows that wait; a
closed-loop client would hide it ("coordinated omission"). Every request carries its own
`X-Request-Id`. It runs in a child process, so nothing else in the benchmark shares its interpreter.

Two clients, picked by name:
- `asyncio`: one event loop, `connections` keep-alive connections over asyncio streams speaking plain
  HTTP/1.1 (a POST with Content-Length; responses read by Content-Length). Cheapest per request.
- `threads`: `connections` threads, each with an `http.client.HTTPConnection` (keep-alive), fed
  from a queue by a scheduler thread.
Both put due requests on one queue that idle connections take from (like wrk2), so queueing inside
the generator is counted too.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadPlan:
    host: str
    port: int
    path: str
    bodies: list[bytes]
    rate: float
    warmup_s: float
    duration_s: float
    connections: int
    prefix: str  # request ids of measured requests: f"{prefix}-{i}"
    warmup_prefix: str

    @property
    def total(self) -> int:
        return int(round(self.rate * (self.warmup_s + self.duration_s)))

    @property
    def warmup_count(self) -> int:
        return int(round(self.rate * self.warmup_s))

    def request_id(self, i: int) -> str:
        return f"{self.warmup_prefix}-{i:07d}" if i < self.warmup_count else f"{self.prefix}-{i:07d}"


@dataclass
class LoadResult:
    # Per request, indexed by i: scheduled, actually written, response complete (perf_counter seconds),
    # and HTTP status (0 = transport error).
    scheduled: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    cpu_s: float = 0.0  # the generator process's own CPU time over the run
    wall_s: float = 0.0


def _with_id(body: bytes, rid: str) -> bytes:
    """The body with its `{rid}` placeholder (if any) replaced by the request id: a Vertex AI endpoint
    forwards the body and not the headers, so the id that keys the prediction's log row goes in it."""
    return body.replace(b"{rid}", rid.encode("ascii")) if b"{rid}" in body else body


def _request_head(plan: LoadPlan, rid: str, body: bytes) -> bytes:
    return (f"POST {plan.path} HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {rid}\r\n\r\n").encode("ascii")


# ------------------------------------------------------------------------------------------ asyncio


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before a response")
    status = int(status_line.split(b" ", 2)[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def _run_asyncio(plan: LoadPlan, result: LoadResult) -> None:
    total = plan.total
    due: asyncio.Queue = asyncio.Queue()

    async def connect():
        return await asyncio.open_connection(plan.host, plan.port)

    async def worker() -> None:
        reader, writer = await connect()
        while True:
            i = await due.get()
            if i is None:
                break
            body = _with_id(plan.bodies[i % len(plan.bodies)], plan.request_id(i))
            request = _request_head(plan, plan.request_id(i), body) + body
            for attempt in (1, 2):
                result.sent[i] = time.perf_counter()
                try:
                    writer.write(request)
                    status, close = await _read_response(reader)
                    result.done[i] = time.perf_counter()
                    result.status[i] = status
                    if close:
                        writer.close()
                        reader, writer = await connect()
                        result.reconnects += 1
                    break
                except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
                    writer.close()
                    reader, writer = await connect()
                    result.reconnects += 1
                    if attempt == 2:  # a stale keep-alive connection gets one retry, a second failure counts
                        result.done[i] = time.perf_counter()
                        result.status[i] = 0
                        result.errors.append(repr(error))
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(plan.connections)]
    await asyncio.sleep(0.2)  # let the connections open
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        target = t0 + i / plan.rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.scheduled[i] = target
        due.put_nowait(i)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)


# ------------------------------------------------------------------------------------------ threads


def _run_threads(plan: LoadPlan, result: LoadResult) -> None:
    due: queue.SimpleQueue = queue.SimpleQueue()
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection(plan.host, plan.port, timeout=30)
        while True:
            i = due.get()
            if i is None:
                break
            body = _with_id(plan.bodies[i % len(plan.bodies)], plan.request_id(i))
            headers = {"Content-Type": "application/json", "X-Request-Id": plan.request_id(i)}
            for attempt in (1, 2):
                result.sent[i] = time.perf_counter()
                try:
                    connection.request("POST", plan.path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    result.done[i] = time.perf_counter()
                    result.status[i] = response.status
                    if response.will_close:
                        connection.close()
                        with lock:
                            result.reconnects += 1
                    break
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    with lock:
                        result.reconnects += 1
                    if attempt == 2:
                        result.done[i] = time.perf_counter()
                        result.status[i] = 0
                        with lock:
                            result.errors.append(repr(error))
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(plan.connections)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    t0 = time.perf_counter() + 0.05
    for i in range(plan.total):
        target = t0 + i / plan.rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        result.scheduled[i] = target
        due.put(i)
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join()


# ------------------------------------------------------------------------------------------ driver


def _child(plan: LoadPlan, client: str, pipe) -> None:
    total = plan.total
    result = LoadResult(scheduled=[0.0] * total, sent=[0.0] * total, done=[0.0] * total, status=[-1] * total)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    try:
        if client == "asyncio":
            asyncio.run(_run_asyncio(plan, result))
        else:
            _run_threads(plan, result)
    except BaseException as error:  # noqa: BLE001 - report it to the parent
        result.errors.append(f"generator failed: {error!r}")
    result.cpu_s = time.process_time() - cpu_before
    result.wall_s = time.perf_counter() - wall_before
    pipe.send(result)
    pipe.close()


class LoadRun:
    """The generator in a child process; `pid` is known once started, `result()` waits for it."""

    def __init__(self, plan: LoadPlan, client: str = "asyncio"):
        if client not in ("asyncio", "threads"):
            raise ValueError(f"unknown client {client!r}")
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(plan, client, send), daemon=True)
        self._process.start()
        send.close()

    @property
    def pid(self) -> int:
        return self._process.pid

    def result(self, timeout: float) -> LoadResult:
        if not self._receive.poll(timeout):
            self._process.kill()
            raise TimeoutError("the load generator did not finish in time")
        result = self._receive.recv()
        self._process.join(10)
        return result


def summarize(plan: LoadPlan, result: LoadResult) -> dict[str, Any]:
    """Latency from scheduled send to response, over the measured (post-warm-up) requests only."""
    from bench.common import percentile, rounded

    first = plan.warmup_count
    measured = range(first, plan.total)
    ok = [i for i in measured if result.status[i] == 200]
    failed = [i for i in measured if result.status[i] != 200]
    latency_ms = [(result.done[i] - result.scheduled[i]) * 1000 for i in ok]
    service_ms = [(result.done[i] - result.sent[i]) * 1000 for i in ok]
    send_lag_ms = [(result.sent[i] - result.scheduled[i]) * 1000 for i in measured if result.sent[i]]
    span = (max(result.done[i] for i in measured) - result.scheduled[first]) if ok else 0.0
    statuses: dict[str, int] = {}
    for i in measured:
        statuses[str(result.status[i])] = statuses.get(str(result.status[i]), 0) + 1

    def stats(values: list[float]) -> dict[str, float | None]:
        return {"p50": rounded(percentile(values, 50), 3), "p90": rounded(percentile(values, 90), 3),
                "p99": rounded(percentile(values, 99), 3), "max": rounded(max(values) if values else None, 3)}

    return {
        "sent": len(measured), "ok": len(ok), "errors": len(failed), "statuses": statuses,
        "warmup_sent": first,
        "achieved_rps": rounded(len(ok) / span, 1) if span else None,
        "latency_ms": stats(latency_ms),
        "response_ms_from_actual_send": stats(service_ms),
        "send_lag_ms": stats(send_lag_ms),
        "reconnects": result.reconnects,
        "generator_cpu_s": rounded(result.cpu_s, 2), "generator_wall_s": rounded(result.wall_s, 2),
        "error_samples": result.errors[:5],
    }


# ------------------------------------------------------------------------------------------ the floor

FIXED_RESPONSE = (b'{"predictions": [{"label": "1", "score": 0.5}], "deployedModelId": "0", "modelVersionId": "1", '
                  b'"requestId": "x"}')


async def _answer_fixed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(FIXED_RESPONSE)).encode() + b"\r\n\r\n" + FIXED_RESPONSE)
    try:
        while True:
            if not await reader.readline():
                break
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(response)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    writer.close()


def _fixed_server(port: int, ready) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_answer_fixed, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def measure_floor(rate: float, seconds: float, connections: int, client: str, body: bytes) -> dict[str, Any]:
    """The generator against a server that answers instantly (asyncio, own process): what the harness
    itself adds to every latency on this machine at this rate."""
    from mlops.stack.processes import free_port

    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready = context.Event()
    server = context.Process(target=_fixed_server, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(15):
            raise RuntimeError("the fixed-answer server did not start")
        plan = LoadPlan(host="127.0.0.1", port=port, path="/predict/floor", bodies=[body], rate=rate, warmup_s=1.0,
                        duration_s=seconds, connections=connections, prefix="floor", warmup_prefix="floorw")
        return summarize(plan, LoadRun(plan, client).result(timeout=seconds + 60))
    finally:
        server.terminate()
        server.join(5)
        if server.is_alive():
            server.kill()
            server.join(5)

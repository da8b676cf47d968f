"""What a serving process crash costs the prediction log, and what durable mode costs each request.

Start a stack and deploy the demo pipeline's model: the Vertex stand-in runs its serving process
(the predictor image's entry point with Vertex's AIP_* environment and the registrar's). Then run
serving processes of our own beside it, each with exactly that command and environment (read from
the stand-in's state) on a port of its own, so their `prediction.made` reach the stack's
inference-logger and the `predictions` table, in two modes (an environment variable of the container,
fixed when the version is uploaded, hence copies rather than the endpoint's own process, which the
stand-in would also start again after a kill: tests/chaos measures that, through the endpoint):

- buffered (the default): predictions are published off the request path every
  `MLOPS_LOG_INTERVAL_S` (1 s);
- durable (`MLOPS_LOG_DURABLE=true`, `MLOPS_LOG_INTERVAL_S=0.2`): a request is answered only once
  its prediction is published (group commit, a flush every 0.2 s), under 64 serving threads and
  64 client connections.

For each mode, three runs of open-loop load at `rate` requests/s for `warmup` + `duration` seconds
on the process's predict route (`bench.loadgen`, a unique request id per request in
`parameters.request_id`, as a caller of the endpoint sends it):
1. steady: no fault; latency from scheduled send to response;
2. SIGTERM to the serving process's group half-way (its graceful stop, as Vertex stops a
   container: requests under way finish, the batcher flushes at exit);
3. SIGKILL to the process group half-way (a hard crash).
After each run, wait until the `predictions` table stops growing, then compare the request ids
answered 200 with those logged: lost (answered, not logged), doubled (logged more than once) and
logged without an answer (predicted, the answer cut off by the kill).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    PIPELINE,
    BenchStack,
    RowFeed,
    bench_stack,
    say,
    serve_first_model,
    write_result,
)
from bench.loadgen import LoadPlan, LoadResult, LoadRun, summarize
from mlops.core.sql import quote_qualified

NAME = "durability"
# Each mode with the interval it is meant to run with (predictor/settings.py): durable requests wait
# for the next flush, so it flushes every 0.2 s; buffered keeps the default 1 s. A durable request
# holds a gunicorn thread and a client connection while it waits (200 rps x ~0.15 s = ~30 at
# once): durable gets 64 threads and 64 connections; with 16 connections the client itself caps
# the rate near 100 rps and the open-loop queue grows by seconds.
MODES = {"buffered": {"MLOPS_LOG_DURABLE": "false", "MLOPS_LOG_INTERVAL_S": "1.0"},
         "durable": {"MLOPS_LOG_DURABLE": "true", "MLOPS_LOG_INTERVAL_S": "0.2"}}
THREADS = {"buffered": 16, "durable": 64}
CONNECTIONS = {"buffered": 16, "durable": 64}
FAULTS = ("none", "sigterm", "sigkill")


def serving_record(bs: BenchStack, version: str) -> dict[str, Any]:
    """The stand-in's record of the serving process of `version`: its command, folder and environment."""
    from mlops.stack.supervisor import VERTEX_STATE_FILE

    containers = json.loads((Path(bs.data_dir) / VERTEX_STATE_FILE).read_text()).get("containers", {})
    for record in containers.values():
        if record["model"].endswith(f"/models/{PIPELINE}") and record["modelVersionId"] == version:
            return dict(record)
    raise RuntimeError(f"no serving process of {PIPELINE} version {version} in the stand-in's state")


def start_serving(bs: BenchStack, record: dict[str, Any], label: str, env: dict[str, str],
                  threads: int) -> tuple[Any, int]:
    """A serving process of our own: the deployed version's command and environment, on its own port."""
    from mlops.stack.processes import free_port, http_ok, launch
    from mlops.stack.vertex_local import predictor_argv

    port = free_port()
    argv, folder = predictor_argv()  # the image's entry point, as the stand-in runs it
    process = launch(argv, name=f"bench-serving-{label}", log_dir=Path(bs.data_dir) / "logs",
                     env={**record["env"], "AIP_HTTP_PORT": str(port), "PYTHONUNBUFFERED": "1",
                          "MLOPS_SERVING_THREADS": str(threads), **env}, cwd=folder)
    health = f"http://127.0.0.1:{port}{record['healthRoute']}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if http_ok(health, timeout=1.0):
            return process, port
        if not process.alive():
            raise RuntimeError(f"serving process {label} exited at start: {process.log_tail()}")
        time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"serving process {label} was not healthy within 90 s")


def logged_counts(bs: BenchStack, prefix: str) -> dict[str, int]:
    from mlops.core.topology import PREDICTIONS_TABLE

    warehouse = bs.ctx.warehouse
    rows = warehouse.query(
        f"SELECT request_id, COUNT(*) AS n FROM {quote_qualified(warehouse.qualified(PREDICTIONS_TABLE))} "
        f"WHERE STARTS_WITH(request_id, @prefix) GROUP BY request_id", {"prefix": prefix})
    return {r["request_id"]: int(r["n"]) for r in rows}


def wait_until_logged(bs: BenchStack, prefix: str, answered: int, quiet_s: float = 10.0,
                      timeout_s: float = 180.0) -> tuple[dict[str, int], float]:
    """Poll the table until it holds every answered id, or stops growing for `quiet_s`."""
    started = time.monotonic()
    last, last_change = -1, time.monotonic()
    counts: dict[str, int] = {}
    while time.monotonic() - started < timeout_s:
        counts = logged_counts(bs, prefix)
        if len(counts) != last:
            last, last_change = len(counts), time.monotonic()
        if len(counts) >= answered and time.monotonic() - last_change > 1.5:
            break
        if time.monotonic() - last_change > quiet_s:
            break
        time.sleep(1.0)
    return counts, round(time.monotonic() - started, 1)


def one_run(bs: BenchStack, record: dict[str, Any], mode: str, fault: str, bodies: list[bytes], rate: float,
            duration: float, warmup: float, connections: int, client: str) -> dict[str, Any]:
    tag = f"d{uuid.uuid4().hex[:6]}{mode[0]}{fault[-4:]}"
    process, port = start_serving(bs, record, f"{mode}-{fault}", MODES[mode], THREADS[mode])
    plan = LoadPlan(host="127.0.0.1", port=port, path=record["predictRoute"], bodies=bodies, rate=rate,
                    warmup_s=warmup, duration_s=duration, connections=max(connections, CONNECTIONS[mode]),
                    prefix=f"{tag}m",
                    warmup_prefix=f"{tag}w")
    killed_at = None
    try:
        load = LoadRun(plan, client)
        if fault != "none":
            time.sleep(0.25 + warmup + duration / 2)
            killed_at = time.time()
            os.killpg(process.pid, signal.SIGTERM if fault == "sigterm" else signal.SIGKILL)
        result: LoadResult = load.result(timeout=warmup + duration + 120)
    finally:
        process.stop()  # the group is gone already after a fault; this reaps it
    answered = {plan.request_id(i) for i in range(plan.total) if result.status[i] == 200}
    counts, waited = wait_until_logged(bs, tag, len(answered))
    logged = set(counts)
    summary = summarize(plan, result)
    return {
        "mode": mode, "fault": fault, "request_id_prefix": tag,
        "sent": plan.total, "answered": len(answered), "logged": len(logged),
        "lost": len(answered - logged), "doubled": sum(n - 1 for n in counts.values() if n > 1),
        "logged_unanswered": len(logged - answered),
        "lost_in_seconds_of_load": round(len(answered - logged) / rate, 3),
        "waited_for_log_s": waited, "killed_at": killed_at,
        "latency_ms": summary["latency_ms"], "achieved_rps": summary["achieved_rps"],
        "statuses": summary["statuses"],
    }


def run(rate: float = 200.0, duration: float = 10.0, warmup: float = 2.0, connections: int = 16,
        client: str = "asyncio", bootstrap_rows: int = 1000, keep_data: bool = False, **_: Any) -> dict[str, Any]:
    parameters = {"rate_rps": rate, "duration_s": duration, "warmup_s": warmup, "connections": connections,
                  "client": client, "instances_per_request": 1, "pipeline": PIPELINE, "modes": MODES, "serving_threads": THREADS, "connections_by_mode": CONNECTIONS,
                  "faults_at": "warmup + duration/2"}
    feed = RowFeed()
    # The request id in the body, as a caller of the endpoint sends it (bench.loadgen fills `{rid}`).
    bodies = [json.dumps({"instances": [instance], "parameters": {"request_id": "{rid}"}}).encode()
              for instance in feed.instances(1000)]
    runs: list[dict[str, Any]] = []
    with bench_stack(NAME, keep_data=keep_data) as bs:
        _, outcome = serve_first_model(bs, feed, bootstrap_rows)
        record = serving_record(bs, str(outcome.version_id))
        for mode in MODES:
            for fault in FAULTS:
                say(f"{mode}, fault {fault}: {rate:g} rps for {warmup:g}+{duration:g} s")
                runs.append(one_run(bs, record, mode, fault, bodies, rate, duration, warmup, connections, client))
                say(json.dumps({k: runs[-1][k] for k in ("answered", "logged", "lost", "doubled",
                                                          "logged_unanswered", "latency_ms")}))
    by = {(r["mode"], r["fault"]): r for r in runs}
    figures = {
        f"{mode}_{fault}": {"answered": by[mode, fault]["answered"], "lost": by[mode, fault]["lost"],
                            "doubled": by[mode, fault]["doubled"],
                            "lost_in_seconds_of_load": by[mode, fault]["lost_in_seconds_of_load"]}
        for mode in MODES for fault in FAULTS
    } | {
        "latency_ms_buffered": by["buffered", "none"]["latency_ms"],
        "latency_ms_durable": by["durable", "none"]["latency_ms"],
        "p50_cost_of_durable_ms": _difference(by, "p50"), "p99_cost_of_durable_ms": _difference(by, "p99"),
    }
    return write_result(NAME, parameters, figures, {"runs": runs})


def _difference(by: dict[tuple[str, str], dict[str, Any]], quantile: str) -> float | None:
    durable, buffered = by["durable", "none"]["latency_ms"][quantile], by["buffered", "none"]["latency_ms"][quantile]
    return None if durable is None or buffered is None else round(durable - buffered, 3)

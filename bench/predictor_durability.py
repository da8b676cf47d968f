"""What a predictor crash costs the prediction log, and what durable mode costs each request.

Start a stack, deploy the demo pipeline's model, then run predictors of our own beside the stack's
(same emulators, same topics, so their `prediction.made` reach the stack's inference-logger and the
`predictions` table), each under gunicorn as the stack runs it, in two modes:

- buffered (the default): predictions are published off the request path every
  `MLOPS_LOG_INTERVAL_S` (1 s);
- durable (`MLOPS_LOG_DURABLE=true`, `MLOPS_LOG_INTERVAL_S=0.2`): a request is answered only once
  its prediction is published (group commit, a flush every 0.2 s), under 64 gunicorn threads and
  64 client connections.

For each mode, three runs of open-loop load at `rate` requests/s for `warmup` + `duration` seconds
(`bench.loadgen`, unique X-Request-Id per request):
1. steady: no fault; latency from scheduled send to response;
2. SIGTERM to the predictor's process group half-way (gunicorn's graceful stop; the batcher flushes
   at exit);
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

import requests

from bench.common import (
    PIPELINE,
    REPO,
    BenchStack,
    RowFeed,
    bench_stack,
    say,
    serve_first_model,
    serving_map,
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


def start_predictor(bs: BenchStack, label: str, env: dict[str, str], threads: int):
    """A predictor of our own, launched as the stack launches its own, serving the deployed model."""
    from mlops.stack.processes import free_port, launch
    from mlops.stack.supervisor import gunicorn_argv

    port = free_port()
    folder = REPO / "services" / "predictor"
    state = bs.state()
    process = launch(gunicorn_argv("predictor.app:create_app()", port, chdir=folder, threads=threads),
                     name=f"bench-predictor-{label}", log_dir=Path(bs.data_dir) / "logs",
                     env={**os.environ, **state.env, "PYTHONUNBUFFERED": "1", "PORT": str(port), **env}, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    with requests.Session() as session:
        while time.monotonic() < deadline:
            try:
                if serving_map(session, url, PIPELINE):
                    return process, port
            except requests.RequestException:
                pass
            if not process.alive():
                raise RuntimeError(f"predictor {label} exited at start: {process.log_tail()}")
            time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"predictor {label} did not serve {PIPELINE} within 90 s")


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


def one_run(bs: BenchStack, mode: str, fault: str, bodies: list[bytes], rate: float, duration: float,
            warmup: float, connections: int, client: str) -> dict[str, Any]:
    tag = f"d{uuid.uuid4().hex[:6]}{mode[0]}{fault[-4:]}"
    process, port = start_predictor(bs, f"{mode}-{fault}", MODES[mode], THREADS[mode])
    plan = LoadPlan(host="127.0.0.1", port=port, path=f"/predict/{PIPELINE}", bodies=bodies, rate=rate,
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
                  "client": client, "instances_per_request": 1, "pipeline": PIPELINE, "modes": MODES, "gunicorn_threads": THREADS, "connections_by_mode": CONNECTIONS,
                  "faults_at": "warmup + duration/2"}
    feed = RowFeed()
    bodies = [json.dumps({"instances": [instance]}).encode() for instance in feed.instances(1000)]
    runs: list[dict[str, Any]] = []
    with bench_stack(NAME, keep_data=keep_data) as bs:
        serve_first_model(bs, feed, bootstrap_rows)
        for mode in MODES:
            for fault in FAULTS:
                say(f"{mode}, fault {fault}: {rate:g} rps for {warmup:g}+{duration:g} s")
                runs.append(one_run(bs, mode, fault, bodies, rate, duration, warmup, connections, client))
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

"""Predictor latency under open-loop load, every prediction logged, and the stack's memory: through
the pipeline's Vertex AI endpoint (the local stand-in's `:predict`, which picks the deployed model by
the traffic split and forwards to its serving process) and directly on that serving process, side by
side in one run, on the same stack and model.

Start a stack, apply the demo pipeline, land a batch of rows and wait until the endpoint serves the
model. Then, for each target (`endpoint`, then `direct`), send `rate` requests/s (one instance each,
each with a unique parameters.request_id) for `warmup` seconds (not measured) and `duration` seconds
(measured) from a load generator in its own process on the same machine (`bench.loadgen`). Latency runs from each request's scheduled send time to its
response, so queueing anywhere shows. Afterwards wait until every request id sent (warm-up included)
is a row of `predictions` and report logged vs sent. During the whole run the RSS (and PSS) of every
process of the stack (PIDs from state.json and all their children) is sampled every 0.5 s; the CPU
time each component used during the measured window says where the machine's two cores went.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from bench.common import (
    PIPELINE,
    CpuWindow,
    RowFeed,
    bench_stack,
    component_pids,
    endpoint_target,
    foreign_stack_processes,
    memory_sample,
    percentile,
    rounded,
    say,
    serve_first_model,
    serving_target,
    write_result,
)
from bench.loadgen import LoadPlan, LoadRun, measure_floor, summarize
from mlops.core.sql import quote_qualified

NAME = "predictor"
TARGET_P99_MS = 10.0
TARGET_MEMORY_GIB = 3.0


class MemorySampler:
    """RSS/PSS of the stack's process trees, every `every_s`, in a background thread."""

    def __init__(self, roots: dict[str, int], every_s: float = 0.5):
        self._roots = roots
        self._every = every_s
        self._stop = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = memory_sample(self._roots)
            sample["t"] = time.time()
            self.samples.append(sample)
            self._stop.wait(self._every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def peak(self) -> dict[str, Any]:
        top = max(self.samples, key=lambda s: s["rss_mib"])
        return {
            "samples": len(self.samples),
            "peak_rss_mib": round(top["rss_mib"], 1),
            "peak_rss_gib": round(top["rss_mib"] / 1024, 3),
            "peak_pss_mib": round(max(s["pss_mib"] for s in self.samples), 1),
            "processes": top["processes"],
            "rss_mib_by_component_at_peak": {k: round(v, 1) for k, v in
                                             sorted(top["rss_mib_by_component"].items(), key=lambda kv: -kv[1])},
        }


def count_logged(warehouse, prefix: str) -> int:
    from mlops.core.topology import PREDICTIONS_TABLE

    rows = warehouse.query(
        f"SELECT COUNT(DISTINCT request_id) AS n FROM {quote_qualified(warehouse.qualified(PREDICTIONS_TABLE))} "
        f"WHERE STARTS_WITH(request_id, @prefix)", {"prefix": prefix + "-"})
    return int(rows[0]["n"])


def wait_logged(warehouse, expected: dict[str, int], timeout_s: float) -> dict[str, Any]:
    """Poll until each prefix has its expected count of distinct request ids (or time runs out)."""
    started = time.perf_counter()
    counts = {p: 0 for p in expected}
    while True:
        counts = {p: count_logged(warehouse, p) for p in expected}
        if all(counts[p] >= n for p, n in expected.items()):
            break
        if time.perf_counter() - started > timeout_s:
            break
        time.sleep(1.0)
    return {"counts": counts, "waited_s": round(time.perf_counter() - started, 2)}


def server_latencies(warehouse, prefix: str) -> dict[str, Any]:
    """The predictor's own latency_ms (request parsed -> prediction made), as logged per prediction."""
    from mlops.core.topology import PREDICTIONS_TABLE

    rows = warehouse.query(
        f"SELECT latency_ms FROM {quote_qualified(warehouse.qualified(PREDICTIONS_TABLE))} WHERE STARTS_WITH(request_id, @prefix)",
        {"prefix": prefix + "-"})
    values = [float(r["latency_ms"]) for r in rows]
    return {q: rounded(percentile(values, n), 3) for q, n in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "max": rounded(max(values) if values else None, 3), "rows": len(values)}


def run(rate: float = 500.0, duration: float = 20.0, warmup: float = 3.0, connections: int = 32,
        client: str = "asyncio", log_timeout: float = 180.0, bootstrap_rows: int = 1000, keep_data: bool = False,
        **_: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    parameters = {"rate_rps": rate, "duration_s": duration, "warmup_s": warmup, "connections": connections,
                  "client": client, "instances_per_request": 1, "pipeline": PIPELINE, "model": "LOGISTIC_REG",
                  "bootstrap_rows": bootstrap_rows, "request_id_prefix": f"b{tag}",
                  "targets": ["endpoint (Vertex stand-in :predict)", "direct (the serving process)"]}
    feed = RowFeed()
    instances = feed.instances(1000)
    say(f"harness floor: the generator against an instant server, {rate:g} rps for 5 s")
    floor = measure_floor(rate, 5.0, connections, client, json.dumps({"instances": [instances[0]]}).encode())
    runs: dict[str, dict[str, Any]] = {}
    with bench_stack(NAME, keep_data=keep_data) as bs:
        spec, outcome = serve_first_model(bs, feed, bootstrap_rows)
        roots = component_pids(bs)
        foreign = foreign_stack_processes(roots)
        if foreign:
            say(f"WARNING: {foreign} processes of other local stacks are running; figures will be noisier")
        idle = CpuWindow(roots).start()
        time.sleep(3.0)
        idle_cpu = idle.stop()
        targets = {"endpoint": endpoint_target(bs, spec.name), "direct": serving_target(bs, outcome.version_id)}
        with MemorySampler(roots) as memory:
            baseline = memory_sample(roots)
            for name, (port, path) in targets.items():
                prefix = f"b{tag}{name[0]}"
                # The id travels in the body: the endpoint forwards the body and nothing else.
                bodies = [json.dumps({"instances": [instance], "parameters": {"request_id": "{rid}"}}).encode()
                          for instance in instances]
                say(f"{name}: serving version {outcome.version_id} at :{port}{path}; {rate:g} rps for "
                    f"{warmup:g}+{duration:g} s with {client}")
                plan = LoadPlan(host="127.0.0.1", port=port, path=path, bodies=bodies, rate=rate, warmup_s=warmup,
                                duration_s=duration, connections=connections, prefix=prefix,
                                warmup_prefix=f"{prefix}w")
                load = LoadRun(plan, client)
                time.sleep(0.25 + warmup)
                window = CpuWindow(roots).start()
                time.sleep(duration)
                load_cpu = window.stop()
                result = load.result(timeout=warmup + duration + 120)
                say(f"{name}: load done; waiting for every prediction to be logged")
                logged = wait_logged(bs.ctx.warehouse, {plan.prefix: plan.total - plan.warmup_count,
                                                        plan.warmup_prefix: plan.warmup_count}, log_timeout)
                runs[name] = {"plan": plan, "summary": summarize(plan, result), "logged": logged, "cpu": load_cpu,
                              "server": server_latencies(bs.ctx.warehouse, plan.prefix)}

    peak = memory.peak()
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {"idle_stack": idle_cpu, "harness_floor": floor, "memory": peak,
                               "served_version": outcome.version_id}
    for name, r in runs.items():
        summary, logged, plan = r["summary"], r["logged"], r["plan"]
        logged_total = sum(logged["counts"].values())
        p99 = summary["latency_ms"]["p99"]
        figures[name] = {
            "p50_ms": summary["latency_ms"]["p50"], "p90_ms": summary["latency_ms"]["p90"], "p99_ms": p99,
            "max_ms": summary["latency_ms"]["max"], "achieved_rps": summary["achieved_rps"], "sent": summary["sent"],
            "errors": summary["errors"], "logged": logged["counts"][plan.prefix],
            "all_logged": logged_total == plan.total, "seconds_to_log_all_after_load": logged["waited_s"],
            "cpu_during_load": {k: v for k, v in r["cpu"].items() if k != "stack_cores_by_component"},
            "meets_p99": p99 is not None and p99 <= TARGET_P99_MS,
        }
        details[name] = {"client_view": summary, "predictor_reported_latency_ms": r["server"],
                         "stack_cores_by_component_during_load": r["cpu"]["stack_cores_by_component"]}
    figures.update({
        "peak_stack_rss_gib": peak["peak_rss_gib"], "peak_stack_pss_mib": peak["peak_pss_mib"],
        "baseline_stack_rss_mib": round(baseline["rss_mib"], 1), "harness_floor_ms": floor["latency_ms"],
        "other_stack_processes_at_start": foreign,
        "targets": {"p99_ms": TARGET_P99_MS, "all_logged": True, "memory_gib": TARGET_MEMORY_GIB},
        "meets": {"memory": peak["peak_rss_gib"] < TARGET_MEMORY_GIB,
                  "all_logged": all(f["all_logged"] for f in figures.values() if isinstance(f, dict) and "all_logged" in f)},
    })
    return write_result(NAME, parameters, figures, details)

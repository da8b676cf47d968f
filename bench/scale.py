"""Many pipelines side by side: landed -> deployed per pipeline, the data-watcher's tick time, stack memory.

Start a stack (ticker on: a deploy finishes on a later tick), apply `pipelines` specs, land
`rows` demo rows for each (`mlops ingest`'s function, then a watch.tick, as `mlops ingest` does),
all at once, and wait until each pipeline has a `model.deployed` in the event archive. landed ->
deployed runs from the moment a pipeline's rows are in its table to the publish time of its
`model.deployed`. The data-watcher's tick time is its `handled` elapsed_ms for the watch.tick events
of the run; the RSS of every process of the stack is sampled every 0.5 s throughout.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

from bench.common import (
    CpuWindow,
    RowFeed,
    apply_spec,
    bench_stack,
    component_pids,
    foreign_stack_processes,
    land_rows,
    memory_sample,
    percentile,
    rounded,
    say,
    write_result,
)
from bench.loop_overhead import handled_lines
from bench.predictor_latency import MemorySampler

NAME = "scale"
TARGET_MEDIAN_S = 1.0
TARGET_MEMORY_GIB = 4.0


# The stages a landed batch goes through, each read off the archive by its first event per pipeline.
STAGE_EVENTS = {"snapshotted": "data.ready.v1", "trained": "model.trained.v1", "evaluated": "model.evaluated.v1",
                "registered": "model.registered.v1", "deployed": "model.deployed.v1"}


def _first_event_at(bs, pipelines: set[str], event_type: str = STAGE_EVENTS["deployed"]) -> dict[str, float]:
    """pipeline -> publish time (epoch s) of its first `event_type`, from the event archive."""
    from mlops.ops.archive import query_events

    found: dict[str, float] = {}
    for event in query_events(bs.ctx.warehouse, event_type=event_type, limit=10_000):
        if event.pipeline in pipelines:
            when = datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp()
            found[event.pipeline] = min(when, found.get(event.pipeline, when))
    return found


def _memory_split(bs, roots: dict[str, int]) -> dict[str, Any]:
    """The stack's RSS now, with and without the serving processes (one per deployed version, each a
    gunicorn tree under the Vertex stand-in), and one serving process tree's RSS."""
    from mlops.stack.supervisor import serving_containers

    serving = {name: c.pid for name, c in serving_containers(bs.data_dir).items() if c.pid}
    sample = memory_sample({**serving, **roots})  # serving roots first: they claim their own trees
    by_component = sample["rss_mib_by_component"]
    each = sorted(v for k, v in by_component.items() if k in serving)
    serving_mib = sum(each)
    return {
        "serving_processes": len(serving),
        "stack_rss_gib_at_end": round(sample["rss_mib"] / 1024, 3),
        "stack_rss_gib_at_end_without_serving": round((sample["rss_mib"] - serving_mib) / 1024, 3),
        "serving_rss_gib_at_end": round(serving_mib / 1024, 3),
        "serving_process_rss_mib_median": rounded(statistics.median(each), 1) if each else None,
    }


def run(pipelines: int = 50, rows: int = 200, keep_data: bool = False, timeout_s: float = 900.0,
        **_: Any) -> dict[str, Any]:
    parameters = {"pipelines": pipelines, "rows_per_pipeline": rows, "model": "LOGISTIC_REG", "ticker": True}
    feed = RowFeed()
    with bench_stack(NAME, keep_data=keep_data, ticker=True) as bs:
        roots = component_pids(bs)
        foreign = foreign_stack_processes(roots)
        names = [f"scale{i:03d}" for i in range(pipelines)]
        specs = [apply_spec(bs, new_rows_min=rows // 2, name=name) for name in names]
        landed: dict[str, float] = {}
        tick_ids: set[str] = set()
        with MemorySampler(roots) as memory:
            window = CpuWindow(roots).start()
            say(f"landing {rows} rows for each of {pipelines} pipelines")
            for spec in specs:
                result = land_rows(bs, spec, feed.take(rows))
                landed[spec.name] = result.landed_at
                tick_ids.add(result.tick_id)
            deadline = time.monotonic() + timeout_s
            deployed: dict[str, float] = {}
            while time.monotonic() < deadline and len(deployed) < pipelines:
                time.sleep(2.0)
                deployed = _first_event_at(bs, set(names))
                say(f"{len(deployed)}/{pipelines} deployed")
            cpu = window.stop()
            at_end = _memory_split(bs, roots)
            reached = {stage: _first_event_at(bs, set(names), event_type) for stage, event_type in STAGE_EVENTS.items()}
        ticks = [e["elapsed_ms"] / 1000 for e in handled_lines(bs.data_dir)
                 if e.get("service") == "data-watcher" and e.get("event_id") in tick_ids]

    spans = sorted(deployed[n] - landed[n] for n in deployed)
    # Where the time goes: landed -> each stage's event, median over the pipelines that reached it.
    by_stage = {stage: rounded(statistics.median([at[n] - landed[n] for n in at]), 3) if at else None
                for stage, at in reached.items()}
    peak = memory.peak()
    median = statistics.median(spans) if spans else None
    figures = {
        "pipelines": pipelines, "deployed": len(deployed),
        "landed_to_deployed_median_s": rounded(median, 3),
        "landed_to_deployed_p90_s": rounded(percentile(spans, 90), 3),
        "landed_to_deployed_max_s": rounded(max(spans) if spans else None, 3),
        "landed_to_stage_median_s": by_stage,
        "watcher_tick_median_s": rounded(statistics.median(ticks) if ticks else None, 3),
        "watcher_tick_p90_s": rounded(percentile(ticks, 90), 3), "watcher_ticks": len(ticks),
        "peak_stack_rss_gib": peak["peak_rss_gib"],
        **at_end,
        "cpu_landing_to_deployed": {k: v for k, v in cpu.items() if k != "stack_cores_by_component"},
        "other_stack_processes_at_start": foreign,
        "targets": {"median_s": TARGET_MEDIAN_S, "memory_gib": TARGET_MEMORY_GIB, "deployed": pipelines},
        "meets": {"all_deployed": len(deployed) == pipelines,
                  "median": median is not None and median <= TARGET_MEDIAN_S,
                  "memory": peak["peak_rss_gib"] <= TARGET_MEMORY_GIB},
    }
    # The serving processes as one: their share, not 50 lines.
    by_component: dict[str, float] = {}
    for name, cores in cpu["stack_cores_by_component"].items():
        key = "serving (all)" if name.startswith("serving-") else name
        by_component[key] = round(by_component.get(key, 0.0) + cores, 3)
    return write_result(NAME, parameters, figures, {"memory": peak, "stack_cores_by_component": by_component})

"""Prediction logging at rate: served rows/s against rows/s arriving in `predictions`, the lag after
the load, lost and doubled rows, and the BigQuery emulator's memory afterwards.

Two sources of `prediction.made`:
- `publish` (default): this process publishes `prediction.made` events to Pub/Sub as the predictor's
  batcher does (a chunk every 0.1 s, `rows_per_s / 10` predictions each, each chunk its own event
  id); 1% of the chunks are published a second time with the same event id (what the batcher does
  after a publish that timed out but landed) and 1% again under a new event id, so "doubled" tests
  the logger's dedupe under load. Served rows/s = predictions published per second.
- `predictor`: start a stack, serve a first model (as `predictor` does), then send to the pipeline's
endpoint `:predict` (the Vertex stand-in forwards to the version's serving process) `rows_per_s / instances` requests
per second of `instances` instances each (every prediction one row) for `warmup` + `duration`
seconds from the open-loop generator (`bench.loadgen`), each request with its own X-Request-Id (a
prediction's request id is `<id>:<index>`). During the load, every `sample_s` the distinct request ids
of the run in the table are counted; afterwards the count is polled every 0.25 s until every answered
prediction is there (the lag) or `log_timeout` passes. Lost = answered but absent; doubled = rows
beyond one per request id. The inference-logger's rounds (group commit) are read from its log.
"""

from __future__ import annotations

import json
import statistics
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
    rounded,
    say,
    serve_first_model,
    write_result,
)
from bench.loadgen import LoadPlan, LoadRun, summarize
from bench.predictor_latency import MemorySampler
from mlops.core.sql import quote_qualified

NAME = "logging"
TARGET_ROWS_PER_S = 5000.0
TARGET_LAG_S = 5.0


def _counts(warehouse, prefix: str) -> tuple[int, int]:
    """(rows, distinct request ids) of this run in `predictions`."""
    from mlops.core.topology import PREDICTIONS_TABLE

    sql = (f"SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM "
           f"{quote_qualified(warehouse.qualified(PREDICTIONS_TABLE))} WHERE STARTS_WITH(request_id, @prefix)")
    for attempt in range(5):
        try:
            rows = warehouse.query(sql, {"prefix": prefix})
            return int(rows[0]["n"]), int(rows[0]["d"])
        except Exception as error:  # noqa: BLE001 - bqemulator fails a query now and then under writes
            if attempt == 4:
                raise
            say(f"count query failed, again: {error!r:.120}")
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _table_rows(bs) -> int:
    """Rows in `predictions` from the table's metadata, not a query: bqemulator runs concurrent queries
    on one DuckDB connection and now and then hands one query's result to another (or fails it with
    "Attempting to execute an unsuccessful or closed pending query result"), so the benchmark does not
    query while the inference-logger does."""
    from mlops.adapters.bigquery import bigquery_client
    from mlops.core.topology import PREDICTIONS_TABLE

    settings = bs.ctx.settings
    client = bigquery_client(settings.project, settings.bigquery_emulator_host)
    return int(client.get_table(bs.ctx.warehouse.qualified(PREDICTIONS_TABLE)).num_rows or 0)


def run(rows_per_s: float = TARGET_ROWS_PER_S, instances: int = 50, duration: float = 60.0, warmup: float = 5.0,
        connections: int = 16, client: str = "asyncio", log_timeout: float = 300.0, sample_s: float = 2.0,
        bootstrap_rows: int = 1000, keep_data: bool = False, source: str = "publish", batch: int = 500,
        interval: float = 1.0, **_: Any) -> dict[str, Any]:
    if source == "publish":
        return run_published(rows_per_s, duration, warmup, log_timeout, sample_s, keep_data, batch, interval)

    tag = uuid.uuid4().hex[:8]
    rate = rows_per_s / instances
    parameters = {"rows_per_s": rows_per_s, "instances_per_request": instances, "rate_rps": rate,
                  "duration_s": duration, "warmup_s": warmup, "connections": connections, "client": client,
                  "pipeline": PIPELINE, "request_id_prefix": f"g{tag}", "target": "endpoint :predict"}
    feed = RowFeed()
    pool = feed.instances(1000)
    # The id travels in the body: the endpoint forwards the body and nothing else.
    bodies = [json.dumps({"instances": [pool[(i + j) % len(pool)] for j in range(instances)],
                          "parameters": {"request_id": "{rid}"}}).encode() for i in range(0, 1000, 7)]
    with bench_stack(NAME, keep_data=keep_data) as bs:
        spec, outcome = serve_first_model(bs, feed, bootstrap_rows)
        roots = component_pids(bs)
        foreign = foreign_stack_processes(roots)
        warehouse = bs.ctx.warehouse
        # The real serving path: the endpoint's :predict on the Vertex stand-in, which forwards to the
        # version's serving process (whose batcher publishes prediction.made).
        port, path = endpoint_target(bs, spec.name)
        plan = LoadPlan(host="127.0.0.1", port=port, path=path, bodies=bodies, rate=rate,
                        warmup_s=warmup, duration_s=duration, connections=connections, prefix=f"g{tag}",
                        warmup_prefix=f"g{tag}w")
        say(f"serving {outcome.version_id}; {rate:g} rps x {instances} instances = {rows_per_s:g} rows/s "
            f"for {warmup:g}+{duration:g} s")
        arrivals: list[tuple[float, int]] = []
        with MemorySampler(roots) as memory:
            load = LoadRun(plan, client)
            started = time.perf_counter()
            time.sleep(0.25 + warmup)
            window = CpuWindow(roots).start()
            measured_from = time.perf_counter()
            while time.perf_counter() - measured_from < duration:
                arrivals.append((time.perf_counter() - started, _counts(warehouse, f"g{tag}")[1]))
                time.sleep(sample_s)
            load_cpu = window.stop()
            result = load.result(timeout=warmup + duration + 120)
            load_ended = time.perf_counter()
            summary = summarize(plan, result)
            answered = sum(1 for status in result.status if status == 200) * instances
            say(f"load done ({answered} predictions answered); waiting for them in the table")
            while True:
                rows, distinct = _counts(warehouse, f"g{tag}")
                if distinct >= answered or time.perf_counter() - load_ended > log_timeout:
                    break
                time.sleep(0.25)
            lag_s = time.perf_counter() - load_ended
        emulator_after = memory_sample({"bigquery": roots["bigquery"]})
        logger_log = bs.data_dir / "logs" / "inference-logger.log"
        rounds = _rounds(logger_log)

    measured = [(t, n) for t, n in arrivals]
    arrival_rate = None
    if len(measured) >= 2:
        (t0, n0), (t1, n1) = measured[0], measured[-1]
        arrival_rate = (n1 - n0) / (t1 - t0) if t1 > t0 else None
    served_rate = summary["achieved_rps"] * instances if summary.get("achieved_rps") else None
    lost = max(0, answered - distinct)
    doubled = rows - distinct
    figures = {
        "served_rows_per_s": rounded(served_rate, 1), "arriving_rows_per_s": rounded(arrival_rate, 1),
        "answered_predictions": answered, "rows_in_table": rows, "distinct_request_ids": distinct,
        "lost": lost, "doubled": doubled, "lag_after_load_s": round(lag_s, 2),
        "request_errors": summary["errors"], "p99_ms": summary["latency_ms"]["p99"],
        "emulator_rss_mib_after": round(emulator_after["rss_mib"], 1),
        "peak_stack_rss_gib": memory.peak()["peak_rss_gib"],
        "logger_rounds": rounds,
        "cpu_during_load": {k: v for k, v in load_cpu.items() if k != "stack_cores_by_component"},
        "other_stack_processes_at_start": foreign,
        "targets": {"rows_per_s": TARGET_ROWS_PER_S, "lag_s": TARGET_LAG_S, "lost": 0, "doubled": 0},
        "meets": {"rate": arrival_rate is not None and arrival_rate >= TARGET_ROWS_PER_S,
                  "lag": lag_s <= TARGET_LAG_S, "lost": lost == 0, "doubled": doubled == 0},
    }
    details = {"arrivals_t_s_distinct": measured, "client_view": summary,
               "stack_cores_by_component_during_load": load_cpu["stack_cores_by_component"]}
    return write_result(NAME, parameters, figures, details)


def _rounds(log_path) -> dict[str, Any]:
    """The inference-logger's pushes (its 'logged predictions' lines, one per push) and rounds ('round
    written' lines: pushes and rows per round, the presence check's and the write's milliseconds)."""
    pushes = rows = 0
    per_round: dict[str, list[float]] = {"pushes": [], "rows": [], "presence_ms": [], "append_ms": []}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        if "logged predictions" not in line and "round written" not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        message = record.get("message", record.get("event"))  # the services log `message`; structlog's default `event`
        if message == "round written":
            for key, values in per_round.items():
                if isinstance(record.get(key), (int, float)):
                    values.append(float(record[key]))
        elif message == "logged predictions":
            pushes += 1
            rows += int(record.get("rows", 0))

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {"median": round(statistics.median(ordered), 1), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
                "max": round(ordered[-1], 1)}

    return {"pushes": pushes, "rows": rows, "rounds": len(per_round["rows"]),
            **{f"per_round_{key}": spread(values) for key, values in per_round.items()}}


class _Publisher:
    """Publishes `prediction.made` like the predictor's batcher: one chunk every `interval` seconds."""

    def __init__(self, bus, prefix: str, rows_per_s: float, seconds: float, batch: int = 500,
                 max_interval: float = 1.0):
        import threading

        # As the batcher: an event when `batch` predictions wait, or `max_interval` after the first.
        interval = min(max_interval, batch / rows_per_s)
        self._bus, self._prefix, self._interval = bus, prefix, interval
        self._chunk = max(1, int(round(rows_per_s * interval)))
        self._chunks = int(round(seconds / interval))
        self.published_rows = 0
        self.republished_same_id = self.republished_new_id = 0
        self.late_s: list[float] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def _run(self) -> None:
        from datetime import UTC, datetime

        from mlops.core.events import Prediction, PredictionMade
        from mlops.core.events.envelope import new_envelope

        features = json.dumps({"length": 0.5, "diameter": 0.4})
        start = time.perf_counter()
        pending = []
        # 1% of chunks republished each way, and at least once each however few chunks a run has.
        same_id_at = {n for n in range(self._chunks) if n % 100 == 50} | {self._chunks // 3}
        new_id_at = {n for n in range(self._chunks) if n % 100 == 75} | {2 * self._chunks // 3}
        for n in range(self._chunks):
            due = start + n * self._interval
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                self.late_s.append(-wait)
            now = datetime.now(UTC).isoformat()
            made = PredictionMade(pipeline=PIPELINE, predictions=[
                Prediction(request_id=f"{self._prefix}-{n * self._chunk + i:09d}", model_version="1",
                           features=features, predicted_label="1", score=0.7, latency_ms=1.0, predicted_at=now)
                for i in range(self._chunk)])
            envelope = new_envelope(made, "predictor")
            pending.append(self._bus.publish(made, envelope))
            if n in same_id_at:  # a publish that timed out but landed: the same chunk, the same event id
                pending.append(self._bus.publish(made, envelope))
                self.republished_same_id += 1
            if n in new_id_at:  # the same predictions re-formed into another event
                pending.append(self._bus.publish(made, new_envelope(made, "predictor")))
                self.republished_new_id += 1
            self.published_rows += self._chunk
            while len(pending) > 50:
                try:
                    pending.pop(0).result(timeout=30)
                except Exception as error:  # noqa: BLE001 - counted, the run goes on
                    self.errors.append(repr(error))
        for future in pending:
            try:
                future.result(timeout=30)
            except Exception as error:  # noqa: BLE001
                self.errors.append(repr(error))


def run_published(rows_per_s: float, duration: float, warmup: float, log_timeout: float, sample_s: float,
                  keep_data: bool, batch: int = 500, interval: float = 1.0) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"g{tag}"
    publisher_interval = min(interval, batch / rows_per_s)
    parameters = {"source": "publish", "rows_per_s": rows_per_s, "batch": batch,
                  "chunk_every_s": round(publisher_interval, 3), "duration_s": duration,
                  "warmup_s": warmup, "pipeline": PIPELINE, "request_id_prefix": prefix,
                  "republished": "1% same event id, 1% new event id"}
    with bench_stack(NAME, keep_data=keep_data) as bs:
        roots = component_pids(bs)
        foreign = foreign_stack_processes(roots)
        warehouse = bs.ctx.warehouse
        publisher = _Publisher(bs.ctx.bus, prefix, rows_per_s, warmup + duration, batch, interval)
        arrivals: list[tuple[float, int]] = []
        say(f"publishing {rows_per_s:g} predictions/s for {warmup:g}+{duration:g} s")
        with MemorySampler(roots) as memory:
            started = time.perf_counter()
            publisher.thread.start()
            time.sleep(warmup)
            window = CpuWindow(roots).start()
            while publisher.thread.is_alive():
                arrivals.append((round(time.perf_counter() - started, 2), _table_rows(bs)))
                time.sleep(sample_s)
            load_cpu = window.stop()
            load_ended = time.perf_counter()
            published_s = load_ended - started
            answered = publisher.published_rows
            say(f"published {answered} predictions in {published_s:.1f} s; waiting for them in the table")
            while _table_rows(bs) < answered and time.perf_counter() - load_ended < log_timeout:
                time.sleep(0.25)
            lag_s = time.perf_counter() - load_ended
            arrivals.append((round(time.perf_counter() - started, 2), _table_rows(bs)))
            time.sleep(2.0)  # the logger idle: now one query counts rows and distinct request ids
            rows, distinct = _counts(warehouse, prefix)
        emulator_after = memory_sample({"bigquery": roots["bigquery"]})
        logger = _rounds(bs.data_dir / "logs" / "inference-logger.log")

    in_window = [(t, n) for t, n in arrivals if t >= warmup and t <= warmup + duration + sample_s]
    arrival_rate = None
    if len(in_window) >= 2:
        (t0, n0), (t1, n1) = in_window[0], in_window[-1]
        arrival_rate = (n1 - n0) / (t1 - t0) if t1 > t0 else None
    lost = max(0, answered - distinct)
    doubled = rows - distinct
    figures = {
        "served_rows_per_s": round(answered / published_s, 1), "arriving_rows_per_s": rounded(arrival_rate, 1),
        "published_predictions": answered, "rows_in_table": rows, "distinct_request_ids": distinct,
        "lost": lost, "doubled": doubled, "lag_after_load_s": round(lag_s, 2),
        "republished_chunks": publisher.republished_same_id + publisher.republished_new_id,
        "publish_errors": len(publisher.errors), "publisher_late_chunks": len(publisher.late_s),
        "emulator_rss_mib_after": round(emulator_after["rss_mib"], 1),
        "peak_stack_rss_gib": memory.peak()["peak_rss_gib"],
        "logger_pushes": logger,
        "cpu_during_load": {k: v for k, v in load_cpu.items() if k != "stack_cores_by_component"},
        "other_stack_processes_at_start": foreign,
        "targets": {"rows_per_s": TARGET_ROWS_PER_S, "lag_s": TARGET_LAG_S, "lost": 0, "doubled": 0},
        "meets": {"rate": arrival_rate is not None and arrival_rate >= TARGET_ROWS_PER_S,
                  "lag": lag_s <= TARGET_LAG_S, "lost": lost == 0, "doubled": doubled == 0},
    }
    details = {"arrivals_t_s_rows": arrivals, "publish_errors": publisher.errors[:5],
               "stack_cores_by_component_during_load": load_cpu["stack_cores_by_component"]}
    return write_result(NAME, parameters, figures, details)

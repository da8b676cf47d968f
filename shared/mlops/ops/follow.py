"""`--wait`: follow the run a tick caused to its outcome, through the event archive.

The tick's `ce-id` is the `causation_id` of the data-watcher's answers, one per pipeline: a
`data.ready` for a snapshot (whose `run_id` then names every later event of the run), a
`data.skipped` saying in the watcher's own words why it trains nothing, or a `stage.failed`. Nothing
here restates the watcher's retrain rules; only when it says there were no new rows because a
snapshot that another tick took since this command started holds them is that other run followed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.core.events import SkipCause
from mlops.core.events.envelope import parse_time
from mlops.core.spec import PipelineSpec
from mlops.core.topology import DeliveryPolicy
from mlops.ops.archive import SHORT_ID, ArchivedEvent, query_events
from mlops.ops.errors import RunFailed
from mlops.ports.warehouse import SqlWarehouse

POLL_S = 0.5
MAX_ATTEMPTS = DeliveryPolicy().max_delivery_attempts


@dataclass(frozen=True)
class Progress:
    pipeline: str
    text: str
    outcome: str = ""  # set on the last line of a pipeline: deployed | rejected | nothing | failed


@dataclass
class _Run:
    spec: PipelineSpec
    run_id: str = ""
    taken_by: str = ""  # data version of another tick's snapshot that holds this command's rows
    seen: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)  # input event id -> transient failures
    outcome: str = ""


# What a user can do about a skip, by the watcher's cause (its `why` already names the numbers).
HINTS = {
    SkipCause.NO_TABLE: " (land rows with `mlops ingest --pipeline {pipeline}`)",
    SkipCause.BELOW_THRESHOLDS: "; `mlops trigger --pipeline {pipeline}` trains on them now",
}


def describe(event: ArchivedEvent) -> str:
    """One progress line for an event of a run."""
    p = event.payload()
    kind = event.type.rsplit(".", 1)[0]
    if kind == "data.ready":
        drift = f", drift PSI {p['drift_score']:.3f}" if p.get("drift_score") is not None else ""
        return (f"snapshot {p['data_version']}: {p['total_rows']} rows ({p['new_rows']} new), "
                f"trigger {p['trigger']}{drift}  [run {event.run_id[:SHORT_ID]}]")
    if kind == "model.trained":
        return (f"trained candidate {p['candidate_version']}: {p['model_type']} on {p['train_rows']} rows "
                f"in {p['train_seconds']:.1f} s")
    if kind == "model.evaluated":
        return f"gate: {p['decision']} ({p['reason']})"
    if kind == "model.registered":
        aliases = ", ".join(a for a in p["aliases"] if a != "default")
        return f"registered version {p['version_id']}" + (f" ({aliases})" if aliases else "")
    if kind == "model.deployed":
        split = ", ".join(f"v{m['version_id']} {m['traffic_percent']}%" for m in p["deployed_models"])
        return f"deployed version {p['version_id']} ({p['action']}): traffic {split}"
    if kind == "data.skipped":
        return f"nothing to train: {p['why']}{HINTS.get(p.get('cause', ''), '').format(pipeline=p['pipeline'])}"
    if kind == "stage.failed":
        return f"{p['stage']} failed: {p['error_class']}: {p['error_message']}"
    return f"{event.type}: {p.get('why') or p.get('reason') or p}"


def follow(warehouse: SqlWarehouse, tick_id: str, specs: list[PipelineSpec], *, started_at: datetime,
           timeout: float, poll: float = POLL_S, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """Progress lines of each pipeline's run caused by tick `tick_id`, ending with its outcome.
    `started_at` is when the user's command began (before it landed any rows). Raises RunFailed when
    a run fails, or when `timeout` seconds pass without an outcome."""
    runs = {spec.name: _Run(spec) for spec in specs}
    start = clock()
    since = started_at.isoformat()
    while True:
        if any(not r.run_id and not r.outcome for r in runs.values()):
            yield from _watcher_answers(warehouse, tick_id, runs, started_at, since)
        for run in (r for r in runs.values() if r.run_id and not r.outcome):
            yield from _run_events(warehouse, run)
        if all(r.outcome for r in runs.values()):
            return
        if clock() - start >= timeout:
            late = [r for r in runs.values() if not r.outcome]
            raise RunFailed(f"no outcome within {timeout:.0f} s ({'; '.join(_where(r) for r in late)})")
        sleep(poll)


def _where(run: _Run) -> str:
    if run.run_id:
        short = run.run_id[:SHORT_ID]
        return f"{run.spec.name}: run {short} still going, see `mlops events --run {short}`"
    if run.taken_by:
        return f"{run.spec.name}: snapshot {run.taken_by} of another tick is not in the archive yet"
    return (f"{run.spec.name}: the data-watcher has not answered the tick; is it up (`mlops status`)? "
            "its failures: `mlops events --type stage.failed`")


def _watcher_answers(warehouse: SqlWarehouse, tick_id: str, runs: dict[str, _Run], started_at: datetime,
                     since: str) -> Iterator[Progress]:
    answers = sorted(query_events(warehouse, caused_by=tick_id, limit=500), key=lambda e: e.time)
    for event in answers:
        pipeline = event.pipeline or str(event.payload().get("pipeline") or "")
        run = runs.get(pipeline)
        if run is None or run.outcome or run.run_id or event.id in run.seen:
            continue
        if event.type.startswith("data.ready."):
            run.run_id = event.run_id
        elif event.type.startswith("stage.failed."):
            yield from _failure(run, event)
        elif event.type.startswith("data.skipped."):
            if not run.taken_by:
                run.taken_by = _taken_by_another_tick(event.payload(), started_at)
            if not run.taken_by:
                run.seen.add(event.id)
                run.outcome = "nothing"
                yield Progress(pipeline, describe(event), run.outcome)
    for run in (r for r in runs.values() if r.taken_by and not r.run_id and not r.outcome):
        other = [e for e in query_events(warehouse, event_type="data.ready.v1", since=since, limit=50)
                 if (e.pipeline or e.payload().get("pipeline")) == run.spec.name
                 and e.payload().get("data_version") == run.taken_by]
        if other:
            run.run_id = other[0].run_id
            yield Progress(run.spec.name, f"these rows were snapshotted by another tick ({run.taken_by}); following "
                                          f"run {run.run_id[:SHORT_ID]}")


def _taken_by_another_tick(skip: dict[str, Any], started_at: datetime) -> str:
    """The data version of the snapshot that took this command's rows, when the watcher found no new
    rows because a snapshot taken since the command started already holds them ("" otherwise).
    The rows' ingest times and `started_at` are both this machine's clock."""
    watermark, version = skip.get("last_watermark"), skip.get("last_data_version")
    if skip.get("cause") != SkipCause.NO_NEW_ROWS or not watermark or not version:
        return ""
    try:
        return str(version) if parse_time(str(watermark)) >= started_at else ""
    except ValueError:
        return ""


def _run_events(warehouse: SqlWarehouse, run: _Run) -> Iterator[Progress]:
    events = sorted(query_events(warehouse, run_id=run.run_id, limit=500), key=lambda e: e.time)
    for event in events:
        if event.id in run.seen or run.outcome:
            continue
        run.seen.add(event.id)
        if event.type.startswith("stage.failed."):
            yield from _failure(run, event)
            continue
        if event.type.startswith("prediction.made."):
            continue
        payload: dict[str, Any] = event.payload()
        kind = event.type.rsplit(".", 1)[0]
        if kind == "model.registered" and payload["decision"] != "promote":
            run.outcome = "rejected"
        elif kind == "model.deployed":
            run.outcome = "deployed"
        yield Progress(run.spec.name, describe(event), run.outcome)


def _failure(run: _Run, event: ArchivedEvent) -> Iterator[Progress]:
    run.seen.add(event.id)
    payload = event.payload()
    key = payload.get("input_event_id") or event.causation_id
    run.failures[key] = run.failures.get(key, 0) + 1
    attempts = run.failures[key]
    if payload.get("permanent") or attempts >= MAX_ATTEMPTS:
        run.outcome = "failed"
        yield Progress(run.spec.name, describe(event), run.outcome)
        raise RunFailed(f"{run.spec.name}: {describe(event)}" + ("" if payload.get("permanent") else
                        f" ({attempts} attempts; the message is dead-lettered)"))
    yield Progress(run.spec.name, f"{describe(event)} (attempt {attempts} of {MAX_ATTEMPTS}; Pub/Sub retries it)")

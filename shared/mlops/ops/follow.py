"""`--wait`: follow the run a tick caused to its outcome, through the event archive.

The tick's `ce-id` is the `causation_id` of the data-watcher's answer: a `data.ready` per pipeline
that it snapshotted (whose `run_id` then names every later event of the run), or a `stage.failed`.
A watcher that finds nothing to train publishes nothing (issue 11 proposes it say so in an event):
when no answer has come once the watcher has had time to act, the reason is read from the numbers
it decides on (rows since the last snapshot, the spec's thresholds), and a run that another tick
started on the same rows is followed instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.core.events import TickReason
from mlops.core.spec import PipelineSpec
from mlops.core.topology import DeliveryPolicy
from mlops.ops.archive import SHORT_ID, ArchivedEvent, query_events
from mlops.ops.errors import RunFailed
from mlops.ports.warehouse import SqlWarehouse, Warehouse

# The watcher answers a tick in well under a second and the archive shows it within one more: after
# this long without an answer, silence with the rows below the thresholds means "nothing to train";
# silence with rows above them is waited out until SILENT_AFTER_S, then reported.
QUIET_AFTER_S = 3.0
SILENT_AFTER_S = 30.0
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
    seen: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)  # input event id -> transient failures
    outcome: str = ""


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
    if kind == "stage.failed":
        return f"{p['stage']} failed: {p['error_class']}: {p['error_message']}"
    return f"{event.type}: {p.get('why') or p.get('reason') or p}"


def why_nothing(warehouse: Warehouse, spec: PipelineSpec, reason: TickReason) -> str | None:
    """Why the data-watcher takes no snapshot for a tick of this reason now, in the terms of the
    spec's thresholds; None when it should take one. Mirrors the watcher's `decide` (a service's
    handler, which operator tools cannot import), drift aside: the watcher's PSI is not recomputed."""
    table = spec.source.table
    if warehouse.table_columns(table) is None:
        return f"nothing to train: table {table} does not exist yet (land rows with `mlops ingest`)"
    last = warehouse.last_snapshot(spec.name)
    status = warehouse.source_status(table, last.watermark if last else None)
    retrain = spec.retrain
    # A spec changed since the last snapshot retrains on the same rows (the watcher's spec_changed).
    changed = last is not None and last.spec_hash is not None and last.spec_hash != spec.fingerprint
    if status.new_rows == 0 and not changed:
        since = f"snapshot {last.data_version}" if last else "the start"
        return f"nothing to train: no new rows in {table} since {since}"
    if status.total_rows < retrain.min_rows:
        return f"nothing to train: {table} has {status.total_rows} rows, fewer than min_rows {retrain.min_rows}"
    if last is None or changed or reason == TickReason.MANUAL:
        return None
    fraction, least = retrain.new_rows_fraction, retrain.new_rows_min
    if (fraction is not None and status.new_rows >= fraction * last.total_rows) or \
            (least is not None and status.new_rows >= least):
        return None
    needs = ([f"{fraction * last.total_rows:.0f} ({fraction:.0%} of {last.total_rows})"] if fraction is not None else []) \
        + ([str(least)] if least is not None else [])
    drift = f" or drift above PSI {retrain.drift_psi}" if retrain.drift_psi is not None else ""
    return (f"nothing to train: {status.new_rows} new rows since snapshot {last.data_version}, below the spec's "
            f"threshold ({' or '.join(needs) or 'none'} new rows{drift}); `mlops trigger --pipeline {spec.name}` "
            "trains on them now")


def follow(warehouse: SqlWarehouse, tick_id: str, specs: list[PipelineSpec], *, started_at: datetime,
           reason: TickReason, timeout: float, quiet_after: float = QUIET_AFTER_S,
           silent_after: float = SILENT_AFTER_S, poll: float = POLL_S,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """Progress lines of each pipeline's run caused by tick `tick_id`, ending with its outcome.
    `started_at` is when the user's command began (before it landed any rows). Raises RunFailed when
    a run fails, or when `timeout` seconds pass without an outcome."""
    runs = {spec.name: _Run(spec) for spec in specs}
    start = clock()
    since = started_at.isoformat()
    while True:
        waiting = [r for r in runs.values() if not r.outcome]
        if not waiting:
            return
        if any(not r.run_id for r in waiting):
            waited = clock() - start
            yield from _watcher_answers(warehouse, tick_id, runs, since, reason, quiet=waited >= quiet_after,
                                        silent=waited >= silent_after)
        for run in (r for r in waiting if r.run_id and not r.outcome):
            yield from _run_events(warehouse, run)
        if all(r.outcome for r in runs.values()):
            return
        if clock() - start >= timeout:
            late = [r for r in runs.values() if not r.outcome]
            where = "; ".join(f"{r.spec.name}: " + (f"run {r.run_id[:SHORT_ID]} still going, see `mlops events --run "
                                                    f"{r.run_id[:SHORT_ID]}`" if r.run_id else "no snapshot yet")
                              for r in late)
            raise RunFailed(f"no outcome within {timeout:.0f} s ({where})")
        sleep(poll)


def _watcher_answers(warehouse: SqlWarehouse, tick_id: str, runs: dict[str, _Run], since: str,
                     reason: TickReason, quiet: bool, silent: bool) -> Iterator[Progress]:
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
        elif event.id not in run.seen:  # any other answer of the watcher: it says why it did nothing
            run.seen.add(event.id)
            run.outcome = "nothing"
            yield Progress(pipeline, describe(event), run.outcome)
    if not quiet:
        return
    for run in (r for r in runs.values() if not r.run_id and not r.outcome):
        # Another tick (the ticker's, or a second ingest's) may have snapshotted these rows first.
        other = [e for e in query_events(warehouse, event_type="data.ready.v1", since=since, limit=50)
                 if (e.pipeline or e.payload().get("pipeline")) == run.spec.name]
        if other:
            run.run_id = min(other, key=lambda e: e.time).run_id
            yield Progress(run.spec.name, f"these rows were snapshotted by another tick; following run "
                                          f"{run.run_id[:SHORT_ID]}")
            continue
        why = why_nothing(warehouse, run.spec, reason)
        if why is not None:
            run.outcome = "nothing"
            yield Progress(run.spec.name, why, run.outcome)
        elif silent:
            raise RunFailed(f"{run.spec.name}: the data-watcher neither snapshotted the new rows nor failed "
                            "visibly; see its log (`mlops status --json` names it) and "
                            "`mlops events --type stage.failed`")


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

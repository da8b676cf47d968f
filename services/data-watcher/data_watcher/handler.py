"""data-watcher: on a tick, decide per pipeline whether enough new data (or drift, or a changed spec)
warrants training, and if so freeze the data into a versioned snapshot and announce it with `data.ready`;
if not, say so and why with `data.skipped` (the only statement of the decision: `mlops ... --wait`
reads it instead of guessing from the thresholds).

A spec that does not fit its source table (a label or feature column it lacks, a type no model can
use) is refused before anything is snapshotted, so the rows stay new: once the spec is fixed, the
next tick snapshots them. Each snapshot records the spec's fingerprint, and a tick after the spec's
source, model or gate changed retrains on the same rows, so a run that failed for a cause in the
spec recovers when the spec is re-applied, without a replay.

Pure logic over ports: a warehouse, the spec store, and a drift function. No Flask, no clients.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from mlops.core.errors import PermanentError
from mlops.core.events import (
    DataReady,
    DataSkipped,
    Envelope,
    MonitoringBreached,
    SkipCause,
    StageFailed,
    TickReason,
    Trigger,
    WatchTick,
)
from mlops.core.events.envelope import parse_time
from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, PipelineSpec, snapshot_table_id, spec_problems
from mlops.ml.drift import psi_between
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.ports.warehouse import Row, SnapshotRecord, SourceStatus, Warehouse

STAGE = "data-watcher"
log = structlog.get_logger(STAGE)

FEEDBACK_ROW_PREFIX = "label-"
# Pipelines looked at side by side on a tick for all of them (each look waits on the warehouse).
PIPELINES_AT_ONCE = 8
_CASTS: dict[str, Callable[[str], object]] = {"INT64": lambda v: int(float(v)), "INTEGER": lambda v: int(float(v)),
                                              "FLOAT64": float, "FLOAT": float, "BOOL": lambda v: v.lower() == "true"}

# PSI between a reference and a current sample, per feature -> the largest value.
DriftFunction = Callable[[Sequence[Row], Sequence[Row], Sequence[str]], float]


def max_feature_psi(reference: Sequence[Row], current: Sequence[Row], features: Sequence[str]) -> float:
    """The largest PSI over the features; numeric ones binned by the reference's quantiles."""
    numeric = [f for f in features if all(isinstance(r.get(f), (int, float, type(None))) for r in reference)]
    categorical = [f for f in features if f not in numeric]
    return psi_between(reference, current, numeric, categorical).max_psi


class SpecDoesNotFitTable(PermanentError):
    """The spec names columns its source table lacks, or of types no model can use: no tick can
    succeed until the spec (or the table) changes."""


@dataclass(frozen=True)
class RetrainDecision:
    trigger: Trigger | None  # None: do not train, for the reason in `skipped`
    why: str
    drift_score: float | None = None
    skipped: SkipCause | None = None


def decide(spec: PipelineSpec, status: SourceStatus, last: SnapshotRecord | None, reason: TickReason,
           drift_score: float | None) -> RetrainDecision:
    """Whether this much new data (or this much drift, or a changed spec) is worth a training run.
    `why` is said to the user as it is (`data.skipped`, `mlops ... --wait`): it names the numbers."""
    retrain = spec.retrain
    table = spec.source.table
    since = f"snapshot {last.data_version}" if last else "the start"
    # A record without a fingerprint predates them: unknown is not "changed".
    changed = last is not None and last.spec_hash is not None and last.spec_hash != spec.fingerprint
    if (status.new_rows == 0 and not changed) or status.watermark is None:  # no rows, no watermark
        return RetrainDecision(None, f"no new rows in {table} since {since}", skipped=SkipCause.NO_NEW_ROWS)
    if status.total_rows < retrain.min_rows:
        return RetrainDecision(None, f"{table} has {status.total_rows} rows, fewer than min_rows {retrain.min_rows}",
                               skipped=SkipCause.TOO_FEW_ROWS)
    if last is None:
        return RetrainDecision(Trigger.NEW_ROWS, f"first snapshot: {status.total_rows} rows")
    if retrain.new_rows_fraction is not None and status.new_rows >= retrain.new_rows_fraction * last.total_rows:
        return RetrainDecision(Trigger.NEW_ROWS, f"{status.new_rows} new rows >= {retrain.new_rows_fraction:.0%} of {last.total_rows}")
    if retrain.new_rows_min is not None and status.new_rows >= retrain.new_rows_min:
        return RetrainDecision(Trigger.NEW_ROWS, f"{status.new_rows} new rows >= {retrain.new_rows_min}")
    if retrain.drift_psi is not None and drift_score is not None and drift_score > retrain.drift_psi:
        return RetrainDecision(Trigger.DRIFT, f"PSI {drift_score:.3f} > {retrain.drift_psi}", drift_score)
    if changed and last is not None:
        return RetrainDecision(Trigger.SPEC_CHANGED, f"the spec's source, model or gate changed since "
                                                     f"{last.data_version}: {status.total_rows} rows, retrained")
    if reason == TickReason.MANUAL:
        return RetrainDecision(Trigger.MANUAL, f"asked for by hand with {status.new_rows} new rows")
    fraction, least = retrain.new_rows_fraction, retrain.new_rows_min
    needs = ([f"{math.ceil(fraction * last.total_rows)} ({fraction:.0%} of {last.total_rows})"] if fraction is not None else []) \
        + ([str(least)] if least is not None else [])
    drift = "" if retrain.drift_psi is None else f" or drift above PSI {retrain.drift_psi}" + (
        f", now {drift_score:.3f}" if drift_score is not None else "")
    return RetrainDecision(None, f"{status.new_rows} new rows in {table} since {since}, below the spec's threshold "
                                 f"({' or '.join(needs) or 'none'} new rows{drift})", drift_score,
                           skipped=SkipCause.BELOW_THRESHOLDS)


def decide_on_breach(spec: PipelineSpec, status: SourceStatus, last: SnapshotRecord | None,
                     breach: MonitoringBreached) -> RetrainDecision:
    """A breach retrains on the source as it is now, whatever the new-row thresholds say, once per
    window: a snapshot taken after the window closed (for this breach, another feature's, or new
    rows) already holds everything the window could teach. Only rows the last model has not seen
    can teach it the shift, so none new is a skip too."""
    what = f"monitoring: {breach.why or breach.measure}"
    if last is not None and last.created_at >= parse_time(breach.window_end):
        return RetrainDecision(None, f"{what}; already retrained since that window closed (snapshot "
                                     f"{last.data_version}, trigger {last.trigger})", skipped=SkipCause.NO_NEW_ROWS)
    if status.new_rows == 0 or status.watermark is None:
        return RetrainDecision(None, f"{what}; but no new rows in {spec.source.table} to retrain on",
                               skipped=SkipCause.NO_NEW_ROWS)
    if status.total_rows < spec.retrain.min_rows:
        return RetrainDecision(None, f"{what}; but {spec.source.table} has {status.total_rows} rows, fewer than "
                                     f"min_rows {spec.retrain.min_rows}", skipped=SkipCause.TOO_FEW_ROWS)
    trigger = Trigger.DEGRADATION if breach.trigger == Trigger.DEGRADATION else Trigger.DRIFT
    return RetrainDecision(trigger, what, breach.value if trigger == Trigger.DRIFT else None)


def next_data_version(last: SnapshotRecord | None) -> str:
    number = int(last.data_version.lstrip("d")) + 1 if last else 1
    return f"d{number:04d}"


class DataWatcher:
    def __init__(self, warehouse: Warehouse, specs: SpecStore, drift: DriftFunction | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._warehouse = warehouse
        self._specs = specs
        self._drift = drift
        self._clock = clock
        # Versions are numbered from the pipeline's last snapshot: one look at a pipeline at a time per
        # process (and the Cloud Run service runs with max one instance, see deploy/). Different
        # pipelines are looked at side by side: each look is several warehouse round trips (about a
        # second each on BigQuery), so one lock for all would queue 50 pipelines' ticks for minutes.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _pipeline_lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def handle(self, tick: WatchTick, envelope: Envelope) -> list[DataReady | DataSkipped | StageFailed]:
        """One answer per pipeline looked at: `data.ready`, `data.skipped`, or (on a tick for every
        pipeline) `stage.failed` for a spec that does not fit its table. Output ids derive from the
        tick's id, so a redelivered tick re-announces the same snapshot, or the same decision when
        nothing changed in between (a skip has no effect to repeat, so it is judged again)."""
        if tick.reason == TickReason.HEARTBEAT:
            return []  # for work in flight elsewhere (the deployer's deploys), not a look at the data
        if tick.pipeline:
            answer = self._look(tick.pipeline, tick, envelope)
            return [answer] if answer is not None else []
        # A tick for every pipeline: looked at side by side, answered in the specs' order.
        names = self._specs.names()
        with ThreadPoolExecutor(max_workers=min(PIPELINES_AT_ONCE, max(1, len(names)))) as pool:
            answers = list(pool.map(lambda name: self._look(name, tick, envelope), names))
        return [answer for answer in answers if answer is not None]

    def _look(self, name: str, tick: WatchTick, envelope: Envelope) -> DataReady | DataSkipped | StageFailed | None:
        try:
            # Ticks are rare and a fix is applied just before one: never judge by a stale spec.
            spec = self._specs.get(name, fresh=True)
        except UnknownPipeline as error:
            log.warning("tick for an unknown pipeline", pipeline=name, error=str(error))
            return None
        try:
            with self._pipeline_lock(name):
                return self.watch(spec, tick.reason, source_event_id=f"{envelope.id}/{name}")
        except SpecDoesNotFitTable as error:
            if tick.pipeline:
                raise  # dead-lettered with the reason, and reported as stage.failed
            # A tick for every pipeline: one bad spec must not hold back the others, so its
            # failure is reported beside their snapshots instead of failing the whole tick.
            log.error("spec does not fit its table", pipeline=name, error=str(error))
            return StageFailed(stage=STAGE, input_event_id=envelope.id, input_event_type=envelope.type,
                               error_class=type(error).__name__, error_message=str(error)[:2000],
                               permanent=True, pipeline=name)

    def on_breach(self, breach: MonitoringBreached, envelope: Envelope) -> list[DataReady | DataSkipped]:
        """A monitoring check of the served model crossed its threshold and asks for a retrain
        (`trigger` drift or degradation): snapshot the source now, below the new-row thresholds,
        at most once per pipeline and window (the monitor repeats a breach on every tick of the
        window, and several features may drift at once: the first one in a window retrains)."""
        if breach.trigger is None:
            return []  # an alert only (quality, freshness, canary): nothing for the watcher to do
        try:
            spec = self._specs.get(breach.pipeline, fresh=True)
        except UnknownPipeline as error:
            log.warning("breach for an unknown pipeline", pipeline=breach.pipeline, error=str(error))
            return []
        with self._pipeline_lock(spec.name):
            # Keyed on the breach event as a tick is: a redelivery re-announces the same snapshot.
            return [self.watch(spec, TickReason.SCHEDULE, f"{envelope.id}/{spec.name}", breach=breach)]

    def watch(self, spec: PipelineSpec, reason: TickReason, source_event_id: str,
              breach: MonitoringBreached | None = None) -> DataReady | DataSkipped:
        done = self._warehouse.snapshot_for_event(source_event_id)
        if done is not None:  # a redelivered tick: announce the same snapshot again, make no new one
            log.info("tick already handled; re-announcing its snapshot", data_version=done.data_version)
            return self._announce(spec, done)
        columns = self._warehouse.table_columns(spec.source.table)
        if columns is None:
            nothing = RetrainDecision(None, f"table {spec.source.table} does not exist yet", skipped=SkipCause.NO_TABLE)
            return self._skip(spec, reason, nothing, SourceStatus(0, 0, None), None)
        # Before anything is written (late labels, snapshot, record): the rows stay new for the fixed spec.
        problems = spec_problems(spec, columns)
        if problems:
            raise SpecDoesNotFitTable(
                f"pipeline {spec.name} cannot train on table {spec.source.table}: {'; '.join(problems)}. "
                f"Fix the spec and apply it again (`mlops pipeline apply`); its rows wait, not snapshotted")
        absorbed = self.absorb_late_labels(spec)
        if absorbed:
            log.info("late labels joined into the source table", pipeline=spec.name, rows=absorbed)
        last = self._warehouse.last_snapshot(spec.name)
        status = self._warehouse.source_status(spec.source.table, last.watermark if last else None)
        drift_score = self._drift_score(spec, last, status)
        decision = decide(spec, status, last, reason, drift_score)
        if breach is not None:
            decision = decide_on_breach(spec, status, last, breach)
        if decision.trigger is None or status.watermark is None:  # (decide skips without a watermark)
            return self._skip(spec, reason, decision, status, last)
        data_version = next_data_version(last)
        # Named by the pipeline: pipelines sharing a source table each keep their own snapshots.
        snapshot_table = snapshot_table_id(spec.name, data_version)
        total = self._warehouse.create_snapshot(spec.source.table, snapshot_table, status.watermark)
        record = SnapshotRecord(
            pipeline=spec.name, data_version=data_version,
            snapshot_table=self._warehouse.qualified(snapshot_table, self._warehouse.snapshot_dataset),
            total_rows=total, new_rows=status.new_rows, watermark=status.watermark,
            trigger=decision.trigger, source_event_id=source_event_id, created_at=self._clock(),
            drift_score=decision.drift_score, spec_hash=spec.fingerprint,
        )
        self._warehouse.record_snapshot(record)
        log.info("snapshot taken", pipeline=spec.name, data_version=data_version, why=decision.why, rows=total)
        return self._announce(spec, record)

    def absorb_late_labels(self, spec: PipelineSpec) -> int:
        """Predictions whose true label arrived become source rows, so the next snapshot (training and
        the evaluator's held-out rows alike) learns from what the model saw in production."""
        labeled = self._warehouse.labeled_predictions(spec.name, spec.source.table, FEEDBACK_ROW_PREFIX)
        if not labeled:
            return 0
        types = dict(self._warehouse.table_columns(spec.source.table) or [])
        cast = _CASTS.get(types.get(spec.source.label, "STRING"), str)
        stamp = self._clock().isoformat()
        rows = []
        for item in labeled:
            features = json.loads(item["features"])
            rows.append({ROW_ID_COLUMN: FEEDBACK_ROW_PREFIX + item["request_id"], INGESTED_AT_COLUMN: stamp,
                         **{f: features.get(f) for f in spec.source.features},
                         spec.source.label: cast(item["label"])})
        self._warehouse.insert_rows(spec.source.table, rows)
        return len(rows)

    def _drift_score(self, spec: PipelineSpec, last: SnapshotRecord | None, status: SourceStatus) -> float | None:
        if self._drift is None or spec.retrain.drift_psi is None or last is None or status.new_rows == 0:
            return None
        numeric = spec.source.features
        reference = self._warehouse.read_rows(last.snapshot_table, numeric)
        current = self._warehouse.read_rows(spec.source.table, numeric, where_after=last.watermark)
        return self._drift(reference, current, numeric)

    def _skip(self, spec: PipelineSpec, reason: TickReason, decision: RetrainDecision, status: SourceStatus,
              last: SnapshotRecord | None) -> DataSkipped:
        log.info("nothing to train", pipeline=spec.name, why=decision.why, total_rows=status.total_rows,
                 new_rows=status.new_rows)
        return DataSkipped(
            pipeline=spec.name,
            source_table=self._warehouse.qualified(spec.source.table),
            reason=reason,
            cause=decision.skipped or SkipCause.NO_NEW_ROWS,
            why=decision.why,
            total_rows=status.total_rows,
            new_rows=status.new_rows,
            last_data_version=last.data_version if last else None,
            last_watermark=_rfc3339(last.watermark) if last else None,
            drift_score=decision.drift_score,
        )

    def _announce(self, spec: PipelineSpec, record: SnapshotRecord) -> DataReady:
        return DataReady(
            pipeline=spec.name,
            source_table=self._warehouse.qualified(spec.source.table),
            snapshot_table=record.snapshot_table,
            data_version=record.data_version,
            total_rows=record.total_rows,
            new_rows=record.new_rows,
            watermark=_rfc3339(record.watermark),
            trigger=record.trigger,
            drift_score=record.drift_score,
        )


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

"""monitor: on a tick, check each pipeline's serving against its training data and its labels.

Per pipeline and served version, over the last closed tumbling window of the spec's
`monitoring.window_minutes` (closed `SETTLE_S` ago, so predictions still on their way to the
warehouse are in): per-feature drift of the serving inputs from the version's training snapshot
(Jensen-Shannon for numeric features over the training deciles, L-infinity for categorical ones,
PSI beside both), score drift against the version's first window, data quality (missing, unseen,
out of range), realized performance of the gate's metric on predictions whose labels arrived, and
freshness. The counting is SQL on the warehouse (`monitor.figures`); the arithmetic `mlops.ml.drift`.

Each check is one row of `monitoring_checks` with a deterministic `check_id` (pipeline, version,
kind, feature, measure, window): a redelivered tick, or a later tick in the same window, writes
nothing twice. A breached check is announced as `monitoring.breached` by the tick that writes it,
and again only by a redelivery of that same tick (its rows carry the tick's time as `checked_at`),
so a publish that failed after the write loses nothing. The data-watcher retrains at most once per
pipeline and window.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from mlops.core.events import CheckKind, Envelope, MonitoringBreached, StageFailed, TickReason, Trigger, WatchTick
from mlops.core.events.envelope import parse_time
from mlops.core.spec import PipelineSpec
from mlops.core.topology import MONITORING_CHECKS_TABLE
from mlops.ml.drift import (
    SCORE_EDGES,
    DriftReference,
    build_reference,
    categorical_window,
    jensen_shannon,
    numeric_window,
    realized_metric,
)
from mlops.ml.metrics import higher_is_better
from mlops.ports.metrics import MetricsSink
from mlops.ports.registry import ModelRegistry, NotFoundError, VersionMeta
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.ports.warehouse import Row, Warehouse, WarehouseError
from monitor.figures import CategoricalValues, FeatureQuery, NumericBins, ServingFigures

STAGE = "monitor"
log = structlog.get_logger(STAGE)

# A prediction reaches the warehouse a second or two after it is served (the predictor's batch
# interval, then the inference-logger's insert): a window is judged only once it closed this long ago.
SETTLE_S = 15.0
_NUMERIC_TYPES = {"INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "INTEGER", "FLOAT"}


@dataclass(frozen=True)
class Check:
    pipeline: str
    version: str | None
    kind: CheckKind
    feature: str | None
    measure: str
    value: float
    threshold: float | None
    breached: bool
    window_start: datetime
    window_end: datetime
    rows: int
    checked_at: datetime
    trigger: Trigger | None = None  # the retrain a breach asks for

    @property
    def check_id(self) -> str:
        key = "|".join([self.pipeline, self.version or "", self.kind, self.feature or "", self.measure,
                        self.window_start.isoformat(), self.window_end.isoformat()])
        return "chk-" + hashlib.sha256(key.encode()).hexdigest()[:32]

    def row(self) -> Row:
        return {"checked_at": self.checked_at, "pipeline": self.pipeline, "version": self.version,
                "check_kind": str(self.kind), "feature": self.feature, "measure": self.measure,
                "value": float(self.value), "threshold": self.threshold, "breached": self.breached,
                "window_start": self.window_start, "window_end": self.window_end, "rows": self.rows,
                "check_id": self.check_id}

    def why(self) -> str:
        subject = f"{self.feature}: " if self.feature else ""
        of = f" of version {self.version}" if self.version else ""
        direction = "<" if self.kind == CheckKind.PERFORMANCE and self.measure != "max_drop" else ">"
        if self.kind == CheckKind.PERFORMANCE and self.threshold is not None and self.value > self.threshold:
            direction = ">"
        return (f"{subject}{self.measure} {self.value:.3f} {direction} {self.threshold} over {self.rows} "
                f"predictions{of} in [{_rfc3339(self.window_start)}, {_rfc3339(self.window_end)})")

    def event(self) -> MonitoringBreached:
        return MonitoringBreached(
            pipeline=self.pipeline, version=self.version, check_kind=self.kind, measure=self.measure,
            feature=self.feature, value=float(self.value), threshold=float(self.threshold or 0.0),
            window_start=_rfc3339(self.window_start), window_end=_rfc3339(self.window_end), rows=self.rows,
            check_id=self.check_id, trigger=self.trigger, why=self.why())


@dataclass(frozen=True)
class TrainingReference:
    """A version's training inputs, summarised once (snapshots never change)."""

    drift: DriftReference
    ranges: dict[str, tuple[float, float]]  # numeric feature -> (min, max) in training


def part_failed(metrics: MetricsSink, part: str, pipeline: str | None, envelope: Envelope,
                error: Exception) -> StageFailed:
    """A tick's part (the checks, or the canary judgement) that failed for one pipeline: logged with
    its traceback, counted as the push endpoint counts a failure, and reported as `stage.failed`.
    Permanent: the tick is acknowledged (the other part's events go out with it), so nothing retries
    this delivery; the pipeline's next tick looks again."""
    log.error("a part of the tick failed; the next tick looks again", part=part, pipeline=pipeline,
              error=repr(error)[:1000], exc_info=error)
    metrics.record("stage_failed", 1, {"service": STAGE, "event_type": envelope.type, "permanent": "true"})
    return StageFailed(stage=STAGE, input_event_id=envelope.id, input_event_type=envelope.type,
                       error_class=type(error).__name__,
                       error_message=f"{part} of {pipeline or 'every pipeline'} failed: {type(error).__name__}: "
                                     f"{error}"[:2000], permanent=True,
                       pipeline=pipeline)


def window_of(now: datetime, minutes: int, settle_s: float = SETTLE_S) -> tuple[datetime, datetime]:
    """The last tumbling window of `minutes` (aligned on the epoch) that closed `settle_s` before `now`."""
    size = minutes * 60
    closed = (now - timedelta(seconds=settle_s)).timestamp()
    end = datetime.fromtimestamp(closed - closed % size, UTC)
    return end - timedelta(seconds=size), end


class Monitor:
    def __init__(self, warehouse: Warehouse, figures: ServingFigures, specs: SpecStore, registry: ModelRegistry,
                 metrics: MetricsSink, settle_s: float = SETTLE_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._warehouse = warehouse
        self._figures = figures
        self._specs = specs
        self._registry = registry
        self._metrics = metrics
        self._settle_s = settle_s
        self._clock = clock
        self._references: dict[str, TrainingReference | None] = {}
        # One tick at a time: "which check ids are written" then "write the others" is one step.
        self._lock = threading.Lock()

    def handle(self, tick: WatchTick, envelope: Envelope) -> list[MonitoringBreached | StageFailed]:
        """The breached checks of each pipeline's current window, as events. The tick's own time is
        the clock, so a redelivered tick judges the same window.

        A heartbeat is ignored: it is sent every few seconds while the deployer has a deploy open,
        for every pipeline, and says nothing about the data; the checks are judged per window on
        the pipeline's own ticks (a window's checks are written once, so more ticks add only load).

        Each pipeline is checked on its own: one that fails (an unreadable table, a warehouse
        error) is reported as `stage.failed` beside the others' breaches instead of failing the
        tick, and its next tick looks again."""
        if tick.reason == TickReason.HEARTBEAT:
            return []
        now = parse_time(envelope.time)
        names = [tick.pipeline] if tick.pipeline else self._specs.names()
        out: list[MonitoringBreached | StageFailed] = []
        with self._lock:
            for name in names:
                try:
                    spec = self._specs.get(name)
                except UnknownPipeline:
                    log.warning("tick for an unknown pipeline", pipeline=name)
                    continue
                if not spec.monitoring.enabled:
                    continue
                try:
                    out.extend(check.event() for check in self.check(spec, now))
                except Exception as error:  # noqa: BLE001 - one pipeline's failure must not hold back the rest
                    out.append(part_failed(self._metrics, "monitoring checks", name, envelope, error))
        return out

    def check(self, spec: PipelineSpec, now: datetime) -> list[Check]:
        """Every check of the pipeline's last closed window, written once; returns the breached
        checks this tick is the one to announce."""
        monitoring = spec.monitoring
        start, end = window_of(now, monitoring.window_minutes, self._settle_s)
        checks = self._freshness(spec, now, start, end)
        spans = {row["model_version"]: row for row in self._figures.served_span(spec.name)}
        served = [v for v, span in spans.items() if span["last_at"] >= start and span["first_at"] < end]
        for version in sorted(served):
            reference = self._reference(spec, version)
            if reference is not None:
                counts = self._figures.feature_counts(spec.name, start, end, _feature_queries(reference), version)
                checks += self._input_checks(spec, version, reference, counts, start, end, now)
            checks += self._score_checks(spec, version, spans[version]["first_at"], start, end, now)
        checks += self._performance_checks(spec, start, end, now)
        return self._record(checks, now)

    # ------------------------------------------------------------------------------------- checks

    def _freshness(self, spec: PipelineSpec, now: datetime, start: datetime, end: datetime) -> list[Check]:
        limit = spec.monitoring.freshness.max_hours_without_data
        if limit is None:
            return []
        spans = self._figures.served_span(spec.name)
        if not spans:
            return []  # nothing served yet: no deployment to be silent
        last = max(row["last_at"] for row in spans)
        hours = max(0.0, (end - last).total_seconds() / 3600)
        return [Check(spec.name, None, CheckKind.FRESHNESS, None, "hours_without_data", hours, limit,
                      hours > limit, start, end, 0, now)]

    def _input_checks(self, spec: PipelineSpec, version: str, reference: TrainingReference, rows: list[Row],
                      start: datetime, end: datetime, now: datetime) -> list[Check]:
        monitoring = spec.monitoring
        drift, quality = monitoring.drift, monitoring.quality
        checks: list[Check] = []
        windows = []
        for feature, numeric in reference.drift.numeric.items():
            mine = [r for r in rows if r["feature"] == feature]
            bins = [0] * (len(numeric.inner_edges) + 1)
            missing = outside = 0
            for r in mine:
                if r["bucket"] is None:
                    missing += int(r["n"])
                else:
                    bins[int(r["bucket"])] += int(r["n"])
                    outside += int(r["out_of_range"] or 0)
            windows.append(numeric_window(feature, numeric, bins, missing, outside))
        for feature, categorical in reference.drift.categorical.items():
            mine = [r for r in rows if r["feature"] == feature]
            counts = {str(r["bucket"]): int(r["n"]) for r in mine if r["bucket"] is not None}
            missing = sum(int(r["n"]) for r in mine if r["bucket"] is None)
            windows.append(categorical_window(feature, categorical, counts, missing))
        for w in windows:
            if w.rows < monitoring.min_rows:
                continue
            retrain = Trigger.DRIFT if drift.retrain else None

            def add(kind: CheckKind, measure: str, value: float, threshold: float | None,
                    trigger: Trigger | None = None, w: object = w) -> None:
                breached = threshold is not None and value > threshold
                checks.append(Check(spec.name, version, kind, w.feature, measure, value, threshold,  # type: ignore[attr-defined]
                                    breached, start, end, w.rows, now, trigger if breached else None))  # type: ignore[attr-defined]

            add(CheckKind.DRIFT, w.measure, w.distance,
                drift.js_threshold if w.kind == "numeric" else drift.linf_threshold, retrain)
            add(CheckKind.DRIFT, "psi", w.psi, drift.psi_threshold, retrain)
            add(CheckKind.QUALITY, "missing_rate", w.missing_rate, quality.max_missing_rate)
            if w.unseen_rate is not None:
                add(CheckKind.QUALITY, "unseen_rate", w.unseen_rate, quality.max_unseen_rate)
            if w.out_of_range_rate is not None:
                add(CheckKind.QUALITY, "out_of_range_rate", w.out_of_range_rate, quality.max_out_of_range_rate)
        return checks

    def _score_checks(self, spec: PipelineSpec, version: str, first: datetime, start: datetime, end: datetime,
                      now: datetime) -> list[Check]:
        """Scores against the version's own first window: no training scores are stored, and a
        version's first hour of serving is what it was promoted on."""
        threshold = spec.monitoring.drift.score_js_threshold
        window = end - start
        if threshold is None or first >= start:  # the first window is the baseline itself
            return []
        baseline = self._figures.score_counts(spec.name, first, first + window, SCORE_EDGES, version=version)
        current = self._figures.score_counts(spec.name, start, end, SCORE_EDGES, version=version)
        base, now_bins = _bins(baseline, len(SCORE_EDGES) + 1), _bins(current, len(SCORE_EDGES) + 1)
        rows = sum(now_bins)
        if rows < spec.monitoring.min_rows or sum(base) < spec.monitoring.min_rows:
            return []
        value = jensen_shannon(base, now_bins)
        breached = value > threshold
        return [Check(spec.name, version, CheckKind.SCORE_DRIFT, None, "js", value, threshold, breached, start, end,
                      rows, now, Trigger.DRIFT if breached and spec.monitoring.drift.retrain else None)]

    def _performance_checks(self, spec: PipelineSpec, start: datetime, end: datetime, now: datetime) -> list[Check]:
        performance = spec.monitoring.performance
        if performance.min_metric is None and performance.max_drop is None:
            return []
        metric = spec.promotion.metric
        lookback_start = end - timedelta(minutes=performance.lookback_minutes)
        labelled: dict[str, list[Row]] = defaultdict(list)
        for row in self._figures.labelled(spec.name, lookback_start, end):
            labelled[row["model_version"]].append(row)
        checks: list[Check] = []
        higher = higher_is_better(metric)
        for version, rows in sorted(labelled.items()):
            if len(rows) < performance.min_labels:
                continue
            predicted = [r["predicted_label"] if r["predicted_label"] is not None else r["predicted_value"]
                         for r in rows]
            value = realized_metric(metric, [r["label"] for r in rows], predicted, [r["score"] for r in rows])
            if value is None:
                continue
            self._metrics.record("realized_metric", value, {"pipeline": spec.name, "version": version, "metric": metric})
            trigger = Trigger.DEGRADATION if performance.retrain else None
            if performance.min_metric is not None:
                worse = value < performance.min_metric if higher else value > performance.min_metric
                checks.append(Check(spec.name, version, CheckKind.PERFORMANCE, None, metric, value,
                                    performance.min_metric, worse, lookback_start, end, len(rows), now,
                                    trigger if worse else None))
            evaluated = self._evaluated_metric(spec, version, metric)
            if performance.max_drop is not None and evaluated is not None:
                drop = evaluated - value if higher else value - evaluated
                worse = drop > performance.max_drop
                checks.append(Check(spec.name, version, CheckKind.PERFORMANCE, None, f"{metric}_drop", drop,
                                    performance.max_drop, worse, lookback_start, end, len(rows), now,
                                    trigger if worse else None))
        return checks

    # ---------------------------------------------------------------------------------- the record

    def _record(self, checks: Sequence[Check], now: datetime) -> list[Check]:
        """Writes the checks not written yet; returns the breached ones to announce: those written
        now, and those a previous delivery of this same tick wrote (same time) and may not have
        announced (its publish failed after the write)."""
        if not checks:
            return []
        written = self._figures.written_checks([c.check_id for c in checks])
        new = [c for c in checks if c.check_id not in written]
        if new:
            self._warehouse.insert_rows(MONITORING_CHECKS_TABLE, [c.row() for c in new],
                                        row_ids=[c.check_id for c in new])
        for c in new:
            self._metrics.record("monitoring_value", c.value,
                                 {"pipeline": c.pipeline, "check_kind": str(c.kind), "measure": c.measure})
            if c.breached:
                self._metrics.record("monitoring_breach", 1.0, {"pipeline": c.pipeline, "check_kind": str(c.kind)})
                log.warning("monitoring check breached", pipeline=c.pipeline, version=c.version, why=c.why())
        if new:
            log.info("monitoring checks written", pipeline=new[0].pipeline, checks=len(new),
                     breached=sum(c.breached for c in new))
        return [c for c in checks if c.breached and (c.check_id not in written or written[c.check_id] == now)]

    # ------------------------------------------------------------------------------- references

    def _version_meta(self, spec: PipelineSpec, version: str) -> VersionMeta | None:
        try:
            return VersionMeta.of(self._registry.get_version(spec.model_id, version))
        except NotFoundError:
            log.warning("served version unknown to the registry", pipeline=spec.name, version=version)
            return None

    def _evaluated_metric(self, spec: PipelineSpec, version: str, metric: str) -> float | None:
        meta = self._version_meta(spec, version)
        return meta.metrics.get(metric) if meta is not None else None

    def _reference(self, spec: PipelineSpec, version: str) -> TrainingReference | None:
        """The version's training snapshot (its registry lineage), summarised as the trainer's drift
        reference is: deciles of numeric features, shares of categories, plus each numeric range."""
        meta = self._version_meta(spec, version)
        table = meta.lineage.get("snapshot_table") if meta is not None else None
        if not table:
            return None
        if table in self._references:
            return self._references[table]
        try:
            types = dict(self._warehouse.table_columns(table) or [])
            features = [f for f in spec.source.features if f in types]
            rows = self._warehouse.read_rows(table, features)
        except WarehouseError as error:
            log.warning("training snapshot unreadable", pipeline=spec.name, table=table, error=str(error))
            self._references[table] = None
            return None
        numeric = [f for f in features if types[f].upper() in _NUMERIC_TYPES]
        categorical = [f for f in features if f not in numeric]
        ranges = {}
        for f in numeric:
            values = [float(r[f]) for r in rows if r.get(f) is not None]
            if values:
                ranges[f] = (min(values), max(values))
        reference = TrainingReference(build_reference(rows, numeric, categorical), ranges)
        self._references[table] = reference
        return reference

def _feature_queries(reference: TrainingReference) -> list[FeatureQuery]:
    queries: list[FeatureQuery] = []
    for feature, numeric in reference.drift.numeric.items():
        low, high = reference.ranges.get(feature, (None, None))
        queries.append(NumericBins(feature, numeric.inner_edges, low, high))
    queries.extend(CategoricalValues(feature) for feature in reference.drift.categorical)
    return queries


def _bins(rows: Sequence[Row], size: int) -> list[int]:
    counts = [0] * size
    for row in rows:
        counts[int(row["bucket"])] += int(row["n"])
    return counts


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

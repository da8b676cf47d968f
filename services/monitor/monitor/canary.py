"""The canary judge: once a canary has served its window, promote it to all the traffic or roll it back.

A canary is what the deployer makes of a new champion when the spec says `deployment.canary_percent`
> 0: the new version (holding the `champion` alias) serves that share of the endpoint's traffic and
the previous champion the rest. On every tick, for each pipeline whose endpoint serves such a pair
(read through the endpoint port, versions through the registry port), the judge compares the two on
what they served side by side since the canary's first prediction, from the `predictions` table
(and `labels`, joined on the request id):

- error rate: rows logged without a prediction (no label and no value, or a classifier's row without
  a score). The predictor logs a request its model failed on (its 500s) as such rows; a request it
  refused (4xx: the caller's mistake, not the version's) leaves no row;
- latency p95 (APPROX_QUANTILES), compared as a ratio when the canary's is above a floor;
- the score distribution (a classifier's score, else the predicted value): Jensen-Shannon divergence,
  base 2, over ten equal-width bins spanning both versions' values;
- the gate's metric (`promotion.metric`) on the predictions whose labels have arrived, per version,
  once each has `min_labelled` of them.

The window (`deployment.canary_window`) must have passed first: enough canary predictions, minutes
and, if asked, labels. Any threshold crossed (`deployment.canary_thresholds`) rolls the canary back;
the reason names each crossed signal with both versions' values. Otherwise it is promoted.

Judged once per canary, across redeliveries and repeated ticks: the signals are written to the
`monitoring_checks` table (check_kind `canary`, one row per measure, deterministic check ids) before
the verdict is returned, and the canary version is labelled with the verdict and the tick that made
it. A later tick finds the label and judges nothing (the deployer acts on the first verdict); a
redelivery of the judging tick (its publish may have failed) rebuilds the same verdict from the rows;
a tick that finds rows but no label (a crash in between) announces the recorded verdict itself.
Signals are read with SQL (BigQuery's, through `SqlReader`): identifiers quoted by `mlops.core.sql`,
values as parameters. The monitor runs as one instance; within it, one pipeline is judged at a time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import structlog

from mlops.core.events import CanaryJudged, CanaryOutcome, Envelope, StageFailed, WatchTick
from mlops.core.events.envelope import parse_time
from mlops.core.spec import CanaryThresholdsSpec, CanaryWindowSpec, PipelineSpec
from mlops.core.sql import quote_qualified
from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE
from mlops.ml.metrics import classification_metrics, gain, higher_is_better, regression_metrics
from mlops.ports.metrics import MetricsSink
from mlops.ports.registry import DeployedModel, ModelEndpoint, ModelRegistry, NotFoundError, label_value
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.ports.warehouse import Row, SqlReader, SqlWarehouse
from monitor.handler import part_failed

log = structlog.get_logger("monitor.canary")

CHAMPION = "champion"  # the alias the registrar gives each promoted version
CHECK_KIND = "canary"
# Registry labels on the canary version: the verdict, and the tick that made it (the judge's record).
VERDICT_LABEL, TICK_LABEL = "canary_verdict", "canary_tick"
SCORE_BINS = 10
MAX_LABELLED_ROWS = 50_000  # per judgement: a bounded read, however long the canary served
METRIC_OUTCOMES = {CanaryOutcome.PROMOTE: "promoted", CanaryOutcome.ROLLBACK: "rolled_back"}


# ----------------------------------------------------------------------------------------- signals

@dataclass(frozen=True)
class VersionSignals:
    """What one version served in the window."""

    count: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None
    labelled: int = 0
    metric: float | None = None  # the gate metric on its labelled predictions (None: too few, or undefined)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0


@dataclass(frozen=True)
class CanarySignals:
    window_start: datetime | None  # the canary's first prediction; None: it has served nothing yet
    window_end: datetime
    canary: VersionSignals
    champion: VersionSignals
    score_js: float | None = None  # None when either version has no scores in the window

    def as_map(self, metric: str) -> dict[str, float]:
        """The signals as `canary.judged` carries them (and the monitoring_checks rows hold them)."""
        out: dict[str, float] = {}
        for who, s in (("canary", self.canary), ("champion", self.champion)):
            out[f"{who}_count"] = float(s.count)
            out[f"{who}_error_rate"] = s.error_rate
            out[f"{who}_labelled"] = float(s.labelled)
            if s.latency_p95_ms is not None:
                out[f"{who}_latency_p95_ms"] = s.latency_p95_ms
            if s.metric is not None:
                out[f"{who}_{metric}"] = s.metric
        if self.score_js is not None:
            out["score_js"] = self.score_js
        # What the thresholds are compared with (the monitoring_checks rows that can be breached).
        out["error_rate_increase"] = self.canary.error_rate - self.champion.error_rate
        if self.canary.latency_p95_ms is not None and self.champion.latency_p95_ms:
            out["latency_ratio"] = self.canary.latency_p95_ms / self.champion.latency_p95_ms
        if self.canary.metric is not None and self.champion.metric is not None:
            out["metric_drop"] = -gain(metric, self.canary.metric, self.champion.metric)
        return out

    @classmethod
    def from_map(cls, values: Mapping[str, float], metric: str, window_start: datetime,
                 window_end: datetime) -> CanarySignals:
        def version(who: str) -> VersionSignals:
            count = int(values.get(f"{who}_count", 0))
            return VersionSignals(count=count, errors=round(values.get(f"{who}_error_rate", 0.0) * count),
                                  latency_p95_ms=values.get(f"{who}_latency_p95_ms"),
                                  labelled=int(values.get(f"{who}_labelled", 0)), metric=values.get(f"{who}_{metric}"))

        return cls(window_start, window_end, version("canary"), version("champion"), values.get("score_js"))


class SignalReader(Protocol):
    def __call__(self, spec: PipelineSpec, canary: str, champion: str, window_end: datetime) -> CanarySignals: ...


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence, base 2 (0 = same distribution, 1 = disjoint), of two histograms."""
    p_total, q_total = float(sum(p)), float(sum(q))
    if p_total <= 0 or q_total <= 0:
        raise ValueError("an empty histogram has no distribution")
    ps = [x / p_total for x in p]
    qs = [x / q_total for x in q]
    ms = [(a + b) / 2 for a, b in zip(ps, qs, strict=True)]

    def kl(xs: list[float]) -> float:
        return sum(x * math.log2(x / m) for x, m in zip(xs, ms, strict=True) if x > 0)

    return max(0.0, min(1.0, (kl(ps) + kl(qs)) / 2))


class SqlSignals:
    """The signals of a canary and its champion, read from `predictions` and `labels` with SQL."""

    def __init__(self, warehouse: SqlReader):
        self._warehouse = warehouse

    def _table(self, name: str) -> str:
        return quote_qualified(self._warehouse.qualified(name))

    def __call__(self, spec: PipelineSpec, canary: str, champion: str, window_end: datetime) -> CanarySignals:
        predictions = self._table(PREDICTIONS_TABLE)
        base = {"pipeline": spec.name, "canary": canary, "champion": champion, "window_end": window_end}
        [first] = self._warehouse.query(
            f"SELECT MIN(predicted_at) AS first_at FROM {predictions} "
            "WHERE pipeline = @pipeline AND model_version = @canary AND predicted_at <= @window_end", base)
        start = _aware(first["first_at"])
        if start is None:
            return CanarySignals(None, window_end, VersionSignals(), VersionSignals())
        params = {**base, "window_start": start}
        in_window = ("pipeline = @pipeline AND model_version IN (@canary, @champion) "
                     "AND predicted_at >= @window_start AND predicted_at <= @window_end")
        value = "COALESCE(score, predicted_value)"
        stats = {row["model_version"]: row for row in self._warehouse.query(
            f"SELECT model_version, COUNT(*) AS n, "
            f"COUNTIF((predicted_label IS NULL AND predicted_value IS NULL) "
            f"OR (predicted_label IS NOT NULL AND score IS NULL)) AS errors, "
            f"APPROX_QUANTILES(latency_ms, 100)[OFFSET(95)] AS latency_p95_ms, "
            f"MIN({value}) AS low, MAX({value}) AS high "
            f"FROM {predictions} WHERE {in_window} GROUP BY model_version", params)}
        score_js = self._score_js(predictions, in_window, value, params, stats, canary, champion)
        metrics, labelled = self._realized(spec, predictions, in_window, params)
        enough = spec.deployment.canary_thresholds.min_labelled

        def version(v: str) -> VersionSignals:
            row = stats.get(v) or {}
            p95 = row.get("latency_p95_ms")
            return VersionSignals(count=int(row.get("n") or 0), errors=int(row.get("errors") or 0),
                                  latency_p95_ms=float(p95) if p95 is not None else None,
                                  labelled=labelled.get(v, 0),
                                  metric=metrics.get(v) if labelled.get(v, 0) >= enough else None)

        return CanarySignals(start, window_end, version(canary), version(champion), score_js)

    def _score_js(self, predictions: str, in_window: str, value: str, params: dict[str, Any],
                  stats: dict[str, Row], canary: str, champion: str) -> float | None:
        lows = [float(r["low"]) for r in stats.values() if r.get("low") is not None]
        highs = [float(r["high"]) for r in stats.values() if r.get("high") is not None]
        if canary not in stats or champion not in stats or len(lows) < 2:
            return None
        low, high = min(lows), max(highs)
        width = (high - low) / SCORE_BINS or 1.0  # every value equal: one bin, no shift
        rows = self._warehouse.query(
            f"SELECT model_version, LEAST(GREATEST(CAST(FLOOR(({value} - @low) / @width) AS INT64), 0), "
            f"@last_bin) AS bin, COUNT(*) AS n FROM {predictions} "
            f"WHERE {in_window} AND {value} IS NOT NULL GROUP BY model_version, bin",
            {**params, "low": low, "width": width, "last_bin": SCORE_BINS - 1})
        histograms = {canary: [0.0] * SCORE_BINS, champion: [0.0] * SCORE_BINS}
        for row in rows:
            histograms[row["model_version"]][int(row["bin"])] += float(row["n"])
        try:
            return js_divergence(histograms[canary], histograms[champion])
        except ValueError:
            return None

    def _realized(self, spec: PipelineSpec, predictions: str, in_window: str,
                  params: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
        """The gate metric per version on its predictions whose labels arrived (the latest label of a
        request counts), and how many there were."""
        rows = self._warehouse.query(
            f"SELECT p.model_version, p.request_id, p.predicted_value, p.score, l.label, l.labeled_at "
            f"FROM {predictions} AS p JOIN {self._table(LABELS_TABLE)} AS l "
            f"ON l.pipeline = p.pipeline AND l.request_id = p.request_id "
            f"WHERE {' AND '.join('p.' + term for term in in_window.split(' AND '))} "
            # A request the model failed on has no answer to score: the error rate counts it.
            f"AND (p.predicted_label IS NOT NULL OR p.predicted_value IS NOT NULL) "
            f"ORDER BY l.labeled_at LIMIT @max_rows", {**params, "max_rows": MAX_LABELLED_ROWS})
        latest: dict[tuple[str, str], Row] = {}
        for row in rows:
            latest[(row["model_version"], row["request_id"])] = row
        by_version: dict[str, list[Row]] = {}
        for (version, _), row in latest.items():
            by_version.setdefault(version, []).append(row)
        metrics = {}
        for version, labelled in by_version.items():
            value = realized_metric(spec, labelled)
            if value is not None:
                metrics[version] = value
        return metrics, {v: len(r) for v, r in by_version.items()}


def realized_metric(spec: PipelineSpec, rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The gate metric of served predictions against their labels (None where it is undefined: one
    class only, an unparseable label, a multiclass model whose logged score is the winner's only)."""
    metric = spec.promotion.metric
    try:
        if not spec.model.is_classifier:
            truth = [float(r["label"]) for r in rows]
            predicted = [float(r["predicted_value"]) for r in rows if r.get("predicted_value") is not None]
            return regression_metrics(truth, predicted).get(metric) if len(predicted) == len(truth) else None
        # A binary classifier logs its positive class's probability as the score; the positive class
        # is the larger label, as in training (`mlops.ml.metrics`).
        classes = sorted({_label(r["label"]) for r in rows})
        scores = [r.get("score") for r in rows]
        if len(classes) != 2 or any(s is None for s in scores):
            return None
        probabilities = np.array([[1.0 - float(s), float(s)] for s in scores if s is not None])
        return classification_metrics([_label(r["label"]) for r in rows], probabilities, classes).get(metric)
    except (TypeError, ValueError):
        return None


def _label(text: Any) -> Any:
    """A label as stored (a string) back to a number where it is one, so "1" and "1.0" are one class."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return str(text)
    return int(number) if number.is_integer() else number


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------ verdict

def waiting_for(signals: CanarySignals, window: CanaryWindowSpec) -> str | None:
    """What the canary's window still lacks, or None when it can be judged."""
    if signals.window_start is None:
        return "the canary has served no prediction yet"
    if signals.canary.count < window.min_predictions:
        return f"{signals.canary.count} of {window.min_predictions} canary predictions"
    minutes = (signals.window_end - signals.window_start).total_seconds() / 60
    if minutes < window.min_minutes:
        return f"{minutes:.1f} of {window.min_minutes:g} minutes since the canary's first prediction"
    fewest = min(signals.canary.labelled, signals.champion.labelled)
    if fewest < window.min_labels:
        return f"{fewest} of {window.min_labels} labelled predictions per version"
    return None


def judge(signals: CanarySignals, thresholds: CanaryThresholdsSpec, metric: str, canary: str,
          champion: str) -> tuple[CanaryOutcome, str]:
    """Promote unless a threshold is crossed; the reason names every signal that decided, with values."""
    c, b = signals.canary, signals.champion
    breaches = []
    increase = c.error_rate - b.error_rate
    if increase > thresholds.max_error_rate_increase:
        breaches.append(f"error rate {c.error_rate:.2%} (canary {canary}, {c.errors} of {c.count}) vs "
                        f"{b.error_rate:.2%} (champion {champion}, {b.errors} of {b.count}): up "
                        f"{increase:.2%} > {thresholds.max_error_rate_increase:.2%}")
    if c.latency_p95_ms is not None and b.latency_p95_ms is not None and c.latency_p95_ms > thresholds.min_latency_ms:
        ratio = c.latency_p95_ms / max(b.latency_p95_ms, 1e-9)
        if ratio > thresholds.max_latency_ratio:
            breaches.append(f"latency p95 {c.latency_p95_ms:.1f} ms (canary {canary}) vs {b.latency_p95_ms:.1f} ms "
                            f"(champion {champion}): {ratio:.2f}x > {thresholds.max_latency_ratio:g}x")
    if signals.score_js is not None and signals.score_js > thresholds.max_score_shift:
        breaches.append(f"score distribution shifted: Jensen-Shannon {signals.score_js:.3f} between canary {canary} "
                        f"and champion {champion} > {thresholds.max_score_shift:g}")
    metric_note = f"{metric} not compared (labelled predictions: canary {c.labelled}, champion {b.labelled})"
    if c.metric is not None and b.metric is not None:
        drop = -gain(metric, c.metric, b.metric)
        direction = "fell" if drop > 0 else "held"
        metric_note = (f"{metric} on labelled predictions {direction}: {c.metric:.4f} (canary {canary}, {c.labelled} "
                       f"labels) vs {b.metric:.4f} (champion {champion}, {b.labelled} labels)")
        if drop > thresholds.max_metric_drop:
            breaches.append(f"{metric_note}: a drop of {drop:.4f} > {thresholds.max_metric_drop:g}"
                            + ("" if higher_is_better(metric) else " (lower is better)"))
    if breaches:
        return CanaryOutcome.ROLLBACK, "; ".join(breaches)
    js = f"score Jensen-Shannon {signals.score_js:.3f}" if signals.score_js is not None else "no scores compared"
    p95 = (f"p95 {c.latency_p95_ms:.1f} vs {b.latency_p95_ms:.1f} ms"
           if c.latency_p95_ms is not None and b.latency_p95_ms is not None else "no latency compared")
    return CanaryOutcome.PROMOTE, (
        f"within every threshold over {c.count} canary and {b.count} champion predictions: error rate "
        f"{c.error_rate:.2%} vs {b.error_rate:.2%}, {p95}, {js}, {metric_note}")


# ------------------------------------------------------------------------------------------- judge

@dataclass(frozen=True)
class Canary:
    endpoint: str
    canary: DeployedModel
    champion: DeployedModel


class CanaryJudge:
    def __init__(self, warehouse: SqlWarehouse, specs: SpecStore, registry: ModelRegistry, endpoints: ModelEndpoint,
                 metrics: MetricsSink, *, signals: SignalReader | None = None,
                 record: Callable[[Sequence[Row]], None] | None = None,
                 recorded: Callable[[str, str], list[Row]] | None = None):
        """`signals`, `record` and `recorded` default to SQL on `warehouse` (the `predictions`, `labels`
        and `monitoring_checks` tables); unit tests give in-memory ones."""
        self._warehouse = warehouse
        self._specs = specs
        self._registry = registry
        self._endpoints = endpoints
        self._metrics = metrics
        self._signals = signals or SqlSignals(warehouse)
        self._record = record or self._insert_checks
        self._recorded = recorded or self._select_checks
        self._lock = threading.Lock()

    def handle(self, tick: WatchTick, envelope: Envelope) -> list[CanaryJudged | StageFailed]:
        """The verdict on each pipeline's canary whose window has passed. Heartbeats judge too: in the
        cloud one comes every minute whatever the pipelines' schedules, so a canary is judged within
        a minute of its window closing even on a pipeline that ticks rarely; a pipeline without a
        canary pair costs one look at its endpoint, and a judged canary is not judged again.

        Each pipeline is judged on its own: one whose judgement fails is reported as `stage.failed`
        beside the others' verdicts and judged again on a later tick (nothing was labelled)."""
        names = [tick.pipeline] if tick.pipeline else self._specs.names()
        judged: list[CanaryJudged | StageFailed] = []
        for name in names:
            try:
                spec = self._specs.get(name)
            except UnknownPipeline:
                continue  # the data-watcher answers a tick for a pipeline that does not exist
            try:
                with self._lock:
                    verdict = self._judge(spec, envelope)
            except Exception as error:  # noqa: BLE001 - one pipeline's failure must not hold back the rest
                judged.append(part_failed(self._metrics, "canary judgement", name, envelope, error))
                continue
            if verdict is not None:
                judged.append(verdict)
        return judged

    def find_canary(self, spec: PipelineSpec) -> Canary | None:
        """The new champion at its canary share beside the previous one at the rest, if the endpoint
        serves such a pair."""
        if spec.deployment.canary_percent <= 0:
            return None
        try:
            endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        except NotFoundError:
            return None
        live = [d for d in self._endpoints.deployments(endpoint) if 0 < d.traffic_percent < 100]
        if len(live) != 2:
            return None
        try:
            crowned = self._registry.get_version(spec.model_id, CHAMPION).version_id
        except NotFoundError:
            crowned = None
        # The canary holds the champion alias (the registrar moved it); without it, the newer version.
        ordered = sorted(live, key=lambda d: (d.version_id == crowned, _version_number(d.version_id)))
        champion, canary = ordered
        return Canary(endpoint, canary, champion)

    def _judge(self, spec: PipelineSpec, envelope: Envelope) -> CanaryJudged | None:
        found = self.find_canary(spec)
        if found is None:
            return None
        canary, champion = found.canary.version_id, found.champion.version_id
        labels = self._registry.get_version(spec.model_id, canary).labels
        judged_by = labels.get(TICK_LABEL)
        if judged_by and judged_by != label_value(envelope.id):
            log.info("canary already judged by another tick; the deployer acts on it", pipeline=spec.name,
                     canary=canary, verdict=labels.get(VERDICT_LABEL), tick=judged_by)
            return None
        metric = spec.promotion.metric
        prefix = f"canary:{spec.name}:{canary}-vs-{champion}:"
        rows = self._recorded(spec.name, prefix)
        if rows:
            signals = self._from_rows(rows, metric)
            fresh = False
        else:
            signals = self._signals(spec, canary, champion, parse_time(envelope.time))
            waiting = waiting_for(signals, spec.deployment.canary_window)
            if waiting is not None:
                log.info("canary window not passed yet", pipeline=spec.name, canary=canary, waiting_for=waiting)
                return None
            fresh = True
        outcome, reason = judge(signals, spec.deployment.canary_thresholds, metric, canary, champion)
        values = signals.as_map(metric)
        if fresh:
            self._record(self._rows(spec, canary, champion, signals, values, prefix))
        self._registry.set_labels(spec.model_id, canary, {VERDICT_LABEL: outcome.value, TICK_LABEL: envelope.id})
        if fresh:
            self._metrics.record("canary_judged", 1, {"pipeline": spec.name, "outcome": METRIC_OUTCOMES[outcome]})
        assert signals.window_start is not None  # a judged window has a start
        log.info("canary judged", pipeline=spec.name, canary=canary, champion=champion, outcome=outcome, reason=reason)
        return CanaryJudged(
            pipeline=spec.name, endpoint=found.endpoint, canary_version=canary, champion_version=champion,
            outcome=outcome, reason=reason, signals=values, window_start=_rfc3339(signals.window_start),
            window_end=_rfc3339(signals.window_end))

    # The record: one monitoring_checks row per signal, keyed on the pair judged.

    @staticmethod
    def _rows(spec: PipelineSpec, canary: str, champion: str, signals: CanarySignals, values: dict[str, float],
              prefix: str) -> list[Row]:
        t = spec.deployment.canary_thresholds
        thresholds = {"error_rate_increase": t.max_error_rate_increase, "latency_ratio": t.max_latency_ratio,
                      "score_js": t.max_score_shift, "metric_drop": t.max_metric_drop}
        c, b = signals.canary, signals.champion
        breached = {
            "error_rate_increase": values["error_rate_increase"] > t.max_error_rate_increase,
            "latency_ratio": values.get("latency_ratio", 0.0) > t.max_latency_ratio
                             and (c.latency_p95_ms or 0.0) > t.min_latency_ms,
            "score_js": values.get("score_js", 0.0) > t.max_score_shift,
            "metric_drop": values.get("metric_drop", 0.0) > t.max_metric_drop,
        }
        assert signals.window_start is not None
        return [{
            "checked_at": signals.window_end, "pipeline": spec.name,
            "version": champion if name.startswith("champion_") else canary,
            "check_kind": CHECK_KIND, "feature": None, "measure": name, "value": float(value),
            "threshold": thresholds.get(name), "breached": breached.get(name, False),
            "window_start": signals.window_start, "window_end": signals.window_end,
            "rows": b.count if name.startswith("champion_") else c.count, "check_id": prefix + name,
        } for name, value in values.items()]

    @staticmethod
    def _from_rows(rows: Sequence[Row], metric: str) -> CanarySignals:
        values = {str(r["measure"]): float(r["value"]) for r in rows}
        start, end = _aware(rows[0]["window_start"]), _aware(rows[0]["window_end"])
        assert start is not None and end is not None  # REQUIRED columns
        return CanarySignals.from_map(values, metric, start, end)

    def _insert_checks(self, rows: Sequence[Row]) -> None:
        self._warehouse.insert_rows(MONITORING_CHECKS_TABLE, rows)

    def _select_checks(self, pipeline: str, prefix: str) -> list[Row]:
        return self._warehouse.query(
            f"SELECT measure, value, window_start, window_end FROM "
            f"{quote_qualified(self._warehouse.qualified(MONITORING_CHECKS_TABLE))} "
            "WHERE pipeline = @pipeline AND check_kind = @kind AND STARTS_WITH(check_id, @prefix)",
            {"pipeline": pipeline, "kind": CHECK_KIND, "prefix": prefix})


def _version_number(version_id: str) -> int:
    return int(version_id) if version_id.isdigit() else -1


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

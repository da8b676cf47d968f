"""The canary judge: when a canary's window has passed it is promoted or rolled back, with a reason
naming the signal and its values, and it is judged once across redeliveries and repeated ticks."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from mlops.core.events import CanaryOutcome, StageFailed, WatchTick
from mlops.core.spec import CanaryThresholdsSpec, CanaryWindowSpec, PipelineSpec
from mlops.testing.memory import InMemoryMetrics, InMemoryModelEndpoint, InMemoryModelRegistry
from monitor.canary import (
    TICK_LABEL,
    VERDICT_LABEL,
    CanaryJudge,
    CanarySignals,
    VersionSignals,
    js_divergence,
    judge,
    realized_metric,
    waiting_for,
)

from .conftest import T0, envelope_for, make_spec

MODEL = "breast-cancer"
THRESHOLDS = CanaryThresholdsSpec()

GOOD = CanarySignals(
    window_start=T0, window_end=T0 + timedelta(minutes=30),
    canary=VersionSignals(count=200, errors=0, latency_p95_ms=3.0, labelled=50, metric=0.93),
    champion=VersionSignals(count=800, errors=0, latency_p95_ms=2.5, labelled=200, metric=0.94),
    score_js=0.02,
)


def with_canary(signals: CanarySignals, **changes: object) -> CanarySignals:
    return replace(signals, canary=replace(signals.canary, **changes))


# ------------------------------------------------------------------------------------------ verdict

def test_js_divergence_is_zero_for_equal_and_one_for_disjoint_histograms():
    assert js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert js_divergence([5, 0], [0, 7]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        js_divergence([0, 0], [1, 1])


def test_a_canary_within_every_threshold_is_promoted_with_the_figures():
    outcome, reason = judge(GOOD, THRESHOLDS, "roc_auc", "3", "2")
    assert outcome == CanaryOutcome.PROMOTE
    assert "200 canary and 800 champion predictions" in reason
    assert "roc_auc on labelled predictions fell: 0.9300 (canary 3, 50 labels) vs 0.9400" in reason


def test_a_metric_drop_rolls_back_naming_the_metric_and_both_values():
    outcome, reason = judge(with_canary(GOOD, metric=0.41), THRESHOLDS, "roc_auc", "3", "2")
    assert outcome == CanaryOutcome.ROLLBACK
    assert reason == ("roc_auc on labelled predictions fell: 0.4100 (canary 3, 50 labels) vs 0.9400 (champion 2, "
                      "200 labels): a drop of 0.5300 > 0.05")


def test_for_a_lower_is_better_metric_a_rise_is_the_drop():
    worse = replace(GOOD, canary=replace(GOOD.canary, metric=9.0), champion=replace(GOOD.champion, metric=4.0))
    outcome, reason = judge(worse, THRESHOLDS, "mean_absolute_error", "3", "2")
    assert outcome == CanaryOutcome.ROLLBACK and "a drop of 5.0000 > 0.05 (lower is better)" in reason


def test_a_score_shift_an_error_rate_and_a_slow_canary_each_roll_back():
    shifted = replace(GOOD, score_js=0.35)
    assert judge(shifted, THRESHOLDS, "roc_auc", "3", "2") == (
        CanaryOutcome.ROLLBACK, "score distribution shifted: Jensen-Shannon 0.350 between canary 3 and champion 2 > 0.2")
    outcome, reason = judge(with_canary(GOOD, errors=20), THRESHOLDS, "roc_auc", "3", "2")
    assert outcome == CanaryOutcome.ROLLBACK and reason.startswith("error rate 10.00% (canary 3, 20 of 200)")
    outcome, reason = judge(with_canary(GOOD, latency_p95_ms=90.0), THRESHOLDS, "roc_auc", "3", "2")
    assert outcome == CanaryOutcome.ROLLBACK and "latency p95 90.0 ms (canary 3) vs 2.5 ms" in reason


def test_a_slower_canary_below_the_latency_floor_is_not_a_breach():
    # 3x of 2.5 ms is noise on a laptop, not a regression: the ratio counts above min_latency_ms only.
    assert judge(with_canary(GOOD, latency_p95_ms=7.5), THRESHOLDS, "roc_auc", "3", "2")[0] == CanaryOutcome.PROMOTE


def test_the_metric_is_not_compared_without_labels_of_both_versions():
    unlabelled = with_canary(GOOD, metric=None, labelled=3)
    outcome, reason = judge(unlabelled, THRESHOLDS, "roc_auc", "3", "2")
    assert outcome == CanaryOutcome.PROMOTE
    assert "roc_auc not compared (labelled predictions: canary 3, champion 200)" in reason


def test_the_window_needs_predictions_minutes_and_labels_as_the_spec_asks():
    window = CanaryWindowSpec(min_predictions=100, min_minutes=10, min_labels=40)
    assert waiting_for(GOOD, window) is None
    assert waiting_for(with_canary(GOOD, count=99), window) == "99 of 100 canary predictions"
    early = replace(GOOD, window_end=T0 + timedelta(minutes=4))
    assert waiting_for(early, window) == "4.0 of 10 minutes since the canary's first prediction"
    assert waiting_for(with_canary(GOOD, labelled=12), window) == "12 of 40 labelled predictions per version"
    assert waiting_for(replace(GOOD, window_start=None), window) == "the canary has served no prediction yet"


def test_the_realized_metric_of_a_binary_classifier_uses_the_logged_positive_score():
    spec = make_spec()
    rows = [{"label": "1", "score": 0.9}, {"label": "0", "score": 0.2}, {"label": "1.0", "score": 0.7},
            {"label": "0", "score": 0.6}]
    assert realized_metric(spec, rows) == pytest.approx(1.0)
    inverted = [{**r, "score": 1 - r["score"]} for r in rows]
    assert realized_metric(spec, inverted) == pytest.approx(0.0)
    assert realized_metric(spec, rows[:1]) is None  # one class: roc_auc is undefined


def test_the_realized_metric_of_a_regressor():
    spec = make_spec(model={"type": "LINEAR_REG", "options": {}}, promotion={"metric": "mean_absolute_error"})
    rows = [{"label": "3.0", "predicted_value": 2.0}, {"label": "1", "predicted_value": 1.5}]
    assert realized_metric(spec, rows) == pytest.approx(0.75)


# -------------------------------------------------------------------------------------------- judge

class Checks:
    """The monitoring_checks rows the judge records, kept in memory."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def record(self, rows) -> None:
        self.rows.extend(rows)

    def recorded(self, pipeline: str, prefix: str) -> list[dict]:
        return [r for r in self.rows if r["pipeline"] == pipeline and r["check_id"].startswith(prefix)]


class Signals:
    def __init__(self, signals: CanarySignals) -> None:
        self.signals = signals
        self.reads: list[tuple[str, str, datetime]] = []

    def __call__(self, spec: PipelineSpec, canary: str, champion: str, window_end: datetime) -> CanarySignals:
        self.reads.append((canary, champion, window_end))
        return replace(self.signals, window_end=window_end)


@pytest.fixture
def canary_spec(specs) -> PipelineSpec:
    spec = make_spec(deployment={"canary_percent": 20, "canary_window": {"min_predictions": 100}})
    specs.put(spec)
    return spec


def serve_canary(registry: InMemoryModelRegistry, endpoints: InMemoryModelEndpoint, spec: PipelineSpec) -> str:
    """v1 at 80%, v2 (the new champion) at 20%, as the deployer leaves a canary."""
    versions = [registry.register_version(MODEL, f"{MODEL}-v{n}", f"gs://test-bucket/models/{MODEL}/c{n}",
                                          "predictor:test", {"status": "champion"}, ["champion"]) for n in (1, 2)]
    endpoint = endpoints.ensure_endpoint(spec.endpoint_name)
    endpoints.deploy(endpoint, versions[0], 100)
    endpoints.deploy(endpoint, versions[1], 20)
    return endpoint


def tick(event_id: str, minutes: float = 30):
    event = WatchTick(pipeline=MODEL, reason="schedule")
    envelope = envelope_for(event, event_id=event_id)
    return event, envelope.with_changes(time=(T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"))


@pytest.fixture
def judge_of(warehouse, specs, registry, endpoints):
    def make(signals: CanarySignals, checks: Checks | None = None, metrics: InMemoryMetrics | None = None):
        checks = checks or Checks()
        return CanaryJudge(warehouse, specs, registry, endpoints, metrics or InMemoryMetrics(),  # type: ignore[arg-type]
                           signals=Signals(signals), record=checks.record, recorded=checks.recorded), checks
    return make


def test_no_canary_no_judgement(judge_of, registry, endpoints, canary_spec):
    judge_, checks = judge_of(GOOD)
    assert judge_.handle(*tick("t1")) == []  # no endpoint yet (nothing deployed)
    version = registry.register_version(MODEL, "v1", f"gs://test-bucket/models/{MODEL}/c1", "predictor:test", {},
                                        ["champion"])
    endpoints.deploy(endpoints.ensure_endpoint(MODEL), version, 100)
    assert judge_.handle(*tick("t2")) == [] and checks.rows == []


def test_a_bad_canary_is_rolled_back_once_its_window_has_passed(judge_of, registry, endpoints, canary_spec):
    endpoint = serve_canary(registry, endpoints, canary_spec)
    metrics = InMemoryMetrics()
    judge_, checks = judge_of(with_canary(GOOD, metric=0.41), metrics=metrics)

    [judged] = judge_.handle(*tick("t1"))

    assert (judged.pipeline, judged.endpoint, judged.canary_version, judged.champion_version) == (
        MODEL, endpoint, "2", "1")
    assert judged.outcome == CanaryOutcome.ROLLBACK
    assert judged.reason.startswith("roc_auc on labelled predictions fell: 0.4100 (canary 2, 50 labels) vs 0.9400")
    assert judged.signals["canary_roc_auc"] == 0.41 and judged.signals["metric_drop"] == pytest.approx(0.53)
    assert judged.window_start == "2026-11-22T06:00:00.000000Z"
    assert judged.window_end == "2026-11-22T06:30:00.000000Z"
    labels = registry.get_version(MODEL, "2").labels
    assert (labels[VERDICT_LABEL], labels[TICK_LABEL]) == ("rollback", "t1")
    assert [(p.value, p.labels) for p in metrics.points if p.name == "canary_judged"] == [
        (1, {"pipeline": MODEL, "outcome": "rolled_back"})]
    breached = {r["measure"] for r in checks.rows if r["breached"]}
    assert breached == {"metric_drop"}
    assert {r["check_kind"] for r in checks.rows} == {"canary"}
    assert len({r["check_id"] for r in checks.rows}) == len(checks.rows)


def test_a_good_canary_is_promoted(judge_of, registry, endpoints, canary_spec):
    serve_canary(registry, endpoints, canary_spec)
    judge_, _ = judge_of(GOOD)
    [judged] = judge_.handle(*tick("t1"))
    assert judged.outcome == CanaryOutcome.PROMOTE
    assert judged.reason.startswith("within every threshold over 200 canary and 800 champion predictions")


def test_before_the_window_has_passed_nothing_is_judged_or_recorded(judge_of, registry, endpoints, canary_spec):
    serve_canary(registry, endpoints, canary_spec)
    judge_, checks = judge_of(with_canary(GOOD, count=40))
    assert judge_.handle(*tick("t1")) == []
    assert checks.rows == [] and VERDICT_LABEL not in registry.get_version(MODEL, "2").labels


def test_a_redelivered_tick_announces_the_same_verdict_and_a_later_tick_none(judge_of, registry, endpoints,
                                                                             canary_spec):
    serve_canary(registry, endpoints, canary_spec)
    metrics = InMemoryMetrics()
    judge_, checks = judge_of(with_canary(GOOD, metric=0.41), metrics=metrics)
    [first] = judge_.handle(*tick("t1"))
    # The signals moved on since (more predictions), but the record is what was judged.
    judge_._signals = Signals(GOOD)  # type: ignore[assignment]
    [again] = judge_.handle(*tick("t1"))
    assert again == first
    assert judge_.handle(*tick("t2", minutes=31)) == []  # the deployer has not acted yet: no second verdict
    assert len([p for p in metrics.points if p.name == "canary_judged"]) == 1
    assert len(checks.rows) == len(first.signals)


def test_a_crash_between_the_record_and_the_label_is_announced_by_the_next_tick(judge_of, registry, endpoints,
                                                                               canary_spec):
    serve_canary(registry, endpoints, canary_spec)
    checks = Checks()
    judge_, _ = judge_of(with_canary(GOOD, metric=0.41), checks=checks)
    failing = registry.set_labels

    def crash(*args, **kwargs):
        raise ConnectionError("registry unreachable")

    registry.set_labels = crash  # type: ignore[method-assign]
    # The failure is the tick's answer for this pipeline (the monitor's checks still ran beside it).
    [failed] = judge_.handle(*tick("t1"))
    assert isinstance(failed, StageFailed) and failed.pipeline == canary_spec.name and failed.permanent
    assert failed.error_class == "ConnectionError" and "canary judgement" in failed.error_message
    registry.set_labels = failing  # type: ignore[method-assign]
    recorded = len(checks.rows)

    [judged] = judge_.handle(*tick("t2", minutes=45))

    assert judged.outcome == CanaryOutcome.ROLLBACK
    assert judged.window_end == "2026-11-22T06:30:00.000000Z"  # the recorded window, not t2's
    assert len(checks.rows) == recorded
    assert registry.get_version(MODEL, "2").labels[TICK_LABEL] == "t2"


def test_a_pipeline_without_a_canary_share_is_never_judged(judge_of, registry, endpoints, specs):
    spec = make_spec()
    specs.put(spec)
    serve_canary(registry, endpoints, spec)
    judge_, _ = judge_of(with_canary(GOOD, metric=0.41))
    assert judge_.handle(*tick("t1")) == []

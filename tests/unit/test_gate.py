"""The promotion gate: the bar, the champion (by min_gain or by a tolerance), the direction of the metric,
and the words it gives."""

from __future__ import annotations

import pytest

from evaluator.gate import Verdict, judge
from mlops.core.spec import CLASSIFIER_METRICS, REGRESSOR_METRICS, PromotionSpec


def gate(metric: str = "roc_auc", minimum: float | None = 0.8, min_gain: float = 0.01,
         tolerance: float = 0.0) -> PromotionSpec:
    return PromotionSpec(metric=metric, minimum=minimum, min_gain=min_gain, tolerance=tolerance)


@pytest.mark.parametrize(("candidate", "champion", "decision", "words"), [
    ({"roc_auc": 0.85}, None, "promote", "no champion to beat"),
    ({"roc_auc": 0.80}, None, "promote", "passes the bar"),  # the bar itself is reached
    ({"roc_auc": 0.79}, None, "reject", "misses the bar (>= 0.8)"),
    ({"roc_auc": 0.79}, {"roc_auc": 0.50}, "reject", "misses the bar"),  # the bar comes first
    ({"roc_auc": 0.90}, {"roc_auc": 0.88}, "promote", "beats champion v3 0.8800 by +0.0200 (>= min_gain 0.01)"),
    ({"roc_auc": 0.89}, {"roc_auc": 0.88}, "promote", "beats champion"),  # gain exactly min_gain
    ({"roc_auc": 0.885}, {"roc_auc": 0.88}, "reject", "gain +0.0050 < required 0.01 (min_gain)"),
    ({"roc_auc": 0.85}, {"roc_auc": 0.88}, "reject", "vs champion v3 0.8800: gain -0.0300"),
    ({"roc_auc": 0.85}, {}, "promote", "no champion"),  # a champion that could not be scored
    ({"roc_auc": 0.85}, {"accuracy": 0.9}, "promote", "no champion"),  # ...or lacks the metric
    ({"accuracy": 0.99}, None, "reject", "roc_auc was not computed for the candidate"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_higher_is_better(candidate, champion, decision, words):
    verdict = judge(gate(), candidate, champion, "3" if champion else None)
    assert verdict.decision == decision
    assert words in verdict.reason


@pytest.mark.parametrize(("candidate", "champion", "decision", "words"), [
    (2.0, None, "promote", "no champion"),
    (3.0, None, "reject", "misses the bar (<= 2.8)"),
    (2.8, None, "promote", "passes the bar"),
    (2.3, 2.5, "promote", "by +0.2000"),
    (2.45, 2.5, "reject", "gain +0.0500 < required 0.1 (min_gain)"),
    (2.7, 2.5, "reject", "gain -0.2000"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_lower_is_better(candidate, champion, decision, words):
    spec = gate("mean_absolute_error", minimum=2.8, min_gain=0.1)
    verdict = judge(spec, {"mean_absolute_error": candidate},
                    None if champion is None else {"mean_absolute_error": champion}, "5")
    assert verdict.decision == decision
    assert words in verdict.reason


@pytest.mark.parametrize("metric", ["log_loss", "mean_squared_error", "median_absolute_error",
                                    "mean_squared_log_error"])
def test_every_loss_is_lower_is_better(metric):
    spec = gate(metric, minimum=None, min_gain=0.0)
    assert judge(spec, {metric: 0.1}, {metric: 0.2}, "1").decision == "promote"
    assert judge(spec, {metric: 0.3}, {metric: 0.2}, "1").decision == "reject"


@pytest.mark.parametrize("metric", ["precision", "recall", "accuracy", "f1_score", "roc_auc", "r2_score",
                                    "explained_variance"])
def test_every_score_is_higher_is_better(metric):
    spec = gate(metric, minimum=None, min_gain=0.0)
    assert judge(spec, {metric: 0.9}, {metric: 0.8}, "1").decision == "promote"
    assert judge(spec, {metric: 0.7}, {metric: 0.8}, "1").decision == "reject"


def test_without_a_minimum_any_candidate_passes_the_bar():
    assert judge(gate(minimum=None), {"roc_auc": 0.01}, None, None).decision == "promote"


def test_a_tie_passes_when_no_gain_is_required():
    assert judge(gate(min_gain=0.0), {"roc_auc": 0.9}, {"roc_auc": 0.9}, "2").decision == "promote"
    assert judge(gate(min_gain=0.001), {"roc_auc": 0.9}, {"roc_auc": 0.9}, "2").decision == "reject"


def test_every_metric_a_spec_accepts_has_a_direction():
    for metric in (*CLASSIFIER_METRICS, *REGRESSOR_METRICS):
        verdict = judge(gate(metric, minimum=None, min_gain=0.0), {metric: 1.0}, None, None)
        assert verdict == Verdict("promote", f"{metric} 1.0000 passes the bar and there is no champion to beat")


def test_verdicts_are_immutable():
    verdict = judge(gate(), {"roc_auc": 0.9}, None, None)
    with pytest.raises(AttributeError):
        verdict.decision = "reject"  # type: ignore[misc]


@pytest.mark.parametrize(("candidate", "champion", "decision", "words"), [
    # The case: a saturated roc_auc, where no gain of 0.003 is possible any more.
    (0.9998, 0.9999, "promote", "roc_auc 0.9998 vs champion v3 0.9999: gain -0.0001 within tolerance 0.002"),
    (0.9999, 0.9999, "promote", "gain +0.0000 within tolerance"),
    (0.9990, 0.9970, "promote", "gain +0.0020 within tolerance 0.002"),
    (0.9979, 0.9999, "promote", "gain -0.0020 within tolerance"),  # exactly the tolerance, in floats
    (0.9950, 0.9999, "reject", "roc_auc 0.9950 vs champion v3 0.9999: trails by 0.0049 > tolerance 0.002"),
    (0.79, 0.9999, "reject", "misses the bar (>= 0.8)"),  # the floor still holds
    (0.85, None, "promote", "no champion to beat"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_tolerance_promotes_a_fresher_model_that_is_no_worse(candidate, champion, decision, words):
    spec = gate(min_gain=0.0, tolerance=0.002)
    verdict = judge(spec, {"roc_auc": candidate}, None if champion is None else {"roc_auc": champion},
                    "3" if champion else None)
    assert verdict.decision == decision
    assert words in verdict.reason


def test_a_tolerance_follows_the_direction_of_a_loss():
    spec = gate("mean_absolute_error", minimum=None, min_gain=0.0, tolerance=0.5)
    within = judge(spec, {"mean_absolute_error": 2.4}, {"mean_absolute_error": 2.0}, "4")
    assert (within.decision, within.reason) == (
        "promote", "mean_absolute_error 2.4000 vs champion v4 2.0000: gain -0.4000 within tolerance 0.5")
    beyond = judge(spec, {"mean_absolute_error": 2.6}, {"mean_absolute_error": 2.0}, "4")
    assert (beyond.decision, beyond.reason) == (
        "reject", "mean_absolute_error 2.6000 vs champion v4 2.0000: trails by 0.6000 > tolerance 0.5")


def test_without_a_tolerance_the_same_candidate_is_held_to_min_gain():
    verdict = judge(gate(min_gain=0.003), {"roc_auc": 0.9998}, {"roc_auc": 0.9999}, "3")
    assert verdict == Verdict("reject", "roc_auc 0.9998 vs champion v3 0.9999: gain -0.0001 < required 0.003 (min_gain)")

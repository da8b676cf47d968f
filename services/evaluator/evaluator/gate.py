"""The promotion gate: does the candidate beat the bar, and the champion by enough, on the same rows?"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.core.events import Decision
from mlops.core.spec import PromotionSpec
from mlops.ml.metrics import higher_is_better


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def judge(promotion: PromotionSpec, candidate: dict[str, float], champion: dict[str, float] | None,
          champion_version: str | None) -> Verdict:
    metric = promotion.metric
    if metric not in candidate:
        return Verdict(Decision.REJECT, f"{metric} was not computed for the candidate")
    value = candidate[metric]
    sign = 1.0 if higher_is_better(metric) else -1.0
    if promotion.minimum is not None and sign * (value - promotion.minimum) < 0:
        bound = "<=" if sign < 0 else ">="
        return Verdict(Decision.REJECT, f"{metric} {value:.4f} misses the bar ({bound} {promotion.minimum})")
    if not champion or metric not in champion:
        return Verdict(Decision.PROMOTE, f"{metric} {value:.4f} passes the bar and there is no champion to beat")
    gain = sign * (value - champion[metric])
    if gain < promotion.min_gain:
        return Verdict(Decision.REJECT, f"{metric} {value:.4f} vs champion v{champion_version} {champion[metric]:.4f}: "
                                 f"gain {gain:+.4f} < required {promotion.min_gain}")
    return Verdict(Decision.PROMOTE, f"{metric} {value:.4f} beats champion v{champion_version} {champion[metric]:.4f} "
                              f"by {gain:+.4f} (>= {promotion.min_gain})")

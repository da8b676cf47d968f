"""The promotion gate: does the candidate beat the bar, and the champion, on the same rows?

Against the champion one of two rules applies (`promotion` in the spec):
- `min_gain` (default 0): the candidate must improve on the champion by at least this much;
- `tolerance`: the candidate, trained on fresher data, may trail the champion by up to this much.
  For a saturated metric (roc_auc at 0.9999) no gain is possible, and min_gain would keep an ageing
  champion forever; a tolerance promotes the fresher model that is no worse (within it).
`minimum` is the floor for both. The reason says which rule decided, with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.core.events import Decision
from mlops.core.spec import PromotionSpec
from mlops.ml.metrics import higher_is_better

# Metric differences are float subtractions: 0.9979 - 0.9999 is -0.0020000000000000018. A gain that
# meets a rule's number to this precision meets it.
SLACK = 1e-9


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
    best = champion[metric]
    versus = f"{metric} {value:.4f} vs champion v{champion_version} {best:.4f}"
    gain = sign * (value - best)
    if promotion.tolerance > 0:
        if gain < -promotion.tolerance - SLACK:
            return Verdict(Decision.REJECT, f"{versus}: trails by {-gain:.4f} > tolerance {promotion.tolerance}")
        return Verdict(Decision.PROMOTE, f"{versus}: gain {gain:+.4f} within tolerance {promotion.tolerance}")
    if gain < promotion.min_gain - SLACK:
        return Verdict(Decision.REJECT, f"{versus}: gain {gain:+.4f} < required {promotion.min_gain} (min_gain)")
    return Verdict(Decision.PROMOTE, f"{metric} {value:.4f} beats champion v{champion_version} {best:.4f} "
                                     f"by {gain:+.4f} (>= min_gain {promotion.min_gain})")

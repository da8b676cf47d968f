"""Feature drift between a training snapshot and newer rows: the Population Stability Index (PSI).

For a numeric feature the reference is cut into quantile bins (deciles by default) of the training
values; NULLs get a bin of their own, so a jump in missing values counts as drift too. For a STRING/BOOL
feature the bins are the training categories plus one for unseen ones. Then

    PSI = sum over bins of (current_share - reference_share) * ln(current_share / reference_share)

with shares floored at 1e-4 so that an empty bin doesn't make it infinite. Usual reading: below 0.1 no
real shift, 0.1 to 0.25 a moderate one, above 0.25 a large one. The data-watcher compares the largest
feature PSI with the pipeline's drift threshold.

The reference is a small JSON-able summary (bin edges and shares), computed by the trainer from the rows
it trained on and stored in the model artifact, so the watcher never rereads the training snapshot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 10
SHARE_FLOOR = 1e-4
MISSING_BIN = "__NULL__"
UNSEEN_BIN = "__UNSEEN__"


@dataclass(frozen=True)
class NumericReference:
    inner_edges: tuple[float, ...]   # bins: (-inf, e0], (e0, e1], ..., (e_last, inf), then NULL
    shares: tuple[float, ...]        # one per bin, the NULL bin last


@dataclass(frozen=True)
class CategoricalReference:
    shares: dict[str, float]         # per category, plus MISSING_BIN and UNSEEN_BIN


@dataclass(frozen=True)
class DriftReference:
    rows: int
    numeric: dict[str, NumericReference]
    categorical: dict[str, CategoricalReference]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "numeric": {name: {"inner_edges": list(ref.inner_edges), "shares": list(ref.shares)}
                        for name, ref in self.numeric.items()},
            "categorical": {name: dict(ref.shares) for name, ref in self.categorical.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        return cls(
            rows=int(data["rows"]),
            numeric={name: NumericReference(tuple(map(float, ref["inner_edges"])), tuple(map(float, ref["shares"])))
                     for name, ref in data.get("numeric", {}).items()},
            categorical={name: CategoricalReference({str(k): float(v) for k, v in shares.items()})
                         for name, shares in data.get("categorical", {}).items()},
        )


@dataclass(frozen=True)
class DriftReport:
    psi_by_feature: dict[str, float]
    max_psi: float
    max_feature: str | None
    rows: int

    def exceeds(self, threshold: float) -> bool:
        return self.max_psi > threshold


def population_stability_index(reference_shares: Sequence[float], current_shares: Sequence[float]) -> float:
    """PSI of two distributions over the same bins (each given as shares or counts)."""
    expected = _normalized(reference_shares)
    actual = _normalized(current_shares)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _normalized(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    total = array.sum()
    shares = array / total if total > 0 else np.full(array.shape, 1.0 / len(array))
    shares = np.maximum(shares, SHARE_FLOOR)
    return shares / shares.sum()


def build_reference(rows: Sequence[Mapping[str, Any]], numeric_columns: Sequence[str],
                    categorical_columns: Sequence[str] = (), bins: int = DEFAULT_BINS) -> DriftReference:
    return DriftReference(
        rows=len(rows),
        numeric={name: _numeric_reference(_floats(rows, name), bins) for name in numeric_columns},
        categorical={name: _categorical_reference([row.get(name) for row in rows]) for name in categorical_columns},
    )


def measure_drift(reference: DriftReference, rows: Sequence[Mapping[str, Any]]) -> DriftReport:
    """PSI per feature of `rows` against the reference, and the largest one. No rows means no evidence of
    drift: every PSI is reported as 0."""
    psi: dict[str, float] = {}
    for name, numeric in reference.numeric.items():
        psi[name] = population_stability_index(numeric.shares, _numeric_counts(_floats(rows, name), numeric)) \
            if rows else 0.0
    for name, categorical in reference.categorical.items():
        psi[name] = population_stability_index(
            list(categorical.shares.values()),
            _categorical_counts([row.get(name) for row in rows], categorical)) if rows else 0.0
    if not psi:
        return DriftReport({}, 0.0, None, len(rows))
    worst = max(psi, key=lambda name: psi[name])
    return DriftReport(psi, psi[worst], worst, len(rows))


def psi_between(reference_rows: Sequence[Mapping[str, Any]], current_rows: Sequence[Mapping[str, Any]],
                numeric_columns: Sequence[str], categorical_columns: Sequence[str] = (),
                bins: int = DEFAULT_BINS) -> DriftReport:
    """One-shot form: build the reference from `reference_rows` and measure `current_rows` against it."""
    return measure_drift(build_reference(reference_rows, numeric_columns, categorical_columns, bins), current_rows)


def _floats(rows: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    values = [row.get(name) for row in rows]
    return np.array([math.nan if value is None else float(value) for value in values], dtype=float)


def _numeric_reference(values: np.ndarray, bins: int) -> NumericReference:
    present = values[~np.isnan(values)]
    if present.size == 0:
        edges: np.ndarray = np.array([])
    else:
        quantiles = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        # Ties (discrete features) collapse bins; the maximum can't be an inner edge (its bin would be empty).
        edges = np.unique(quantiles)
        edges = edges[edges < present.max()]
    reference = NumericReference(tuple(float(e) for e in edges), ())
    counts = _numeric_counts(values, reference)
    return NumericReference(reference.inner_edges, tuple(float(c) / max(len(values), 1) for c in counts))


def _numeric_counts(values: np.ndarray, reference: NumericReference) -> list[int]:
    edges = np.asarray(reference.inner_edges, dtype=float)
    missing = np.isnan(values)
    # side="left": a value equal to an edge falls in the bin that the edge closes, (lower, edge].
    bin_index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(bin_index, minlength=len(edges) + 1).tolist()
    return counts + [int(missing.sum())]


def _category(value: Any) -> str:
    if value is None:
        return MISSING_BIN
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _categorical_reference(values: Sequence[Any]) -> CategoricalReference:
    counts = Counter(_category(value) for value in values)
    total = max(len(values), 1)
    shares = {category: count / total for category, count in sorted(counts.items())}
    shares.setdefault(MISSING_BIN, 0.0)
    shares[UNSEEN_BIN] = 0.0
    return CategoricalReference(shares)


def _categorical_counts(values: Sequence[Any], reference: CategoricalReference) -> list[int]:
    counts = Counter(_category(value) for value in values)
    known = {category: 0 for category in reference.shares}
    for category, count in counts.items():
        known[category if category in known else UNSEEN_BIN] += count
    return [known[category] for category in reference.shares]


# ------------------------------------------------------------------------------------------------
# Serving monitoring (services/monitor): distances of a window of serving inputs from the training
# reference, computed from bin counts (the warehouse counts; this only does the arithmetic), as
# Vertex AI Model Monitoring v2 reads them: Jensen-Shannon divergence for numeric features over the
# reference's bins, L-infinity distance for categorical ones; PSI kept beside both.


def jensen_shannon(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, so within [0, 1]) of two distributions over the same bins,
    each given as shares or counts. Symmetric and finite even where one side has an empty bin; two
    empty sides are identical (0)."""
    p, q = _shares(reference), _shares(current)
    if p is None or q is None:
        return 0.0 if p is None and q is None else 1.0
    m = (p + q) / 2
    return float(max(0.0, min(1.0, (_kl2(p, m) + _kl2(q, m)) / 2)))


def l_infinity(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """L-infinity distance of two categorical distributions (shares or counts per category): the
    largest difference in share of any category found on either side."""
    p_total, q_total = sum(reference.values()), sum(current.values())
    categories = set(reference) | set(current)
    if not categories or (p_total <= 0 and q_total <= 0):
        return 0.0
    return float(max(abs((reference.get(c, 0.0) / p_total if p_total > 0 else 0.0)
                         - (current.get(c, 0.0) / q_total if q_total > 0 else 0.0)) for c in categories))


def _shares(values: Sequence[float]) -> np.ndarray | None:
    array = np.asarray(values, dtype=float)
    total = array.sum()
    return array / total if total > 0 else None


def _kl2(p: np.ndarray, q: np.ndarray) -> float:
    present = p > 0  # 0 * log(0 / q) = 0; q > 0 wherever p > 0 since q is a mixture containing p
    return float(np.sum(p[present] * np.log2(p[present] / q[present])))


@dataclass(frozen=True)
class FeatureWindow:
    """One feature's figures over a window of serving inputs, against its training reference."""

    feature: str
    kind: str                       # "numeric" | "categorical"
    rows: int                       # inputs in the window
    distance: float                 # js (numeric) or linf (categorical), over present values
    psi: float                      # with the missing bin (and the unseen one for categories)
    missing_rate: float
    unseen_rate: float | None       # categorical only: share of values never seen in training
    out_of_range_rate: float | None  # numeric only: share of values outside the training [min, max]

    @property
    def measure(self) -> str:
        return "js" if self.kind == "numeric" else "linf"


def numeric_window(feature: str, reference: NumericReference, bin_counts: Sequence[int], missing: int,
                   out_of_range: int) -> FeatureWindow:
    """`bin_counts`: present values per reference bin ((-inf, e0], (e0, e1], ..., (e_last, inf));
    `missing`: NULLs; `out_of_range`: present values outside the training range."""
    if len(bin_counts) != len(reference.inner_edges) + 1:
        raise ValueError(f"{feature}: {len(bin_counts)} bin counts for {len(reference.inner_edges) + 1} bins")
    present = int(sum(bin_counts))
    rows = present + missing
    value_shares = reference.shares[:-1]  # the reference's NULL bin is last
    return FeatureWindow(
        feature=feature, kind="numeric", rows=rows,
        distance=jensen_shannon(value_shares, bin_counts) if present else 0.0,
        psi=population_stability_index(reference.shares, [*bin_counts, missing]) if rows else 0.0,
        missing_rate=missing / rows if rows else 0.0, unseen_rate=None,
        out_of_range_rate=out_of_range / present if present else 0.0)


def categorical_window(feature: str, reference: CategoricalReference, category_counts: Mapping[str, int],
                       missing: int) -> FeatureWindow:
    """`category_counts`: present values per category as served (unseen ones under their own names)."""
    known = {c: s for c, s in reference.shares.items() if c not in (MISSING_BIN, UNSEEN_BIN)}
    present = int(sum(category_counts.values()))
    rows = present + missing
    unseen = sum(n for c, n in category_counts.items() if c not in known)
    binned = {c: 0 for c in reference.shares}
    for category, count in category_counts.items():
        binned[category if category in known else UNSEEN_BIN] += count
    binned[MISSING_BIN] = binned.get(MISSING_BIN, 0) + missing
    return FeatureWindow(
        feature=feature, kind="categorical", rows=rows,
        distance=l_infinity(known, category_counts) if present else 0.0,
        psi=population_stability_index(list(reference.shares.values()), [binned[c] for c in reference.shares])
        if rows else 0.0,
        missing_rate=missing / rows if rows else 0.0, unseen_rate=unseen / present if present else 0.0,
        out_of_range_rate=None)


SCORE_EDGES = tuple(round(0.1 * i, 1) for i in range(1, 10))  # ten equal bins of a probability


def score_bins(scores: Sequence[float]) -> list[int]:
    """Counts of probabilities in the ten bins (-inf, 0.1], (0.1, 0.2], ..., (0.9, inf)."""
    index = np.searchsorted(np.asarray(SCORE_EDGES), np.asarray(scores, dtype=float), side="left")
    return np.bincount(index, minlength=len(SCORE_EDGES) + 1).tolist()


def realized_metric(metric: str, truth: Sequence[Any], predicted: Sequence[Any],
                    scores: Sequence[float | None]) -> float | None:
    """The gate's metric on served predictions whose label arrived, in numpy (no scikit-learn in the
    monitor's image). `predicted` is the served label (classifiers) or value (regressors); `scores`
    the positive class's probability of a binary classifier. None when the metric cannot be had
    from what was served: a probability metric of a multiclass model, an AUC with one class."""
    if not truth:
        return None
    if metric in _REGRESSION:
        y = np.asarray([float(t) for t in truth])
        p = np.asarray([float(v) for v in predicted])
        return _REGRESSION[metric](y, p)
    labels = [str(t) for t in truth]
    served = [str(v) for v in predicted]
    if metric == "accuracy":
        return float(np.mean([a == b for a, b in zip(labels, served, strict=True)]))
    positive = _positive_label(served, scores)
    if positive is None:
        return None
    actual = np.asarray([label == positive for label in labels])
    if metric in ("precision", "recall", "f1_score"):
        hit = np.asarray([label == positive for label in served])
        tp = float(np.sum(hit & actual))
        precision = tp / float(hit.sum()) if hit.any() else 0.0
        recall = tp / float(actual.sum()) if actual.any() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1_score": f1}[metric]
    probability = np.asarray([float(s) for s in scores if s is not None])
    if len(probability) != len(actual):
        return None
    if metric == "log_loss":
        clipped = np.clip(probability, 1e-15, 1 - 1e-15)
        return float(-np.mean(np.where(actual, np.log(clipped), np.log(1 - clipped))))
    if metric == "roc_auc":
        return _auc(actual, probability)
    return None


def _positive_label(served: Sequence[str], scores: Sequence[float | None]) -> str | None:
    """A binary classifier serves its positive class exactly when the score is above one half."""
    for label, score in zip(served, scores, strict=True):
        if score is not None and score > 0.5:
            return label
    return None


def _auc(actual: np.ndarray, probability: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    positives, negatives = int(actual.sum()), int((~actual).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(probability, kind="mergesort")
    ranks = np.empty(len(probability))
    sorted_values = probability[order]
    i = 0
    while i < len(sorted_values):  # average ranks over ties
        j = i
        while j + 1 < len(sorted_values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[actual].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / total if total > 0 else 0.0


def _explained_variance(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.var(y))
    return 1.0 - float(np.var(y - p)) / total if total > 0 else 0.0


_REGRESSION = {
    "mean_absolute_error": lambda y, p: float(np.mean(np.abs(y - p))),
    "mean_squared_error": lambda y, p: float(np.mean((y - p) ** 2)),
    "mean_squared_log_error": lambda y, p: float(np.mean((np.log1p(np.maximum(y, 0)) - np.log1p(np.maximum(p, 0))) ** 2)),
    "median_absolute_error": lambda y, p: float(np.median(np.abs(y - p))),
    "r2_score": _r2,
    "explained_variance": _explained_variance,
}

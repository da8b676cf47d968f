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

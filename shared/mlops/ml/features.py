"""Feature specs inferred from training rows, and the validation of rows and prediction instances.

Preprocessing mirrors BigQuery ML's automatic transforms: numeric features are mean-imputed and
standardized; STRING and BOOL features are one-hot encoded with NULL as a category of its own. The
serving path validates instances here, so numpy is imported only where a matrix is built.

NULLs and unseen categories at serving time. Training defines them as BigQuery ML does: a NULL
numeric value is replaced by the training mean, a NULL STRING/BOOL value is the NULL category (a
weight of 0 when training saw no NULL there), and a category training never saw gets a weight of 0
(`handle_unknown="ignore"`). Evaluation scores rows that way. Serving asks for a policy
(`ServingPolicy`): NULLs are scored as training defined them unless refused, and an unseen category
is refused unless the operator chose BigQuery ML's weight 0; whatever is scored that way is named
in the answer (`instance_notes`), never silently passed as a normal prediction.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mlops.ml.errors import TrainingDataError

if TYPE_CHECKING:
    import numpy as np

# A row is a mapping of column name to value; a frame is columnar: column name to equal-length values.
Row = Mapping[str, Any]
Rows = Sequence[Row]
Frame = Mapping[str, Sequence[Any]]

# NULL in a STRING/BOOL feature is a category of its own, as in BigQuery ML's one-hot encoding.
NULL_CATEGORY = "__NULL__"


class FeatureKind(StrEnum):
    NUMERIC = "numeric"  # INT64 / FLOAT64 / NUMERIC: imputed with the mean, standardized
    STRING = "string"    # STRING: one-hot
    BOOL = "bool"        # BOOL: one-hot, as BigQuery ML does


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: FeatureKind


class NullPolicy(StrEnum):
    IMPUTE = "impute"  # as training defined it: the training mean, or the NULL category
    REFUSE = "refuse"  # a NULL feature is a problem with the instance


class UnseenPolicy(StrEnum):
    REFUSE = "refuse"  # a category training never saw is a problem with the instance
    IGNORE = "ignore"  # BigQuery ML's rule: the category gets a weight of 0


@dataclass(frozen=True)
class ServingPolicy:
    nulls: NullPolicy = NullPolicy.IMPUTE
    unseen: UnseenPolicy = UnseenPolicy.REFUSE


def category_of(kind: FeatureKind, value: Any) -> str:
    """The category a STRING/BOOL value is one-hot encoded as (what `feature_matrix` writes)."""
    if value is None:
        return NULL_CATEGORY
    if kind is FeatureKind.BOOL:
        return "true" if value else "false"
    return str(value)


def _is_number(value: Any) -> bool:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, Decimal, np.integer, np.floating))


def _value_kind(value: Any) -> FeatureKind | None:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return FeatureKind.BOOL
    if _is_number(value):
        return FeatureKind.NUMERIC
    if isinstance(value, str):
        return FeatureKind.STRING
    return None


def infer_feature_specs(rows: Rows, feature_columns: Sequence[str]) -> tuple[FeatureSpec, ...]:
    """Each feature's kind from the Python types of its non-NULL values; every bad column is reported."""
    problems: list[str] = []
    specs: list[FeatureSpec] = []
    for column in feature_columns:
        kinds: set[FeatureKind] = set()
        for row in rows:
            value = row.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            kind = _value_kind(value)
            if kind is None:
                problems.append(f"feature {column!r}: unsupported value type {type(value).__name__}")
                break
            kinds.add(kind)
        if not kinds:
            problems.append(f"feature {column!r} has no non-NULL value in the training rows")
        elif len(kinds) > 1:
            problems.append(f"feature {column!r} mixes value types {sorted(k.value for k in kinds)}")
        else:
            specs.append(FeatureSpec(column, kinds.pop()))
    if problems:
        raise TrainingDataError("; ".join(problems))
    return tuple(specs)


def validate_instances(features: Sequence[FeatureSpec], instances: Any, *,
                       extra_columns_ok: bool = False, categories: Mapping[str, Collection[str]] | None = None,
                       policy: ServingPolicy | None = None) -> list[str]:
    """Every problem with prediction instances at once: not an object, a missing or unknown feature, a value
    of the wrong type. NULL (None) is accepted for any feature, as BigQuery ML imputes it, unless `policy`
    refuses NULLs; with `categories` (the categories each STRING/BOOL feature was trained on) and a policy
    that refuses unseen categories, a category outside them is a problem too. The predictor returns these
    as its 400 body."""
    if not isinstance(instances, Sequence) or isinstance(instances, (str, bytes)):
        return ["instances must be a list of objects"]
    if not instances:
        return ["instances is empty"]
    by_name = {spec.name: spec for spec in features}
    refuse_nulls = policy is not None and policy.nulls is NullPolicy.REFUSE
    known = categories if policy is not None and policy.unseen is UnseenPolicy.REFUSE else None
    problems: list[str] = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            problems.append(f"instance {index}: must be an object of feature values, got {type(instance).__name__}")
            continue
        for name in by_name:
            if name not in instance:
                problems.append(f"instance {index}: missing feature {name!r}")
        for name, value in instance.items():
            spec = by_name.get(name)
            if spec is None:
                if not extra_columns_ok:
                    problems.append(f"instance {index}: unknown feature {_short(name)}")
            elif value is None:
                if refuse_nulls:
                    problems.append(f"instance {index}: feature {name!r} is null; this endpoint refuses nulls "
                                    f"(send a value)")
            elif not _fits(spec.kind, value):
                problems.append(f"instance {index}: feature {name!r} must be {_expected(spec.kind)}, "
                                f"got {type(value).__name__} {_short(value)}")
            elif known is not None and spec.kind is not FeatureKind.NUMERIC and name in known \
                    and category_of(spec.kind, value) not in known[name]:
                seen = sorted(c for c in known[name] if c != NULL_CATEGORY)
                listed = ", ".join(repr(c) for c in seen[:20]) + (f" and {len(seen) - 20} more" if len(seen) > 20 else "")
                problems.append(f"instance {index}: feature {name!r} has the category {_short(value)}, which the "
                                f"model never saw in training (it knows {listed})")
    return problems


def instance_notes(features: Sequence[FeatureSpec], categories: Mapping[str, Collection[str]],
                   instance: Mapping[str, Any]) -> dict[str, list[str]]:
    """What of a valid instance is scored by training's rules rather than by a learned value: features
    that are NULL (`imputed`) and categories training never saw (`unseen`, a weight of 0). Empty when
    nothing is."""
    imputed = [spec.name for spec in features if instance.get(spec.name) is None]
    unseen = [spec.name for spec in features
              if spec.kind is not FeatureKind.NUMERIC and spec.name in categories
              and instance.get(spec.name) is not None
              and category_of(spec.kind, instance[spec.name]) not in categories[spec.name]]
    notes: dict[str, list[str]] = {}
    if imputed:
        notes["imputed"] = imputed
    if unseen:
        notes["unseen"] = unseen
    return notes


def _short(value: Any, limit: int = 60) -> str:
    """A bounded description of a value for an error message: a container's type and size (its repr
    could be megabytes, or nest deeper than repr can go), a scalar's repr cut to `limit`."""
    if isinstance(value, (list, tuple, dict, set)):
        return f"({type(value).__name__} of {len(value)})"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        # repr of an integer beyond 4,300 digits raises; its size is all the message needs
        return f"(an integer of about {int(value.bit_length() * 0.30103) + 1} digits)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _fits(kind: FeatureKind, value: Any) -> bool:
    if kind is FeatureKind.NUMERIC:
        if not _is_number(value):
            return False
        try:
            return math.isfinite(float(value))
        except OverflowError:  # an integer beyond a float's range: not a value the model can take
            return False
    if kind is FeatureKind.STRING:
        return isinstance(value, str)
    return _value_kind(value) is FeatureKind.BOOL


def _expected(kind: FeatureKind) -> str:
    return {FeatureKind.NUMERIC: "a finite number", FeatureKind.STRING: "a string",
            FeatureKind.BOOL: "a boolean"}[kind]


def feature_matrix(rows: Rows, features: Sequence[FeatureSpec]) -> np.ndarray:
    """An object matrix, one column per feature: floats (NaN for NULL) for numeric features, text with a
    NULL category for STRING/BOOL ones; the pipeline's ColumnTransformer picks columns by position."""
    import numpy as np

    matrix = np.empty((len(rows), len(features)), dtype=object)
    for column, spec in enumerate(features):
        values = [row.get(spec.name) for row in rows]
        if spec.kind is FeatureKind.NUMERIC:
            matrix[:, column] = [np.nan if value is None else float(value) for value in values]
        elif spec.kind is FeatureKind.BOOL:
            matrix[:, column] = [NULL_CATEGORY if value is None else ("true" if value else "false") for value in values]
        else:
            matrix[:, column] = [NULL_CATEGORY if value is None else value for value in values]
    return matrix


"""Feature specs inferred from training rows, and the validation of rows and prediction instances.

Preprocessing mirrors BigQuery ML's automatic transforms: numeric features are mean-imputed and
standardized; STRING and BOOL features are one-hot encoded with NULL as a category of its own. The
serving path validates instances here, so numpy is imported only where a matrix is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
                       extra_columns_ok: bool = False) -> list[str]:
    """Every problem with prediction instances at once: not an object, a missing or unknown feature, a value
    of the wrong type. NULL (None) is accepted for any feature, as BigQuery ML imputes it. The predictor
    returns these as its 400 body."""
    if not isinstance(instances, Sequence) or isinstance(instances, (str, bytes)):
        return ["instances must be a list of objects"]
    if not instances:
        return ["instances is empty"]
    by_name = {spec.name: spec for spec in features}
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
                    problems.append(f"instance {index}: unknown feature {name!r}")
            elif value is not None and not _fits(spec.kind, value):
                problems.append(f"instance {index}: feature {name!r} must be {_expected(spec.kind)}, "
                                f"got {type(value).__name__} {value!r}"[:200])
    return problems


def _fits(kind: FeatureKind, value: Any) -> bool:
    if kind is FeatureKind.NUMERIC:
        return _is_number(value) and math.isfinite(float(value))
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


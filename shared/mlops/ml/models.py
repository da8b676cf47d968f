"""scikit-learn models that mean what BigQuery ML's model types and CREATE MODEL options mean.

One options object (`ModelOptions`, BigQuery ML's option names) serves both backends: the BigQuery ML
adapter renders it into `CREATE MODEL ... OPTIONS(...)`, and `train` maps it onto scikit-learn here.
Options are validated against the model type the way CREATE MODEL does, each problem naming its option.

Preprocessing mirrors BigQuery ML's automatic transforms: numeric features are mean-imputed and
standardized; STRING and BOOL features are one-hot encoded with NULL as a category of its own.

Regularization, one convention for every linear model: the objective is the summed loss over training
rows + l1_reg * |w|_1 + l2_reg * |w|_2^2 (BigQuery ML does not document its normalization). So
LogisticRegression gets C = 1 / (l1_reg + 2 * l2_reg) and l1_ratio = l1_reg / (l1_reg + 2 * l2_reg),
Ridge gets alpha = l2_reg, and ElasticNet (which averages its loss) gets alpha scaled by 1 / (2n).

What has no scikit-learn counterpart is handled in one of two ways, recorded in the model:
- optimizer details that change how the minimum is reached, not the model (learn_rate_strategy and
  learn_rate for linear models, early_stop for a random forest) are ignored locally and listed in
  `TrainingSummary.ignored_options`;
- options that would change the model (boosted trees' subsample, num_parallel_tree, min_split_loss,
  l1_reg) are refused with `UnsupportedLocallyError` unless they hold BigQuery ML's default.

This module imports scikit-learn and numpy lazily: the BigQuery ML trainer validates options with the
same classes and its image carries neither.
"""

from __future__ import annotations

import difflib
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, field_validator

from mlops.ml.split import ROW_KEY_COLUMN, DataSplitMethod, Split, plan_split, split_rows

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from mlops.ml.drift import DriftReference

# A row is a mapping of column name to value; a frame is columnar: column name to equal-length values.
Row = Mapping[str, Any]
Rows = Sequence[Row]
Frame = Mapping[str, Sequence[Any]]

# NULL in a STRING/BOOL feature is a category of its own, as in BigQuery ML's one-hot encoding.
NULL_CATEGORY = "__NULL__"
BINARY_THRESHOLD = 0.5  # BigQuery ML's default positive-class threshold.


class ModelType(StrEnum):
    LOGISTIC_REG = "LOGISTIC_REG"
    LINEAR_REG = "LINEAR_REG"
    BOOSTED_TREE_CLASSIFIER = "BOOSTED_TREE_CLASSIFIER"
    BOOSTED_TREE_REGRESSOR = "BOOSTED_TREE_REGRESSOR"
    RANDOM_FOREST_CLASSIFIER = "RANDOM_FOREST_CLASSIFIER"

    @property
    def is_classifier(self) -> bool:
        return self in CLASSIFIER_TYPES


CLASSIFIER_TYPES = frozenset({ModelType.LOGISTIC_REG, ModelType.BOOSTED_TREE_CLASSIFIER,
                              ModelType.RANDOM_FOREST_CLASSIFIER})


class LearnRateStrategy(StrEnum):
    LINE_SEARCH = "LINE_SEARCH"
    CONSTANT = "CONSTANT"


class FeatureKind(StrEnum):
    NUMERIC = "numeric"  # INT64 / FLOAT64 / NUMERIC: imputed with the mean, standardized
    STRING = "string"    # STRING: one-hot
    BOOL = "bool"        # BOOL: one-hot, as BigQuery ML does


class ModelOptionsError(ValueError):
    """Bad CREATE MODEL options; `problems` names every offending option."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid model options: " + "; ".join(problems))


class UnsupportedLocallyError(ValueError):
    """A valid BigQuery ML option value that the scikit-learn backend cannot reproduce."""


class TrainingDataError(ValueError):
    """The rows can't train this model (no rows, a label with one class, a column of mixed types...)."""


class InvalidInstancesError(ValueError):
    """Prediction instances that don't fit the model's features; `problems` lists every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid instances: " + "; ".join(problems))


def _number(value: Any) -> Any:
    # pydantic would read True as 1.0 and "0.1" as 0.1; an options file with either is a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Number = Annotated[float, BeforeValidator(_number)]
Integer = Annotated[int, BeforeValidator(_number)]


class ModelOptions(BaseModel):
    """CREATE MODEL options by BigQuery ML's names. Unset (None) means BigQuery ML's default for the
    model type, so rendering SQL only spells out what the user chose."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    l1_reg: Number | None = Field(None, ge=0)
    l2_reg: Number | None = Field(None, ge=0)
    max_iterations: Integer | None = Field(None, ge=1, le=10_000)
    learn_rate: Number | None = Field(None, gt=0)
    learn_rate_strategy: Annotated[LearnRateStrategy, BeforeValidator(_upper)] | None = None
    early_stop: StrictBool | None = None
    min_rel_progress: Number | None = Field(None, ge=0, lt=1)
    max_tree_depth: Integer | None = Field(None, ge=1, le=64)
    subsample: Number | None = Field(None, gt=0, le=1)
    num_parallel_tree: Integer | None = Field(None, ge=1, le=10_000)
    min_split_loss: Number | None = Field(None, ge=0)
    data_split_method: Annotated[DataSplitMethod, BeforeValidator(_upper)] | None = None
    data_split_eval_fraction: Number | None = Field(None, gt=0, lt=1)
    data_split_col: str | None = Field(None, min_length=1)
    auto_class_weights: StrictBool | None = None
    class_weights: dict[str, Number] | None = None
    input_label_cols: tuple[str, ...] | None = Field(None, min_length=1, max_length=1)

    @field_validator("class_weights", mode="before")
    @classmethod
    def _label_keys_as_text(cls, value: Any) -> Any:
        # YAML reads `{0: 1.0, 1: 3.0}` with int keys; BigQuery ML names labels as STRING in STRUCTs.
        if isinstance(value, Mapping):
            return {str(label): weight for label, weight in value.items()}
        return value

    @field_validator("class_weights")
    @classmethod
    def _weights_positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one label")
            bad = sorted(label for label, weight in value.items() if not weight > 0)
            if bad:
                raise ValueError(f"weights must be > 0 (labels {bad})")
        return value

    def explicit(self) -> dict[str, Any]:
        """The options the user set, by name, in declaration order (what the SQL renders)."""
        return {name: value for name, value in self if value is not None}


OPTION_NAMES: tuple[str, ...] = tuple(ModelOptions.model_fields)

_SPLIT_OPTIONS = frozenset({"data_split_method", "data_split_eval_fraction", "data_split_col", "input_label_cols"})
_LINEAR_OPTIONS = _SPLIT_OPTIONS | {"l1_reg", "l2_reg", "max_iterations", "learn_rate", "learn_rate_strategy",
                                    "early_stop", "min_rel_progress"}
_BOOSTED_OPTIONS = _SPLIT_OPTIONS | {"l1_reg", "l2_reg", "max_iterations", "learn_rate", "early_stop",
                                     "min_rel_progress", "max_tree_depth", "subsample", "num_parallel_tree",
                                     "min_split_loss"}
_FOREST_OPTIONS = _SPLIT_OPTIONS | {"l1_reg", "l2_reg", "early_stop", "min_rel_progress", "max_tree_depth",
                                    "subsample", "num_parallel_tree", "min_split_loss"}
_CLASS_WEIGHT_OPTIONS = frozenset({"auto_class_weights", "class_weights"})

APPLICABLE_OPTIONS: dict[ModelType, frozenset[str]] = {
    ModelType.LOGISTIC_REG: _LINEAR_OPTIONS | _CLASS_WEIGHT_OPTIONS,
    ModelType.LINEAR_REG: _LINEAR_OPTIONS,
    ModelType.BOOSTED_TREE_CLASSIFIER: _BOOSTED_OPTIONS | _CLASS_WEIGHT_OPTIONS,
    ModelType.BOOSTED_TREE_REGRESSOR: _BOOSTED_OPTIONS,
    ModelType.RANDOM_FOREST_CLASSIFIER: _FOREST_OPTIONS | _CLASS_WEIGHT_OPTIONS,
}

_COMMON_DEFAULTS: dict[str, Any] = {
    "data_split_method": DataSplitMethod.AUTO_SPLIT, "data_split_eval_fraction": 0.2,
    "early_stop": True, "min_rel_progress": 0.01, "auto_class_weights": False, "l1_reg": 0.0,
}
_LINEAR_DEFAULTS = {**_COMMON_DEFAULTS, "l2_reg": 0.0, "max_iterations": 20,
                    "learn_rate_strategy": LearnRateStrategy.LINE_SEARCH, "learn_rate": 0.1}
_BOOSTED_DEFAULTS = {**_COMMON_DEFAULTS, "l2_reg": 1.0, "max_iterations": 20, "learn_rate": 0.3,
                     "max_tree_depth": 6, "subsample": 1.0, "num_parallel_tree": 1, "min_split_loss": 0.0}
_FOREST_DEFAULTS = {**_COMMON_DEFAULTS, "l2_reg": 1.0, "max_tree_depth": 20, "subsample": 0.8,
                    "num_parallel_tree": 100, "min_split_loss": 0.0}

# BigQuery ML's documented defaults per model type (the CREATE MODEL reference of each).
BQML_DEFAULTS: dict[ModelType, dict[str, Any]] = {
    ModelType.LOGISTIC_REG: _LINEAR_DEFAULTS,
    ModelType.LINEAR_REG: _LINEAR_DEFAULTS,
    ModelType.BOOSTED_TREE_CLASSIFIER: _BOOSTED_DEFAULTS,
    ModelType.BOOSTED_TREE_REGRESSOR: _BOOSTED_DEFAULTS,
    ModelType.RANDOM_FOREST_CLASSIFIER: _FOREST_DEFAULTS,
}


def parse_model_type(value: str | ModelType) -> ModelType:
    try:
        return ModelType(value.upper() if isinstance(value, str) else value)
    except ValueError:
        raise ModelOptionsError([f"model_type {value!r} is not one of {[t.value for t in ModelType]}"]) from None


def parse_model_options(model_type: str | ModelType, raw: Mapping[str, Any] | ModelOptions | None) -> ModelOptions:
    """Validate CREATE MODEL options for a model type; every problem is reported at once, by option name.
    Option names are case-insensitive, as in BigQuery ML."""
    kind = parse_model_type(model_type)
    if isinstance(raw, ModelOptions):
        options = raw
    else:
        options = _validate_fields(raw or {})
    problems = _inapplicable(kind, options) + _inconsistent(kind, options)
    if problems:
        raise ModelOptionsError(problems)
    return options


def _validate_fields(raw: Mapping[str, Any]) -> ModelOptions:
    problems: list[str] = []
    normalized: dict[str, Any] = {}
    for name, value in raw.items():
        key = str(name).lower()
        if key == "model_type":
            problems.append("option 'model_type' is given by the model type, not among the options")
        elif key in normalized:
            problems.append(f"option {key!r} is given twice")
        else:
            normalized[key] = value
    try:
        options = ModelOptions.model_validate(normalized)
    except ValidationError as error:
        problems += [_describe(entry) for entry in error.errors()]
        raise ModelOptionsError(problems) from None
    if problems:
        raise ModelOptionsError(problems)
    return options


def _describe(entry: Mapping[str, Any]) -> str:
    name = str(entry["loc"][0]) if entry["loc"] else "<options>"
    if entry["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown option {name!r}{hint}"
    message = entry["msg"].removeprefix("Value error, ")
    return f"option {name!r}: {message}"


def _inapplicable(kind: ModelType, options: ModelOptions) -> list[str]:
    allowed = APPLICABLE_OPTIONS[kind]
    return [f"option {name!r} does not apply to model type {kind.value}"
            for name in options.explicit() if name not in allowed]


def _inconsistent(kind: ModelType, options: ModelOptions) -> list[str]:
    problems: list[str] = []
    method = options.data_split_method or DataSplitMethod.AUTO_SPLIT
    if method in (DataSplitMethod.SEQ, DataSplitMethod.CUSTOM) and not options.data_split_col:
        problems.append(f"option 'data_split_col' is required when data_split_method is {method.value}")
    if options.data_split_col and method not in (DataSplitMethod.SEQ, DataSplitMethod.CUSTOM):
        problems.append("option 'data_split_col' only applies to data_split_method SEQ or CUSTOM")
    if options.data_split_eval_fraction is not None and method not in (DataSplitMethod.RANDOM, DataSplitMethod.SEQ):
        problems.append("option 'data_split_eval_fraction' only applies to data_split_method RANDOM or SEQ")
    if options.auto_class_weights and options.class_weights:
        problems.append("options 'auto_class_weights' and 'class_weights' exclude each other")
    linear = kind in (ModelType.LOGISTIC_REG, ModelType.LINEAR_REG)
    if linear and options.learn_rate is not None and options.learn_rate_strategy is not LearnRateStrategy.CONSTANT:
        problems.append("option 'learn_rate' needs learn_rate_strategy = 'CONSTANT'")
    return problems


def option_value(kind: ModelType, options: ModelOptions, name: str) -> Any:
    """The value in force: the user's, else BigQuery ML's default for this model type."""
    value = getattr(options, name)
    return BQML_DEFAULTS[kind].get(name) if value is None else value


# ---------------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------
# The trained model
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingSummary:
    rows_total: int
    rows_train: int
    rows_eval: int
    split_method: str            # resolved: AUTO_SPLIT shows as RANDOM or NO_SPLIT
    eval_fraction: float | None
    iterations: int | None       # boosting rounds / solver iterations actually run
    converged: bool
    ignored_options: tuple[str, ...] = ()
    train_seconds: float | None = None  # not stored in the artifact: it would make identical models differ


@dataclass(frozen=True, eq=False)
class TrainedModel:
    model_type: ModelType
    options: ModelOptions
    features: tuple[FeatureSpec, ...]
    label_column: str
    classes: tuple[Any, ...] | None   # sorted labels for classifiers; the last one is positive if binary
    seed: int
    pipeline: Pipeline
    training: TrainingSummary
    drift_reference: DriftReference | None = None  # training rows' feature distribution, for the watcher

    @property
    def is_classifier(self) -> bool:
        return self.model_type.is_classifier

    @property
    def feature_columns(self) -> list[str]:
        return [spec.name for spec in self.features]

    def validate_instances(self, instances: Any, *, extra_columns_ok: bool = False) -> list[str]:
        return validate_instances(self.features, instances, extra_columns_ok=extra_columns_ok)

    def predict_proba(self, rows: Rows) -> np.ndarray:
        if not self.is_classifier:
            raise TypeError(f"{self.model_type.value} has no class probabilities")
        return self.pipeline.predict_proba(feature_matrix(rows, self.features))

    def predict(self, rows: Rows, *, extra_columns_ok: bool = False) -> tuple[list[Any], list[float | None]]:
        """Predicted labels (or values) and scores. The score is the positive class's probability for a
        binary classifier, the winning class's probability for a multiclass one, and None for regression.
        Raises InvalidInstancesError listing every problem if the rows don't fit the features; columns that
        aren't features (a label, a row key) are problems too unless `extra_columns_ok`, as when
        evaluating on table rows."""
        problems = self.validate_instances(rows, extra_columns_ok=extra_columns_ok)
        if problems:
            raise InvalidInstancesError(problems)
        matrix = feature_matrix(rows, self.features)
        if not self.is_classifier:
            values = self.pipeline.predict(matrix)
            return [float(value) for value in values], [None] * len(values)
        probabilities = self.pipeline.predict_proba(matrix)
        assert self.classes is not None
        return predictions_from_probabilities(probabilities, self.classes)


def predictions_from_probabilities(probabilities: np.ndarray, classes: Sequence[Any],
                                   threshold: float = BINARY_THRESHOLD) -> tuple[list[Any], list[float | None]]:
    if len(classes) == 2:
        positive = probabilities[:, 1]
        labels = [classes[1] if p > threshold else classes[0] for p in positive]
        return labels, [float(p) for p in positive]
    winners = probabilities.argmax(axis=1)
    return [classes[i] for i in winners], [float(p) for p in probabilities.max(axis=1)]


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------

def as_rows(data: Rows | Frame) -> list[Row]:
    """Accept rows (a list of dicts) or a columnar frame (dict of equal-length lists)."""
    if isinstance(data, Mapping):
        columns = list(data)
        lengths = {len(data[column]) for column in columns}
        if len(lengths) > 1:
            raise TrainingDataError(f"columns have different lengths: {sorted(lengths)}")
        return [dict(zip(columns, values)) for values in zip(*(data[column] for column in columns))]
    return list(data)


def train(
    model_type: str | ModelType,
    options: Mapping[str, Any] | ModelOptions | None,
    data: Rows | Frame,
    feature_columns: Sequence[str],
    label_column: str,
    seed: int = 0,
    *,
    row_key_column: str = ROW_KEY_COLUMN,
) -> TrainedModel:
    """Train like `CREATE MODEL`: split the rows (options' data_split_*), fit on the training side.
    Rows whose label is NULL are dropped first, as BigQuery ML does. Deterministic for a given seed."""
    started = time.perf_counter()
    kind = parse_model_type(model_type)
    parsed = parse_model_options(kind, options)
    _check_columns(parsed, feature_columns, label_column, row_key_column)
    rows = [row for row in as_rows(data) if row.get(label_column) is not None]
    if not rows:
        raise TrainingDataError(f"no rows with a non-NULL label {label_column!r}")
    split = split_for(kind, parsed, rows, row_key_column=row_key_column)
    if not split.train_rows:
        raise TrainingDataError("the split left no training rows")
    features = infer_feature_specs(split.train_rows, feature_columns)
    labels = _labels(kind, split.train_rows, label_column)
    estimator, ignored = build_estimator(kind, parsed, seed=seed, labels=labels)
    pipeline = _pipeline(features, estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.fit(feature_matrix(split.train_rows, features), labels)
    converged = not any(w.category.__name__ == "ConvergenceWarning" for w in caught)
    classes = tuple(_native(c) for c in pipeline.classes_) if kind.is_classifier else None
    from mlops.ml.drift import build_reference

    summary = TrainingSummary(
        rows_total=len(rows), rows_train=len(split.train_rows), rows_eval=len(split.eval_rows),
        split_method=split.plan.method.value, eval_fraction=split.plan.eval_fraction,
        iterations=_iterations(pipeline[-1]), converged=converged, ignored_options=ignored,
        train_seconds=time.perf_counter() - started)
    reference = build_reference(
        split.train_rows,
        numeric_columns=[f.name for f in features if f.kind is FeatureKind.NUMERIC],
        categorical_columns=[f.name for f in features if f.kind is not FeatureKind.NUMERIC])
    return TrainedModel(kind, parsed, features, label_column, classes, seed, pipeline, summary, reference)


def split_for(model_type: str | ModelType, options: ModelOptions, rows: Rows, *,
              row_key_column: str = ROW_KEY_COLUMN) -> Split:
    """The train/eval split that `train` applies to a snapshot; the evaluator calls it to find a candidate's
    eval rows in the same snapshot."""
    kind = parse_model_type(model_type)
    plan = plan_split(option_value(kind, options, "data_split_method"), len(rows),
                      eval_fraction=options.data_split_eval_fraction, split_column=options.data_split_col,
                      key_column=row_key_column)
    return split_rows(rows, plan)


def _check_columns(options: ModelOptions, feature_columns: Sequence[str], label_column: str,
                   row_key_column: str) -> None:
    problems: list[str] = []
    if not feature_columns:
        problems.append("no feature columns")
    if len(set(feature_columns)) != len(feature_columns):
        problems.append("feature columns repeat")
    if label_column in feature_columns:
        problems.append(f"label {label_column!r} is also a feature")
    if row_key_column in feature_columns:
        problems.append(f"row key {row_key_column!r} can't be a feature: it identifies rows, it doesn't describe them")
    if options.data_split_col and options.data_split_col in feature_columns:
        problems.append(f"data_split_col {options.data_split_col!r} can't be a feature (BigQuery ML excludes it)")
    if options.input_label_cols and list(options.input_label_cols) != [label_column]:
        problems.append(f"input_label_cols {list(options.input_label_cols)} disagrees with label {label_column!r}")
    if problems:
        raise TrainingDataError("; ".join(problems))


def _labels(kind: ModelType, rows: Rows, label_column: str) -> np.ndarray:
    import numpy as np

    values = [row[label_column] for row in rows]
    if kind.is_classifier:
        types = {type(_native(v)) for v in values}
        if len(types) > 1 and not types <= {int, float}:
            raise TrainingDataError(f"label {label_column!r} mixes types {sorted(t.__name__ for t in types)}")
        labels = np.array([_native(v) for v in values])
        if len(np.unique(labels)) < 2:
            raise TrainingDataError(f"label {label_column!r} has a single class in the training rows")
        return labels
    bad = [v for v in values if not _is_number(v)]
    if bad:
        raise TrainingDataError(f"label {label_column!r} must be numeric for {kind.value}, got {bad[0]!r}")
    return np.array([float(v) for v in values])


def _native(value: Any) -> Any:
    """numpy scalars to Python ones, so labels serialize to JSON and compare equal to request values."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _pipeline(features: Sequence[FeatureSpec], estimator: Any) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [i for i, f in enumerate(features) if f.kind is FeatureKind.NUMERIC]
    categorical = [i for i, f in enumerate(features) if f.kind is not FeatureKind.NUMERIC]
    transformers: list[tuple[str, Any, list[int]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline([("impute_mean", SimpleImputer(strategy="mean")),
                                                  ("standardize", StandardScaler())]), numeric))
    if categorical:
        transformers.append(("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", estimator)])


def _iterations(estimator: Any) -> int | None:
    n_iter = getattr(estimator, "n_iter_", None)
    if n_iter is None:
        return None
    try:
        return int(max(n_iter)) if hasattr(n_iter, "__len__") else int(n_iter)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------
# Options -> scikit-learn estimators
# ---------------------------------------------------------------------------------------------------

def build_estimator(kind: ModelType, options: ModelOptions, *, seed: int,
                    labels: np.ndarray) -> tuple[Any, tuple[str, ...]]:
    """The scikit-learn estimator for a model type and options (given the training labels, which class
    weights and the early-stopping tolerance depend on), plus the options it had to ignore."""
    def value(name: str) -> Any:
        return option_value(kind, options, name)

    if kind is ModelType.LOGISTIC_REG:
        return _logistic(value, _class_weight(options, labels), seed), _ignored(
            options, "learn_rate_strategy", "learn_rate", "early_stop", "min_rel_progress")
    if kind is ModelType.LINEAR_REG:
        return _linear(value, seed, len(labels)), _ignored(
            options, "learn_rate_strategy", "learn_rate", "early_stop", "min_rel_progress")
    if kind in (ModelType.BOOSTED_TREE_CLASSIFIER, ModelType.BOOSTED_TREE_REGRESSOR):
        _require_default(kind, options, "l1_reg", "subsample", "num_parallel_tree", "min_split_loss")
        return _boosted(kind, value, _class_weight(options, labels), labels, seed), ()
    _require_default(kind, options, "l1_reg", "l2_reg", "min_split_loss")
    return _forest(value, _class_weight(options, labels), seed), _ignored(options, "early_stop", "min_rel_progress")


def _ignored(options: ModelOptions, *names: str) -> tuple[str, ...]:
    return tuple(name for name in names if getattr(options, name) is not None)


def _require_default(kind: ModelType, options: ModelOptions, *names: str) -> None:
    for name in names:
        chosen = getattr(options, name)
        default = BQML_DEFAULTS[kind][name]
        if chosen is not None and chosen != default:
            raise UnsupportedLocallyError(
                f"option {name!r} = {chosen} has no scikit-learn counterpart for {kind.value}; the local backend "
                f"only supports its BigQuery ML default ({default}). Use the BigQuery ML backend or drop it.")


def _class_weight(options: ModelOptions, labels: np.ndarray) -> str | dict[Any, float] | None:
    if options.auto_class_weights:
        return "balanced"
    if not options.class_weights:
        return None
    import numpy as np

    # class_weights name labels as text (BigQuery ML STRUCTs); sklearn keys them by the label value.
    classes = [_native(label) for label in np.unique(labels)]
    unknown = sorted(set(options.class_weights) - {str(label) for label in classes})
    if unknown:
        raise TrainingDataError(f"class_weights name labels {unknown} absent from the training rows")
    return {label: float(options.class_weights.get(str(label), 1.0)) for label in classes}


def _logistic(value: Any, class_weight: Any, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    l1, l2 = float(value("l1_reg")), float(value("l2_reg"))
    strength = l1 + 2.0 * l2
    return LogisticRegression(
        C=math.inf if strength == 0 else 1.0 / strength,
        l1_ratio=0.0 if strength == 0 else l1 / strength,
        solver="saga" if l1 > 0 else "lbfgs",  # only saga handles an L1 term
        max_iter=int(value("max_iterations")),
        class_weight=class_weight,
        random_state=seed,
    )


def _linear(value: Any, seed: int, train_rows: int) -> Any:
    from sklearn.linear_model import ElasticNet, LinearRegression, Ridge

    l1, l2 = float(value("l1_reg")), float(value("l2_reg"))
    if l1 > 0:
        # ElasticNet minimizes 1/(2n) * summed squared loss + alpha * (...): rescale to the shared convention.
        strength = l1 + 2.0 * l2
        return ElasticNet(alpha=strength / (2.0 * train_rows), l1_ratio=l1 / strength,
                          max_iter=int(value("max_iterations")), random_state=seed)
    if l2 > 0:
        return Ridge(alpha=l2)
    return LinearRegression()  # BigQuery ML's NORMAL_EQUATION path: closed form, no iterations


def _boosted(kind: ModelType, value: Any, class_weight: Any, labels: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    common = dict(
        learning_rate=float(value("learn_rate")),
        max_iter=int(value("max_iterations")),
        max_depth=int(value("max_tree_depth")),
        max_leaf_nodes=None,  # XGBoost grows depth-limited trees, not leaf-limited ones
        l2_regularization=float(value("l2_reg")),
        early_stopping=bool(value("early_stop")),
        # BigQuery ML stops once an iteration improves the loss by less than min_rel_progress (relative).
        # sklearn's tolerance is absolute, so it is min_rel_progress times the loss of the constant model
        # (where boosting starts); measured on the training loss, so no rows are held back from training.
        scoring="loss",
        validation_fraction=None,
        n_iter_no_change=1,
        tol=float(value("min_rel_progress")) * _starting_loss(kind, labels),
        random_state=seed,
    )
    if kind is ModelType.BOOSTED_TREE_CLASSIFIER:
        return HistGradientBoostingClassifier(class_weight=class_weight, **common)
    return HistGradientBoostingRegressor(**common)


def _starting_loss(kind: ModelType, labels: np.ndarray) -> float:
    """The loss of the constant prediction, in the units sklearn's boosting reports its loss in: mean log
    loss (the label entropy) for classifiers, half the mean squared error (half the variance) for regressors."""
    import numpy as np

    if kind is ModelType.BOOSTED_TREE_CLASSIFIER:
        _, counts = np.unique(labels, return_counts=True)
        shares = counts / counts.sum()
        return float(-(shares * np.log(shares)).sum())
    return float(np.var(labels.astype(float))) / 2.0


def _forest(value: Any, class_weight: Any, seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    subsample = float(value("subsample"))
    return RandomForestClassifier(
        n_estimators=int(value("num_parallel_tree")),
        max_depth=int(value("max_tree_depth")),
        max_samples=None if subsample >= 1.0 else subsample,
        class_weight=class_weight,
        random_state=seed,
        n_jobs=1,  # determinism and predictable CPU use in a 1-CPU service
    )

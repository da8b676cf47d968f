"""BigQuery ML's model types and CREATE MODEL options, validated the way CREATE MODEL validates them.

One options object (`ModelOptions`, BigQuery ML's option names) serves both trainer backends: the BigQuery
ML adapter renders it into `CREATE MODEL ... OPTIONS(...)` and `mlops.ml.training` maps it onto
scikit-learn. Each problem names its option. Pure pydantic: no numpy or scikit-learn is imported here,
so the BigQuery ML trainer validates options without carrying either.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from mlops.core.sql import is_column_name
from mlops.ml.errors import ModelOptionsError
from mlops.ml.split import DataSplitMethod

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


class BoosterType(StrEnum):
    GBTREE = "GBTREE"
    DART = "DART"


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
    min_tree_child_weight: Number | None = Field(None, ge=0)
    colsample_bytree: Number | None = Field(None, gt=0, le=1)
    booster_type: Annotated[BoosterType, BeforeValidator(_upper)] | None = None
    data_split_method: Annotated[DataSplitMethod, BeforeValidator(_upper)] | None = None
    data_split_eval_fraction: Number | None = Field(None, gt=0, lt=1)
    data_split_col: str | None = Field(None, min_length=1)
    auto_class_weights: StrictBool | None = None
    class_weights: dict[str, Number] | None = None
    input_label_cols: tuple[str, ...] | None = Field(None, min_length=1, max_length=1)

    @field_validator("data_split_col", "input_label_cols")
    @classmethod
    def _column_names(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        # Column names end up in CREATE MODEL: the same rule as a spec's columns (mlops.core.sql).
        for name in (value,) if isinstance(value, str) else value or ():
            if not is_column_name(name):
                raise ValueError(f"{name[:80]!r} is not a column name: letters, digits and underscores")
        return value

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
                                     "min_split_loss", "min_tree_child_weight", "colsample_bytree", "booster_type"}
_FOREST_OPTIONS = _SPLIT_OPTIONS | {"l1_reg", "l2_reg", "early_stop", "min_rel_progress", "max_tree_depth",
                                    "subsample", "num_parallel_tree", "min_split_loss", "min_tree_child_weight",
                                    "colsample_bytree"}
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
                     "max_tree_depth": 6, "subsample": 1.0, "num_parallel_tree": 1, "min_split_loss": 0.0,
                     "min_tree_child_weight": 1.0, "colsample_bytree": 1.0, "booster_type": BoosterType.GBTREE}
_FOREST_DEFAULTS = {**_COMMON_DEFAULTS, "l2_reg": 1.0, "max_tree_depth": 20, "subsample": 0.8,
                    "num_parallel_tree": 100, "min_split_loss": 0.0, "min_tree_child_weight": 1.0,
                    "colsample_bytree": 1.0}

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


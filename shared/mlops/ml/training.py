"""Training like `CREATE MODEL`: BigQuery ML's model types and options, and the artifact it exports.

- LINEAR_REG / LOGISTIC_REG are fitted with scikit-learn and saved as the portable linear artifact
  (`mlops.ml.linear`: the scaler folded into weights on the raw features).
- BOOSTED_TREE_* and RANDOM_FOREST_CLASSIFIER are trained with XGBoost itself, as BigQuery ML trains
  them, and saved in BigQuery ML's EXPORT MODEL layout (`mlops.ml.trees`).
Either way `train` returns the model loaded back from the artifact's files, so what is evaluated is
what serves.

Regularization, one convention for every linear model: the objective is the summed loss over training
rows + l1_reg * |w|_1 + l2_reg * |w|_2^2 (BigQuery ML does not document its normalization). So
LogisticRegression gets C = 1 / (l1_reg + 2 * l2_reg) and l1_ratio = l1_reg / (l1_reg + 2 * l2_reg),
Ridge gets alpha = l2_reg, and ElasticNet (which averages its loss) gets alpha scaled by 1 / (2n).
Optimizer details that change how the minimum is reached, not the model (learn_rate_strategy,
learn_rate, early_stop and min_rel_progress for linear models) are ignored locally and listed in
`TrainingSummary.ignored_options`.

scikit-learn, xgboost and numpy are imported where a model is fitted, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from mlops.ml.drift import build_reference
from mlops.ml.errors import TrainingDataError
from mlops.ml.features import (
    FeatureKind,
    FeatureSpec,
    Frame,
    Row,
    Rows,
    _is_number,
    feature_matrix,
    infer_feature_specs,
)
from mlops.ml.linear import LINEAR_FILE, LinearModel, from_pipeline
from mlops.ml.model import TrainedModel, TrainingSummary
from mlops.ml.options import (
    ModelOptions,
    ModelType,
    option_value,
    parse_model_options,
    parse_model_type,
)
from mlops.ml.served import ModelCard
from mlops.ml.split import ROW_KEY_COLUMN, Split, SplitPlan, plan_split, split_rows
from mlops.ml.trees import fit_trees, is_tree_model

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline


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
    split_plan: SplitPlan | None = None,
) -> TrainedModel:
    """Train like `CREATE MODEL`: split the rows (options' data_split_*), fit on the training side.
    Rows whose label is NULL are dropped first, as BigQuery ML does. Deterministic for a given seed.
    `split_plan`: the split already resolved for the snapshot (`resolve_split`: its row count, its
    bucket column); by default it is resolved from the options over the labelled rows."""
    started = time.perf_counter()
    kind = parse_model_type(model_type)
    parsed = parse_model_options(kind, options)
    _check_columns(parsed, feature_columns, label_column, row_key_column)
    rows = [row for row in as_rows(data) if row.get(label_column) is not None]
    if not rows:
        raise TrainingDataError(f"no rows with a non-NULL label {label_column!r}")
    split = split_for(kind, parsed, rows, row_key_column=row_key_column, plan=split_plan)
    if not split.train_rows:
        raise TrainingDataError("the split left no training rows")
    features = infer_feature_specs(split.train_rows, feature_columns)
    labels = _labels(kind, split.train_rows, label_column)
    reference = build_reference(
        split.train_rows,
        numeric_columns=[f.name for f in features if f.kind is FeatureKind.NUMERIC],
        categorical_columns=[f.name for f in features if f.kind is not FeatureKind.NUMERIC])

    def card(classes: tuple[Any, ...] | None, summary: TrainingSummary, trained_by: str) -> ModelCard:
        training = asdict(summary)
        training.pop("train_seconds")  # timing isn't part of the model; the event reports it
        training["ignored_options"] = list(training["ignored_options"])
        return ModelCard(kind, features, label_column, classes, trained_by=trained_by,
                         options=parsed.model_dump(mode="json", exclude_none=True), seed=seed,
                         training=training, drift_reference=reference.to_dict())

    def summary(iterations: int | None, converged: bool, ignored: tuple[str, ...]) -> TrainingSummary:
        return TrainingSummary(
            rows_total=len(rows), rows_train=len(split.train_rows), rows_eval=len(split.eval_rows),
            split_method=split.plan.method.value, eval_fraction=split.plan.eval_fraction,
            iterations=iterations, converged=converged, ignored_options=ignored)

    if is_tree_model(kind):
        classes = tuple(sorted({_native(v) for v in labels})) if kind.is_classifier else None
        weights = _sample_weights(parsed, labels) if kind.is_classifier else None
        untimed = summary(None, True, ())
        served, files, rounds = fit_trees(card(classes, untimed, "xgboost"), parsed, split.train_rows,
                                          [_native(v) for v in labels], seed=seed, sample_weight=weights)
        done = replace(untimed, iterations=rounds)
        return TrainedModel(served, files, parsed, seed,
                            replace(done, train_seconds=time.perf_counter() - started), reference)

    estimator, ignored = build_estimator(kind, parsed, seed=seed, labels=labels)
    pipeline = _pipeline(features, estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.fit(feature_matrix(split.train_rows, features), labels)
    converged = not any(w.category.__name__ == "ConvergenceWarning" for w in caught)
    classes = tuple(_native(c) for c in pipeline.classes_) if kind.is_classifier else None
    done = summary(_iterations(pipeline[-1]), converged, ignored)
    artifact = from_pipeline(card(classes, done, "scikit-learn"), pipeline).dumps()
    return TrainedModel(LinearModel.loads(artifact), {LINEAR_FILE: artifact}, parsed, seed,
                        replace(done, train_seconds=time.perf_counter() - started), reference)


def _sample_weights(options: ModelOptions, labels: np.ndarray) -> list[float] | None:
    """class_weights / auto_class_weights as XGBoost sample weights (balanced: n / (classes * count))."""
    weights = _class_weight(options, labels)
    if weights is None:
        return None
    import numpy as np

    if weights == "balanced":
        values, counts = np.unique(labels, return_counts=True)
        share = {_native(v): len(labels) / (len(values) * c) for v, c in zip(values, counts, strict=True)}
        return [float(share[_native(label)]) for label in labels]
    assert isinstance(weights, dict)
    return [float(weights[_native(label)]) for label in labels]


def resolve_split(model_type: str | ModelType, options: ModelOptions, row_count: int, *,
                  bucket_column: str | None = None, row_key_column: str = ROW_KEY_COLUMN) -> SplitPlan:
    """The split the options make of a snapshot of `row_count` rows (AUTO_SPLIT's fraction depends on it)
    whose RANDOM buckets are in `bucket_column` (None: hashed from the row key, see mlops.ml.split)."""
    kind = parse_model_type(model_type)
    return plan_split(option_value(kind, options, "data_split_method"), row_count,
                      eval_fraction=options.data_split_eval_fraction, split_column=options.data_split_col,
                      key_column=row_key_column, bucket_column=bucket_column)


def split_for(model_type: str | ModelType, options: ModelOptions, rows: Rows, *,
              row_key_column: str = ROW_KEY_COLUMN, plan: SplitPlan | None = None) -> Split:
    """The train/eval split that `train` applies to a snapshot; the evaluator calls it to find a candidate's
    eval rows in the same snapshot. Without `plan`, the split is resolved over `rows` themselves."""
    if plan is None:
        plan = resolve_split(model_type, options, len(rows), row_key_column=row_key_column)
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
    """The scikit-learn estimator for a linear model type and options (given the training labels, which
    class weights depend on), plus the options it had to ignore. Trees are XGBoost's (`mlops.ml.trees`)."""
    def value(name: str) -> Any:
        return option_value(kind, options, name)

    if kind is ModelType.LOGISTIC_REG:
        return _logistic(value, _class_weight(options, labels), seed), _ignored(
            options, "learn_rate_strategy", "learn_rate", "early_stop", "min_rel_progress")
    if kind is ModelType.LINEAR_REG:
        return _linear(value, seed, len(labels)), _ignored(
            options, "learn_rate_strategy", "learn_rate", "early_stop", "min_rel_progress")
    raise ValueError(f"{kind.value} is not a linear model")


def _ignored(options: ModelOptions, *names: str) -> tuple[str, ...]:
    return tuple(name for name in names if getattr(options, name) is not None)


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

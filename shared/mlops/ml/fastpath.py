"""Serving a fitted model without scikit-learn's per-call overhead.

scikit-learn spends ~2.5 ms per `predict` call on input validation and dispatch, whatever the batch
size; at hundreds of single-row requests a second that alone saturates a small machine. The fitted
arithmetic itself is tiny: impute, standardize, one-hot, then a dot product or a few dozen shallow
trees. `compile_model` reads those fitted parameters out of the pipeline once, at load time, and
evaluates them in plain numpy/Python (tens of microseconds a row).

It only compiles what it recognizes exactly (the pipeline `mlops.ml.training` builds, with a linear
model or a histogram gradient-boosting model); anything else returns None and the caller serves the
scikit-learn pipeline as it is. `tests/unit/test_ml_fastpath.py` checks that both give the same
predictions and scores on real data for every model type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.ml.errors import InvalidInstancesError
from mlops.ml.features import FeatureKind, ServingPolicy, feature_matrix
from mlops.ml.model import TrainedModel
from mlops.ml.options import BINARY_THRESHOLD


@dataclass(frozen=True)
class _Numeric:
    columns: tuple[int, ...]
    fill: np.ndarray   # the imputer's means
    mean: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class _OneHot:
    columns: tuple[int, ...]
    positions: tuple[dict[Any, int], ...]  # per column: category -> offset within its block
    widths: tuple[int, ...]


class _Trees:
    """A fitted HistGradientBoosting ensemble as plain arrays: one list of trees per output."""

    def __init__(self, estimator: Any):
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=float).ravel()
        self.outputs = [
            [(n["feature_idx"], n["num_threshold"], n["missing_go_to_left"], n["left"], n["right"],
              n["is_leaf"], n["value"]) for n in (tree.nodes for tree in per_output)]
            for per_output in zip(*estimator._predictors, strict=True)
        ] if estimator._predictors else [[] for _ in self.baseline]
        if any(tree.nodes["is_categorical"].any() for round_ in estimator._predictors for tree in round_):
            raise ValueError("categorical splits are not compiled")

    def raw(self, x: np.ndarray) -> np.ndarray:
        out = self.baseline.copy()
        for k, trees in enumerate(self.outputs):
            total = 0.0
            for feature, threshold, missing_left, left, right, is_leaf, value in trees:
                node = 0
                while not is_leaf[node]:
                    v = x[feature[node]]
                    node = (left[node] if (missing_left[node] if v != v else v <= threshold[node])
                            else right[node])
                total += value[node]
            out[k] += total
        return out


class CompiledModel:
    """The same predictions and scores as `TrainedModel.predict`, a row at a time, in numpy."""

    def __init__(self, model: TrainedModel, numeric: _Numeric | None, one_hot: _OneHot | None,
                 estimator: Any):
        self.model = model
        self._numeric = numeric
        self._one_hot = one_hot
        self._width = (len(numeric.columns) if numeric else 0) + (sum(one_hot.widths) if one_hot else 0)
        self._classes = model.classes
        name = type(estimator).__name__
        self._trees = _Trees(estimator) if name.startswith("HistGradientBoosting") else None
        if self._trees is None:
            self._coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
            self._intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=float))

    @property
    def is_classifier(self) -> bool:
        return self.model.is_classifier

    def validate_instances(self, instances: Any) -> list[str]:
        return self.model.validate_instances(instances)

    def serving_problems(self, instances: Any, policy: ServingPolicy) -> list[str]:
        return self.model.serving_problems(instances, policy)

    def serving_notes(self, instance: Mapping[str, Any]) -> dict[str, list[str]]:
        return self.model.serving_notes(instance)

    def _encode(self, raw: np.ndarray) -> np.ndarray:
        x = np.zeros(self._width)
        offset = 0
        if self._numeric is not None:
            values = raw[list(self._numeric.columns)].astype(float)
            values = np.where(np.isnan(values), self._numeric.fill, values)
            width = len(self._numeric.columns)
            x[:width] = (values - self._numeric.mean) / self._numeric.scale
            offset = width
        if self._one_hot is not None:
            for column, positions, width in zip(self._one_hot.columns, self._one_hot.positions,
                                                self._one_hot.widths, strict=True):
                hit = positions.get(raw[column])
                if hit is not None:  # unknown categories encode as all zeros (handle_unknown="ignore")
                    x[offset + hit] = 1.0
                offset += width
        return x

    def _raw_output(self, x: np.ndarray) -> np.ndarray:
        if self._trees is not None:
            return self._trees.raw(x)
        return self._coef @ x + self._intercept

    def predict(self, rows: Sequence[dict[str, Any]]) -> tuple[list[Any], list[float | None]]:
        problems = self.validate_instances(rows)
        if problems:
            raise InvalidInstancesError(problems)
        matrix = feature_matrix(rows, self.model.features)
        labels: list[Any] = []
        scores: list[float | None] = []
        for raw in matrix:
            out = self._raw_output(self._encode(raw))
            if not self.is_classifier:
                labels.append(float(out[0]))
                scores.append(None)
            elif self._classes is None:
                raise TypeError("a classifier without classes")
            elif len(out) == 1:  # binary: one logit for the positive (last) class
                positive = 1.0 / (1.0 + math.exp(-float(out[0])))
                labels.append(self._classes[1] if positive > BINARY_THRESHOLD else self._classes[0])
                scores.append(positive)
            else:
                shifted = np.exp(out - out.max())
                probabilities = shifted / shifted.sum()
                best = int(probabilities.argmax())
                labels.append(self._classes[best])
                scores.append(float(probabilities[best]))
        return labels, scores


def _numeric_block(transformer: Any, columns: Sequence[int]) -> _Numeric | None:
    steps = dict(transformer.named_steps) if hasattr(transformer, "named_steps") else {}
    imputer, scaler = steps.get("impute_mean"), steps.get("standardize")
    if imputer is None or scaler is None or len(steps) != 2 or imputer.strategy != "mean":
        return None
    mean = scaler.mean_ if scaler.with_mean else np.zeros(len(columns))
    scale = scaler.scale_ if scaler.with_std else np.ones(len(columns))
    return _Numeric(tuple(columns), np.asarray(imputer.statistics_, float), np.asarray(mean, float),
                    np.asarray(scale, float))


def _one_hot_block(encoder: Any, columns: Sequence[int]) -> _OneHot | None:
    if encoder.drop is not None or getattr(encoder, "handle_unknown", "") != "ignore" or encoder.sparse_output:
        return None
    if getattr(encoder, "_infrequent_enabled", False):
        return None
    positions = tuple({category: i for i, category in enumerate(categories)} for categories in encoder.categories_)
    return _OneHot(tuple(columns), positions, tuple(len(c) for c in encoder.categories_))


def compile_model(model: TrainedModel) -> CompiledModel | None:
    """A CompiledModel for a pipeline this module recognizes exactly; None for anything else."""
    try:
        if [name for name, _ in model.pipeline.steps] != ["preprocess", "model"]:
            return None
        preprocess, estimator = model.pipeline.named_steps["preprocess"], model.pipeline.named_steps["model"]
        numeric = one_hot = None
        for name, transformer, columns in preprocess.transformers_:
            if name == "numeric" and one_hot is None:  # the encoding lays numeric columns out first
                numeric = _numeric_block(transformer, columns)
                if numeric is None:
                    return None
            elif name == "one_hot":
                one_hot = _one_hot_block(transformer, columns)
                if one_hot is None:
                    return None
            elif not (name == "remainder" and transformer == "drop"):
                return None
        kind = type(estimator).__name__
        if kind not in {"LogisticRegression", "LinearRegression", "Ridge", "ElasticNet", "Lasso",
                        "HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}:
            return None
        expected = {f.kind for f in model.features}
        if not expected <= {FeatureKind.NUMERIC, FeatureKind.STRING, FeatureKind.BOOL}:
            return None
        return CompiledModel(model, numeric, one_hot, estimator)
    except (AttributeError, KeyError, ValueError, TypeError):
        return None

"""The metrics BigQuery ML's ML.EVALUATE returns, under the same names, computed locally.

Classifiers: precision, recall, accuracy, f1_score, log_loss, roc_auc.
- Binary: the positive class is the larger label (1 over 0, TRUE over FALSE, "yes" over "no"), a row is
  predicted positive when its probability exceeds 0.5 (ML.EVALUATE's default threshold).
- Multiclass, as BigQuery ML documents its aggregate metrics: accuracy is micro-averaged (share of rows
  predicted right); precision, recall, f1_score, log_loss and roc_auc are macro-averaged, each computed per
  class one-vs-rest and then averaged without weights. Classes absent from the rows are left out of the
  roc_auc average (it is undefined for them).
Regressors: mean_absolute_error, mean_squared_error, mean_squared_log_error, median_absolute_error,
r2_score, explained_variance.

A metric that is undefined on the given rows is left out of the result rather than set to NaN (which
JSON can't carry): roc_auc when the rows hold a single class, mean_squared_log_error when a label or a
prediction is -1 or below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.ml.options import BINARY_THRESHOLD

if TYPE_CHECKING:
    from mlops.ml.model import TrainedModel
    from mlops.ml.served import ServedModel

CLASSIFIER_METRICS = ("precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc")
REGRESSOR_METRICS = ("mean_absolute_error", "mean_squared_error", "mean_squared_log_error",
                     "median_absolute_error", "r2_score", "explained_variance")

_HIGHER_IS_BETTER = {
    "precision": True, "recall": True, "accuracy": True, "f1_score": True, "roc_auc": True, "log_loss": False,
    "mean_absolute_error": False, "mean_squared_error": False, "mean_squared_log_error": False,
    "median_absolute_error": False, "r2_score": True, "explained_variance": True,
}
_PROBABILITY_FLOOR = 1e-15  # as sklearn's log_loss clips


def higher_is_better(metric: str) -> bool:
    """The direction of an ML.EVALUATE metric, for promotion gates."""
    try:
        return _HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(_HIGHER_IS_BETTER)}") from None


def gain(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is than the champion on `metric` (negative when worse)."""
    return candidate - champion if higher_is_better(metric) else champion - candidate


def evaluate(model: ServedModel | TrainedModel, rows: Sequence[Mapping[str, Any]], *,
             threshold: float = BINARY_THRESHOLD) -> dict[str, float]:
    """ML.EVALUATE of `model` on `rows` (which carry the label column; rows with a NULL label are skipped)."""
    labelled = [row for row in rows if row.get(model.label_column) is not None]
    if not labelled:
        raise ValueError(f"no rows with a non-NULL label {model.label_column!r} to evaluate on")
    truth = [row[model.label_column] for row in labelled]
    if model.is_classifier:
        assert model.classes is not None
        return classification_metrics(truth, model.predict_proba(labelled), model.classes, threshold=threshold)
    predictions, _ = model.predict(labelled, extra_columns_ok=True)
    return regression_metrics([float(value) for value in truth], predictions)


def classification_metrics(truth: Sequence[Any], probabilities: np.ndarray, classes: Sequence[Any], *,
                           threshold: float = BINARY_THRESHOLD) -> dict[str, float]:
    """Metrics from true labels and class probabilities (columns in the order of `classes`)."""
    probabilities = np.asarray(probabilities, dtype=float)
    index = {label: position for position, label in enumerate(classes)}
    unknown = sorted({str(label) for label in truth if label not in index})
    if unknown:
        raise ValueError(f"labels {unknown} were not seen in training (classes {list(classes)})")
    true_index = np.array([index[label] for label in truth])
    if len(classes) == 2:
        return _binary_metrics(true_index == 1, probabilities[:, 1], threshold)
    return _multiclass_metrics(true_index, probabilities)


def _binary_metrics(actual: np.ndarray, positive_probability: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    predicted = positive_probability > threshold
    precision, recall, f1 = _precision_recall_f1(actual, predicted)
    metrics = {
        "precision": precision,
        "recall": recall,
        "accuracy": float(np.mean(predicted == actual)),
        "f1_score": f1,
        "log_loss": _binary_log_loss(actual, positive_probability),
    }
    if actual.any() and not actual.all():
        metrics["roc_auc"] = float(roc_auc_score(actual, positive_probability))
    return metrics


def _multiclass_metrics(true_index: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    predicted_index = probabilities.argmax(axis=1)
    per_class = []
    aucs = []
    for position in range(probabilities.shape[1]):
        actual = true_index == position
        per_class.append((*_precision_recall_f1(actual, predicted_index == position),
                          _binary_log_loss(actual, probabilities[:, position])))
        if actual.any() and not actual.all():
            aucs.append(float(roc_auc_score(actual, probabilities[:, position])))
    precision, recall, f1, log_loss = (float(np.mean(column)) for column in zip(*per_class))
    metrics = {"precision": precision, "recall": recall, "accuracy": float(np.mean(predicted_index == true_index)),
               "f1_score": f1, "log_loss": log_loss}
    if aucs:
        metrics["roc_auc"] = float(np.mean(aucs))
    return metrics


def _precision_recall_f1(actual: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    # An empty denominator gives 0, as sklearn's zero_division=0 does.
    true_positive = float(np.sum(actual & predicted))
    precision = true_positive / float(np.sum(predicted)) if predicted.any() else 0.0
    recall = true_positive / float(np.sum(actual)) if actual.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def _binary_log_loss(actual: np.ndarray, positive_probability: np.ndarray) -> float:
    p = np.clip(positive_probability, _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    return float(-np.mean(np.where(actual, np.log(p), np.log(1 - p))))


def regression_metrics(truth: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    from sklearn.metrics import explained_variance_score, r2_score

    actual = np.asarray(truth, dtype=float)
    predicted = np.asarray(predictions, dtype=float)
    errors = predicted - actual
    metrics = {
        "mean_absolute_error": float(np.mean(np.abs(errors))),
        "mean_squared_error": float(np.mean(errors ** 2)),
        "median_absolute_error": float(np.median(np.abs(errors))),
    }
    if np.all(actual > -1) and np.all(predicted > -1):
        metrics["mean_squared_log_error"] = float(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2))
    if len(actual) > 1:  # both need a variance
        metrics["r2_score"] = float(r2_score(actual, predicted))
        metrics["explained_variance"] = float(explained_variance_score(actual, predicted))
    return {name: metrics[name] for name in REGRESSOR_METRICS if name in metrics and math.isfinite(metrics[name])}

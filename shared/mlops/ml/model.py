"""A trained model: its features, its fitted scikit-learn pipeline, and how it predicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.ml.errors import InvalidInstancesError
from mlops.ml.features import FeatureSpec, Rows, feature_matrix, validate_instances
from mlops.ml.options import BINARY_THRESHOLD, ModelOptions, ModelType

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from mlops.ml.drift import DriftReference


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


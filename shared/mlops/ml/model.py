"""A trained model: its features, its fitted scikit-learn pipeline, and how it predicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mlops.ml.errors import InvalidInstancesError
from mlops.ml.features import (
    FeatureSpec,
    Rows,
    ServingPolicy,
    feature_matrix,
    instance_notes,
    validate_instances,
)
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

    @cached_property
    def categories(self) -> dict[str, frozenset[str]]:
        """The categories each STRING/BOOL feature's one-hot encoding learned in training (the NULL
        category among them when training saw NULLs there); empty for a pipeline without that step."""
        try:
            preprocess = self.pipeline.named_steps["preprocess"]
            for name, encoder, columns in preprocess.transformers_:
                if name == "one_hot":
                    return {self.features[int(i)].name: frozenset(str(c) for c in learned)
                            for i, learned in zip(columns, encoder.categories_, strict=True)}
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            pass
        return {}

    def serving_problems(self, instances: Any, policy: ServingPolicy) -> list[str]:
        """`validate_instances` for a prediction request: NULLs and unseen categories as `policy` says."""
        return validate_instances(self.features, instances, categories=self.categories, policy=policy)

    def serving_notes(self, instance: Mapping[str, Any]) -> dict[str, list[str]]:
        """Which features of a valid instance were NULL (imputed) or an unseen category (weight 0)."""
        return instance_notes(self.features, self.categories, instance)

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


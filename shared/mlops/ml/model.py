"""A trained model: the servable model its artifact folder holds, and how it was trained.

Training (`mlops.ml.training`) ends by writing the artifact folder's files and loading the servable
model back from them, so what the trainer evaluates, stores and announces is the model that serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.ml.features import FeatureSpec, ServingPolicy
from mlops.ml.options import ModelOptions, ModelType
from mlops.ml.served import ServedModel, predictions_from_probabilities

if TYPE_CHECKING:
    import numpy as np

    from mlops.ml.drift import DriftReference

__all__ = ["TrainedModel", "TrainingSummary", "predictions_from_probabilities"]


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
    served: ServedModel               # a LinearModel or a TreeModel, loaded from `files`
    files: Mapping[str, bytes]        # the artifact folder: relative name -> bytes
    options: ModelOptions
    seed: int
    training: TrainingSummary
    drift_reference: DriftReference | None = None  # training rows' feature distribution, for the watcher

    @property
    def model_type(self) -> ModelType:
        return self.served.model_type

    @property
    def features(self) -> tuple[FeatureSpec, ...]:
        return self.served.features

    @property
    def label_column(self) -> str:
        return self.served.label_column

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self.served.classes

    @property
    def is_classifier(self) -> bool:
        return self.served.is_classifier

    @property
    def feature_columns(self) -> list[str]:
        return self.served.feature_columns

    @property
    def categories(self) -> Mapping[str, frozenset[str]]:
        return self.served.categories

    def validate_instances(self, instances: Any, *, extra_columns_ok: bool = False) -> list[str]:
        return self.served.validate_instances(instances, extra_columns_ok=extra_columns_ok)

    def serving_problems(self, instances: Any, policy: ServingPolicy) -> list[str]:
        return self.served.serving_problems(instances, policy)

    def serving_notes(self, instance: Mapping[str, Any]) -> dict[str, list[str]]:
        return self.served.serving_notes(instance)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.served.predict_proba(rows)

    def predict(self, rows: Sequence[Mapping[str, Any]], *,
                extra_columns_ok: bool = False) -> tuple[list[Any], list[float | None]]:
        return self.served.predict(rows, extra_columns_ok=extra_columns_ok)

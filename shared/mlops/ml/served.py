"""What every servable model shares, whichever family: its card, input validation, labels from scores.

A servable model is built from an artifact folder's files (`mlops.ml.artifact`) and needs neither
scikit-learn nor any pickled object: `mlops.ml.linear.LinearModel` is a dot product over the raw
features, `mlops.ml.trees.TreeModel` an XGBoost booster (its trees walked in numpy for a few rows,
`mlops.ml.tree_walk`, and the booster's in-place prediction for larger batches). Both give the
predictor what `predictor.serving.ServableModel` asks for (`serving_problems`, `serving_notes`,
`predict`, `is_classifier`) and give the evaluator class probabilities (`predict_proba`), so the
metrics that gate a model come from the code and the bytes that will serve it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.ml.errors import InvalidInstancesError
from mlops.ml.features import FeatureSpec, ServingPolicy, instance_notes, validate_instances
from mlops.ml.options import BINARY_THRESHOLD, ModelType

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ModelCard:
    """What the artifact says about its model besides the arithmetic: enough to validate requests,
    name labels, evaluate on table rows and trace where the model came from."""

    model_type: ModelType
    features: tuple[FeatureSpec, ...]
    label_column: str
    classes: tuple[Any, ...] | None       # sorted labels; the last one is positive if binary
    trained_by: str = ""                   # "scikit-learn" / "xgboost" / "bigquery-ml"
    options: dict[str, Any] = field(default_factory=dict)  # BigQuery ML option names, as validated
    seed: int | None = None
    training: dict[str, Any] = field(default_factory=dict)  # TrainingSummary as a dict, without timing
    drift_reference: dict[str, Any] | None = None

    @property
    def is_classifier(self) -> bool:
        return self.model_type.is_classifier

    def to_json(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type.value,
            "features": [{"name": f.name, "kind": f.kind.value} for f in self.features],
            "label_column": self.label_column,
            "classes": list(self.classes) if self.classes is not None else None,
            "trained_by": self.trained_by,
            "options": self.options,
            "seed": self.seed,
            "training": self.training,
            "drift_reference": self.drift_reference,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelCard:
        from mlops.ml.features import FeatureKind

        classes = data.get("classes")
        return cls(
            model_type=ModelType(data["model_type"]),
            features=tuple(FeatureSpec(str(f["name"]), FeatureKind(f["kind"])) for f in data["features"]),
            label_column=str(data["label_column"]),
            classes=tuple(classes) if classes is not None else None,
            trained_by=str(data.get("trained_by", "")),
            options=dict(data.get("options") or {}),
            seed=data.get("seed"),
            training=dict(data.get("training") or {}),
            drift_reference=data.get("drift_reference"),
        )


class ServedModel:
    """The shared half of a servable model; a family supplies `categories` and `_scores`."""

    card: ModelCard

    # -- what a family provides ----------------------------------------------------------------
    @property
    def categories(self) -> Mapping[str, frozenset[str]]:
        """Per STRING/BOOL feature, the categories training gave a value to (the NULL category among
        them when training saw NULLs there): anything else is unseen."""
        raise NotImplementedError

    def _scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(rows, classes) probabilities for a classifier, (rows,) values for a regressor."""
        raise NotImplementedError

    # -- the predictor's protocol --------------------------------------------------------------
    @property
    def is_classifier(self) -> bool:
        return self.card.is_classifier

    @property
    def features(self) -> tuple[FeatureSpec, ...]:
        return self.card.features

    @property
    def model_type(self) -> ModelType:
        return self.card.model_type

    @property
    def label_column(self) -> str:
        return self.card.label_column

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self.card.classes

    @property
    def feature_columns(self) -> list[str]:
        return [spec.name for spec in self.card.features]

    def validate_instances(self, instances: Any, *, extra_columns_ok: bool = False) -> list[str]:
        return validate_instances(self.card.features, instances, extra_columns_ok=extra_columns_ok)

    def serving_problems(self, instances: Any, policy: ServingPolicy) -> list[str]:
        """`validate_instances` for a prediction request: NULLs and unseen categories as `policy` says."""
        return validate_instances(self.card.features, instances, categories=self.categories, policy=policy)

    def serving_notes(self, instance: Mapping[str, Any]) -> dict[str, list[str]]:
        """Which features of a valid instance were NULL (imputed) or an unseen category."""
        return instance_notes(self.card.features, self.categories, instance)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not self.is_classifier:
            raise TypeError(f"{self.model_type.value} has no class probabilities")
        return self._scores(rows)

    def predict(self, rows: Sequence[Mapping[str, Any]], *,
                extra_columns_ok: bool = False) -> tuple[list[Any], list[float | None]]:
        """Predicted labels (or values) and scores: the positive class's probability for a binary
        classifier, the winning class's for a multiclass one, None for regression. Raises
        InvalidInstancesError listing every problem if the rows don't fit the features; columns that
        aren't features are problems too unless `extra_columns_ok` (table rows, when evaluating)."""
        problems = self.validate_instances(rows, extra_columns_ok=extra_columns_ok)
        if problems:
            raise InvalidInstancesError(problems)
        scores = self._scores(rows)
        if not self.is_classifier:
            return [float(value) for value in scores], [None] * len(scores)
        assert self.classes is not None
        return predictions_from_probabilities(scores, self.classes)


def predictions_from_probabilities(probabilities: np.ndarray, classes: Sequence[Any],
                                   threshold: float = BINARY_THRESHOLD) -> tuple[list[Any], list[float | None]]:
    if len(classes) == 2:
        positive = probabilities[:, 1]
        labels = [classes[1] if p > threshold else classes[0] for p in positive]
        return labels, [float(p) for p in positive]
    winners = probabilities.argmax(axis=1)
    return [classes[i] for i in winners], [float(p) for p in probabilities.max(axis=1)]

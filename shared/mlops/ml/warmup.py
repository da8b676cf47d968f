"""Start-up warm-up for services that train, score or serve models.

The first fit, the first artifact load and the first predict in a fresh process pay seconds of lazy
imports and compiled-extension set-up. A service calls its warm-up while it starts (before it
reports healthy) so that cost never lands on the first event or request:
- `warm_up()`, for the trainer and the evaluator: trains each family on a tiny made-up table
  (scikit-learn and XGBoost); nothing is stored or served.
- `warm_up_serving(model)`, for a serving container: predicts with the one model it serves, through
  the calls a request makes. It trains nothing, so a serving process imports neither scikit-learn
  nor the training code, and a linear model's process not even XGBoost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.ml.features import FeatureKind, ServingPolicy
from mlops.ml.tree_walk import WALK_MAX_ROWS

if TYPE_CHECKING:
    from mlops.ml.served import ServedModel

_MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("LOGISTIC_REG", {"max_iterations": 2}), ("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 2}), ("LINEAR_REG", {}))


def warm_up() -> None:
    # Imported here: a serving process imports this module for warm_up_serving and must not pay for these.
    from mlops.ml.artifact import folder_checksum, load_artifact
    from mlops.ml.metrics import evaluate
    from mlops.ml.split import ROW_KEY_COLUMN
    from mlops.ml.training import train

    rows = [{ROW_KEY_COLUMN: str(i), "x": float(i % 7), "c": "ab"[i % 2], "y": i % 2} for i in range(40)]
    for model_type, options in _MODELS:
        model = train(model_type, {**options, "data_split_method": "NO_SPLIT"}, rows, ["x", "c"], "y", seed=0)
        loaded = load_artifact(model.files, expected_checksum=folder_checksum(model.files))
        evaluate(loaded, rows)
        loaded.predict([{"x": 1.0, "c": "a"}])


def warm_up_serving(model: ServedModel, policy: ServingPolicy | None = None) -> None:
    """Serve made-up instances (every number 0, every category NULL: valid for any model) the way a
    request is served: checked, scored, annotated; once as one row and once as a batch, since a tree
    model scores a few rows and larger batches by different code (`mlops.ml.tree_walk`)."""
    instance = {spec.name: 0.0 if spec.kind is FeatureKind.NUMERIC else None for spec in model.features}
    model.serving_problems([instance], policy or ServingPolicy())
    model.serving_notes(instance)
    model.predict([instance])
    model.predict([instance] * (WALK_MAX_ROWS + 1))

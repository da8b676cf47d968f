"""Start-up warm-up for services that train, score or serve models.

The first fit, the first artifact load and the first predict in a fresh process pay seconds of lazy
imports and compiled-extension set-up. A service calls `warm_up()` while it starts (before it
reports healthy) so that cost never lands on the first event or request. It trains on a tiny
made-up table; nothing is stored or served.
"""

from __future__ import annotations

from typing import Any

from mlops.ml.artifact import folder_checksum, load_artifact
from mlops.ml.metrics import evaluate
from mlops.ml.split import ROW_KEY_COLUMN
from mlops.ml.training import train

_MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("LOGISTIC_REG", {"max_iterations": 2}), ("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 2}), ("LINEAR_REG", {}))


def warm_up() -> None:
    rows = [{ROW_KEY_COLUMN: str(i), "x": float(i % 7), "c": "ab"[i % 2], "y": i % 2} for i in range(40)]
    for model_type, options in _MODELS:
        model = train(model_type, {**options, "data_split_method": "NO_SPLIT"}, rows, ["x", "c"], "y", seed=0)
        loaded = load_artifact(model.files, expected_checksum=folder_checksum(model.files))
        evaluate(loaded, rows)
        loaded.predict([{"x": 1.0, "c": "a"}])

"""What a serving process imports, checked in a fresh interpreter: the family of the model it serves and
the clients of its ports, and nothing of the push machinery, of training, or of scikit-learn (the image
installs none). A linear model's process does not even import XGBoost."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.ml.artifact import folder_checksum
from mlops.ml.training import train

ROOT = Path(__file__).resolve().parents[2]

# Runs in the child: the entry point's view of what the image lacks, the modules start() builds the
# ports with, then the app on a folder of files and a bus that takes anything, and one prediction.
CHILD = """
import json, sys
from concurrent.futures import Future
from pathlib import Path
from predictor.__main__ import NOT_IN_IMAGE
for name in NOT_IN_IMAGE:
    sys.modules.setdefault(name, None)
import mlops.adapters.gcs, mlops.adapters.pubsub, mlops.runtime.builders
from mlops.core.settings import load_settings
from predictor.app import build_app
from predictor.settings import PredictorSettings

folder = Path(sys.argv[1])

class Folder:
    bucket = "models"
    def list(self, prefix):
        return sorted(prefix + p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    def get(self, path):
        return (folder / path.split("/", 1)[1]).read_bytes()

class Bus:
    def publish_raw(self, topic, data, attributes):
        done = Future()
        done.set_result("1")
        return done

settings = load_settings(PredictorSettings, "predictor", json.loads(sys.argv[2]))
app, batcher = build_app(settings, Folder(), Bus())
answer = app.test_client().post("/predict", json={"instances": [{"size": 1.0, "colour": "red"}]})
assert answer.status_code == 200, answer.json
batcher.close()
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""

NEVER = ("sklearn", "pandas", "pyarrow", "mlops.runtime.push", "mlops.runtime.push_auth", "mlops.ml.training",
         "mlops.ml.metrics", "mlops.ml.drift", "gunicorn")


@pytest.mark.parametrize(("model_type", "xgboost"), [("LOGISTIC_REG", False), ("BOOSTED_TREE_CLASSIFIER", True)])
def test_a_serving_process_imports_only_what_serving_its_model_needs(tmp_path, model_type, xgboost):
    rng = random.Random(5)
    rows = [{"_row_id": f"r{i}", "size": rng.random(), "colour": rng.choice(["red", "blue"]), "y": i % 2}
            for i in range(60)]
    files = train(model_type, {"max_iterations": 3}, rows, ["size", "colour"], "y", seed=1).files
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    env = {"MLOPS_PROJECT": "test-project", "AIP_STORAGE_URI": "gs://models/m/", "MLOPS_PIPELINE": "p",
           "MLOPS_MODEL_VERSION": "1", "MLOPS_ARTIFACT_CHECKSUM": folder_checksum(files)}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), json.dumps(env)], capture_output=True,
                           text=True, timeout=240, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "services" / "predictor")})
    assert child.returncode == 0, child.stderr[-3000:]
    loaded = set(json.loads(child.stdout.strip().splitlines()[-1]))
    assert not [m for m in loaded for never in NEVER if m == never or m.startswith(never + ".")]
    assert ("xgboost" in loaded) is xgboost
    assert {"google.cloud.storage", "google.cloud.pubsub_v1", "numpy", "waitress"} <= loaded

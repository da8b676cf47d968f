"""The predictor image's entry point, run as the local Vertex AI stand-in runs it (`LocalImages`: the
Dockerfile's `python -m predictor`), against the Cloud Storage and Pub/Sub emulators: it answers its
health route once the model is loaded, and on SIGTERM publishes every prediction it answered before
it exits 0; a model it cannot serve stops it with exit code 4 and one line on stderr."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from mlops.adapters.gcs import GcsBlobStore, storage_client
from mlops.core.events import PredictionMade, decode
from mlops.core.topology import archive_subscription
from mlops.ml.artifact import folder_checksum
from mlops.ml.training import train
from mlops.stack.processes import free_port, http_ok
from mlops.stack.provision import provision_pubsub
from mlops.stack.vertex_local import LocalImages
from tests.integration.harness import pull, unique_project, wait_for

pytestmark = pytest.mark.integration

HEALTH = "/v1/endpoints/1/deployedModels/7"
PREDICT = HEALTH + ":predict"


def trained(model_type: str) -> dict[str, bytes]:
    rng = random.Random(11)
    rows = [{"_row_id": f"r{i}", "size": rng.random() * 5, "colour": rng.choice(["red", "blue"]), "y": i % 2}
            for i in range(80)]
    return dict(train(model_type, {"max_iterations": 3}, rows, ["size", "colour"], "y", seed=2).files)


@pytest.fixture
def stack(storage_emulator, pubsub_emulator, monkeypatch) -> dict[str, Any]:
    """A project with the topology's topics, a bucket for artifacts, and the environment a container gets."""
    project = unique_project()
    emulators = {**storage_emulator.env(), **pubsub_emulator.env()}
    for key, value in emulators.items():
        monkeypatch.setenv(key, value)
    provision_pubsub(project, {})
    blobs = GcsBlobStore(storage_client(project, storage_emulator.endpoint), f"{project}-vertex")
    blobs.ensure_bucket("US")
    platform = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PREDICTOR_", "AIP_"))}
    return {"project": project, "blobs": blobs, "env": platform}


def start_container(stack: dict[str, Any], files: dict[str, bytes], checksum: str | None = None,
                    **settings: str) -> tuple[subprocess.Popen[str], int]:
    folder = f"deployments/{random.randrange(10**9)}/artifacts/"
    for name, data in files.items():
        stack["blobs"].put(folder + name, data)
    port = free_port()
    argv, cwd = LocalImages().command("europe-docker.pkg.dev/p/r/predictor:v1", port)
    env = {**stack["env"], "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": HEALTH, "AIP_PREDICT_ROUTE": PREDICT,
           "AIP_STORAGE_URI": f"gs://{stack['blobs'].bucket}/{folder}", "AIP_DEPLOYED_MODEL_ID": "7",
           "MLOPS_PROJECT": stack["project"], "MLOPS_PIPELINE": "shapes", "MLOPS_MODEL_VERSION": "1",
           "MLOPS_ARTIFACT_CHECKSUM": checksum or folder_checksum(files), "PYTHONUNBUFFERED": "1",
           **{f"MLOPS_{k.upper()}": v for k, v in settings.items()}}
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, port


def post(url: str, body: dict[str, Any], request_id: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Request-Id": request_id})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("model_type", ["LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER"])
def test_it_serves_once_loaded_and_publishes_every_answered_prediction_on_sigterm(stack, model_type):
    # A minute between publishes: what is published before it exits, SIGTERM's flush published.
    process, port = start_container(stack, trained(model_type), log_interval_s="60")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or http_ok(base + HEALTH, timeout=1.0), timeout=120,
                 what="the serving process to answer its health route")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        instances = [{"size": 1.5, "colour": "red"}, {"size": 4.0, "colour": "blue"}]
        status, answer = post(base + PREDICT, {"instances": instances}, "sigterm-1")
        assert status == 200 and len(answer["predictions"]) == 2 and answer["deployedModelId"] == "7"
        with urllib.request.urlopen(base + HEALTH, timeout=5) as health:
            assert json.loads(health.read())["pending"] == 2  # answered, not yet published
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [message] = pull(stack["project"], archive_subscription(PredictionMade.EVENT_TYPE), wanted=1)
    made = decode(PredictionMade.EVENT_TYPE, message.data)
    assert made.pipeline == "shapes" and [p.request_id for p in made.predictions] == ["sigterm-1:0", "sigterm-1:1"]
    assert {p.deployed_model_id for p in made.predictions} == {"7"}


def test_a_model_it_cannot_serve_stops_it_with_exit_code_4_and_one_line(stack):
    files = trained("LOGISTIC_REG")
    process, port = start_container(stack, files, checksum="sha256:" + "0" * 64)
    try:
        assert process.wait(timeout=120) == 4
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [line] = process.stderr.read().strip().splitlines() if process.stderr else []
    assert line.startswith("predictor cannot start: the model in gs://") and "checksum" in line
    assert not http_ok(f"http://127.0.0.1:{port}{HEALTH}", timeout=1.0)

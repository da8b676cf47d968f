"""The predictor as a Vertex AI serving container, on in-memory ports: it serves the ONE model version
in AIP_STORAGE_URI (checksum verified) or refuses to start with one line; limits, JSON errors for every
failure, exact 400s, NULLs and unseen categories, durable logging; each prediction.made names the
version and the deployed model that answered."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mlops.core.events import PredictionMade, decode
from mlops.core.settings import load_settings
from mlops.ml.artifact import folder_checksum
from mlops.ml.training import train
from mlops.testing.memory import InMemoryBlobStore, InMemoryEventBus
from predictor.app import build_app
from predictor.batcher import MAX_EVENT_BYTES, PredictionBatcher
from predictor.settings import PredictorSettings

BUCKET = "vertex-managed-copy"  # on Vertex AI, a bucket of Vertex's, not the project's layout
PIPELINE = "shapes"
FEATURES = ["size", "colour", "shiny"]


def build_artifacts() -> dict[str, dict[str, bytes]]:
    """Two small trained models (versions 1 and 2) as artifact folders; colour knows red/blue (and NULL)."""
    rng = random.Random(3)
    rows = [{"_row_id": f"r{i}", "size": rng.random() * 10, "colour": rng.choice(["red", "blue", None]),
             "shiny": rng.choice([True, False]), "big": "yes" if i % 2 else "no"} for i in range(120)]
    return {v: dict(train("LOGISTIC_REG", {"l2_reg": float(v)}, rows, FEATURES, "big", seed=int(v)).files)
            for v in ("1", "2")}


@pytest.fixture(scope="module")
def artifacts() -> dict[str, dict[str, bytes]]:
    return build_artifacts()


def folder(version: str) -> str:
    return f"gs://{BUCKET}/deployments/{version}/artifacts/"


@dataclass
class Predictor:
    app: Flask
    client: FlaskClient
    batcher: PredictionBatcher
    bus: InMemoryEventBus
    blobs: InMemoryBlobStore

    def predict(self, body: Any, **kwargs: Any) -> Any:
        if isinstance(body, (bytes, str)):
            return self.client.post("/predict", data=body, content_type="application/json", **kwargs)
        return self.client.post("/predict", json=body, **kwargs)


def stored(artifacts: dict[str, dict[str, bytes]]) -> InMemoryBlobStore:
    blobs = InMemoryBlobStore(BUCKET)
    for version, files in artifacts.items():
        for name, data in files.items():
            blobs.put(folder(version) + name, data)
    return blobs


def container_env(artifacts: dict[str, dict[str, bytes]], version: str = "1", **environ: str) -> dict[str, str]:
    """What Vertex AI (AIP_*) and the registrar (MLOPS_*) give the serving container of `version`."""
    return {"MLOPS_PROJECT": "test-project", "AIP_STORAGE_URI": folder(version), "AIP_DEPLOYED_MODEL_ID": f"dm-{version}",
            "MLOPS_PIPELINE": PIPELINE, "MLOPS_MODEL_VERSION": version,
            "MLOPS_ARTIFACT_CHECKSUM": folder_checksum(artifacts[version]),
            **{f"MLOPS_{k.upper()}": v for k, v in environ.items()}}


def make_predictor(artifacts: dict[str, dict[str, bytes]], version: str = "1", **environ: str) -> Predictor:
    settings = load_settings(PredictorSettings, "predictor", container_env(artifacts, version, **environ))
    blobs, bus = stored(artifacts), InMemoryEventBus()
    app, batcher = build_app(settings, blobs, bus)
    return Predictor(app, app.test_client(), batcher, bus, blobs)


@pytest.fixture
def predictor(artifacts: dict[str, dict[str, bytes]]):
    made = make_predictor(artifacts, log_interval_s="30")
    yield made
    made.batcher.close(timeout=2)


@pytest.fixture
def serving(predictor: Predictor) -> Predictor:
    return predictor


def instance(**changes: Any) -> dict[str, Any]:
    return {"size": 4.2, "colour": "red", "shiny": True, **changes}


def logged(bus: InMemoryEventBus) -> list[str]:
    return [p.request_id for m in bus.on(PredictionMade.EVENT_TYPE)
            for p in decode(PredictionMade.EVENT_TYPE, m.data).predictions]


# ------------------------------------------------------------------------------------ the happy path

def test_a_prediction_is_answered_and_logged_under_its_request_id(serving: Predictor):
    response = serving.predict({"instances": [instance()]}, headers={"X-Request-Id": "req-1"})
    assert response.status_code == 200, response.json
    answer = response.json
    assert answer["modelVersionId"] == "1" and answer["requestId"] == "req-1"
    assert answer["predictions"][0]["label"] in {"yes", "no"} and "imputed" not in answer["predictions"][0]
    serving.batcher.flush()
    assert logged(serving.bus) == ["req-1"]


# ------------------------------------------------------------------------------------ limits

def test_a_body_over_the_limit_is_a_json_413_naming_the_limit(artifacts):
    predictor = make_predictor(artifacts, max_body_bytes="2048")
    try:
        response = predictor.predict({"instances": [instance(colour="x" * 4000)]})
        assert response.status_code == 413 and response.is_json
        assert "2048 bytes" in response.json["error"] and "MLOPS_MAX_BODY_BYTES" in response.json["error"]
        assert predictor.batcher.pending == 0
    finally:
        predictor.batcher.close(timeout=2)


def test_too_many_instances_are_refused_before_any_is_scored(artifacts):
    predictor = make_predictor(artifacts, max_instances="3")
    try:
        response = predictor.predict({"instances": [instance()] * 4})
        assert response.status_code == 413
        assert response.json["error"].startswith("4 instances in one request; at most 3")
        assert predictor.predict({"instances": [instance()] * 3}).status_code == 200
    finally:
        predictor.batcher.close(timeout=2)


@pytest.mark.parametrize(("request_id", "problem"), [
    ("x" * 8192, "X-Request-Id has 8192 characters; at most 128"),
    ("has space", "has characters outside letters"),
    ("quote'd", "has characters outside letters"),
])
def test_a_request_id_that_is_too_long_or_not_plain_is_refused(serving: Predictor, request_id, problem):
    response = serving.predict({"instances": [instance()]}, headers={"X-Request-Id": request_id})
    assert response.status_code == 400 and problem in response.json["error"]
    serving.batcher.flush()
    assert logged(serving.bus) == []


def test_a_request_id_in_the_parameters_is_checked_the_same_way(serving: Predictor):
    response = serving.predict({"instances": [instance()], "parameters": {"request_id": {"nested": 1}}})
    assert response.status_code == 400 and response.json["error"] == "parameters.request_id is a dict, not a string"
    ok = serving.predict({"instances": [instance()], "parameters": {"request_id": "from-params"}})
    assert ok.json["requestId"] == "from-params"


# ------------------------------------------------------------------------------------ exact 400s

@pytest.mark.parametrize(("body", "error"), [
    (b"", "the body is empty"),
    (b"{not json", "the body is not valid JSON"),
    (b"\xff\xfe\x00garbage", "the body is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (b'{"instances": [{"size": ' + b"9" * 5000 + b"}]}", "the body is not valid JSON"),  # > 4,300 digits
    (b"[1, 2]", "the body is a list in JSON, not an object"),
    (b"null", "the body is null in JSON, not an object"),
    (b'{"instance": []}', "the body has no 'instances' (it has ['instance'])"),
    (b'{"instances": {"size": 1}}', "'instances' is a dict, not a list of objects"),
    (b'{"instances": []}', "'instances' is empty"),
    (b'{"instances": [1, {"size": 1}]}', "each instance must be a JSON object"),
    (b'{"instances": [{}], "parameters": [1]}', "'parameters' is a list, not an object"),
    (b'{"instances": [{}], "parameters": {"pipeline": 7}}', "parameters.pipeline is an int, not a string"),
])
def test_each_malformed_body_gets_its_own_reason_in_json(serving: Predictor, body: bytes, error: str):
    response = serving.predict(body)
    assert response.status_code == 400 and response.is_json
    assert error in response.json["error"], response.json


@pytest.mark.parametrize(("value", "problem"), [
    (10**400, "feature 'size' must be a finite number, got int (an integer of about 401 digits)"),
    (1e400, "feature 'size' must be a finite number, got float inf"),
    ([[[[1]]]], "feature 'size' must be a finite number, got list (list of 1)"),
    ("4.2", "feature 'size' must be a finite number, got str '4.2'"),
    (True, "feature 'size' must be a finite number, got bool True"),
])
def test_a_value_the_model_cannot_take_is_a_400_naming_it(serving: Predictor, value, problem):
    response = serving.predict({"instances": [instance(size=value)]})
    assert response.status_code == 400
    assert response.json["problems"] == [f"instance 0: {problem}"]


def test_every_problem_of_every_instance_is_listed(serving: Predictor):
    response = serving.predict({"instances": [{"size": 1}, instance(weight=3, shiny="yes")]})
    assert response.status_code == 400
    assert response.json["problems"] == [
        "instance 0: missing feature 'colour'", "instance 0: missing feature 'shiny'",
        "instance 1: feature 'shiny' must be a boolean, got str 'yes'", "instance 1: unknown feature 'weight'"]


# ------------------------------------------------------------------------------------ NULL and unseen

def test_null_features_are_scored_as_training_defined_and_named_in_the_answer(serving: Predictor):
    response = serving.predict({"instances": [instance(size=None, colour=None), instance()]})
    assert response.status_code == 200
    first, second = response.json["predictions"]
    assert first["imputed"] == ["size", "colour"] and "imputed" not in second


def test_nulls_are_refused_when_the_policy_says_so(artifacts):
    predictor = make_predictor(artifacts, null_features="refuse")
    try:
        response = predictor.predict({"instances": [instance(size=None)]})
        assert response.status_code == 400
        assert response.json["problems"] == ["instance 0: feature 'size' is null; this endpoint refuses nulls "
                                             "(send a value)"]
    finally:
        predictor.batcher.close(timeout=2)


def test_a_category_training_never_saw_is_refused_naming_the_known_ones(serving: Predictor):
    response = serving.predict({"instances": [instance(colour="purple")]})
    assert response.status_code == 400
    assert response.json["problems"] == ["instance 0: feature 'colour' has the category 'purple', which the model "
                                         "never saw in training (it knows 'blue', 'red')"]
    serving.batcher.flush()
    assert logged(serving.bus) == []


def test_unseen_categories_can_be_scored_with_weight_zero_and_are_named(artifacts):
    predictor = make_predictor(artifacts, unseen_categories="ignore")
    try:
        response = predictor.predict({"instances": [instance(colour="purple")]})
        assert response.status_code == 200 and response.json["predictions"][0]["unseen"] == ["colour"]
    finally:
        predictor.batcher.close(timeout=2)


# ------------------------------------------------------------------------------------ 404, 405, 503

def test_a_request_naming_another_pipeline_is_404(serving: Predictor):
    response = serving.predict({"instances": [instance()], "parameters": {"pipeline": "other"}})
    assert response.status_code == 404 and "serves pipeline 'shapes'" in response.json["error"]
    assert serving.predict({"instances": [instance()], "parameters": {"pipeline": PIPELINE}}).status_code == 200


def test_routing_errors_and_a_wrong_method_are_json(serving: Predictor):
    missing = serving.client.get("/nowhere")
    assert missing.status_code == 404 and missing.is_json and missing.json["error"].startswith("Not Found")
    wrong = serving.client.get("/predict")
    assert wrong.status_code == 405 and wrong.is_json and "POST" in wrong.headers["Allow"]


def test_a_bug_is_a_json_500_without_a_traceback(serving: Predictor, monkeypatch: pytest.MonkeyPatch):
    model = serving.app.config["SERVED"].model

    def broken(*_: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(model, "predict", broken)
    response = serving.predict({"instances": [instance(), instance(size=1.0)]}, headers={"X-Request-Id": "req-bug"})
    assert response.status_code == 500 and response.is_json
    assert response.json["error"] == "internal error (ZeroDivisionError); it is logged"
    # Logged as rows without an answer: what the canary judge counts as this version's errors.
    serving.batcher.flush()
    [made] = [decode(PredictionMade.EVENT_TYPE, m.data) for m in serving.bus.on(PredictionMade.EVENT_TYPE)]
    assert [(p.request_id, p.model_version, p.predicted_label, p.predicted_value, p.score) for p in made.predictions] \
        == [("req-bug:0", "1", None, None, None), ("req-bug:1", "1", None, None, None)]
    monkeypatch.undo()
    assert serving.predict({"instances": [instance()]}).status_code == 200  # and it keeps serving


def test_a_full_log_backlog_answers_503_instead_of_growing(artifacts):
    predictor = make_predictor(artifacts, log_max_pending="2", log_interval_s="30")
    try:
        assert predictor.predict({"instances": [instance(), instance()]}).status_code == 200
        refused = predictor.predict({"instances": [instance()]})
        assert refused.status_code == 503 and "cannot be logged right now" in refused.json["error"]
    finally:
        predictor.batcher.close(timeout=2)


def test_an_instance_too_large_to_log_is_a_413_and_nothing_of_the_request_is_logged(artifacts):
    # Every prediction is logged with its features, escaped twice on the way (the features' JSON inside
    # the event's JSON): 1.1 MB of quotes in one instance is over 4 MB in the event.
    predictor = make_predictor(artifacts, max_body_bytes=str(8 << 20), unseen_categories="ignore",
                               log_interval_s="30")
    try:
        response = predictor.predict({"instances": [instance(), instance(colour='"' * 1_100_000)]})
        assert response.status_code == 413 and response.is_json
        assert response.json["error"].startswith("instance 1 is too large to log:")
        assert f"at most {MAX_EVENT_BYTES}" in response.json["error"]
        assert predictor.batcher.pending == 0
        assert predictor.predict({"instances": [instance()]}).status_code == 200  # it serves on
    finally:
        predictor.batcher.close(timeout=2)


# ------------------------------------------------------------------------------------ durable mode

def test_durable_mode_answers_only_after_the_prediction_is_published(artifacts):
    predictor = make_predictor(artifacts, log_durable="true", log_interval_s="0.05")
    try:
        response = predictor.predict({"instances": [instance()]}, headers={"X-Request-Id": "durable-1"})
        assert response.status_code == 200
        assert logged(predictor.bus) == ["durable-1"]  # published before the answer
    finally:
        predictor.batcher.close(timeout=2)


def test_durable_mode_answers_503_when_the_log_cannot_be_published(artifacts):
    predictor = make_predictor(artifacts, log_durable="true", log_durable_timeout_s="0.2")
    try:

        def down(*_: Any) -> Any:
            raise ConnectionError("pubsub down")

        predictor.bus.publish_raw = down  # type: ignore[method-assign]
        response = predictor.predict({"instances": [instance()]})
        assert response.status_code == 503 and "retry with the same parameters.request_id" in response.json["error"]
        assert predictor.batcher.pending == 1  # kept: published when Pub/Sub is back
    finally:
        predictor.batcher.close(timeout=0.5)


# ------------------------------------------------------------------------------------ what may serve

# ------------------------------------------------------------------------------------ one version, or no start

def test_it_serves_the_version_in_its_folder_and_logs_it_with_the_deployed_model(artifacts):
    predictor = make_predictor(artifacts, version="2", log_interval_s="0.05")
    try:
        answer = predictor.predict({"instances": [instance()], "parameters": {"request_id": "r-2"}}).json
        assert (answer["modelVersionId"], answer["deployedModelId"]) == ("2", "dm-2")
        health = predictor.client.get("/healthz")
        assert health.status_code == 200 and health.json["version"] == "2"
    finally:
        predictor.batcher.close(timeout=5)
    [made] = [decode(PredictionMade.EVENT_TYPE, m.data) for m in predictor.bus.on(PredictionMade.EVENT_TYPE)]
    [prediction] = made.predictions
    assert (made.pipeline, prediction.model_version, prediction.deployed_model_id) == (PIPELINE, "2", "dm-2")


def test_the_vertex_routes_are_the_ones_served(artifacts):
    predictor = make_predictor(artifacts, aip_predict_route="/v1/endpoints/e/deployedModels/dm-1:predict",
                               aip_health_route="/v1/endpoints/e/deployedModels/dm-1")
    try:
        assert predictor.client.get("/v1/endpoints/e/deployedModels/dm-1").status_code == 200
        ok = predictor.client.post("/v1/endpoints/e/deployedModels/dm-1:predict", json={"instances": [instance()]})
        assert ok.status_code == 200
        assert predictor.predict({"instances": [instance()]}).status_code == 404  # no other route
    finally:
        predictor.batcher.close(timeout=2)


@pytest.mark.parametrize(("change", "expected"), [
    ({"MLOPS_ARTIFACT_CHECKSUM": "sha256:" + "0" * 64}, "checksum"),
    ({"AIP_STORAGE_URI": "gs://vertex-managed-copy/nothing/here/"}, "cannot be served"),
], ids=["checksum-mismatch", "missing-artifact"])
def test_a_model_it_cannot_serve_stops_it_with_one_line(artifacts, capsys, change, expected):
    settings = load_settings(PredictorSettings, "predictor", {**container_env(artifacts), **change})
    with pytest.raises(SystemExit) as stopped:
        build_app(settings, stored(artifacts), InMemoryEventBus())
    assert stopped.value.code == 4
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("predictor cannot start:") and expected in line


def test_missing_container_settings_stop_it_with_one_line(monkeypatch, capsys):
    from predictor.app import create_app

    for name in ("AIP_STORAGE_URI", "MLOPS_PIPELINE", "MLOPS_MODEL_VERSION", "MLOPS_ARTIFACT_CHECKSUM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_PROJECT", "test-project")
    with pytest.raises(SystemExit):
        create_app()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "AIP_STORAGE_URI" in line and "MLOPS_ARTIFACT_CHECKSUM" in line


def test_a_storage_failure_at_start_stops_it_with_one_line(artifacts, capsys, monkeypatch):
    blobs = stored(artifacts)

    def unreachable(_: str) -> bytes:
        raise ConnectionError("storage unreachable")

    monkeypatch.setattr(blobs, "get", unreachable)
    settings = load_settings(PredictorSettings, "predictor", container_env(artifacts))
    with pytest.raises(SystemExit):
        build_app(settings, blobs, InMemoryEventBus())
    assert "reading gs://vertex-managed-copy/deployments/1/artifacts/ failed" in capsys.readouterr().err

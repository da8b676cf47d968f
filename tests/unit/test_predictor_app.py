"""The predictor's HTTP side on in-memory ports: limits, JSON errors for every failure, exact 400s,
404 for an unknown pipeline, NULLs and unseen categories, durable logging, and which artifacts may
serve (the project's layout, the event's checksum; a bad one never takes a pipeline dark)."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mlops.core.events import DeployedModel, ModelDeployed, PredictionMade, StageFailed, decode, encode
from mlops.core.events.envelope import new_envelope
from mlops.core.layout import manifest_path, spec_path
from mlops.core.settings import load_settings
from mlops.core.topology import DEAD_LETTER_TOPIC
from mlops.ml.artifact import checksum, dumps_model
from mlops.ml.training import train
from mlops.ports.registry import NotFoundError, VersionMeta
from mlops.runtime.push import PushEndpoint, Route, create_push_app
from mlops.testing.memory import InMemoryBlobStore, InMemoryEventBus
from predictor.app import PipelineCatalog, register_prediction_routes
from predictor.batcher import PredictionBatcher
from predictor.loading import load_model_from_store
from predictor.serving import ModelServer
from predictor.settings import PredictorSettings
from predictor.startup import restore_deployments

BUCKET = "test-bucket"
PIPELINE = "shapes"
FEATURES = ["size", "colour", "shiny"]


def build_artifacts() -> dict[str, bytes]:
    """Two small trained models (versions 1 and 2) as artifact bytes; colour knows red/blue (and NULL)."""
    rng = random.Random(3)
    rows = [{"_row_id": f"r{i}", "size": rng.random() * 10, "colour": rng.choice(["red", "blue", None]),
             "shiny": rng.choice([True, False]), "big": "yes" if i % 2 else "no"} for i in range(120)]
    return {v: dumps_model(train("LOGISTIC_REG", {"l2_reg": float(v)}, rows, FEATURES, "big", seed=int(v)))
            for v in ("1", "2")}


@pytest.fixture(scope="module")
def artifacts() -> dict[str, bytes]:
    return build_artifacts()


def artifact_uri(version: str, bucket: str = BUCKET, pipeline: str = PIPELINE) -> str:
    return f"gs://{bucket}/models/{pipeline}/c{version}/model.zip"


def deployed(*models: tuple[str, int, str, str]) -> ModelDeployed:
    """A model.deployed of (version, traffic, uri, checksum) models."""
    return ModelDeployed(
        pipeline=PIPELINE, endpoint=f"endpoints/{PIPELINE}", model_id=PIPELINE, version_id=models[-1][0],
        action="deploy", previous_version=None,
        deployed_models=[DeployedModel(deployed_model_id=f"dm-{v}", version_id=v, artifact_uri=uri,
                                       artifact_checksum=sha, traffic_percent=share)
                         for v, share, uri, sha in models])


@dataclass
class Predictor:
    app: Flask
    client: FlaskClient
    server: ModelServer
    batcher: PredictionBatcher
    bus: InMemoryEventBus
    blobs: InMemoryBlobStore
    good: dict[str, tuple[str, str]]  # version -> (uri, checksum) as the event chain carries them

    def deploy(self, *models: tuple[str, int]) -> Any:
        event = deployed(*((v, share, *self.good[v]) for v, share in models))
        return self.push(event)

    def push(self, event: ModelDeployed) -> Any:
        envelope = new_envelope(event, "deployer")
        body = {"message": {"data": base64.b64encode(encode(event)).decode(), "messageId": envelope.id,
                            "attributes": envelope.to_attributes()}, "subscription": "s"}
        return self.client.post("/push", json=body)

    def predict(self, body: Any, pipeline: str = PIPELINE, **kwargs: Any) -> Any:
        if isinstance(body, (bytes, str)):
            return self.client.post(f"/predict/{pipeline}", data=body, content_type="application/json", **kwargs)
        return self.client.post(f"/predict/{pipeline}", json=body, **kwargs)


def make_predictor(artifacts: dict[str, bytes], **environ: str) -> Predictor:
    settings = load_settings(PredictorSettings, "predictor", {
        "MLOPS_PROJECT": "test-project", "MLOPS_BUCKET": BUCKET, **{f"MLOPS_{k.upper()}": v for k, v in environ.items()}})
    blobs = InMemoryBlobStore(BUCKET)
    blobs.put(spec_path(PIPELINE), b"name: shapes\n")  # the pipeline exists; its content is not read here
    good = {}
    for version, data in artifacts.items():
        good[version] = (blobs.put(f"models/{PIPELINE}/c{version}/model.zip", data), checksum(data))
    bus = InMemoryEventBus()
    server = ModelServer(lambda uri, sha: load_model_from_store(blobs, uri, sha), bucket=BUCKET)
    batcher = PredictionBatcher(bus, "predictor", interval=settings.log_interval_s, max_batch=settings.log_batch,
                                durable=settings.log_durable, max_pending=settings.log_max_pending)
    app = create_push_app(PushEndpoint(service="predictor", project="test-project", bus=bus,
                                       routes={ModelDeployed.EVENT_TYPE: Route(server.handle_deployed)},
                                       dead_letter_topic=DEAD_LETTER_TOPIC))
    register_prediction_routes(app, server, batcher, settings, PipelineCatalog(blobs).exists)
    return Predictor(app, app.test_client(), server, batcher, bus, blobs, good)


@pytest.fixture
def predictor(artifacts: dict[str, bytes]):
    made = make_predictor(artifacts, log_interval_s="30")
    yield made
    made.batcher.close(timeout=2)


@pytest.fixture
def serving(predictor: Predictor) -> Predictor:
    assert predictor.deploy(("1", 100)).status_code == 204
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
        predictor.deploy(("1", 100))
        response = predictor.predict({"instances": [instance(colour="x" * 4000)]})
        assert response.status_code == 413 and response.is_json
        assert "2048 bytes" in response.json["error"] and "MLOPS_MAX_BODY_BYTES" in response.json["error"]
        assert predictor.batcher.pending == 0
    finally:
        predictor.batcher.close(timeout=2)


def test_too_many_instances_are_refused_before_any_is_scored(artifacts):
    predictor = make_predictor(artifacts, max_instances="3")
    try:
        predictor.deploy(("1", 100))
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
        predictor.deploy(("1", 100))
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
        predictor.deploy(("1", 100))
        response = predictor.predict({"instances": [instance(colour="purple")]})
        assert response.status_code == 200 and response.json["predictions"][0]["unseen"] == ["colour"]
    finally:
        predictor.batcher.close(timeout=2)


# ------------------------------------------------------------------------------------ 404, 405, 503

def test_an_unknown_pipeline_is_404_and_a_known_one_without_a_model_503(predictor: Predictor):
    unknown = predictor.predict({"instances": [instance()]}, pipeline="no-such-pipeline")
    assert unknown.status_code == 404 and "no pipeline 'no-such-pipeline'" in unknown.json["error"]
    waiting = predictor.predict({"instances": [instance()]})
    assert waiting.status_code == 503 and waiting.headers["Retry-After"] == "5"
    assert "no model is deployed for pipeline 'shapes' yet" in waiting.json["error"]


def test_routing_errors_and_a_wrong_method_are_json(serving: Predictor):
    missing = serving.client.get("/nowhere")
    assert missing.status_code == 404 and missing.is_json and missing.json["error"].startswith("Not Found")
    wrong = serving.client.get(f"/predict/{PIPELINE}")
    assert wrong.status_code == 405 and wrong.is_json and "POST" in wrong.headers["Allow"]


def test_a_bug_is_a_json_500_without_a_traceback(serving: Predictor, monkeypatch: pytest.MonkeyPatch):
    routing = serving.server.routing(PIPELINE)

    def broken(*_: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(routing.served[0].model, "predict", broken)
    response = serving.predict({"instances": [instance()]})
    assert response.status_code == 500 and response.is_json
    assert response.json["error"] == "internal error (ZeroDivisionError); it is logged"


def test_a_full_log_backlog_answers_503_instead_of_growing(artifacts):
    predictor = make_predictor(artifacts, log_max_pending="2", log_interval_s="30")
    try:
        predictor.deploy(("1", 100))
        assert predictor.predict({"instances": [instance(), instance()]}).status_code == 200
        refused = predictor.predict({"instances": [instance()]})
        assert refused.status_code == 503 and "cannot be logged right now" in refused.json["error"]
    finally:
        predictor.batcher.close(timeout=2)


# ------------------------------------------------------------------------------------ durable mode

def test_durable_mode_answers_only_after_the_prediction_is_published(artifacts):
    predictor = make_predictor(artifacts, log_durable="true", log_interval_s="0.05")
    try:
        predictor.deploy(("1", 100))
        response = predictor.predict({"instances": [instance()]}, headers={"X-Request-Id": "durable-1"})
        assert response.status_code == 200
        assert logged(predictor.bus) == ["durable-1"]  # published before the answer
    finally:
        predictor.batcher.close(timeout=2)


def test_durable_mode_answers_503_when_the_log_cannot_be_published(artifacts):
    predictor = make_predictor(artifacts, log_durable="true", log_durable_timeout_s="0.2")
    try:
        predictor.deploy(("1", 100))

        def down(*_: Any) -> Any:
            raise ConnectionError("pubsub down")

        predictor.bus.publish = down  # type: ignore[method-assign]
        response = predictor.predict({"instances": [instance()]})
        assert response.status_code == 503 and "retry with the same X-Request-Id" in response.json["error"]
        assert predictor.batcher.pending == 1  # kept: published when Pub/Sub is back
    finally:
        predictor.batcher.close(timeout=0.5)


# ------------------------------------------------------------------------------------ what may serve

def test_a_forged_deployment_outside_the_bucket_is_dead_lettered_and_nothing_changes(serving: Predictor):
    forged = deployed(("9", 100, "gs://another-bucket/models/shapes/c9/model.zip", serving.good["2"][1]))
    response = serving.push(forged)
    assert response.status_code == 200 and response.json["status"] == "dead-lettered"
    assert "is in bucket 'another-bucket', not the project's bucket 'test-bucket'" in response.json["reason"]
    assert serving.server.pipelines() == {PIPELINE: {"1": 100}}
    assert len(serving.bus.on(DEAD_LETTER_TOPIC)) == 1
    failed = decode(StageFailed.EVENT_TYPE, serving.bus.on(StageFailed.EVENT_TYPE)[0].data)
    assert failed.permanent and "another-bucket" in failed.error_message


@pytest.mark.parametrize("uri", [
    "gs://test-bucket/models/other-pipeline/c2/model.zip",
    "gs://test-bucket/specs/../models/shapes/c2/model.zip",
    "gs://test-bucket/models/shapes/../../deployments/x.json",
    "file:///etc/passwd",
])
def test_an_artifact_outside_the_pipelines_folder_is_refused(serving: Predictor, uri: str):
    response = serving.push(deployed(("2", 100, uri, serving.good["2"][1])))
    assert response.json["status"] == "dead-lettered"
    assert serving.server.pipelines() == {PIPELINE: {"1": 100}}


def test_a_checksum_mismatch_is_permanent_and_the_previous_version_keeps_serving(serving: Predictor):
    uri, _ = serving.good["2"]
    response = serving.push(deployed(("1", 0, *serving.good["1"]), ("2", 100, uri, "sha256:" + "0" * 64)))
    assert response.status_code == 200 and response.json["status"] == "dead-lettered"  # not a 503 retry
    assert "checksum mismatch" in response.json["reason"] and "serving the others" in response.json["reason"]
    assert serving.server.pipelines() == {PIPELINE: {"1": 0}}  # the previous version, still deployed
    answer = serving.predict({"instances": [instance()]})
    assert answer.status_code == 200 and answer.json["modelVersionId"] == "1"


def test_an_artifact_that_is_not_a_model_is_permanent(serving: Predictor):
    uri = serving.blobs.put(f"models/{PIPELINE}/c3/model.zip", b"not a zip")
    response = serving.push(deployed(("3", 100, uri, checksum(b"not a zip"))))
    assert response.json["status"] == "dead-lettered" and "not a model artifact" in response.json["reason"]
    assert serving.predict({"instances": [instance()]}).json["modelVersionId"] == "1"


def test_a_storage_failure_is_transient_and_changes_nothing(serving: Predictor, monkeypatch: pytest.MonkeyPatch):
    def unreachable(_: str) -> bytes:
        raise ConnectionError("storage unreachable")

    monkeypatch.setattr(serving.blobs, "get", unreachable)
    response = serving.push(deployed(("1", 0, *serving.good["1"]), ("2", 100, *serving.good["2"])))
    assert response.status_code == 503
    assert serving.server.pipelines() == {PIPELINE: {"1": 100}}


# ------------------------------------------------------------------------------------ restart

class Registry:
    """The registry's one read a restarting predictor makes."""

    def __init__(self, metas: dict[str, VersionMeta]):
        self.metas = metas

    def get_version(self, model_id: str, version: str) -> Any:
        if version not in self.metas:
            raise NotFoundError(version)

        @dataclass
        class Version:
            description: str
            artifact_uri: str

        meta = self.metas[version]
        return Version(json.dumps(meta.to_json()), meta.artifact_uri.rsplit("/", 1)[0] + "/")


def test_a_restart_takes_artifact_and_checksum_from_the_registry_not_the_manifest(predictor: Predictor):
    good_uri, good_sha = predictor.good["1"]
    evil = b"a model someone wrote beside the real ones"
    evil_uri = predictor.blobs.put(f"models/{PIPELINE}/evil/model.zip", evil)
    # Whoever can write the bucket wrote a manifest naming their artifact, with its own checksum.
    manifest = deployed(("1", 100, evil_uri, checksum(evil)))
    predictor.blobs.put(manifest_path(PIPELINE), manifest.model_dump_json().encode())
    server = ModelServer(lambda uri, sha: load_model_from_store(predictor.blobs, uri, sha), bucket=BUCKET)
    loaded: list[str] = []
    original = server._loader
    server._loader = lambda uri, sha: (loaded.append(uri), original(uri, sha))[1]
    restore_deployments(server, predictor.blobs, Registry({"1": VersionMeta(good_uri, good_sha)}))
    assert server.pipelines() == {PIPELINE: {"1": 100}}
    assert loaded == [good_uri]


def test_a_restart_skips_versions_the_registry_does_not_know(predictor: Predictor):
    manifest = deployed(("1", 100, *predictor.good["1"]))
    predictor.blobs.put(manifest_path(PIPELINE), manifest.model_dump_json().encode())
    server = ModelServer(lambda uri, sha: load_model_from_store(predictor.blobs, uri, sha), bucket=BUCKET)
    restore_deployments(server, predictor.blobs, Registry({}))
    assert server.pipelines() == {}


def test_a_restart_with_one_bad_artifact_serves_the_other(predictor: Predictor):
    manifest = deployed(("1", 0, *predictor.good["1"]), ("2", 100, predictor.good["2"][0], "sha256:" + "1" * 64))
    predictor.blobs.put(manifest_path(PIPELINE), manifest.model_dump_json().encode())
    server = ModelServer(lambda uri, sha: load_model_from_store(predictor.blobs, uri, sha), bucket=BUCKET)
    restore_deployments(server, predictor.blobs)
    assert server.pipelines() == {PIPELINE: {"1": 0}}
    assert server.routing(PIPELINE).pick("any").version_id == "1"

"""The Vertex AI adapters, through the official SDK over REST, against the local Vertex server.

The server runs in-process (werkzeug in a thread) on a free port: no emulator to install, and the
SDK under test is exactly the one services use against the cloud. The SDK takes seconds to import,
so it is imported once, here, for the whole module.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request
from google.api_core import exceptions as gexc

from mlops.adapters.vertex import VertexEndpoint, VertexModelRegistry, label_value
from mlops.ports.registry import ModelEndpoint, ModelRegistry, NotFoundError
from mlops.stack.vertex_local import create_app

PROJECT = "local-project"
LOCATION = "us-central1"  # the SDK validates regions, even against a local server
IMAGE = "mlops-predictor:latest"

from tests.integration.harness import serving  # noqa: E402

integration = pytest.mark.integration




@pytest.fixture(scope="module")
def vertex_url() -> Iterator[str]:
    with serving(create_app(None)) as url:
        yield url


@pytest.fixture
def registry(vertex_url: str) -> VertexModelRegistry:
    return VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)


@pytest.fixture
def endpoints(vertex_url: str) -> VertexEndpoint:
    return VertexEndpoint(PROJECT, LOCATION, api_endpoint=vertex_url)


def _register(reg: VertexModelRegistry, model_id: str, event_id: str, aliases: list[str] | None = None):
    return reg.register_version(
        model_id=model_id,
        display_name=f"{model_id} model",
        artifact_uri=f"gs://artifacts/{model_id}/{event_id}/",
        serving_image=IMAGE,
        labels={"input_event": event_id, "pipeline": model_id},
        aliases=aliases or [],
        description=f"trained for {event_id}",
    )


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------------------------


def test_label_value_sanitises_to_vertex_rules() -> None:
    assert label_value("3f2b9c1e-6d1a-4c7e-9a55-0b7e1d2c3a4f") == "3f2b9c1e-6d1a-4c7e-9a55-0b7e1d2c3a4f"
    assert label_value("Churn Model/v2.1") == "churn-model-v2-1"
    assert label_value("already_ok-1") == "already_ok-1"
    assert label_value("") == ""
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(label_value(long_a)) == 63
    assert label_value(long_a) != label_value(long_b)  # cut values keep a hash, so they stay distinct
    assert label_value(long_a) == label_value(long_a)
    for value in ("ÄÖÜ ß", "UPPER", "a" * 200, "tab\there"):
        out = label_value(value)
        assert len(out) <= 63 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in out)


@integration
def test_adapters_satisfy_the_ports(registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    assert isinstance(registry, ModelRegistry)
    assert isinstance(endpoints, ModelEndpoint)


@integration
def test_versions_aliases_labels(registry: VertexModelRegistry) -> None:
    assert registry.list_versions("churn") == []
    assert registry.find_version("churn", "input_event", "evt-1") is None

    v1 = _register(registry, "churn", "evt-1", aliases=["champion"])
    assert (v1.model_id, v1.version_id) == ("churn", "1")
    assert v1.resource_name == f"projects/{PROJECT}/locations/{LOCATION}/models/churn@1"
    assert set(v1.aliases) == {"champion", "default"}
    assert v1.labels == {"input_event": "evt-1", "pipeline": "churn"}
    assert v1.artifact_uri == "gs://artifacts/churn/evt-1/"
    assert v1.create_time.tzinfo is not None

    v2 = _register(registry, "churn", "EVT 2")  # a second registration is a new version of the same model
    assert (v2.model_id, v2.version_id) == ("churn", "2")
    assert "default" in v2.aliases and "champion" not in v2.aliases
    assert [v.version_id for v in registry.list_versions("churn")] == ["2", "1"]
    assert "default" not in registry.get_version("churn", "1").aliases  # default moved with the upload

    # Idempotence check: the version registered for an input event is found by its (raw) id.
    assert registry.find_version("churn", "input_event", "evt-1").version_id == "1"
    assert registry.find_version("churn", "input_event", "EVT 2").version_id == "2"
    assert registry.find_version("churn", "input_event", "evt-3") is None

    # champion belongs to one version at a time.
    registry.move_alias("churn", "2", "champion")
    assert registry.get_version("churn", "champion").version_id == "2"
    assert "champion" not in registry.get_version("churn", "1").aliases

    retired = registry.set_labels("churn", "1", {"status": "retired"})
    assert retired.labels == {"input_event": "evt-1", "pipeline": "churn", "status": "retired"}
    assert registry.get_version("churn", "2").labels.get("status") is None

    with pytest.raises(NotFoundError):
        registry.get_version("churn", "9")
    with pytest.raises(ValueError):
        registry.list_versions("Not A Valid Id")


@integration
def test_deploy_canary_rollback_undeploy(registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    old = _register(registry, "fraud", "evt-a")
    new = _register(registry, "fraud", "evt-b")
    endpoint = endpoints.ensure_endpoint("fraud-endpoint")
    assert endpoint == f"projects/{PROJECT}/locations/{LOCATION}/endpoints/fraud-endpoint"
    assert endpoints.ensure_endpoint("fraud-endpoint") == endpoint  # idempotent
    assert endpoints.deployments(endpoint) == []

    first = endpoints.deploy(endpoint, old, traffic_percent=100)
    assert first.traffic_split == {first.deployed_model_id: 100}

    canary = endpoints.deploy(endpoint, new, traffic_percent=10)
    assert canary.traffic_split == {first.deployed_model_id: 90, canary.deployed_model_id: 10}
    by_id = {d.deployed_model_id: d for d in endpoints.deployments(endpoint)}
    assert (by_id[canary.deployed_model_id].model_id, by_id[canary.deployed_model_id].version_id) == ("fraud", "2")
    assert by_id[first.deployed_model_id].version_id == "1"

    # Roll back: all traffic to the old version, then remove the canary.
    endpoints.set_traffic(endpoint, {first.deployed_model_id: 100, canary.deployed_model_id: 0})
    assert {d.deployed_model_id: d.traffic_percent for d in endpoints.deployments(endpoint)} == {
        first.deployed_model_id: 100,
        canary.deployed_model_id: 0,
    }
    endpoints.undeploy(endpoint, canary.deployed_model_id)
    remaining = endpoints.deployments(endpoint)
    assert [(d.deployed_model_id, d.version_id, d.traffic_percent) for d in remaining] == [
        (first.deployed_model_id, "1", 100)
    ]
    with pytest.raises(NotFoundError):
        endpoints.undeploy(endpoint, canary.deployed_model_id)


@integration
def test_display_name_endpoints_and_missing_ones(endpoints: VertexEndpoint) -> None:
    made = endpoints.ensure_endpoint("Fraud endpoint (EU)")  # not a valid id: found by display name
    assert made.rsplit("/", 1)[-1].isdigit()
    assert endpoints.ensure_endpoint("Fraud endpoint (EU)") == made
    with pytest.raises(NotFoundError):
        endpoints.deployments(f"projects/{PROJECT}/locations/{LOCATION}/endpoints/nope")


@integration
def test_traffic_must_sum_to_100(vertex_url: str, registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    version = _register(registry, "sums", "evt-x")
    endpoint = endpoints.ensure_endpoint("sums")
    first = endpoints.deploy(endpoint, version, traffic_percent=100)

    status, body = _post(
        f"{vertex_url}/v1/{endpoint}:deployModel",
        {"deployedModel": {"model": version.resource_name}, "trafficSplit": {"0": 50, first.deployed_model_id: 40}},
    )
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400
    assert "100" in body["error"]["message"]
    assert len(endpoints.deployments(endpoint)) == 1  # a rejected deploy changes nothing

    # Through the SDK the same error surfaces as google.api_core's 400 exception.
    with pytest.raises(gexc.BadRequest):
        endpoints.set_traffic(endpoint, {first.deployed_model_id: 100, "12345": 0})


@integration
def test_predict_forwards_to_the_configured_predictor() -> None:
    predictor = Flask("fake-predictor")
    seen: list[dict] = []

    @predictor.post("/predict")
    def predict():  # type: ignore[no-untyped-def]
        seen.append({"body": request.get_json(), "version": request.headers.get("X-Vertex-Model-Version-Id")})
        return {"predictions": [0.25 for _ in request.get_json()["instances"]]}

    with serving(predictor) as predictor_url, serving(create_app(None, predict_url=f"{predictor_url}/predict")) as url:
        reg = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
        eps = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
        version = _register(reg, "scorer", "evt-p")
        endpoint = eps.ensure_endpoint("scorer")
        status, body = _post(f"{url}/v1/{endpoint}:predict", {"instances": [{"x": 1}]})
        assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"  # nothing deployed yet
        deployed = eps.deploy(endpoint, version, traffic_percent=100)
        status, body = _post(f"{url}/v1/{endpoint}:predict", {"instances": [{"x": 1}, {"x": 2}]})
        assert status == 200, body
        assert body["predictions"] == [0.25, 0.25]
        assert body["deployedModelId"] == deployed.deployed_model_id and body["modelVersionId"] == "1"
        assert seen == [{"body": {"instances": [{"x": 1}, {"x": 2}]}, "version": "1"}]


@integration
def test_predict_without_predictor_is_501(vertex_url: str, registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    version = _register(registry, "nopredictor", "evt-n")
    endpoint = endpoints.ensure_endpoint("nopredictor")
    endpoints.deploy(endpoint, version, traffic_percent=100)
    status, body = _post(f"{vertex_url}/v1/{endpoint}:predict", {"instances": [{"x": 1}]})
    assert status == 501
    assert "MLOPS_VERTEX_PREDICT_URL" in body["error"]["message"]


@integration
def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "vertex" / "state.json"
    with serving(create_app(state)) as url:
        reg = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
        eps = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
        _register(reg, "kept", "evt-1", aliases=["champion"])
        v2 = _register(reg, "kept", "evt-2")
        deployed = eps.deploy(eps.ensure_endpoint("kept"), v2, traffic_percent=100)
    assert state.exists()

    with serving(create_app(state)) as url:  # a new server process would read the same file
        reg = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
        eps = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
        assert [v.version_id for v in reg.list_versions("kept")] == ["2", "1"]
        assert reg.get_version("kept", "champion").version_id == "1"
        assert reg.find_version("kept", "input_event", "evt-2").version_id == "2"
        v3 = _register(reg, "kept", "evt-3")
        assert v3.version_id == "3"  # numbering continues
        assert [(d.deployed_model_id, d.traffic_percent) for d in eps.deployments("kept")] == [
            (deployed.deployed_model_id, 100)
        ]

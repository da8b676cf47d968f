"""The Vertex AI adapters and the local Vertex server: what is particular to them.

What every registry and endpoint must do is in the contract suite (tests/contract/
test_registry_contract.py, which runs it through the SDK against this server too); here are the
label cleaning, the server's own REST answers, `:predict` forwarding and state kept across restarts.

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

from mlops.adapters.vertex import VertexEndpoint, VertexModelRegistry, label_value
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
def test_the_server_refuses_a_deploy_split_not_summing_to_100(vertex_url: str, registry: VertexModelRegistry,
                                                              endpoints: VertexEndpoint) -> None:
    # The port's own refusals (TrafficSplitError) are in the contract suite; this is the server's
    # answer to a client that skips those checks, in Vertex AI's error shape.
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

    status, body = _post(f"{vertex_url}/v1/{endpoint}:undeployModel",
                         {"deployedModelId": first.deployed_model_id, "trafficSplit": {first.deployed_model_id: 100}})
    assert status == 200  # the last deployed model can always go, whatever split is sent
    assert endpoints.deployments(endpoint) == []


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

"""The Vertex AI adapters and the local Vertex server: what is particular to them.

What every registry and endpoint must do is in the contract suite (tests/contract/
test_registry_contract.py, which runs it through the SDK against this server too); here are the
label cleaning, the server's own REST answers and refusals (what Vertex AI refuses), the serving
containers it starts (Vertex's environment, health before the deploy completes, the container's own
error when it does not start, stopped on undeploy), `:predict` routed by the traffic split, slow
operations polled as the SDK polls them, and state kept across restarts.

The server runs in-process (werkzeug in a thread) on a free port: no emulator to install, and the
SDK under test is exactly the one services use against the cloud. The SDK takes seconds to import,
so it is imported once, here, for the whole module.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from mlops.adapters.vertex import VertexEndpoint, VertexModelRegistry, label_value
from mlops.stack.vertex_local import create_app

PROJECT = "local-project"
LOCATION = "us-central1"  # the SDK validates regions, even against a local server
IMAGE = "us-docker.pkg.dev/local-project/images/serving-stub:1"
STUB_IMAGES = {"serving-stub": [sys.executable, str(Path(__file__).parents[1] / "fixtures" / "serving_stub.py")]}

from tests.integration.harness import serving  # noqa: E402

integration = pytest.mark.integration




@pytest.fixture(scope="module")
def vertex_url() -> Iterator[str]:
    app = create_app(None, images=STUB_IMAGES)
    with serving(app) as url:
        VERTEX_APPS[url] = app
        yield url


@pytest.fixture
def registry(vertex_url: str) -> VertexModelRegistry:
    return VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)


@pytest.fixture
def endpoints(vertex_url: str) -> VertexEndpoint:
    return VertexEndpoint(PROJECT, LOCATION, api_endpoint=vertex_url)


def _register(reg: VertexModelRegistry, model_id: str, event_id: str, aliases: list[str] | None = None,
              env: dict[str, str] | None = None):
    return reg.register_version(
        model_id=model_id,
        display_name=f"{model_id} model",
        artifact_uri=f"gs://artifacts/{model_id}/{event_id}/",
        serving_image=IMAGE,
        labels={"input_event": event_id, "pipeline": model_id},
        aliases=aliases or [],
        description=f"trained for {event_id}",
        serving_env=env or {"MODEL_EVENT": event_id},
        predict_route="/predict",
        health_route="/healthz",
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


def _upload(url: str, model: dict) -> tuple[int, dict]:
    return _post(f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/models:upload",
                 {"model": {"displayName": "raw", **model}})


@integration
@pytest.mark.parametrize(("model", "problem"), [
    ({"artifactUri": "bq://p.d.model", "containerSpec": {"imageUri": IMAGE}}, "gs://"),
    ({"artifactUri": "/tmp/models/m", "containerSpec": {"imageUri": IMAGE}}, "gs://"),
    ({"containerSpec": {"imageUri": IMAGE}}, "artifact_uri is required"),
    ({"artifactUri": "gs://b/m/"}, "image_uri is required"),
    ({"artifactUri": "gs://b/m/", "containerSpec": {"imageUri": "gcr.io/p/no-such-image:1"}}, "not found"),
    ({"artifactUri": "gs://b/m/", "containerSpec": {"imageUri": IMAGE, "env": [{"name": "1BAD", "value": "x"}]}},
     "C identifier"),
], ids=["bq", "local-path", "no-artifact", "no-image", "unknown-image", "bad-env-name"])
def test_an_upload_vertex_refuses_is_refused_in_its_error_shape(vertex_url: str, model: dict, problem: str) -> None:
    status, body = _upload(vertex_url, model)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT" and problem in body["error"]["message"]
    status, _ = _upload(vertex_url, {"artifactUri": "gs://b/m/", "containerSpec": {"imageUri": IMAGE}})
    assert status == 200  # the same upload, well formed


@integration
def test_a_deploy_starts_the_container_with_vertex_environment_only(vertex_url: str, registry: VertexModelRegistry,
                                                                    endpoints: VertexEndpoint,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SERVERS_OWN_SECRET", "never-in-a-container")  # the server's, not the model's
    version = _register(registry, "envs", "evt-e", env={"MLOPS_PIPELINE": "envs", "MLOPS_MODEL_VERSION": "1"})
    endpoint = endpoints.ensure_endpoint("envs")
    deployed = endpoints.deploy(endpoint, version, 100, service_account="serving@p.iam.gserviceaccount.com")
    status, body = _post(f"{vertex_url}/v1/{endpoint}:predict", {"instances": [{"x": 1}], "parameters": {"k": "v"}})
    assert status == 200, body
    [prediction] = body["predictions"]
    assert set(body) == {"predictions", "deployedModelId", "model", "modelVersionId", "modelDisplayName"}
    assert prediction["body"] == {"instances": [{"x": 1}], "parameters": {"k": "v"}}  # forwarded unchanged
    env = prediction["env"]
    assert env["AIP_STORAGE_URI"] == "gs://artifacts/envs/evt-e/" and env["AIP_DEPLOYED_MODEL_ID"] == deployed.deployed_model_id
    assert (env["AIP_PREDICT_ROUTE"], env["AIP_HEALTH_ROUTE"], env["AIP_ENDPOINT_ID"]) == ("/predict", "/healthz", "envs")
    assert (env["MLOPS_PIPELINE"], env["MLOPS_MODEL_VERSION"]) == ("envs", "1")
    assert "MLOPS_SERVERS_OWN_SECRET" not in env and "MLOPS_VERTEX_STATE" not in env
    assert {k for k in env if k.startswith("AIP_")} >= {"AIP_HTTP_PORT", "AIP_MODE", "AIP_MODEL_NAME", "AIP_MACHINE_TYPE"}


@integration
def test_a_container_that_exits_at_start_fails_the_deploy_and_the_champion_keeps_serving(
        vertex_url: str, registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    champion = _register(registry, "crash", "evt-1")
    endpoint = endpoints.ensure_endpoint("crash")
    first = endpoints.deploy(endpoint, champion, 100).deployed_model_id
    broken = _register(registry, "crash", "evt-2", env={"STUB_EXIT_MESSAGE": "cannot load gs://artifacts/x: checksum"})
    with pytest.raises(gexc.GoogleAPICallError, match="cannot load gs://artifacts/x: checksum"):
        endpoints.deploy(endpoint, broken, 100)
    name = endpoints.start_deploy(endpoint, broken, 100)
    status = endpoints.deploy_operation(name)
    while not status.done:
        time.sleep(0.1)
        status = endpoints.deploy_operation(name)
    assert status.error is not None and "exited unexpectedly" in status.error and "checksum" in status.error
    assert [(d.deployed_model_id, d.traffic_percent) for d in endpoints.deployments(endpoint)] == [(first, 100)]
    code, body = _post(f"{vertex_url}/v1/{endpoint}:predict", {"instances": [{"x": 1}]})
    assert code == 200 and body["deployedModelId"] == first


@integration
def test_predict_routes_by_the_traffic_split_and_undeploy_stops_the_container(
        vertex_url: str, registry: VertexModelRegistry, endpoints: VertexEndpoint) -> None:
    endpoint = endpoints.ensure_endpoint("canary")
    status, body = _post(f"{vertex_url}/v1/{endpoint}:predict", {"instances": [{"x": 1}]})
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"  # nothing deployed yet
    old = endpoints.deploy(endpoint, _register(registry, "canary", "evt-1"), 100).deployed_model_id
    new = endpoints.deploy(endpoint, _register(registry, "canary", "evt-2"), 20).deployed_model_id
    answered = Counter(_post(f"{vertex_url}/v1/{endpoint}:predict", {"instances": [{"x": i}]})[1]["deployedModelId"]
                       for i in range(400))
    assert set(answered) == {old, new}
    assert 40 <= answered[new] <= 120, answered  # 20% of 400 is 80; this band is > 5 standard deviations wide
    endpoints.set_traffic(endpoint, {old: 100})
    pid = next(c["pid"] for c in _containers(vertex_url) if c["deployedModelId"] == new)
    endpoints.undeploy(endpoint, new)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    status, body = _post(f"{vertex_url}/v1/{endpoint}:undeployModel", {"deployedModelId": new})
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"  # an unknown deployed model id
    status, body = _post(f"{vertex_url}/v1/{endpoint}:deployModel", {
        "deployedModel": {"model": f"projects/{PROJECT}/locations/{LOCATION}/models/canary@1"},
        "trafficSplit": {"0": 50, "123": 50}})
    assert status == 400 and "not deployed" in body["error"]["message"]


def _containers(url: str) -> list[dict]:
    from flask import current_app  # noqa: F401 - the app is in this process: ask it directly

    return VERTEX_APPS[url].config["VERTEX_LOCAL"].containers()


def _alive(pid: int) -> bool:
    from mlops.stack.processes import pid_alive

    return pid_alive(pid)


VERTEX_APPS: dict[str, object] = {}


@integration
def test_slow_operations_are_polled_as_the_sdk_polls_them(tmp_path: Path) -> None:
    app = create_app(None, images=STUB_IMAGES, operation_delay_s=2.0)
    polled: list[str] = []

    @app.before_request
    def record() -> None:
        from flask import request

        if "/operations/" in request.path:
            polled.append(request.path)

    with serving(app) as url:
        reg = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
        eps = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
        version = _register(reg, "slow", "evt-s")  # the SDK waits for the upload's operation
        name = eps.start_deploy(eps.ensure_endpoint("slow"), version, 100)
        assert not eps.deploy_operation(name).done  # takes the configured time
        deadline = time.monotonic() + 30
        while not eps.deploy_operation(name).done and time.monotonic() < deadline:
            time.sleep(0.2)
        assert eps.deploy_operation(name).deployed_model_id
    assert any(p.startswith("/ui/") for p in polled) and any("/models/slow/operations/" in p for p in polled)


@integration
def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "vertex" / "state.json"
    with serving(create_app(state, images=STUB_IMAGES)) as url:
        reg = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
        eps = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
        _register(reg, "kept", "evt-1", aliases=["champion"])
        v2 = _register(reg, "kept", "evt-2")
        deployed = eps.deploy(eps.ensure_endpoint("kept"), v2, traffic_percent=100)
    assert state.exists()

    with serving(create_app(state, images=STUB_IMAGES)) as url:  # a new server process would read the same file
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

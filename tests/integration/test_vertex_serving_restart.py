"""The Vertex stand-in starts a deployed model's serving container again when it dies, as Vertex AI
restarts a serving container that exits or fails its liveness probe (docs: "Custom container
requirements for inference", liveness checks); an undeployed one stays stopped."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mlops.adapters.vertex import VertexEndpoint, VertexModelRegistry
from mlops.stack.processes import http_ok, pid_alive
from mlops.stack.vertex_local import create_app
from tests.integration.harness import serving
from tests.integration.test_vertex_registry import LOCATION, PROJECT, STUB_IMAGES, _post, _register

pytestmark = pytest.mark.integration


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_killed_serving_container_is_started_again_and_serves_on(tmp_path) -> None:
    app = create_app(tmp_path / "vertex.json", images=STUB_IMAGES, log_dir=tmp_path / "logs")
    api = app.config["VERTEX_LOCAL"]
    try:
        with serving(app) as url:
            registry = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=url)
            endpoints = VertexEndpoint(PROJECT, LOCATION, api_endpoint=url)
            endpoint = endpoints.ensure_endpoint("restarts")
            deployed = endpoints.deploy(endpoint, _register(registry, "restarts", "evt-1"), 100).deployed_model_id
            [record] = api.containers()
            first_pid = record["pid"]

            os.kill(first_pid, signal.SIGKILL)
            _wait(lambda: (c := api.containers()[0])["pid"] != first_pid and c.get("restarts") == 1)
            [record] = api.containers()
            assert not pid_alive(first_pid) and pid_alive(record["pid"])
            assert record["port"] is not None and record["deployedModelId"] == deployed  # same port, same model
            _wait(lambda: http_ok(f"http://127.0.0.1:{record['port']}{record['healthRoute']}", timeout=1.0))
            status, body = _post(f"{url}/v1/{endpoint}:predict", {"instances": [{"x": 1}]})
            assert status == 200 and body["deployedModelId"] == deployed

            # Undeployed, it is stopped for good: nothing starts it again.
            endpoints.undeploy(endpoint, deployed)
            _wait(lambda: not pid_alive(record["pid"]))
            time.sleep(2.5)  # more than two rounds of the stand-in's watch
            assert api.containers() == []
    finally:
        api.close()

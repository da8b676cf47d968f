"""The registry and endpoint contract, run against each implementation.

- in memory (`mlops.testing.memory.registry`), what the unit tests use;
- the Vertex SDK adapters (`mlops.adapters.vertex`) against the local Vertex server, served in-process:
  the same SDK calls the registrar and the deployer make in the cloud. The SDK takes seconds to
  import, so one server serves the whole module; each test names its own models and endpoints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.ports.registry import ModelEndpoint, ModelRegistry
from mlops.testing.contracts.registry import ModelEndpointContract, ModelRegistryContract
from mlops.testing.memory import InMemoryModelEndpoint, InMemoryModelRegistry
from tests.integration.harness import serving

PROJECT = "contract-project"
# The contract's serving image, run by the local Vertex server as the stub server.
STUB_IMAGES = {"serving-stub": [sys.executable, str(Path(__file__).parents[1] / "fixtures" / "serving_stub.py")]}
LOCATION = "us-central1"  # the SDK validates regions, even against a local server


# ------------------------------------------------------------------------------------------ in memory

class TestInMemoryModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def registry(self) -> ModelRegistry:
        return InMemoryModelRegistry()


class TestInMemoryModelEndpoint(ModelEndpointContract):
    @pytest.fixture
    def registry(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry()

    @pytest.fixture
    def endpoints(self, registry: InMemoryModelRegistry) -> ModelEndpoint:
        return InMemoryModelEndpoint(registry)


# ------------------------------------------------------------------- Vertex SDK on the local server

@pytest.fixture(scope="module")
def vertex_url() -> Iterator[str]:
    from mlops.stack.vertex_local import create_app

    app = create_app(None, images=STUB_IMAGES)
    with serving(app) as url:
        yield url


@pytest.mark.integration
class TestVertexModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def registry(self, vertex_url: str) -> ModelRegistry:
        from mlops.adapters.vertex import VertexModelRegistry

        return VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)


@pytest.mark.integration
class TestVertexEndpoint(ModelEndpointContract):
    @pytest.fixture
    def registry(self, vertex_url: str) -> ModelRegistry:
        from mlops.adapters.vertex import VertexModelRegistry

        return VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)

    @pytest.fixture
    def endpoints(self, vertex_url: str) -> ModelEndpoint:
        from mlops.adapters.vertex import VertexEndpoint

        return VertexEndpoint(PROJECT, LOCATION, api_endpoint=vertex_url)

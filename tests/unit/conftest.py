"""Unit-test fixtures: an isolated environment, in-memory ports, and small fakes of the other ports.

Everything here is in-process and instant: no emulator, no network, no sleeping. The fakes follow
the documented behaviour of their ports (`mlops.ports.registry`, `mlops.ports.trainer`) closely
enough that a handler cannot pass here by relying on something the real adapters do not do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.events import Envelope, Event
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import PipelineSpec
from mlops.core.topology import SERVICES
from mlops.ports.registry import DeployedModel, Deployment, ModelVersion, NotFoundError
from mlops.ports.specs import SpecStore
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.testing.memory import (
    InMemoryBlobStore,
    InMemoryEventBus,
    InMemoryWarehouse,
    Published,
)

# --------------------------------------------------------------------------------------------------
# Environment isolation
# --------------------------------------------------------------------------------------------------

_SERVICE_PREFIXES = tuple(s.name.upper().replace("-", "_") + "_" for s in SERVICES)
_ISOLATED_PREFIXES = ("MLOPS_", "AIP_", *_SERVICE_PREFIXES)
_ISOLATED_NAMES = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees (or leaks) MLOPS_*, <SERVICE>_*, AIP_*, Cloud Run or emulator variables."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name.endswith("_EMULATOR_HOST") or name in _ISOLATED_NAMES:
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------
# In-memory ports
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def bus() -> InMemoryEventBus:
    return InMemoryEventBus()


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore("test-bucket")


@pytest.fixture
def warehouse() -> InMemoryWarehouse:
    return InMemoryWarehouse(project="test-project")


@pytest.fixture
def specs(blobs: InMemoryBlobStore) -> SpecStore:
    return SpecStore(blobs, cache_seconds=0)


SPEC_DEFAULTS: dict[str, Any] = {
    "name": "breast-cancer",
    "source": {"table": "breast_cancer", "label": "malignant", "features": ["mean_radius", "mean_texture"]},
    "model": {"type": "LOGISTIC_REG", "options": {"l2_reg": 1.0}},
    "retrain": {"new_rows_fraction": 0.5, "min_rows": 10},
    "promotion": {"metric": "roc_auc", "minimum": 0.8, "min_gain": 0.01},
    "deployment": {"canary_percent": 0, "keep_previous": True},
}


def spec_data(**sections: Any) -> dict[str, Any]:
    """A valid spec as plain data; each keyword replaces (dict: updates) one top-level section."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SPEC_DEFAULTS.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_spec(**sections: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(spec_data(**sections))


def envelope_for(event: Event, event_id: str | None = None, run_id: str = "run-1", causation_id: str = "",
                 service: str = "test") -> Envelope:
    envelope = new_envelope(event, service, run_id=run_id)
    changes: dict[str, str] = {"causation_id": causation_id}
    if event_id is not None:
        changes["id"] = event_id
    return envelope.with_changes(**changes)


# --------------------------------------------------------------------------------------------------
# A bus that fails on chosen topics, synchronously or through its future
# --------------------------------------------------------------------------------------------------

@dataclass
class FlakyBus(InMemoryEventBus):
    """InMemoryEventBus whose publishes to `failing_topics` fail (raise now, or return a failed future)."""

    failing_topics: set[str] = field(default_factory=set)
    fail_in_future: bool = False
    failures: int = 0

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        if topic_id in self.failing_topics:
            self.failures += 1
            error = ConnectionError(f"publish to {topic_id} failed")
            if not self.fail_in_future:
                raise error
            future: Future[str] = Future()
            future.set_exception(error)
            # publish() sets .event on the last message: give it one to set, outside the record.
            self.messages.append(_Discarded(topic_id, data, dict(attributes)))
            return future
        return super().publish_raw(topic_id, data, attributes)

    def on(self, topic: str) -> list:
        return [m for m in self.messages if m.topic == topic and not isinstance(m, _Discarded)]

    @property
    def delivered(self) -> list:
        return [m for m in self.messages if not isinstance(m, _Discarded)]


class _Discarded(Published):
    """A message whose publish failed: kept only so `publish()` can annotate it."""


# --------------------------------------------------------------------------------------------------
# Model registry and endpoint fakes (ports in mlops.ports.registry)
# --------------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


class FakeRegistry:
    """A ModelRegistry in memory, behaving as Vertex AI's model registry does for the loop.

    Version ids count from 1 per model; the first version of a model is always the default;
    an alias names one version at a time; label values are lower-cased as Vertex requires.
    """

    def __init__(self, location: str = "projects/test-project/locations/us-central1") -> None:
        self.location = location
        self.models: dict[str, list[ModelVersion]] = {}
        self.register_calls: list[dict[str, Any]] = []
        self.alias_moves: list[tuple[str, str, str]] = []

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _clean(labels: Mapping[str, str]) -> dict[str, str]:
        return {k.lower(): str(v).lower() for k, v in labels.items()}

    def _replace(self, model_id: str, version: ModelVersion) -> ModelVersion:
        versions = self.models[model_id]
        versions[[v.version_id for v in versions].index(version.version_id)] = version
        return version

    # -- the port ------------------------------------------------------------------------------
    def register_version(self, model_id: str, display_name: str, artifact_uri: str, serving_image: str,
                         labels: Mapping[str, str], aliases: Sequence[str], description: str = "", *,
                         make_default: bool = True) -> ModelVersion:
        self.register_calls.append({"model_id": model_id, "labels": dict(labels), "make_default": make_default,
                                    "artifact_uri": artifact_uri, "serving_image": serving_image})
        versions = self.models.setdefault(model_id, [])
        version_id = str(len(versions) + 1)
        new_aliases = list(aliases)
        if make_default or not versions:
            new_aliases.append("default")
        for alias in new_aliases:
            self._take_alias(model_id, alias)
        version = ModelVersion(
            model_id=model_id, version_id=version_id,
            resource_name=f"{self.location}/models/{model_id}@{version_id}", display_name=display_name,
            artifact_uri=artifact_uri, labels=self._clean(labels), aliases=tuple(new_aliases),
            create_time=T0 + timedelta(minutes=len(versions)), description=description,
        )
        versions.append(version)
        return version

    def _take_alias(self, model_id: str, alias: str) -> None:
        for version in list(self.models.get(model_id, [])):
            if alias in version.aliases:
                self._replace(model_id, replace(version, aliases=tuple(a for a in version.aliases if a != alias)))

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        return sorted(self.models.get(model_id, []), key=lambda v: int(v.version_id), reverse=True)

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        for candidate in self.models.get(model_id, []):
            if candidate.version_id == version or version in candidate.aliases:
                return candidate
        raise NotFoundError(f"model {model_id} has no version or alias {version!r}")

    def find_version(self, model_id: str, label_key: str, label_value: str) -> ModelVersion | None:
        wanted = str(label_value).lower()
        found = [v for v in self.list_versions(model_id) if v.labels.get(label_key.lower()) == wanted]
        return found[0] if found else None

    def move_alias(self, model_id: str, version_id: str, alias: str) -> None:
        target = self.get_version(model_id, version_id)
        self.alias_moves.append((model_id, version_id, alias))
        self._take_alias(model_id, alias)
        target = self.get_version(model_id, version_id)
        self._replace(model_id, replace(target, aliases=(*target.aliases, alias)))

    def set_labels(self, model_id: str, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        current = self.get_version(model_id, version_id)
        return self._replace(model_id, replace(current, labels={**current.labels, **self._clean(labels)}))


class FakeEndpoints:
    """A ModelEndpoint in memory, splitting traffic the way the Vertex AI SDK does on deploy.

    Deploying with p% gives the new model p% and scales the others to share the remaining 100 - p
    proportionally (rounding down, the remainder to the largest); an empty endpoint gives 100%.
    """

    def __init__(self, location: str = "projects/test-project/locations/us-central1") -> None:
        self.location = location
        self.endpoints: dict[str, list[DeployedModel]] = {}
        self.deploy_calls: list[tuple[str, str, int]] = []
        self.undeploy_calls: list[tuple[str, str]] = []
        self._next_id = 1000

    def ensure_endpoint(self, name: str) -> str:
        resource = name if name.startswith("projects/") else f"{self.location}/endpoints/{name}"
        self.endpoints.setdefault(resource, [])
        return resource

    def _models(self, endpoint: str) -> list[DeployedModel]:
        if endpoint not in self.endpoints:
            raise NotFoundError(f"no endpoint {endpoint}")
        return self.endpoints[endpoint]

    def deploy(self, endpoint: str, version: ModelVersion, traffic_percent: int, *, machine_type: str = "n1-standard-2",
               min_replicas: int = 1, max_replicas: int = 1, display_name: str | None = None) -> Deployment:
        if not 0 < traffic_percent <= 100:
            raise ValueError(f"traffic_percent must be in 1..100, got {traffic_percent}")
        models = self._models(endpoint)
        self.deploy_calls.append((endpoint, version.version_id, traffic_percent))
        serving = sum(m.traffic_percent for m in models) > 0
        share = traffic_percent if serving else 100
        total = sum(m.traffic_percent for m in models) or 1
        rest = 100 - share
        scaled = [replace(m, traffic_percent=m.traffic_percent * rest // total) for m in models]
        if scaled and rest:
            leftover = rest - sum(m.traffic_percent for m in scaled)
            largest = max(range(len(scaled)), key=lambda i: scaled[i].traffic_percent)
            scaled[largest] = replace(scaled[largest], traffic_percent=scaled[largest].traffic_percent + leftover)
        self._next_id += 1
        new = DeployedModel(deployed_model_id=str(self._next_id), model_id=version.model_id,
                            version_id=version.version_id, traffic_percent=share,
                            display_name=display_name or f"{version.model_id}-v{version.version_id}")
        self.endpoints[endpoint] = [*scaled, new]
        return Deployment(endpoint=endpoint, deployed_model_id=new.deployed_model_id,
                          models=tuple(self.endpoints[endpoint]))

    def set_traffic(self, endpoint: str, split: Mapping[str, int]) -> list[DeployedModel]:
        if sum(split.values()) != 100:
            raise ValueError(f"traffic split must sum to 100, got {dict(split)}")
        models = self._models(endpoint)
        self.endpoints[endpoint] = [replace(m, traffic_percent=int(split.get(m.deployed_model_id, 0))) for m in models]
        return list(self.endpoints[endpoint])

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        models = self._models(endpoint)
        gone = [m for m in models if m.deployed_model_id == deployed_model_id]
        if not gone:
            raise NotFoundError(f"{deployed_model_id} is not deployed on {endpoint}")
        if gone[0].traffic_percent:
            raise ValueError("undeploying a model that still has traffic: set_traffic first")
        self.undeploy_calls.append((endpoint, deployed_model_id))
        self.endpoints[endpoint] = [m for m in models if m.deployed_model_id != deployed_model_id]

    def deployments(self, endpoint: str) -> list[DeployedModel]:
        return list(self._models(endpoint))


# --------------------------------------------------------------------------------------------------
# Trainer backend fake (port in mlops.ports.trainer)
# --------------------------------------------------------------------------------------------------

class FakeBackend:
    """A TrainerBackend that stores a tiny artifact and scores models from a table of metrics.

    `scores[artifact_uri]` are the metrics `evaluate` returns for that artifact (default: `default_metrics`);
    `fail_on[artifact_uri]` is an exception `evaluate` raises for it.
    """

    name = "fake"

    def __init__(self, blobs: InMemoryBlobStore, default_metrics: dict[str, float] | None = None) -> None:
        self._blobs = blobs
        self.default_metrics = default_metrics or {"roc_auc": 0.9, "accuracy": 0.85}
        self.scores: dict[str, dict[str, float]] = {}
        self.fail_on: dict[str, Exception] = {}
        self.train_error: Exception | None = None
        self.train_calls: list[tuple[str, str, str]] = []
        self.evaluate_calls: list[tuple[str, str]] = []

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        self.train_calls.append((spec.name, snapshot_table, artifact_dir))
        if self.train_error is not None:
            raise self.train_error
        data = f"model of {spec.name} on {snapshot_table}".encode()
        uri = self._blobs.put(f"{artifact_dir}/model.zip", data, "application/zip")
        return TrainedArtifact(artifact_uri=uri, checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                               train_rows=80, train_seconds=0.0123456789,
                               hyperparameters={k: str(v) for k, v in spec.model.options.items()})

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum: str, snapshot_table: str) -> Evaluation:
        self.evaluate_calls.append((artifact_uri, snapshot_table))
        if artifact_uri in self.fail_on:
            raise self.fail_on[artifact_uri]
        return Evaluation(metrics=dict(self.scores.get(artifact_uri, self.default_metrics)), eval_rows=20)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def endpoints() -> FakeEndpoints:
    return FakeEndpoints()


@pytest.fixture
def backend(blobs: InMemoryBlobStore) -> FakeBackend:
    return FakeBackend(blobs)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """A clock that advances one second per call, so snapshot records are strictly ordered."""
    ticks = iter(range(10**6))
    return lambda: T0 + timedelta(seconds=next(ticks))

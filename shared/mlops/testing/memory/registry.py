"""The model registry and the serving endpoint in memory, behaving as Vertex AI does for the loop.

Both follow what the contract suite (`mlops.testing.contracts.registry`) checks against the Vertex SDK
adapter talking to the local Vertex server: version ids count from 1 per model, the first version is
always the default, an alias names one version at a time, names are checked and label values cleaned
by the port's rules (`mlops.ports.registry`), and a deploy splits traffic the way the Vertex SDK does.

The endpoint checks deployed versions against the registry it is given, as Vertex does (one service
holds both); without one it trusts the version it is handed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops.ports.registry import (
    ENDPOINT_ID_RE,
    DeployedModel,
    Deployment,
    DeployOperation,
    ModelVersion,
    NotFoundError,
    TrafficSplitError,
    check_alias,
    check_artifact_uri,
    check_model_id,
    label_key,
    label_value,
    registry_labels,
)

DEFAULT_LOCATION = "projects/test-project/locations/us-central1"
# Registration times: fixed, one minute apart per version, so tests that print them are stable.
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
DEFAULT_ALIAS = "default"

# For methods whose parameters (named as in the port) shadow the two functions.
_check_key, _clean_value = label_key, label_value


class InMemoryModelRegistry:
    """A ModelRegistry in memory.

    Test inspection: `register_calls` (the arguments of every registration, including the serving
    image, which no version shows) and `alias_moves` ((model, version, alias) per `move_alias`).
    """

    def __init__(self, location: str = DEFAULT_LOCATION) -> None:
        self.location = location
        self.models: dict[str, list[ModelVersion]] = {}
        self.register_calls: list[dict[str, Any]] = []
        self.alias_moves: list[tuple[str, str, str]] = []
        self._lock = threading.RLock()

    # -- helpers -------------------------------------------------------------------------------
    def _versions(self, model_id: str) -> list[ModelVersion]:
        return self.models.get(check_model_id(model_id), [])

    def _replace(self, model_id: str, version: ModelVersion) -> ModelVersion:
        versions = self.models[model_id]
        versions[[v.version_id for v in versions].index(version.version_id)] = version
        return version

    def _take_alias(self, model_id: str, alias: str) -> None:
        for version in list(self.models.get(model_id, [])):
            if alias in version.aliases:
                self._replace(model_id, replace(version, aliases=tuple(a for a in version.aliases if a != alias)))

    # -- the port ------------------------------------------------------------------------------
    def register_version(
        self,
        model_id: str,
        display_name: str,
        artifact_uri: str,
        serving_image: str,
        labels: Mapping[str, str],
        aliases: Sequence[str],
        description: str = "",
        *,
        make_default: bool = True,
        serving_env: Mapping[str, str] | None = None,
        predict_route: str | None = None,
        health_route: str | None = None,
    ) -> ModelVersion:
        check_model_id(model_id)
        check_artifact_uri(artifact_uri)
        clean_labels = registry_labels(labels)
        new_aliases = [check_alias(a) for a in aliases]
        with self._lock:
            self.register_calls.append({
                "model_id": model_id, "labels": dict(labels), "make_default": make_default,
                "artifact_uri": artifact_uri, "serving_image": serving_image, "aliases": list(aliases),
                "serving_env": dict(serving_env or {}), "predict_route": predict_route, "health_route": health_route,
            })
            versions = self.models.setdefault(model_id, [])
            # As the SDK does: "default" goes last, once; the first version carries it regardless.
            if (make_default or not versions) and DEFAULT_ALIAS not in new_aliases:
                new_aliases.append(DEFAULT_ALIAS)
            for alias in new_aliases:
                self._take_alias(model_id, alias)
            version_id = str(len(versions) + 1)
            version = ModelVersion(
                model_id=model_id, version_id=version_id,
                resource_name=f"{self.location}/models/{model_id}@{version_id}", display_name=display_name,
                artifact_uri=artifact_uri, labels=clean_labels, aliases=tuple(dict.fromkeys(new_aliases)),
                create_time=T0 + timedelta(minutes=len(versions)), description=description,
            )
            versions.append(version)
            return version

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        return sorted(self._versions(model_id), key=lambda v: int(v.version_id), reverse=True)

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        for candidate in self._versions(model_id):
            if candidate.version_id == version or version in candidate.aliases:
                return candidate
        raise NotFoundError(f"model {model_id} has no version or alias {version!r}")

    def find_version(self, model_id: str, label_key: str, label_value: str) -> ModelVersion | None:
        key, wanted = _check_key(label_key), _clean_value(label_value)
        return next((v for v in self.list_versions(model_id) if v.labels.get(key) == wanted), None)

    def move_alias(self, model_id: str, version_id: str, alias: str) -> None:
        check_alias(alias)
        with self._lock:
            target = self.get_version(model_id, version_id)
            self.alias_moves.append((model_id, version_id, alias))
            self._take_alias(model_id, alias)
            target = self.get_version(model_id, target.version_id)
            self._replace(model_id, replace(target, aliases=(*target.aliases, alias)))

    def set_labels(self, model_id: str, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        clean = registry_labels(labels)
        with self._lock:
            current = self.get_version(model_id, version_id)
            return self._replace(model_id, replace(current, labels={**current.labels, **clean}))


@dataclass
class _Endpoint:
    display_name: str
    models: list[DeployedModel] = field(default_factory=list)


class InMemoryModelEndpoint:
    """A ModelEndpoint in memory, splitting traffic the way the Vertex SDK does on deploy.

    Deploying with p% gives the new model p% and scales each model that has traffic to
    int(share / 100 * (100 - p)), then hands the points lost to rounding out one each, in deployment
    order (the SDK's `Endpoint._allocate_traffic`; it goes in the order of a protobuf map, which is
    not predictable, so the contract only pins who may get a point). An endpoint serving nothing
    gives 100%.

    Test inspection: `deploy_calls` ((endpoint, version id, percent asked)) and `undeploy_calls`.
    """

    def __init__(self, registry: InMemoryModelRegistry | None = None, location: str = DEFAULT_LOCATION) -> None:
        self.location = location
        self.registry = registry
        self.endpoints: dict[str, _Endpoint] = {}
        self.deploy_calls: list[tuple[str, str, int]] = []
        self.undeploy_calls: list[tuple[str, str]] = []
        self.start_deploy_calls: list[tuple[str, str, int, str | None]] = []
        # operation name -> (endpoint, version, percent, display name, failure, deployed model id once done)
        self.operations: dict[str, tuple[str, ModelVersion, int, str | None, str | None, str | None]] = {}
        self._failures: list[str] = []
        self._ids = {"endpoint": 1_000_000, "deployed_model": 1_000_000_000, "operation": 0}
        self._lock = threading.RLock()

    def _next_id(self, kind: str) -> str:
        self._ids[kind] += 1
        return str(self._ids[kind])

    def _resource(self, endpoint: str) -> str:
        """The resource name of an existing endpoint given by resource name or id."""
        resource = endpoint if "/" in endpoint else f"{self.location}/endpoints/{endpoint}"
        if resource not in self.endpoints:
            raise NotFoundError(f"endpoint {endpoint} not found")
        return resource

    def _endpoint(self, endpoint: str) -> _Endpoint:
        return self.endpoints[self._resource(endpoint)]

    def ensure_endpoint(self, name: str) -> str:
        with self._lock:
            if name.startswith("projects/") or name.isdigit():
                return self._resource(name)
            if ENDPOINT_ID_RE.match(name):
                resource = f"{self.location}/endpoints/{name}"
                self.endpoints.setdefault(resource, _Endpoint(display_name=name))
                return resource
            for resource, existing in self.endpoints.items():  # oldest first, as the adapter picks
                if existing.display_name == name:
                    return resource
            resource = f"{self.location}/endpoints/{self._next_id('endpoint')}"
            self.endpoints[resource] = _Endpoint(display_name=name)
            return resource

    def deploy(
        self,
        endpoint: str,
        version: ModelVersion,
        traffic_percent: int,
        *,
        machine_type: str = "n1-standard-2",
        min_replicas: int = 1,
        max_replicas: int = 1,
        display_name: str | None = None,
        service_account: str | None = None,
    ) -> Deployment:
        if not 0 < traffic_percent <= 100:
            raise TrafficSplitError(f"traffic_percent must be in 1..100, got {traffic_percent}")
        with self._lock:
            resource = self._resource(endpoint)
            if self.registry is not None:
                self.registry.get_version(version.model_id, version.version_id)  # NotFoundError if absent
            models = self.endpoints[resource].models
            self.deploy_calls.append((resource, version.version_id, traffic_percent))
            serving = sum(m.traffic_percent for m in models) > 0
            share = traffic_percent if serving else 100
            new = DeployedModel(
                deployed_model_id=self._next_id("deployed_model"), model_id=version.model_id,
                version_id=version.version_id, traffic_percent=share,
                display_name=display_name or f"{version.model_id}-v{version.version_id}",
            )
            split = _allocate_traffic({m.deployed_model_id: m.traffic_percent for m in models if m.traffic_percent},
                                      share)
            self.endpoints[resource].models = [
                *(replace(m, traffic_percent=split.get(m.deployed_model_id, 0)) for m in models), new,
            ]
            return Deployment(endpoint=resource, deployed_model_id=new.deployed_model_id,
                              models=tuple(self.endpoints[resource].models))

    def start_deploy(
        self,
        endpoint: str,
        version: ModelVersion,
        traffic_percent: int,
        *,
        machine_type: str = "n1-standard-2",
        min_replicas: int = 1,
        max_replicas: int = 1,
        display_name: str | None = None,
        service_account: str | None = None,
    ) -> str:
        """Checked now, deployed on the first `deploy_operation` look (or failed, when a test queued
        a failure with `fail_next_deploy`): a deploy is never done before anyone asks."""
        if not 0 < traffic_percent <= 100:
            raise TrafficSplitError(f"traffic_percent must be in 1..100, got {traffic_percent}")
        with self._lock:
            resource = self._resource(endpoint)
            if self.registry is not None:
                self.registry.get_version(version.model_id, version.version_id)  # NotFoundError if absent
            name = f"{resource}/operations/{self._next_id('operation')}"
            self.start_deploy_calls.append((resource, version.version_id, traffic_percent, service_account))
            failure = self._failures.pop(0) if self._failures else None
            self.operations[name] = (resource, version, traffic_percent, display_name, failure, None)
            return name

    def fail_next_deploy(self, reason: str) -> None:
        """Tests: the next started deploy fails with this reason (as a container that does not start)."""
        self._failures.append(reason)

    def deploy_operation(self, name: str) -> DeployOperation:
        with self._lock:
            if name not in self.operations:
                raise NotFoundError(f"operation {name} not found")
            resource, version, percent, display_name, failure, made = self.operations[name]
            if failure is not None:
                return DeployOperation(name, True, error=failure)
            if made is None:
                made = self.deploy(resource, version, percent, display_name=display_name).deployed_model_id
                self.operations[name] = (resource, version, percent, display_name, None, made)
            return DeployOperation(name, True, deployed_model_id=made)

    def set_traffic(self, endpoint: str, split: Mapping[str, int]) -> list[DeployedModel]:
        with self._lock:
            state = self._endpoint(endpoint)
            unknown = sorted(set(split) - {m.deployed_model_id for m in state.models})
            if unknown:
                raise TrafficSplitError(f"traffic split names {unknown}, not deployed on {endpoint}")
            if any(int(v) < 0 for v in split.values()):
                raise TrafficSplitError(f"traffic split has a negative share: {dict(split)}")
            if sum(int(v) for v in split.values()) != 100:
                raise TrafficSplitError(f"traffic split must sum to 100, got {dict(split)}")
            state.models = [replace(m, traffic_percent=int(split.get(m.deployed_model_id, 0))) for m in state.models]
            return list(state.models)

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        with self._lock:
            resource = self._resource(endpoint)
            state = self.endpoints[resource]
            gone = [m for m in state.models if m.deployed_model_id == deployed_model_id]
            if not gone:
                raise NotFoundError(f"{deployed_model_id} is not deployed on {resource}")
            if gone[0].traffic_percent and len(state.models) > 1:
                raise TrafficSplitError(f"{deployed_model_id} still has {gone[0].traffic_percent}% of the traffic "
                                        f"on {resource}: set_traffic first")
            self.undeploy_calls.append((resource, deployed_model_id))
            state.models = [m for m in state.models if m.deployed_model_id != deployed_model_id]

    def deployments(self, endpoint: str) -> list[DeployedModel]:
        with self._lock:
            return list(self._endpoint(endpoint).models)


def _allocate_traffic(current: dict[str, int], new_share: int) -> dict[str, int]:
    """The Vertex SDK's `Endpoint._allocate_traffic`, float arithmetic included, minus the new model's key."""
    rest = 100 - new_share
    allocated: dict[str, int] = {}
    if rest:
        unallocated = rest
        for key, share in current.items():
            allocated[key] = int(share / 100 * rest)
            unallocated -= allocated[key]
        for key in allocated:
            if unallocated == 0:
                break
            allocated[key] += 1
            unallocated -= 1
    return allocated

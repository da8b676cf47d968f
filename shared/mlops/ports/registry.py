"""Ports for the model registry and the serving endpoint.

The registrar needs to record model versions (idempotently, keyed on the event that asked for them)
and to move the `champion` alias; the deployer needs to put a version behind an endpoint with a
traffic share and to roll back. These two small interfaces are all they see, so their handlers stay
pure and testable with in-memory fakes, while the Vertex AI adapter (`mlops.adapters.vertex`) serves
both the cloud and the local Vertex server through the same official SDK calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class NotFoundError(LookupError):
    """A model, version or endpoint that the caller named does not exist."""


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model.

    `resource_name` is the *versioned* name (`projects/P/locations/L/models/M@V`): that is what a
    deployment must point at, so that "deploy version 3" never silently means "deploy the default".
    Label values are as stored by the registry (Vertex lower-cases and restricts them, see
    `mlops.adapters.vertex.label_value`).
    """

    model_id: str
    version_id: str
    resource_name: str
    display_name: str
    artifact_uri: str
    # Excluded from the hash so the frozen value stays hashable despite holding a mapping.
    labels: Mapping[str, str] = field(hash=False)
    aliases: tuple[str, ...]
    create_time: datetime  # timezone-aware (UTC)
    # Free text in Vertex; the loop keeps JSON there (artifact, checksum, metrics, lineage: registry_meta).
    description: str = ""


@dataclass(frozen=True)
class DeployedModel:
    """A model version currently deployed on an endpoint, with its share of the traffic."""

    deployed_model_id: str
    model_id: str
    version_id: str
    traffic_percent: int
    display_name: str = ""


@dataclass(frozen=True)
class Deployment:
    """The outcome of one deploy: which deployed model it created and the endpoint afterwards."""

    endpoint: str  # endpoint resource name
    deployed_model_id: str
    models: tuple[DeployedModel, ...]  # everything on the endpoint after the deploy

    @property
    def traffic_split(self) -> dict[str, int]:
        """deployed_model_id -> percent, the shape `model.deployed` events carry."""
        return {m.deployed_model_id: m.traffic_percent for m in self.models}


@runtime_checkable
class ModelRegistry(Protocol):
    """Versions of named models, their labels and their aliases."""

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
    ) -> ModelVersion:
        """Register a new version; the model itself is created on first use.

        Not idempotent by itself (each call is a new version): callers put their input event id in
        a label and check `find_version` first, which is what makes a redelivered event harmless.
        """
        ...

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        """All versions, newest first; empty when the model does not exist yet."""
        ...

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        """One version by id ("3") or alias ("champion"); raises NotFoundError."""
        ...

    def find_version(self, model_id: str, label_key: str, label_value: str) -> ModelVersion | None:
        """The newest version carrying this label, or None: the idempotence check
        ("was a version already registered for input event X?")."""
        ...

    def move_alias(self, model_id: str, version_id: str, alias: str) -> None:
        """Point `alias` at this version. An alias names one version at a time, so this also takes
        it away from whichever version held it (Vertex does that in the same call)."""
        ...

    def set_labels(self, model_id: str, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        """Add or overwrite these labels on one version, keeping the others (e.g. status=retired)."""
        ...


@runtime_checkable
class ModelEndpoint(Protocol):
    """An online-prediction endpoint that serves one or more model versions by traffic share."""

    def ensure_endpoint(self, name: str) -> str:
        """Return the resource name of the endpoint `name` (an id, a resource name or a display
        name), creating it if needed; safe to call on every deploy."""
        ...

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
    ) -> Deployment:
        """Deploy `version` with `traffic_percent` of the traffic; the rest stays on what was
        deployed before, scaled proportionally (a canary). On an empty endpoint the version takes
        100%, since there is nothing else to serve."""
        ...

    def set_traffic(self, endpoint: str, split: Mapping[str, int]) -> list[DeployedModel]:
        """Replace the traffic split (deployed_model_id -> percent, summing to 100): promote a
        canary or roll back. Deployed models missing from `split` get 0%."""
        ...

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        """Remove a deployed model; its traffic, if any, goes proportionally to the others."""
        ...

    def deployments(self, endpoint: str) -> list[DeployedModel]:
        """What the endpoint serves now, with each deployed model's share of the traffic."""
        ...


# What the loop keeps on each registry version besides labels: a JSON description. Registry labels
# are short and restricted (lowercase, <= 63 chars), so the artifact's exact URI and checksum, the
# metrics and the lineage travel in the version's description as JSON, written by the registrar and
# read by the deployer, the CLI and `mlops lineage`.

@dataclass(frozen=True)
class VersionMeta:
    artifact_uri: str
    artifact_checksum: str
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    decision: str = ""
    reason: str = ""
    lineage: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, version: Any) -> VersionMeta:
        """Read it back from a registry version's description."""
        try:
            data = json.loads(getattr(version, "description", "") or "{}")
        except json.JSONDecodeError:
            data = {}
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("artifact_uri", version.artifact_uri.rstrip("/") + "/model.zip")
        known.setdefault("artifact_checksum", "")
        return cls(**known)

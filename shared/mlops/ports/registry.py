"""Ports for the model registry and the serving endpoint.

The registrar needs to record model versions (idempotently, keyed on the event that asked for them)
and to move the `champion` alias; the deployer needs to put a version behind an endpoint with a
traffic share and to roll back. These two small interfaces are all they see, so their handlers stay
pure and testable with in-memory fakes, while the Vertex AI adapter (`mlops.adapters.vertex`) serves
both the cloud and the local Vertex server through the same official SDK calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class NotFoundError(LookupError):
    """A model, version or endpoint that the caller named does not exist."""


class TrafficSplitError(ValueError):
    """A traffic change the endpoint refuses: a split that does not sum to 100, names a model that is
    not deployed or holds a negative share, a deploy share outside 1..100, or an undeploy that would
    leave a model's traffic with nobody (Vertex AI refuses all of these; so does every implementation)."""


# --------------------------------------------------------------------------------------------------
# Vertex AI's naming rules. They are the port's: the in-memory registry applies them too, so a name
# that the cloud would refuse fails in a unit test, and a label looked up is cleaned like the one stored.
# --------------------------------------------------------------------------------------------------

LABEL_MAX = 63
# Keys start with a lowercase letter; keys and values are at most 63 characters of [a-z0-9_-] (Vertex
# also allows international letters; we keep to ASCII so ids stay portable).
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_MODEL_ID_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
# Model.version_aliases in the Vertex AI API reference.
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
ENDPOINT_ID_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def label_value(value: str) -> str:
    """Make any string a valid Vertex label value, deterministically.

    Lowercases, replaces every character outside [a-z0-9_-] with "-", and keeps at most 63
    characters; a value that had to be cut ends in 8 hex digits of its SHA-256 so two long values
    do not collapse to the same label. Applied to every label written *and* to every label looked up,
    so callers pass raw values (an event id, a pipeline name) and matching still works. UUIDs and
    already-valid values come back unchanged.
    """
    cleaned = re.sub(r"[^a-z0-9_-]", "-", value.lower())
    if len(cleaned) <= LABEL_MAX:
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{cleaned[: LABEL_MAX - 9]}-{digest}"


def label_key(key: str) -> str:
    """Check a label key. Keys are code constants, so a bad one is a bug: raise, don't rewrite."""
    if not _LABEL_KEY_RE.match(key):
        raise ValueError(f"invalid Vertex label key {key!r}: must match {_LABEL_KEY_RE.pattern}")
    return key


def registry_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels as the registry stores them: keys checked, values cleaned (`label_value`)."""
    return {label_key(k): label_value(str(v)) for k, v in labels.items()}


def check_model_id(model_id: str) -> str:
    if not _MODEL_ID_RE.match(model_id):
        raise ValueError(f"invalid Vertex model id {model_id!r}: up to 63 of [a-z0-9_-], starting with a letter or _")
    return model_id


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias):
        raise ValueError(f"invalid Vertex version alias {alias!r}: must match {_ALIAS_RE.pattern}")
    return alias


def check_artifact_uri(artifact_uri: str) -> str:
    """A version's artifact folder must already be in Cloud Storage: given anything else, the Vertex SDK
    would try to upload a local folder of that name instead."""
    if not artifact_uri.startswith("gs://"):
        raise ValueError(f"artifact_uri {artifact_uri!r} is not a gs:// folder")
    return artifact_uri


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model.

    `resource_name` is the *versioned* name (`projects/P/locations/L/models/M@V`): that is what a
    deployment must point at, so that "deploy version 3" never silently means "deploy the default".
    Label values are as stored by the registry: cleaned by `label_value` (Vertex lower-cases and
    restricts them).
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
class DeployOperation:
    """Where a deploy started with `start_deploy` is: running, done (with the deployed model it made),
    or failed (with the endpoint's reason; the endpoint is then as it was)."""

    name: str
    done: bool
    deployed_model_id: str | None = None
    error: str | None = None


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
        serving_env: Mapping[str, str] | None = None,
        predict_route: str | None = None,
        health_route: str | None = None,
    ) -> ModelVersion:
        """Register a new version; the model itself is created on first use.

        `serving_image` is the version's serving container, started by each deploy with the
        environment `serving_env` and answering `predict_route` / `health_route` (Vertex AI's
        containerSpec: fixed at upload, so everything the container needs to know goes here).

        Version ids count from "1" per model. The first version of a model is always the default;
        a later one becomes it when `make_default`. `aliases` are taken from any version holding them.
        Raises ValueError for a name Vertex refuses (model id, label key, alias, a non-gs:// artifact).
        Not idempotent by itself (each call is a new version): callers put their input event id in
        a label and check `find_version` first, which is what makes a redelivered event harmless.
        """
        ...

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        """All versions, newest first; empty when the model does not exist yet. ValueError for a
        model id Vertex would refuse."""
        ...

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        """One version by id ("3") or alias ("champion"); raises NotFoundError."""
        ...

    def find_version(self, model_id: str, label_key: str, label_value: str) -> ModelVersion | None:
        """The newest version carrying this label, or None: the idempotence check
        ("was a version already registered for input event X?"). `label_value` is the raw value,
        cleaned here as it was when stored."""
        ...

    def move_alias(self, model_id: str, version_id: str, alias: str) -> None:
        """Point `alias` at this version. An alias names one version at a time, so this also takes
        it away from whichever version held it (Vertex does that in the same call). NotFoundError
        for an unknown model or version."""
        ...

    def set_labels(self, model_id: str, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        """Add or overwrite these labels on one version, keeping the others (e.g. status=retired);
        returns the version as updated. NotFoundError for an unknown model or version."""
        ...


@runtime_checkable
class ModelEndpoint(Protocol):
    """An online-prediction endpoint that serves one or more model versions by traffic share."""

    def ensure_endpoint(self, name: str) -> str:
        """Return the resource name of the endpoint `name`, creating it if needed; safe to call on
        every deploy. `name` is a valid endpoint id (found, else created with that id), a display
        name (found, else created with a generated numeric id), or the resource name or numeric id
        of an endpoint that must exist (NotFoundError otherwise).

        The other methods take the endpoint's resource name or its id."""
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
        service_account: str | None = None,
    ) -> Deployment:
        """Deploy `version` with `traffic_percent` of the traffic; the rest stays on what was
        deployed before, scaled proportionally (a canary) and rounded as the Vertex SDK rounds. On
        an endpoint that serves nothing the version takes 100%, since there is nothing else to serve.

        NotFoundError for an unknown endpoint or a version the registry does not have;
        TrafficSplitError for a share outside 1..100."""
        ...

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
        """Start deploying `version` (as `deploy` does, split included) and return at once the name of
        the long-running operation; `deploy_operation` says how it went. A deploy takes minutes on
        Vertex AI: callers record the name and look again later instead of waiting. Refusals known
        before starting (NotFoundError, TrafficSplitError) are raised here."""
        ...

    def deploy_operation(self, name: str) -> DeployOperation:
        """The state of a deploy started by `start_deploy`. NotFoundError for an unknown operation."""
        ...

    def set_traffic(self, endpoint: str, split: Mapping[str, int]) -> list[DeployedModel]:
        """Replace the traffic split (deployed_model_id -> percent, summing to 100): promote a
        canary or roll back. Deployed models missing from `split` get 0%. TrafficSplitError, and
        nothing changed, for a split that does not sum to 100, names a model not deployed here or
        holds a negative share."""
        ...

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        """Remove a deployed model. One that still has traffic while others are deployed is refused
        (TrafficSplitError: `set_traffic` first, so traffic never moves as a side effect); the last
        model on an endpoint can always go. NotFoundError when it is not deployed there."""
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

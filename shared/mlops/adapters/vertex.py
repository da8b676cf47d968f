"""Vertex AI adapters for the registry and endpoint ports, through the official SDK only.

The same calls run against Vertex AI and against the local stand-in (`mlops.stack.vertex_local`);
only `vertex_init`'s `api_endpoint` differs. Things learnt from the SDK (google-cloud-aiplatform 2.x)
that shape this module:

* `aiplatform.init` is process-global: one Vertex target (project, location, endpoint) per process.
* The REST transport keeps a scheme given in `api_endpoint` ("http://127.0.0.1:P") and otherwise
  prepends https, so a local endpoint must carry "http://"; `vertex_init` adds it for loopback hosts.
* `location` must be a real Vertex region even locally: the SDK validates it before any call.
* `Model.upload` treats an `artifact_uri` that does not start with gs:// as a local folder to stage
  into a bucket, so artifacts must already be in Cloud Storage (the GCS emulator locally).
* `Model.upload` appends "default" to the `version_aliases` list it is given (we pass a copy).
* `ModelRegistry.list_versions` drops labels and artifact URIs, and `update_version` may target the
  model rather than the version; we use the SDK's own GAPIC client (`ModelRegistry(...).client`)
  for those two calls to get full `Model` messages and an explicit `model@version` update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypedDict
from urllib.parse import urlsplit

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import aiplatform
from google.cloud.aiplatform_v1.types import (
    DedicatedResources,
    DeployModelResponse,
    ListModelVersionsRequest,
    MachineSpec,
)
from google.cloud.aiplatform_v1.types import DeployedModel as GapicDeployedModel
from google.cloud.aiplatform_v1.types import Model as GapicModel
from google.protobuf import field_mask_pb2

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

# The label rules are the port's; named here too, where callers of the SDK adapter look for them.
__all__ = ["VertexEndpoint", "VertexModelRegistry", "label_key", "label_value", "vertex_init"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

# Aliases for methods whose parameters (named as in the port) shadow the two functions.
_check_key, _clean_value = label_key, label_value


def _local_url(api_endpoint: str) -> str | None:
    """The http URL to use when `api_endpoint` is a local server, else None (a cloud endpoint)."""
    if "://" not in api_endpoint:
        host = urlsplit(f"//{api_endpoint}").hostname or ""
        return f"http://{api_endpoint}" if host in _LOOPBACK else None
    return api_endpoint if api_endpoint.startswith("http://") else None


def vertex_init(
    project: str,
    location: str,
    api_endpoint: str | None = None,
    credentials: Credentials | None = None,
) -> None:
    """Point the SDK at Vertex AI (`api_endpoint=None`) or at a local server.

    Cloud: application default credentials unless `credentials` is given; regional endpoint chosen by
    the SDK. Local ("http://127.0.0.1:P" or "127.0.0.1:P"): plain http and AnonymousCredentials,
    since the local server checks no token and there may be none on the machine. Both use the REST
    transport so that what the tests exercise locally is the code path the cloud runs.
    """
    if api_endpoint is None:
        aiplatform.init(project=project, location=location, credentials=credentials, api_transport="rest")
        return
    local = _local_url(api_endpoint)
    aiplatform.init(
        project=project,
        location=location,
        api_endpoint=local or api_endpoint,
        api_transport="rest",
        credentials=credentials or (AnonymousCredentials() if local else None),
    )


class _Where(TypedDict):
    project: str
    location: str
    credentials: Credentials | None


def _aware(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.fromtimestamp(0, UTC)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _split_versioned(name: str) -> tuple[str, str | None]:
    base, _, version = name.partition("@")
    return base, version or None


class _VertexBase:
    """Shared settings; calls `vertex_init` once, at construction (no network there)."""

    def __init__(
        self,
        project: str,
        location: str,
        api_endpoint: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.project = project
        self.location = location
        local = _local_url(api_endpoint) if api_endpoint else None
        self.credentials = credentials or (AnonymousCredentials() if local else None)
        vertex_init(project, location, api_endpoint, self.credentials)

    @property
    def _parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _where(self) -> _Where:
        """Explicit project/location/credentials for every SDK call, not just the global init."""
        return {"project": self.project, "location": self.location, "credentials": self.credentials}


class VertexModelRegistry(_VertexBase):
    """`ModelRegistry` on the Vertex AI Model Registry: one Vertex model per `model_id`."""

    def _resource(self, model_id: str) -> str:
        return f"{self._parent}/models/{check_model_id(model_id)}"

    def _registry(self, model_id: str) -> aiplatform.models.ModelRegistry:
        return aiplatform.models.ModelRegistry(
            self._resource(model_id), project=self.project, location=self.location, credentials=self.credentials
        )

    def _to_version(self, model: GapicModel) -> ModelVersion:
        base, _ = _split_versioned(model.name)
        return ModelVersion(
            model_id=base.rsplit("/", 1)[-1],
            version_id=model.version_id,
            resource_name=f"{base}@{model.version_id}",
            display_name=model.display_name,
            artifact_uri=model.artifact_uri,
            labels=dict(model.labels),
            aliases=tuple(model.version_aliases),
            create_time=_aware(model.version_create_time),
            description=model.version_description or model.description or "",
        )

    def _exists(self, model_id: str) -> bool:
        try:
            self._registry(model_id).client.get_model(name=self._resource(model_id))
            return True
        except gexc.NotFound:
            return False

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
        resource = self._resource(model_id)
        for alias in aliases:
            check_alias(alias)
        common = dict(
            serving_container_image_uri=serving_image,
            artifact_uri=check_artifact_uri(artifact_uri),
            display_name=display_name,
            labels=registry_labels(labels),
            is_default_version=make_default,
            version_description=description or None,
            description=description or None,
            serving_container_environment_variables=dict(serving_env or {}),
            serving_container_predict_route=predict_route,
            serving_container_health_route=health_route,
            sync=True,
            **self._where(),
        )
        if self._exists(model_id):
            model = aiplatform.Model.upload(parent_model=resource, version_aliases=list(aliases), **common)
        else:
            try:
                model = aiplatform.Model.upload(model_id=model_id, version_aliases=list(aliases), **common)
            except gexc.Conflict:
                # Another registrar created the model between our check and our upload.
                model = aiplatform.Model.upload(parent_model=resource, version_aliases=list(aliases), **common)
        return self._to_version(model.gca_resource)

    def _list(self, model_id: str, filter_: str = "") -> list[ModelVersion]:
        request = ListModelVersionsRequest(name=self._resource(model_id), filter=filter_)
        try:
            models: Iterable[GapicModel] = self._registry(model_id).client.list_model_versions(request=request)
            versions = [self._to_version(m) for m in models]
        except gexc.NotFound:
            return []
        return sorted(versions, key=lambda v: int(v.version_id), reverse=True)

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        return self._list(model_id)

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        try:
            model = self._registry(model_id).client.get_model(name=f"{self._resource(model_id)}@{version}")
        except gexc.NotFound as e:
            raise NotFoundError(f"model {model_id} has no version {version}") from e
        return self._to_version(model)

    def find_version(self, model_id: str, label_key: str, label_value: str) -> ModelVersion | None:
        key, wanted = _check_key(label_key), _clean_value(label_value)
        found = self._list(model_id, f'labels.{key}="{wanted}"')
        # Filter again here: a filter the backend ignored must not turn into a false "already done".
        found = [v for v in found if v.labels.get(key) == wanted]
        return found[0] if found else None

    def move_alias(self, model_id: str, version_id: str, alias: str) -> None:
        check_alias(alias)
        try:
            self._registry(model_id).add_version_aliases([alias], version=version_id)
        except gexc.NotFound as e:
            raise NotFoundError(f"model {model_id} has no version {version_id}") from e

    def set_labels(self, model_id: str, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        current = self.get_version(model_id, version_id)
        merged = {**current.labels, **registry_labels(labels)}
        # name with @version: Vertex then updates this version's labels, not the model's.
        model = self._registry(model_id).client.update_model(
            model=GapicModel(name=current.resource_name, labels=merged),
            update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
        )
        return self._to_version(model)


class VertexEndpoint(_VertexBase):
    """`ModelEndpoint` on a Vertex AI online-prediction endpoint."""

    def _endpoint(self, endpoint: str) -> aiplatform.Endpoint:
        """The endpoint, fetched (the SDK's constructor is lazy, so touch the resource)."""
        ep = aiplatform.Endpoint(endpoint, **self._where())
        try:
            _ = ep.gca_resource.create_time
        except gexc.NotFound as e:
            raise NotFoundError(f"endpoint {endpoint} not found") from e
        return ep

    def ensure_endpoint(self, name: str) -> str:
        if name.startswith("projects/") or name.isdigit():
            return self._endpoint(name).resource_name
        if ENDPOINT_ID_RE.match(name):
            # The name doubles as the endpoint id: creation is then idempotent and race-free.
            try:
                return self._endpoint(name).resource_name
            except NotFoundError:
                pass
            try:
                return aiplatform.Endpoint.create(display_name=name, endpoint_id=name, **self._where()).resource_name
            except gexc.Conflict:
                return self._endpoint(name).resource_name
        # Any other display name: find it, else create one with a generated id.
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        existing = aiplatform.Endpoint.list(filter=f'display_name="{escaped}"', **self._where())
        if existing:
            return sorted(existing, key=lambda e: e.create_time)[0].resource_name
        return aiplatform.Endpoint.create(display_name=name, **self._where()).resource_name

    @staticmethod
    def _models(ep: aiplatform.Endpoint) -> list[DeployedModel]:
        resource = ep.gca_resource
        split = dict(resource.traffic_split)
        out = []
        for d in resource.deployed_models:
            base, at_version = _split_versioned(d.model)
            out.append(
                DeployedModel(
                    deployed_model_id=d.id,
                    model_id=base.rsplit("/", 1)[-1],
                    version_id=d.model_version_id or at_version or "",
                    traffic_percent=int(split.get(d.id, 0)),
                    display_name=d.display_name,
                )
            )
        return out

    def deployments(self, endpoint: str) -> list[DeployedModel]:
        return self._models(self._endpoint(endpoint))

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
        ep = self._endpoint(endpoint)
        before = {d.deployed_model_id for d in self._models(ep)}
        serving = sum(ep.gca_resource.traffic_split.values()) > 0
        try:
            model = aiplatform.Model(version.resource_name, **self._where())
        except gexc.NotFound as e:
            raise NotFoundError(f"model version {version.resource_name} not found") from e
        ep.deploy(
            model,
            deployed_model_display_name=display_name or f"{version.model_id}-v{version.version_id}",
            # The SDK scales the others to 100 - traffic_percent; on an empty endpoint it insists
            # on 100, which is also the only meaningful share there.
            traffic_percentage=traffic_percent if serving else 100,
            machine_type=machine_type,
            min_replica_count=min_replicas,
            max_replica_count=max_replicas,
            service_account=service_account,
            sync=True,
        )
        after = self.deployments(ep.resource_name)
        new = [
            d
            for d in after
            if d.deployed_model_id not in before and (d.model_id, d.version_id) == (version.model_id, version.version_id)
        ]
        if not new:
            raise RuntimeError(f"deployed {version.resource_name} but cannot find it on {ep.resource_name}")
        return Deployment(endpoint=ep.resource_name, deployed_model_id=new[-1].deployed_model_id, models=tuple(after))

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
        """DeployModel through the SDK's own GAPIC client, which returns the operation instead of
        waiting on it (`Endpoint.deploy(sync=False)` would wait in a thread of this process, which a
        Cloud Run instance may lose). The split is the SDK's (`Endpoint._allocate_traffic`), as `deploy`."""
        if not 0 < traffic_percent <= 100:
            raise TrafficSplitError(f"traffic_percent must be in 1..100, got {traffic_percent}")
        ep = self._endpoint(endpoint)
        try:
            aiplatform.Model(version.resource_name, **self._where())
        except gexc.NotFound as e:
            raise NotFoundError(f"model version {version.resource_name} not found") from e
        current = {k: int(v) for k, v in ep.gca_resource.traffic_split.items() if int(v)}
        split = aiplatform.Endpoint._allocate_traffic(current, traffic_percent) if current else {"0": 100}
        deployed_model = GapicDeployedModel(
            model=version.resource_name,
            display_name=display_name or f"{version.model_id}-v{version.version_id}",
            dedicated_resources=DedicatedResources(
                machine_spec=MachineSpec(machine_type=machine_type),
                min_replica_count=min_replicas, max_replica_count=max_replicas),
            service_account=service_account or "",
        )
        operation = ep.api_client.deploy_model(endpoint=ep.resource_name, deployed_model=deployed_model,
                                               traffic_split=split)
        return str(operation.operation.name)

    def deploy_operation(self, name: str) -> DeployOperation:
        client = aiplatform.Endpoint._instantiate_client(location=self.location, credentials=self.credentials)
        try:
            op = client.get_operation(request={"name": name})
        except gexc.NotFound as e:
            raise NotFoundError(f"operation {name} not found") from e
        if not op.done:
            return DeployOperation(name, False)
        if op.HasField("error"):
            return DeployOperation(name, True, error=op.error.message or f"code {op.error.code}")
        response = DeployModelResponse.deserialize(op.response.value)
        return DeployOperation(name, True, deployed_model_id=response.deployed_model.id)

    def set_traffic(self, endpoint: str, split: Mapping[str, int]) -> list[DeployedModel]:
        ep = self._endpoint(endpoint)
        deployed = {d.id for d in ep.gca_resource.deployed_models}
        # Checked here, before the call, so every refusal is the port's TrafficSplitError (Vertex
        # answers 400 for these; the SDK lets it through as google.api_core's BadRequest).
        unknown = sorted(set(split) - deployed)
        if unknown:
            raise TrafficSplitError(f"traffic split names {unknown}, not deployed on {ep.resource_name}")
        if any(int(v) < 0 for v in split.values()):
            raise TrafficSplitError(f"traffic split has a negative share: {dict(split)}")
        if sum(int(v) for v in split.values()) != 100:
            raise TrafficSplitError(f"traffic split must sum to 100, got {dict(split)}")
        ep.update(traffic_split={k: int(v) for k, v in split.items()})
        return self.deployments(ep.resource_name)

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        ep = self._endpoint(endpoint)
        deployed = {d.id for d in ep.gca_resource.deployed_models}
        if deployed_model_id not in deployed:
            raise NotFoundError(f"{deployed_model_id} is not deployed on {ep.resource_name}")
        # The SDK would spread a model's traffic over the others (and refuse when it holds all of
        # it); the port refuses both, so traffic moves only by an explicit set_traffic.
        share = int(dict(ep.gca_resource.traffic_split).get(deployed_model_id, 0))
        if share and len(deployed) > 1:
            raise TrafficSplitError(
                f"{deployed_model_id} still has {share}% of the traffic on {ep.resource_name}: set_traffic first"
            )
        ep.undeploy(deployed_model_id, sync=True)

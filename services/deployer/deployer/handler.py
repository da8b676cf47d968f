"""deployer: put each new champion behind its pipeline's endpoint, keeping the previous for rollback.

With `deployment.canary_percent` > 0 the new version first takes that share and the previous keeps
the rest; otherwise it takes all traffic and the previous stays deployed at 0% so a rollback is a
traffic change, not a redeploy. Older versions are undeployed. Idempotent: if the endpoint already
serves this version, the current state is announced again and nothing is deployed.
"""

from __future__ import annotations

import structlog

from mlops.core.events import Decision, DeploymentAction, Envelope, ModelDeployed, ModelRegistered
from mlops.core.events import DeployedModel as DeployedModelEvent
from mlops.core.layout import manifest_path
from mlops.ports.blobs import BlobStore
from mlops.ports.registry import (
    DeployedModel,
    ModelEndpoint,
    ModelRegistry,
    VersionMeta,
)
from mlops.ports.specs import SpecStore

log = structlog.get_logger("deployer")


class Deployer:
    def __init__(self, registry: ModelRegistry, endpoints: ModelEndpoint, specs: SpecStore, blobs: BlobStore):
        self._registry = registry
        self._endpoints = endpoints
        self._specs = specs
        self._blobs = blobs

    def handle(self, registered: ModelRegistered, envelope: Envelope) -> list[ModelDeployed]:
        if registered.decision != Decision.PROMOTE:
            log.info("rejected by the gate; nothing to deploy", version=registered.version_id)
            return []
        spec = self._specs.get(registered.pipeline)
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        before = self._endpoints.deployments(endpoint)
        previous = max(before, key=lambda d: d.traffic_percent, default=None)
        if any(d.version_id == registered.version_id for d in before):
            announced = self._manifest(registered.pipeline)
            if announced is not None and announced.version_id == registered.version_id:
                log.info("version already deployed; announcing the same deployment again", version=registered.version_id)
                return [announced]
            action = DeploymentAction.DEPLOY
        else:
            version = self._registry.get_version(registered.model_id, registered.version_id)
            canary = spec.deployment.canary_percent
            deployment = self._endpoints.deploy(endpoint, version, canary or 100, display_name=f"{registered.model_id}-v{version.version_id}")
            action = DeploymentAction.CANARY if canary else DeploymentAction.DEPLOY
            self._retire_old(endpoint, keep={deployment.deployed_model_id, previous.deployed_model_id if previous else ""},
                             keep_previous=spec.deployment.keep_previous)
        after = self._endpoints.deployments(endpoint)
        log.info("deployed", endpoint=endpoint, split={d.version_id: d.traffic_percent for d in after})
        deployed = ModelDeployed(
            pipeline=registered.pipeline, endpoint=endpoint, model_id=registered.model_id,
            version_id=registered.version_id, action=action,
            previous_version=previous.version_id if previous and previous.version_id != registered.version_id else None,
            deployed_models=[self._describe(registered.model_id, d) for d in after],
        )
        # The manifest a (re)starting predictor serves from; overwritten, so a replay is harmless.
        self._blobs.put(manifest_path(registered.pipeline), deployed.model_dump_json().encode(), "application/json")
        return [deployed]

    def _manifest(self, pipeline: str) -> ModelDeployed | None:
        path = manifest_path(pipeline)
        if not self._blobs.exists(path):
            return None
        return ModelDeployed.model_validate_json(self._blobs.get(path))

    def _retire_old(self, endpoint: str, keep: set[str], keep_previous: bool) -> None:
        for deployed in self._endpoints.deployments(endpoint):
            if deployed.deployed_model_id in keep and (keep_previous or deployed.traffic_percent > 0):
                continue
            if deployed.traffic_percent == 0:
                self._endpoints.undeploy(endpoint, deployed.deployed_model_id)

    def _describe(self, model_id: str, deployed: DeployedModel) -> DeployedModelEvent:
        meta = VersionMeta.of(self._registry.get_version(model_id, deployed.version_id))
        return DeployedModelEvent(
            deployed_model_id=deployed.deployed_model_id, version_id=deployed.version_id,
            artifact_uri=meta.artifact_uri, artifact_checksum=meta.artifact_checksum,
            traffic_percent=deployed.traffic_percent,
        )

"""deployer: put each new champion behind its pipeline's endpoint, keeping the previous for rollback.

With `deployment.canary_percent` > 0 the new version first takes that share and the previous keeps
the rest; otherwise it takes all traffic and the previous stays deployed at 0% so a rollback is a
traffic change, not a redeploy. Older versions are undeployed. Idempotent: if the endpoint already
serves this version, the current state is announced again and nothing is deployed; and each deploy
is recorded as an intent before it is sent (`mlops.ports.intents`), so a deployer killed during a
slow deploy waits for that deploy on redelivery instead of deploying the version a second time.

Rollback: `mlops replay` of an earlier champion's `model.registered` rolls the pipeline back to that
version. It takes all the traffic (redeployed if it was undeployed since) and the `champion` alias
(so later candidates are judged against what serves), the version it displaces stays at 0% for a
roll forward, and `model.deployed` says `rollback`. A replay of a version the gate rejected, or one
the registry does not have, is refused with the reason (dead-lettered, `stage.failed`).
"""

from __future__ import annotations

import structlog

from mlops.core.errors import PermanentError
from mlops.core.events import Decision, DeploymentAction, Envelope, ModelDeployed, ModelRegistered
from mlops.core.events import DeployedModel as DeployedModelEvent
from mlops.core.layout import manifest_path
from mlops.ports.blobs import BlobStore
from mlops.ports.intents import IntentLog
from mlops.ports.registry import (
    DeployedModel,
    ModelEndpoint,
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    VersionMeta,
)
from mlops.ports.specs import SpecStore

log = structlog.get_logger("deployer")

CHAMPION = "champion"  # the alias the registrar gives each promoted version


class RollbackRefused(PermanentError):
    """A replayed `model.registered` names a version that cannot serve: rejected, or not registered."""


class Deployer:
    def __init__(self, registry: ModelRegistry, endpoints: ModelEndpoint, specs: SpecStore, blobs: BlobStore,
                 *, intents: IntentLog | None = None, deploy_deadline_s: float = 1800.0):
        """Each deploy is recorded in `intents` (by default on `blobs`) before it is sent: a deployer
        killed during a deploy waits for it on redelivery, for up to `deploy_deadline_s` after it was
        sent (deploys take many minutes on Vertex AI), instead of deploying the version twice."""
        self._registry = registry
        self._endpoints = endpoints
        self._specs = specs
        self._blobs = blobs
        self._intents = intents or IntentLog(blobs, "deployer")
        self._deploy_deadline_s = deploy_deadline_s

    def handle(self, registered: ModelRegistered, envelope: Envelope) -> list[ModelDeployed]:
        if envelope.is_replay:
            return [self.roll_back(registered, envelope.id)]
        if registered.decision != Decision.PROMOTE:
            log.info("rejected by the gate; nothing to deploy", version=registered.version_id)
            return []
        spec = self._specs.get(registered.pipeline)
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        before = self._endpoints.deployments(endpoint)
        announced = self._manifest(registered.pipeline)
        if announced is not None and announced.version_id == registered.version_id \
                and self._deployed_id(before, registered.version_id) is not None:
            log.info("version already deployed; announcing the same deployment again", version=registered.version_id)
            return [announced]
        # What serves before this deploy: recorded with the intent, so a redelivery that resumes after
        # a crash (when the new version may already hold the traffic) announces the same previous.
        others = [d for d in before if d.version_id != registered.version_id]
        previous = max(others, key=lambda d: d.traffic_percent, default=None)
        canary = spec.deployment.canary_percent

        def deploy() -> str:
            version = self._registry.get_version(registered.model_id, registered.version_id)
            return self._endpoints.deploy(endpoint, version, canary or 100,
                                          display_name=f"{registered.model_id}-v{version.version_id}").deployed_model_id

        mine, intent = self._intents.once(
            envelope.id, "deploy", deadline_s=self._deploy_deadline_s, make=deploy,
            effect=lambda: self._deployed_id(self._endpoints.deployments(endpoint), registered.version_id),
            context={"previous_deployed_model_id": previous.deployed_model_id if previous else "",
                     "previous_version": previous.version_id if previous else ""})
        if intent is not None:
            previous_id = intent.context.get("previous_deployed_model_id", "")
            previous_version = intent.context.get("previous_version") or None
        else:
            previous_id = previous.deployed_model_id if previous else ""
            previous_version = previous.version_id if previous else None
        self._retire_old(endpoint, keep={mine, previous_id}, keep_previous=spec.deployment.keep_previous)
        action = DeploymentAction.CANARY if canary else DeploymentAction.DEPLOY
        return [self._announce(registered, endpoint, action, previous_version)]

    @staticmethod
    def _deployed_id(deployments: list[DeployedModel], version_id: str) -> str | None:
        """The deployed model serving this version, if any (there is at most one: each is deployed once)."""
        return next((d.deployed_model_id for d in deployments if d.version_id == version_id), None)

    def roll_back(self, registered: ModelRegistered, event_id: str | None = None) -> ModelDeployed:
        """Serve `registered`'s version alone again and make it the champion. Each step checks the
        state first, so a redelivery (or a crash between steps) completes it without a second deploy;
        a redeploy is recorded as an intent of `event_id` (the replayed event's id) first."""
        target = self._rollback_target(registered)
        spec = self._specs.get(registered.pipeline)
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        before = self._endpoints.deployments(endpoint)
        announced = self._manifest(registered.pipeline)
        serving = next((d for d in before if d.version_id == target.version_id), None)
        if serving is not None and serving.traffic_percent == 100 and announced is not None \
                and announced.version_id == target.version_id and self._champion(registered.model_id) == target.version_id:
            log.info("already rolled back to this version; announcing it again", version=target.version_id)
            return announced
        # What it displaces: the version last announced (after a crash that already moved the traffic
        # it is the only record of it), else whatever serves the most now.
        previous = announced.version_id if announced and announced.version_id != target.version_id else None
        displaced = next((d for d in before if d.version_id == previous), None) or max(
            (d for d in before if d.version_id != target.version_id and d.traffic_percent > 0),
            key=lambda d: d.traffic_percent, default=None)
        previous = previous or (displaced.version_id if displaced else None)
        if serving is None:  # undeployed since its rollback window passed: redeploy it
            def redeploy() -> str:
                return self._endpoints.deploy(endpoint, target, 100,
                                              display_name=f"{registered.model_id}-v{target.version_id}").deployed_model_id

            if event_id is None:
                kept = redeploy()
            else:
                kept, _ = self._intents.once(
                    event_id, "deploy", deadline_s=self._deploy_deadline_s, make=redeploy,
                    effect=lambda: self._deployed_id(self._endpoints.deployments(endpoint), target.version_id))
        else:
            if serving.traffic_percent != 100:
                self._endpoints.set_traffic(endpoint, {serving.deployed_model_id: 100})
            kept = serving.deployed_model_id
        self._retire_old(endpoint, keep={kept, displaced.deployed_model_id if displaced else ""},
                         keep_previous=spec.deployment.keep_previous)
        self._crown(registered.model_id, target.version_id)
        log.info("rolled back", endpoint=endpoint, version=target.version_id, previous=previous)
        return self._announce(registered, endpoint, DeploymentAction.ROLLBACK, previous)

    def _rollback_target(self, registered: ModelRegistered) -> ModelVersion:
        try:
            version = self._registry.get_version(registered.model_id, registered.version_id)
        except NotFoundError:
            raise RollbackRefused(f"cannot roll {registered.pipeline} back to version {registered.version_id}: "
                                  f"the registry has no such version of {registered.model_id}") from None
        meta = VersionMeta.of(version)
        if (meta.decision or registered.decision) != Decision.PROMOTE:
            raise RollbackRefused(f"cannot roll {registered.pipeline} back to version {version.version_id}: the gate "
                                  f"rejected it ({meta.reason or 'no reason recorded'}); replay the model.registered "
                                  f"of a version that was promoted")
        return version

    def _champion(self, model_id: str) -> str | None:
        try:
            return self._registry.get_version(model_id, CHAMPION).version_id
        except NotFoundError:
            return None

    def _crown(self, model_id: str, version_id: str) -> None:
        """The registrar's crowning, for a rollback: the alias moves, the labels say who serves."""
        previous = self._champion(model_id)
        if previous != version_id:
            self._registry.move_alias(model_id, version_id, CHAMPION)
        self._registry.set_labels(model_id, version_id, {"status": CHAMPION})
        if previous is not None and previous != version_id:
            self._registry.set_labels(model_id, previous, {"status": "retired"})

    def _announce(self, registered: ModelRegistered, endpoint: str, action: DeploymentAction,
                  previous_version: str | None) -> ModelDeployed:
        after = self._endpoints.deployments(endpoint)
        log.info("deployed", endpoint=endpoint, action=action, split={d.version_id: d.traffic_percent for d in after})
        deployed = ModelDeployed(
            pipeline=registered.pipeline, endpoint=endpoint, model_id=registered.model_id,
            version_id=registered.version_id, action=action, previous_version=previous_version,
            deployed_models=[self._describe(registered.model_id, d) for d in after],
        )
        # The manifest a (re)starting predictor serves from; overwritten, so a redelivery is harmless.
        self._blobs.put(manifest_path(registered.pipeline), deployed.model_dump_json().encode(), "application/json")
        return deployed

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

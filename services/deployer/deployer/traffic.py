"""deployer: traffic changes that are not a new champion's deploy: a canary's verdict, an operator's request.

- `canary.judged` (the monitor's canary judge): `promote` gives the canary all the traffic (the previous
  champion stays deployed at 0% for a rollback); `rollback` gives the previous champion all of it back
  with the `champion` alias, undeploys the canary and labels it `status=rolled_back` in the registry.
- `deployment.requested` (`mlops rollback PIPELINE [--to VERSION]`, `mlops promote PIPELINE VERSION
  --reason ...`): a rollback serves the previous champion (or the named version) and labels the version
  it displaces `rolled_back`; a promote serves the named version and crowns it. A version the gate
  rejected is promoted only with a reason (the override is recorded in its labels and in the event).
Each ends in `model.deployed` with action `promote` or `rollback` and the reason.

Both go through `Deployer.roll_back` ("serve this version alone, make it the champion", told how to
announce it and what to tidy after by a `ServeChange`), which checks the state before each step: a
redelivery, or a crash between steps, completes the change without a second deploy and announces the
same outcome. A version still on the endpoint (the previous champion is kept at 0%) is a traffic
change, announced by the push itself; one undeployed since is deployed again the way every deploy
is, asynchronously: the intent of the input event is recorded, DeployModel started, the push acked,
and the tick that finds the deploy done does the rest and announces it (`Deployer.finish_deploys`).

A verdict that no longer matches the endpoint (an operator changed the traffic since) changes nothing.
A replayed `model.registered` of a version that was rolled back is refused (dead-lettered with the
reason) unless the replay was forced (`mlops replay --force`, attribute `replay_force=true`).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from deployer.handler import CHAMPION, Deployer, ServeChange
from mlops.core.errors import PermanentError
from mlops.core.events import (
    CanaryJudged,
    CanaryOutcome,
    Decision,
    DeploymentAction,
    DeploymentRequested,
    Envelope,
    ModelDeployed,
    ModelRegistered,
    RequestedAction,
)
from mlops.core.spec import PipelineSpec
from mlops.ports.registry import (
    DeployedModel,
    ModelEndpoint,
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    VersionMeta,
)
from mlops.ports.specs import SpecStore, UnknownPipeline

log = structlog.get_logger("deployer.traffic")

ROLLED_BACK = "rolled_back"  # the `status` label of a version a rollback displaced
REPLAY_FORCE_ATTRIBUTE = "replay_force"  # set by `mlops replay --force`


class TrafficRefused(PermanentError):
    """A requested traffic change that can never be made: an unknown version, nothing to roll back to,
    a rejected version without a reason."""


def version_number(version_id: str) -> int:
    return int(version_id) if version_id.isdigit() else -1


def is_forced(envelope: Envelope) -> bool:
    return envelope.extra.get(REPLAY_FORCE_ATTRIBUTE, "").lower() == "true"


class Traffic:
    def __init__(self, deployer: Deployer, registry: ModelRegistry, endpoints: ModelEndpoint, specs: SpecStore):
        self._deployer = deployer
        self._registry = registry
        self._endpoints = endpoints
        self._specs = specs

    # ------------------------------------------------------------------------------ canary.judged

    def on_judged(self, judged: CanaryJudged, envelope: Envelope) -> list[ModelDeployed]:
        spec = self._spec(judged.pipeline)
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        shares = {d.version_id: d.traffic_percent for d in self._endpoints.deployments(endpoint)}
        canary, champion = shares.get(judged.canary_version), shares.get(judged.champion_version)
        live = canary is not None and 0 < canary < 100
        reason = f"canary judged: {judged.reason}"
        if judged.outcome == CanaryOutcome.PROMOTE:
            if not (live or canary == 100):
                log.info("stale verdict: the canary no longer serves its share; nothing changed", split=shares)
                return []
            return self._serve(spec, judged.canary_version, envelope, ServeChange(
                action=DeploymentAction.PROMOTE, reason=reason, previous_version=judged.champion_version))
        if not (live or (champion == 100 and not canary)):
            log.info("stale verdict: the canary no longer serves its share; nothing changed", split=shares)
            return []
        return self._serve(spec, judged.champion_version, envelope, ServeChange(
            action=DeploymentAction.ROLLBACK, reason=reason, previous_version=judged.canary_version,
            undeploy_version=judged.canary_version, labels_version=judged.canary_version,
            labels=rolled_back_labels("canary-judge")))

    # ------------------------------------------------------------------------ deployment.requested

    def on_requested(self, requested: DeploymentRequested, envelope: Envelope) -> list[ModelDeployed]:
        spec = self._spec(requested.pipeline)
        why = f"{requested.reason or 'no reason given'} (requested by {requested.requested_by})"
        if requested.action == RequestedAction.ROLLBACK:
            target = requested.version or self.previous_champion(spec)
            version = self._version(spec, target)
            serving = self._serving(spec)
            canary = serving[0] if len(serving) == 2 and serving[1].version_id == target else None
            displaced = serving[0].version_id if serving and serving[0].version_id != target else None
            return self._serve(spec, version.version_id, envelope, ServeChange(
                action=DeploymentAction.ROLLBACK, reason=why, undeploy_version=canary.version_id if canary else None,
                labels_version=displaced, labels=rolled_back_labels(requested.requested_by) if displaced else {}))
        if not requested.version:
            raise TrafficRefused(f"promote {spec.name}: name the version to promote")
        version = self._version(spec, requested.version)
        meta = VersionMeta.of(version)
        labels = {"override": "promote", "override_by": requested.requested_by, "override_reason": requested.reason}
        rejected = bool(meta.decision) and meta.decision != Decision.PROMOTE
        if rejected and not requested.reason.strip():
            raise TrafficRefused(f"promote {spec.name} version {version.version_id}: the gate rejected it "
                                 f"({meta.reason or 'no reason recorded'}); overriding the gate needs a reason")
        if requested.reason.strip():
            self._registry.set_labels(spec.model_id, version.version_id, labels)
        # `Deployer.roll_back` refuses a version the gate rejected unless told: here an operator
        # overrides the gate, with the reason recorded in its labels and in the event.
        return self._serve(spec, version.version_id, envelope, ServeChange(
            action=DeploymentAction.PROMOTE, reason=why, allow_rejected=rejected))

    def previous_champion(self, spec: PipelineSpec) -> str:
        """What a rollback without a version returns to: beside a canary, the champion it is judged
        against; otherwise the newest promoted version older than the one serving, not rolled back."""
        serving = self._serving(spec)
        if len(serving) == 2:
            return serving[1].version_id
        current = version_number(serving[0].version_id) if serving else None
        for version in self._registry.list_versions(spec.model_id):  # newest first
            if current is not None and version_number(version.version_id) >= current:
                continue
            if version.labels.get("status") == ROLLED_BACK:
                continue
            if (VersionMeta.of(version).decision or Decision.PROMOTE) == Decision.PROMOTE:
                return version.version_id
        raise TrafficRefused(f"cannot roll {spec.name} back: no promoted version older than "
                             f"{serving[0].version_id if serving else 'what serves'} that was not rolled back; "
                             f"name one with --to VERSION")

    # -------------------------------------------------------------------------- model.registered

    def guard_replay(self, handle: Callable[[ModelRegistered, Envelope], list[ModelDeployed]]
                     ) -> Callable[[ModelRegistered, Envelope], list[ModelDeployed]]:
        """The deployer's `model.registered` route, refusing to redeploy a rolled-back version on a
        replay that was not forced."""

        def guarded(registered: ModelRegistered, envelope: Envelope) -> list[ModelDeployed]:
            if envelope.is_replay and not is_forced(envelope):
                try:
                    version = self._registry.get_version(registered.model_id, registered.version_id)
                except NotFoundError:
                    version = None  # the deployer's own refusal says so
                if version is not None and version.labels.get("status") == ROLLED_BACK:
                    raise TrafficRefused(
                        f"version {registered.version_id} of {registered.pipeline} was rolled back"
                        f"{' by ' + version.labels['rolled_back_by'] if version.labels.get('rolled_back_by') else ''}"
                        f"; it is not redeployed by a replay unless asked: `mlops replay --event ... --force`, "
                        f"or `mlops promote {registered.pipeline} {registered.version_id} --reason ...`")
            return handle(registered, envelope)

        return guarded

    # ------------------------------------------------------------------------------------ helpers

    def _spec(self, pipeline: str) -> PipelineSpec:
        try:
            return self._specs.get(pipeline)
        except UnknownPipeline as error:
            raise TrafficRefused(str(error)) from None

    def _version(self, spec: PipelineSpec, version_id: str) -> ModelVersion:
        try:
            return self._registry.get_version(spec.model_id, version_id)
        except NotFoundError:
            raise TrafficRefused(f"{spec.name} has no version {version_id!r} in the registry") from None

    def _serving(self, spec: PipelineSpec) -> list[DeployedModel]:
        """The deployed models with traffic, most first; the canary first of a canary pair."""
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        live = [d for d in self._endpoints.deployments(endpoint) if d.traffic_percent > 0]
        if len(live) == 2:
            crowned = self._champion(spec)
            return sorted(live, key=lambda d: (d.version_id != crowned, -version_number(d.version_id)))
        return sorted(live, key=lambda d: -d.traffic_percent)

    def _champion(self, spec: PipelineSpec) -> str | None:
        try:
            return self._registry.get_version(spec.model_id, CHAMPION).version_id
        except NotFoundError:
            return None

    def _registered(self, spec: PipelineSpec, version_id: str) -> ModelRegistered:
        """The version as its `model.registered` said it, from the registry (what `roll_back` takes)."""
        version = self._version(spec, version_id)
        meta = VersionMeta.of(version)
        return ModelRegistered(
            pipeline=spec.name, model_id=spec.model_id, version_id=version.version_id,
            resource_name=version.resource_name, aliases=list(version.aliases),
            decision=meta.decision or Decision.PROMOTE, candidate_version=version.labels.get("candidate", ""),
            artifact_uri=meta.artifact_uri, metrics=meta.metrics, lineage=meta.lineage)

    def _serve(self, spec: PipelineSpec, version_id: str, envelope: Envelope,
               change: ServeChange) -> list[ModelDeployed]:
        """The version alone, as `change` says, through `Deployer.roll_back`: announced now, or (a
        version that must be deployed again) by the tick that finishes its deploy."""
        deployed = self._deployer.roll_back(self._registered(spec, version_id), envelope.id, change,
                                            input_event_type=envelope.type)
        return [deployed] if deployed is not None else []


def rolled_back_labels(by: str) -> dict[str, str]:
    """The registry labels of a version a rollback displaced."""
    return {"status": ROLLED_BACK, "rolled_back_by": by}

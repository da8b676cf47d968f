"""deployer: put each new champion behind its pipeline's endpoint, keeping the previous for rollback.

With `deployment.canary_percent` > 0 the new version first takes that share and the previous keeps
the rest; otherwise it takes all traffic and the previous stays deployed at 0% so a rollback is a
traffic change, not a redeploy. Older versions are undeployed.

A deploy outlives the push that asks for it (DeployModel takes many minutes on Vertex AI; a push
waits at most its ack deadline): `handle` records an intent (`mlops.ports.intents`), starts the
DeployModel, records the operation's name in the intent, and acks. Each later `watch.tick` (the
ticker's heartbeats) looks at the open deploys (`finish_deploys`): a done one retires the old versions
and announces `model.deployed`; a failed one ends in `stage.failed` with Vertex's reason, and the
endpoint still serves what it served. One deploy per endpoint at a time (Vertex refuses a second
while one runs): a champion that arrives meanwhile waits, queued, and starts on a later tick.
A redelivered `model.registered` finds its intent and starts nothing; one whose version already
serves announces the same deployment again.

Rollback: `mlops replay` of an earlier champion's `model.registered` rolls the pipeline back to that
version. It takes all the traffic (redeployed if it was undeployed since) and the `champion` alias
(so later candidates are judged against what serves), the version it displaces stays at 0% for a
roll forward, and `model.deployed` says `rollback`. A replay of a version the gate rejected, or one
the registry does not have, is refused with the reason (dead-lettered, `stage.failed`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import structlog

from mlops.core.errors import PermanentError
from mlops.core.events import (
    Continues,
    Decision,
    DeploymentAction,
    Envelope,
    ModelDeployed,
    ModelRegistered,
    StageFailed,
    WatchTick,
)
from mlops.core.events import DeployedModel as DeployedModelEvent
from mlops.core.layout import manifest_path
from mlops.ports.blobs import BlobStore
from mlops.ports.intents import DONE, FAILED, IN_FLIGHT, Intent, IntentLog
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


SERVE = "serve"  # an intent's kind: a traffic change that had to deploy its version again


@dataclass(frozen=True)
class ServeChange:
    """How a "serve this version alone" change is announced and what it tidies after itself, kept in
    the intent of a redeploy so the tick that finishes it does what the push would have done."""

    action: DeploymentAction = DeploymentAction.ROLLBACK
    reason: str | None = None
    previous_version: str | None = None  # announced instead of the version found displaced
    undeploy_version: str | None = None  # taken off the endpoint once at 0% (a rolled-back canary)
    labels_version: str | None = None    # labelled with `labels` (status=rolled_back, the override's record)
    labels: dict[str, str] = field(default_factory=dict)
    allow_rejected: bool = False         # an operator's override of the gate, with a reason

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeChange:
        values = json.loads(text or "{}")
        if "action" in values:
            values["action"] = DeploymentAction(values["action"])
        return cls(**values)


class RollbackRefused(PermanentError):
    """A replayed `model.registered` names a version that cannot serve: rejected, or not registered."""


class Deployer:
    def __init__(self, registry: ModelRegistry, endpoints: ModelEndpoint, specs: SpecStore, blobs: BlobStore,
                 *, intents: IntentLog | None = None, deploy_deadline_s: float = 1800.0,
                 serving_service_account: str | None = None, clock: Callable[[], float] = time.time):
        """Each deploy is recorded in `intents` (by default on `blobs`) before it is sent, then with its
        operation's name. A deploy whose operation name was never recorded (the deployer died while
        starting it) is looked for on the endpoint until `deploy_deadline_s` after it was sent, and only
        then started again. Serving containers run as `serving_service_account` (None: Vertex's default)."""
        self._registry = registry
        self._endpoints = endpoints
        self._specs = specs
        self._blobs = blobs
        self._intents = intents or IntentLog(blobs, "deployer")
        self._deploy_deadline_s = deploy_deadline_s
        self._service_account = serving_service_account or None
        self._clock = clock
        # Ticks arrive concurrently (threads): one look at the open deploys at a time announces each once.
        self._follow_up = threading.Lock()

    def handle(self, registered: ModelRegistered, envelope: Envelope) -> list[ModelDeployed]:
        if envelope.is_replay:
            deployed = self.roll_back(registered, envelope.id, input_event_type=envelope.type)
            return [deployed] if deployed is not None else []
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
        intent = self._intents.get(envelope.id)
        if intent is not None and (intent.state != FAILED or intent.context.get("operation")):
            # Started (or queued, or finished) by an earlier delivery: the ticks see it through.
            log.info("deploy already started for this event; nothing to start", version=registered.version_id,
                     state=intent.state, operation=intent.context.get("operation", ""))
            return []
        deployed_id = self._deployed_id(before, registered.version_id)
        if deployed_id is not None:
            # Deployed, never announced (an earlier deployer announced nothing before it died).
            previous = max((d for d in before if d.version_id != registered.version_id),
                           key=lambda d: d.traffic_percent, default=None)
            return [self._complete(registered, endpoint, deployed_id, previous.deployed_model_id if previous else "",
                                   previous.version_id if previous else None)]
        # What serves before this deploy: recorded with the intent, so the tick that finishes it
        # announces the same previous version whatever happened in between.
        others = [d for d in before if d.version_id != registered.version_id]
        previous = max(others, key=lambda d: d.traffic_percent, default=None)
        context = {"pipeline": registered.pipeline, "endpoint": endpoint, "version_id": registered.version_id,
                   "registered": registered.model_dump_json(), "operation": "",
                   # The run the tick that finishes this deploy announces it in (Continues).
                   "run_id": envelope.run_id, "replay_of": envelope.replay_of,
                   "previous_deployed_model_id": previous.deployed_model_id if previous else "",
                   "previous_version": previous.version_id if previous else ""}
        busy = self._open_deploy_on(endpoint, except_event=envelope.id)
        if busy is not None:
            context["queued_behind"] = busy.event_id
            self._intents.begin(envelope.id, "deploy", deadline_s=self._deploy_deadline_s, context=context)
            log.info("another deploy runs on this endpoint; queued", version=registered.version_id,
                     behind=busy.event_id)
            return []
        self._start(self._intents.begin(envelope.id, "deploy", deadline_s=self._deploy_deadline_s,
                                        context=context))
        return []

    def _start(self, intent: Intent) -> Intent:
        """Start the DeployModel of a recorded intent and record its operation's name."""
        registered = ModelRegistered.model_validate_json(intent.context["registered"])
        spec = self._specs.get(registered.pipeline)
        try:
            version = self._registry.get_version(registered.model_id, registered.version_id)
            # A traffic change that needs its version back on the endpoint deploys it at 100%.
            percent = int(intent.context.get("traffic_percent") or spec.deployment.canary_percent or 100)
            operation = self._endpoints.start_deploy(
                intent.context["endpoint"], version, percent,
                display_name=f"{registered.model_id}-v{version.version_id}", service_account=self._service_account)
        except Exception as error:
            # Answered: nothing started. The push fails, and its redelivery starts it again.
            self._intents.record(replace(intent, state=FAILED, error=f"{type(error).__name__}: {error}"[:1000]))
            raise
        log.info("deploy started", version=registered.version_id, operation=operation)
        context = {**intent.context, "operation": operation}
        context.pop("queued_behind", None)
        return self._intents.record(replace(intent, context=context))

    def _open_deploy_on(self, endpoint: str, except_event: str = "") -> Intent | None:
        """The deploy started and not finished on this endpoint, if any."""
        for intent in self._intents.open():
            if intent.call == "deploy" and intent.state == IN_FLIGHT and intent.event_id != except_event \
                    and intent.context.get("endpoint") == endpoint and intent.context.get("operation"):
                return intent
        return None

    def handle_tick(self, tick: WatchTick, envelope: Envelope) -> list[Continues | ModelDeployed | StageFailed]:
        """What a tick announces for a deploy belongs to the run of the event that started it."""
        out: list[Continues | ModelDeployed | StageFailed] = []
        for intent, event in self._finish():
            run_id = intent.context.get("run_id")
            out.append(Continues(event, cause_id=intent.event_id, run_id=run_id,
                                 replay_of=intent.context.get("replay_of", "")) if run_id else event)
        return out

    def finish_deploys(self, envelope: Envelope | None = None) -> list[ModelDeployed | StageFailed]:
        """Look at every open deploy: announce the done, report the failed, start the queued."""
        return [event for _, event in self._finish()]

    def _finish(self) -> list[tuple[Intent, ModelDeployed | StageFailed]]:
        out: list[tuple[Intent, ModelDeployed | StageFailed]] = []
        with self._follow_up:
            open_ = sorted((i for i in self._intents.open() if i.call == "deploy" and i.state == IN_FLIGHT
                            and i.context.get("registered")), key=lambda i: i.started_at)
            for intent in open_:
                try:
                    out.extend((intent, event) for event in self._follow(intent))
                except Exception as error:  # noqa: BLE001 - one deploy's trouble must not hold back the others
                    log.error("could not follow a deploy; next tick tries again", event_id=intent.event_id,
                              error=repr(error)[:1000])
        return out

    def _follow(self, intent: Intent) -> list[ModelDeployed | StageFailed]:
        registered = ModelRegistered.model_validate_json(intent.context["registered"])
        endpoint = intent.context["endpoint"]
        operation = intent.context.get("operation", "")
        if not operation:
            if intent.context.get("queued_behind"):
                if self._open_deploy_on(endpoint, except_event=intent.event_id) is None:
                    # What it displaces is what serves now, after the deploys it waited for.
                    others = [d for d in self._endpoints.deployments(endpoint)
                              if d.version_id != registered.version_id]
                    previous = max(others, key=lambda d: d.traffic_percent, default=None)
                    self._start(replace(intent, context={
                        **intent.context, "previous_deployed_model_id": previous.deployed_model_id if previous else "",
                        "previous_version": previous.version_id if previous else ""}))
                return []
            # Started, but its operation's name was never recorded (the deployer died in between).
            found = self._deployed_id(self._endpoints.deployments(endpoint), registered.version_id)
            if found is None and self._clock() < intent.deadline_at:
                return []
            if found is None:
                log.warning("a deploy without a recorded operation never landed; starting it again",
                            version=registered.version_id)
                self._start(intent)
                return []
            return [self._done(intent, registered, endpoint, found)]
        status = self._endpoints.deploy_operation(operation)
        if not status.done:
            return []
        if status.error is not None:
            self._intents.record(replace(intent, state=FAILED, error=status.error[:1000]))
            log.error("deploy failed; the endpoint serves what it served", version=registered.version_id,
                      reason=status.error)
            return [StageFailed(stage="deployer", input_event_id=intent.event_id,
                                input_event_type=intent.context.get("input_event_type") or ModelRegistered.EVENT_TYPE,
                                error_class="DeployFailed",
                                error_message=f"deploying {registered.pipeline} version {registered.version_id} "
                                              f"failed: {status.error}"[:2000],
                                permanent=True, pipeline=registered.pipeline)]
        return [self._done(intent, registered, endpoint, status.deployed_model_id or "")]

    def _done(self, intent: Intent, registered: ModelRegistered, endpoint: str, deployed_id: str) -> ModelDeployed:
        if intent.context.get("kind") == SERVE:
            deployed = self._serve_alone(registered, endpoint, deployed_id,
                                         intent.context.get("previous_deployed_model_id", ""),
                                         intent.context.get("previous_version") or None,
                                         ServeChange.from_json(intent.context.get("change", "{}")))
            self._intents.record(replace(intent, state=DONE, result=deployed_id, error=""))
            return deployed
        deployed = self._complete(registered, endpoint, deployed_id,
                                  intent.context.get("previous_deployed_model_id", ""),
                                  intent.context.get("previous_version") or None)
        self._intents.record(replace(intent, state=DONE, result=deployed_id, error=""))
        return deployed

    def _complete(self, registered: ModelRegistered, endpoint: str, mine: str, previous_id: str,
                  previous_version: str | None) -> ModelDeployed:
        spec = self._specs.get(registered.pipeline)
        self._retire_old(endpoint, keep={mine, previous_id}, keep_previous=spec.deployment.keep_previous)
        action = DeploymentAction.CANARY if spec.deployment.canary_percent else DeploymentAction.DEPLOY
        return self._announce(registered, endpoint, action, previous_version)

    @staticmethod
    def _deployed_id(deployments: list[DeployedModel], version_id: str) -> str | None:
        """The deployed model serving this version, if any (there is at most one: each is deployed once)."""
        return next((d.deployed_model_id for d in deployments if d.version_id == version_id), None)

    def roll_back(self, registered: ModelRegistered, event_id: str, change: ServeChange | None = None,
                  input_event_type: str = ModelRegistered.EVENT_TYPE) -> ModelDeployed | None:
        """Serve `registered`'s version alone again and make it the champion; `change` says how to
        announce it (rollback by default) and what to tidy after. Each step checks the state first,
        so a redelivery (or a crash between steps) completes it without a second deploy.

        A version still on the endpoint (at 0%, kept for this) is a traffic change, made and
        announced now. One undeployed since needs a DeployModel, which outlives the push like any
        deploy: recorded as an intent of `event_id` (the input event's id), started, and finished by
        a later tick (`finish_deploys`), which announces it; None is returned meanwhile."""
        explicit, change = change is not None, change or ServeChange()
        target = self._rollback_target(registered, allow_rejected=change.allow_rejected)
        spec = self._specs.get(registered.pipeline)
        endpoint = self._endpoints.ensure_endpoint(spec.endpoint_name)
        before = self._endpoints.deployments(endpoint)
        announced = self._manifest(registered.pipeline)
        serving = next((d for d in before if d.version_id == target.version_id), None)
        intent = self._intents.get(event_id)
        if intent is not None and intent.state == IN_FLIGHT and intent.context.get("kind") == SERVE:
            # Whether its deploy has landed or not, the tick that finds it done announces it: once.
            log.info("the redeploy for this event is under way; a tick finishes it", version=target.version_id,
                     operation=intent.context.get("operation", ""))
            return None
        if serving is not None and serving.traffic_percent == 100 and announced is not None \
                and announced.version_id == target.version_id and self._champion(registered.model_id) == target.version_id:
            log.info("already serving this version alone; announcing it again", version=target.version_id)
            self._tidy(registered.model_id, endpoint, change)
            # A replay of what serves re-announces the last announcement as it was.
            return self._as_changed(announced, change) if explicit else announced
        # What it displaces: the version last announced (after a crash that already moved the traffic
        # it is the only record of it), else whatever serves the most now.
        previous = announced.version_id if announced and announced.version_id != target.version_id else None
        displaced = next((d for d in before if d.version_id == previous), None) or max(
            (d for d in before if d.version_id != target.version_id and d.traffic_percent > 0),
            key=lambda d: d.traffic_percent, default=None)
        previous = previous or (displaced.version_id if displaced else None)
        if serving is None:  # undeployed since its rollback window passed: redeploy it, on ticks
            context = {"kind": SERVE, "pipeline": registered.pipeline, "endpoint": endpoint,
                       "version_id": target.version_id, "registered": registered.model_dump_json(),
                       "operation": "", "traffic_percent": "100", "input_event_type": input_event_type,
                       "previous_deployed_model_id": displaced.deployed_model_id if displaced else "",
                       "previous_version": previous or "", "change": change.to_json()}
            busy = self._open_deploy_on(endpoint, except_event=event_id)
            if busy is not None:
                context["queued_behind"] = busy.event_id
                self._intents.begin(event_id, "deploy", deadline_s=self._deploy_deadline_s, context=context)
                log.info("another deploy runs on this endpoint; redeploy queued", version=target.version_id,
                         behind=busy.event_id)
                return None
            self._start(self._intents.begin(event_id, "deploy", deadline_s=self._deploy_deadline_s,
                                            context=context))
            log.info("redeploy started to serve this version alone; a tick finishes it", version=target.version_id)
            return None
        if serving.traffic_percent != 100:
            self._endpoints.set_traffic(endpoint, {serving.deployed_model_id: 100})
        return self._serve_alone(registered, endpoint, serving.deployed_model_id,
                                 displaced.deployed_model_id if displaced else "", previous, change)

    def _serve_alone(self, registered: ModelRegistered, endpoint: str, kept: str, displaced_id: str,
                     previous: str | None, change: ServeChange) -> ModelDeployed:
        """The end of a traffic change, once `kept` serves all the traffic: the old versions retired,
        the champion crowned, the change's tidying done, and the announcement."""
        spec = self._specs.get(registered.pipeline)
        self._retire_old(endpoint, keep={kept, displaced_id}, keep_previous=spec.deployment.keep_previous)
        self._crown(registered.model_id, registered.version_id)
        self._tidy(registered.model_id, endpoint, change)  # after the crowning, whose labels it corrects
        log.info("serving one version alone", endpoint=endpoint, version=registered.version_id, previous=previous,
                 action=change.action)
        return self._announce(registered, endpoint, change.action, change.previous_version or previous,
                              reason=change.reason)

    def _tidy(self, model_id: str, endpoint: str, change: ServeChange) -> None:
        """What a traffic change leaves behind it: the version it displaced undeployed (a rolled-back
        canary) and labelled. Each step is a no-op the second time."""
        if change.undeploy_version is not None:
            for model in self._endpoints.deployments(endpoint):
                if model.version_id == change.undeploy_version and model.traffic_percent == 0:
                    self._endpoints.undeploy(endpoint, model.deployed_model_id)
        if change.labels_version is not None and change.labels:
            self._registry.set_labels(model_id, change.labels_version, change.labels)

    def _as_changed(self, announced: ModelDeployed, change: ServeChange) -> ModelDeployed:
        """A repeated announcement, as the change says it (the manifest holds the last one made)."""
        return announced.model_copy(update={
            "action": change.action, "reason": change.reason if change.reason is not None else announced.reason,
            "previous_version": change.previous_version or announced.previous_version})

    def _rollback_target(self, registered: ModelRegistered, allow_rejected: bool = False) -> ModelVersion:
        try:
            version = self._registry.get_version(registered.model_id, registered.version_id)
        except NotFoundError:
            raise RollbackRefused(f"cannot roll {registered.pipeline} back to version {registered.version_id}: "
                                  f"the registry has no such version of {registered.model_id}") from None
        meta = VersionMeta.of(version)
        if not allow_rejected and (meta.decision or registered.decision) != Decision.PROMOTE:
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
                  previous_version: str | None, reason: str | None = None) -> ModelDeployed:
        after = self._endpoints.deployments(endpoint)
        log.info("deployed", endpoint=endpoint, action=action, split={d.version_id: d.traffic_percent for d in after})
        deployed = ModelDeployed(
            pipeline=registered.pipeline, endpoint=endpoint, model_id=registered.model_id,
            version_id=registered.version_id, action=action, previous_version=previous_version,
            deployed_models=[self._describe(registered.model_id, d) for d in after], reason=reason,
        )
        # The deployer's record of what it last announced (rollbacks and redeliveries read it; no
        # predictor does: the endpoint's traffic split is what serves). Overwritten, so harmless twice.
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

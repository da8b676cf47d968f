"""`mlops rollback` and `mlops promote`: ask the deployer for a traffic change, as an event, and follow it.

The request is a `deployment.requested` event; the deployer makes the change (deployer/traffic.py) and
answers with `model.deployed` (or `stage.failed`), whose `causation_id` is the request's id, so the
change is in the archive and in `mlops lineage` like any deployment. What a user can get wrong is
checked here first, before anything is published: an unknown pipeline or version, a rollback to a
version the gate rejected, a rejected version promoted without a reason.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.core.events import Decision, DeploymentRequested, RequestedAction
from mlops.ops.archive import query_events
from mlops.ops.errors import OperatorError, RunFailed
from mlops.ops.pipelines import require_pipeline
from mlops.ports.bus import EventBus, publish_new
from mlops.ports.intents import DONE, FAILED, IntentLog
from mlops.ports.registry import ModelRegistry, NotFoundError, VersionMeta
from mlops.ports.specs import SpecStore
from mlops.ports.warehouse import SqlReader

POLL_S = 0.5


class TrafficRequestError(OperatorError):
    """A rollback or promote that cannot be asked for: nothing is published."""


@dataclass(frozen=True)
class TrafficChange:
    """What the deployer did: the `model.deployed` answer to a request."""

    pipeline: str
    action: str
    version: str
    previous_version: str | None
    split: dict[str, int]
    reason: str
    event_id: str

    def line(self) -> str:
        split = ", ".join(f"v{v} {p}%" for v, p in self.split.items())
        before = f" (was v{self.previous_version})" if self.previous_version else ""
        return f"{self.pipeline}: {self.action} to v{self.version}{before}: traffic {split}; reason: {self.reason}"


def request_change(bus: EventBus, specs: SpecStore, registry: ModelRegistry, pipeline: str,
                   action: RequestedAction, version: str | None, reason: str, requested_by: str | None = None) -> str:
    """Check the request and publish it; returns the event id to follow."""
    spec = require_pipeline(specs, pipeline)
    reason = " ".join(reason.split())
    if version is not None:
        try:
            found = registry.get_version(spec.model_id, version)
        except NotFoundError:
            raise TrafficRequestError(f"{pipeline} has no version {version!r}: see `mlops models -p {pipeline}`") from None
        meta = VersionMeta.of(found)
        rejected = bool(meta.decision) and meta.decision != Decision.PROMOTE
        if rejected and action == RequestedAction.ROLLBACK:
            raise TrafficRequestError(f"{pipeline} version {version} was rejected by the gate ({meta.reason}); "
                                      f"to serve it anyway: `mlops promote {pipeline} {version} --reason TEXT`")
        if rejected and not reason:
            raise TrafficRequestError(f"{pipeline} version {version} was rejected by the gate ({meta.reason}); "
                                      "promoting it overrides the gate: say why with --reason TEXT")
    elif action == RequestedAction.PROMOTE:
        raise TrafficRequestError("promote needs a VERSION: see `mlops models -p " + pipeline + "`")
    request = DeploymentRequested(pipeline=pipeline, action=action, version=version,
                                  reason=reason or f"manual {action.value}",
                                  requested_by=requested_by or _user())
    return publish_new(bus, request, "cli")


def follow_change(warehouse: SqlReader, request_id: str, *, timeout: float, intents: IntentLog | None = None,
                  poll: float = POLL_S, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> TrafficChange:
    """The deployer's answer to request `request_id`, from the archive. RunFailed when the deployer
    refused it (its reason) or gave no answer within `timeout` seconds.

    A change that had to deploy its version again is announced by the tick that finishes the deploy
    (its `causation_id` is that tick's): the deployer's intent for the request (`intents`, the
    deployer's) says which version it deploys and when it started, and the answer is that version's
    first `model.deployed` since."""
    start = clock()
    while True:
        for event in query_events(warehouse, caused_by=request_id, limit=20):
            payload: dict[str, Any] = event.payload()
            if event.type.startswith("model.deployed."):
                return _change(payload, event.id)
            if event.type.startswith("stage.failed.") and payload.get("permanent"):
                raise RunFailed(f"the deployer refused it: {payload['error_message']}")
        intent = intents.get(request_id) if intents is not None else None
        if intent is not None and intent.call == "deploy":
            if intent.state == FAILED and intent.context.get("operation"):
                raise RunFailed(f"the deployer could not deploy version {intent.context.get('version_id', '?')} "
                                f"again: {intent.error}")
            if intent.state == DONE:
                since = datetime.fromtimestamp(intent.started_at, UTC).isoformat().replace("+00:00", "Z")
                announced = [e for e in query_events(warehouse, event_type="model.deployed.v1", since=since, limit=50)
                             if e.payload().get("pipeline") == intent.context.get("pipeline")
                             and e.payload().get("version_id") == intent.context.get("version_id")]
                if announced:
                    first = min(announced, key=lambda e: e.time)
                    return _change(first.payload(), first.id)
        if clock() - start >= timeout:
            raise RunFailed(f"no answer from the deployer within {timeout:.0f} s (request {request_id[:8]}); is it "
                            "up (`mlops status`)? its failures: `mlops events --type stage.failed`")
        sleep(poll)


def _change(payload: dict[str, Any], event_id: str) -> TrafficChange:
    return TrafficChange(
        pipeline=payload["pipeline"], action=payload["action"], version=payload["version_id"],
        previous_version=payload.get("previous_version"),
        split={m["version_id"]: m["traffic_percent"] for m in payload["deployed_models"]},
        reason=payload.get("reason") or "", event_id=event_id)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

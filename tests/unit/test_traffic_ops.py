"""`mlops rollback` / `mlops promote` (mlops.ops.traffic): user mistakes are refused before anything is
published; the deployer's answer is found in the archive by the request's id."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from mlops.core.events import (
    DeploymentAction,
    DeploymentRequested,
    ModelDeployed,
    RequestedAction,
    StageFailed,
    decode,
)
from mlops.core.events.codec import encode
from mlops.core.events.envelope import new_envelope
from mlops.ops import traffic as traffic_module
from mlops.ops.archive import ArchivedEvent
from mlops.ops.errors import OperatorError, RunFailed
from mlops.ops.traffic import TrafficRequestError, follow_change, request_change
from mlops.ports.intents import DONE, FAILED, IntentLog
from mlops.ports.registry import VersionMeta

from .conftest import make_spec

MODEL = "breast-cancer"


@pytest.fixture
def registry_with_versions(registry, specs):
    specs.put(make_spec())
    for n, decision in ((1, "promote"), (2, "promote"), (3, "reject")):
        meta = VersionMeta(artifact_uri=f"gs://test-bucket/models/{MODEL}/c{n}", artifact_checksum="sha256:x",
                           decision=decision, reason=f"{decision} #{n}")
        registry.register_version(MODEL, f"v{n}", f"gs://test-bucket/models/{MODEL}/c{n}", "predictor:test", {},
                                  [], description=json.dumps(meta.to_json()))
    return registry


def request(bus, specs, registry, action: str, version: str | None, reason: str = "", pipeline: str = MODEL) -> str:
    return request_change(bus, specs, registry, pipeline, RequestedAction(action), version, reason, requested_by="bob")


def test_a_promote_publishes_one_request_with_the_reason(bus, specs, registry_with_versions):
    event_id = request(bus, specs, registry_with_versions, "promote", "3", reason="  eval set\nis stale ")
    [message] = bus.messages
    assert message.attributes["ce-id"] == event_id
    sent = decode("deployment.requested.v1", message.data)
    assert sent == DeploymentRequested(pipeline=MODEL, action="promote", version="3", reason="eval set is stale",
                                       requested_by="bob")


def test_a_rollback_without_a_version_leaves_the_choice_to_the_deployer(bus, specs, registry_with_versions):
    request(bus, specs, registry_with_versions, "rollback", None)
    sent = decode("deployment.requested.v1", bus.messages[0].data)
    assert (sent.version, sent.reason) == (None, "manual rollback")


@pytest.mark.parametrize(("action", "version", "reason", "pipeline", "message"), [
    ("promote", "3", "", MODEL, "version 3 was rejected by the gate (reject #3); promoting it overrides the gate: "
                                "say why with --reason TEXT"),
    ("rollback", "3", "", MODEL, "version 3 was rejected by the gate (reject #3); to serve it anyway: "
                                 "`mlops promote breast-cancer 3 --reason TEXT`"),
    ("promote", "9", "x", MODEL, "breast-cancer has no version '9': see `mlops models -p breast-cancer`"),
    ("promote", None, "x", MODEL, "promote needs a VERSION"),
    ("rollback", None, "", "nope-nope", "no pipeline 'nope-nope'; known: breast-cancer"),
])
def test_user_mistakes_publish_nothing(bus, specs, registry_with_versions, action, version, reason, pipeline,
                                       message):
    with pytest.raises(OperatorError, match=None) as raised:
        request(bus, specs, registry_with_versions, action, version, reason, pipeline=pipeline)
    assert message in str(raised.value)
    assert raised.value.exit_code == 2 and bus.messages == []
    if pipeline == MODEL:
        assert isinstance(raised.value, TrafficRequestError)


class Archive:
    def __init__(self) -> None:
        self.events: list[ArchivedEvent] = []

    def add(self, event: Any, causation_id: str) -> None:
        envelope = new_envelope(event, "deployer", causation_id=causation_id)
        attributes = envelope.to_attributes()
        self.events.append(ArchivedEvent(
            id=envelope.id, type=envelope.type, time=envelope.time, run_id=envelope.run_id,
            causation_id=causation_id, replay_of="", pipeline=envelope.pipeline, message_id=envelope.id,
            subscription="x", attributes=attributes, data=encode(event).decode()))

    def query(self, warehouse: Any, caused_by: str | None = None, limit: int = 200, event_type: str | None = None,
              **_: Any) -> list[ArchivedEvent]:
        if caused_by is None:
            return [e for e in self.events if e.type == event_type][:limit]
        return [e for e in self.events if e.causation_id == caused_by][:limit]


class Clock:
    def __init__(self, archive: Archive | None = None, late: Any = None) -> None:
        self.now, self.archive, self.late = 0.0, archive, late

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.late is not None and self.archive is not None:
            self.archive.add(self.late, "req-1")
            self.late = None


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> Archive:
    fake = Archive()
    monkeypatch.setattr(traffic_module, "query_events", fake.query)
    return fake


def test_the_deployers_answer_is_followed_to_one_line(archive):
    deployed = ModelDeployed.example().model_copy(update={
        "action": DeploymentAction.ROLLBACK, "version_id": "1", "previous_version": "2",
        "reason": "latency complaints (requested by bob)"})
    clock = Clock(archive, late=deployed)
    change = follow_change(None, "req-1", timeout=10, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert change.line() == ("breast-cancer: rollback to v1 (was v2): traffic v2 100%; "
                             "reason: latency complaints (requested by bob)")


def test_a_refusal_is_a_failure_with_the_deployers_reason(archive):
    archive.add(StageFailed.example().model_copy(update={
        "stage": "deployer", "error_class": "TrafficRefused", "input_event_type": "deployment.requested.v1",
        "error_message": "cannot roll breast-cancer back: no promoted version older than 1"}), "req-1")
    clock = Clock()
    with pytest.raises(RunFailed, match="the deployer refused it: cannot roll breast-cancer back"):
        follow_change(None, "req-1", timeout=10, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_no_answer_in_time_says_where_to_look(archive):
    clock = Clock()
    with pytest.raises(RunFailed, match="no answer from the deployer within 3 s"):
        follow_change(None, "req-1", timeout=3, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_a_change_that_redeployed_is_followed_to_the_tick_that_announced_it(archive, blobs):
    # The deployer had to deploy v1 again: its intent for the request names the version, and the
    # announcement comes from the tick that found the deploy done (caused by the tick, not the request).
    intents = IntentLog(blobs, "deployer")
    intent = intents.begin("req-1", "deploy", deadline_s=60, context={
        "kind": "serve", "pipeline": "breast-cancer", "version_id": "1", "operation": "op-1"})
    clock = Clock()
    with pytest.raises(RunFailed, match="no answer"):
        follow_change(None, "req-1", timeout=2, intents=intents, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    archive.add(ModelDeployed.example().model_copy(update={
        "action": DeploymentAction.ROLLBACK, "version_id": "1", "previous_version": "2", "reason": "x (requested by bob)"}),
        "tick-9")
    intents.record(replace(intent, state=DONE, result="1001"))
    change = follow_change(None, "req-1", timeout=2, intents=intents, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert (change.action, change.version, change.previous_version) == ("rollback", "1", "2")


def test_a_redeploy_that_failed_is_a_failure_with_vertexs_reason(archive, blobs):
    intents = IntentLog(blobs, "deployer")
    intents.record(replace(intents.begin("req-1", "deploy", deadline_s=60, context={
        "kind": "serve", "pipeline": "breast-cancer", "version_id": "1", "operation": "op-1"}),
        state=FAILED, error="the serving container exited"))
    clock = Clock()
    with pytest.raises(RunFailed, match="could not deploy version 1 again: the serving container exited"):
        follow_change(None, "req-1", timeout=2, intents=intents, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

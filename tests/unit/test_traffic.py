"""deployer/traffic.py: a canary's verdict and an operator's request change what serves, through
`Deployer.roll_back`, and say so in `model.deployed` with the reason."""

from __future__ import annotations

import pytest

from deployer.handler import Deployer
from deployer.traffic import ROLLED_BACK, Traffic, TrafficRefused
from mlops.core.events import (
    CanaryJudged,
    CanaryOutcome,
    DeploymentRequested,
    ModelEvaluated,
    ModelRegistered,
    RequestedAction,
)
from mlops.core.events.envelope import REPLAY_SOURCE, new_envelope
from registrar.handler import Registrar

from .conftest import envelope_for, make_spec

MODEL = "breast-cancer"


class Loop:
    """Registrar, deployer and traffic of one pipeline over the in-memory registry and endpoint."""

    def __init__(self, registry, endpoints, specs, blobs, canary_percent: int) -> None:
        specs.put(make_spec(deployment={"canary_percent": canary_percent}))
        self.registry, self.endpoints = registry, endpoints
        self.registrar = Registrar(registry, serving_image="predictor:test", code_version="abc123")
        self.deployer = Deployer(registry, endpoints, specs, blobs)
        self.traffic = Traffic(self.deployer, registry, endpoints, specs)
        self.handle_registered = self.traffic.guard_replay(self.deployer.handle)
        self.registered: dict[str, ModelRegistered] = {}

    def candidate(self, n: int, decision: str = "promote") -> ModelRegistered:
        name = f"d{n:04d}-{n:08x}"
        evaluated = ModelEvaluated.example().model_copy(update={
            "candidate_version": name, "data_version": f"d{n:04d}", "decision": decision,
            "artifact_uri": f"gs://test-bucket/models/{MODEL}/{name}/model.zip",
            "artifact_checksum": "sha256:" + f"{n:x}" * 64, "reason": f"{decision} #{n}",
        })
        [registered] = self.registrar.handle(evaluated, envelope_for(evaluated, event_id=f"evaluated-{n}"))
        self.handle_registered(registered, envelope_for(registered, event_id=f"registered-{n}", service="registrar"))
        self.deployer.finish_deploys()  # the next tick finishes the deploy the push started
        self.registered[registered.version_id] = registered
        return registered

    def split(self) -> dict[str, int]:
        [endpoint] = self.endpoints.endpoints
        return {d.version_id: d.traffic_percent for d in self.endpoints.deployments(endpoint)}

    def endpoint(self) -> str:
        [endpoint] = self.endpoints.endpoints
        return endpoint

    def champion(self) -> str:
        return self.registry.get_version(MODEL, "champion").version_id

    def labels(self, version: str) -> dict[str, str]:
        return dict(self.registry.get_version(MODEL, version).labels)

    def judged(self, outcome: CanaryOutcome, event_id: str = "judged-1") -> list:
        verdict = CanaryJudged.example().model_copy(update={
            "pipeline": MODEL, "endpoint": self.endpoint(), "canary_version": "2", "champion_version": "1",
            "outcome": outcome, "reason": "roc_auc fell: 0.41 vs 0.94"})
        return self.traffic.on_judged(verdict, envelope_for(verdict, event_id=event_id, service="monitor"))

    def requested(self, action: RequestedAction, version: str | None = None, reason: str = "",
                  event_id: str = "requested-1") -> list:
        request = DeploymentRequested(pipeline=MODEL, action=action, version=version, reason=reason,
                                      requested_by="alice")
        return self.traffic.on_requested(request, envelope_for(request, event_id=event_id, service="cli"))


@pytest.fixture
def canary_loop(registry, endpoints, specs, blobs) -> Loop:
    loop = Loop(registry, endpoints, specs, blobs, canary_percent=20)
    loop.candidate(1)
    loop.candidate(2)
    assert loop.split() == {"1": 80, "2": 20}
    return loop


@pytest.fixture
def loop(registry, endpoints, specs, blobs) -> Loop:
    loop = Loop(registry, endpoints, specs, blobs, canary_percent=0)
    loop.candidate(1)
    loop.candidate(2)
    assert loop.split() == {"1": 0, "2": 100}
    return loop


def test_a_rolled_back_canary_gives_the_champion_all_traffic_back_and_is_undeployed(canary_loop):
    [deployed] = canary_loop.judged(CanaryOutcome.ROLLBACK)

    assert canary_loop.split() == {"1": 100}
    assert canary_loop.champion() == "1"
    assert canary_loop.labels("2")["status"] == ROLLED_BACK and canary_loop.labels("1")["status"] == "champion"
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("rollback", "1", "2")
    assert deployed.reason == "canary judged: roc_auc fell: 0.41 vs 0.94"
    assert [(m.version_id, m.traffic_percent) for m in deployed.deployed_models] == [("1", 100)]


def test_a_redelivered_verdict_announces_the_same_and_a_stale_one_changes_nothing(canary_loop):
    [first] = canary_loop.judged(CanaryOutcome.ROLLBACK)
    [again] = canary_loop.judged(CanaryOutcome.ROLLBACK)
    assert again == first and canary_loop.split() == {"1": 100}
    assert canary_loop.judged(CanaryOutcome.PROMOTE, event_id="judged-2") == []  # v2 no longer a canary
    assert canary_loop.split() == {"1": 100}


def test_a_promoted_canary_takes_all_traffic_and_the_previous_stays_at_zero(canary_loop):
    [deployed] = canary_loop.judged(CanaryOutcome.PROMOTE)
    assert canary_loop.split() == {"1": 0, "2": 100}
    assert canary_loop.champion() == "2"
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("promote", "2", "1")
    assert deployed.reason.startswith("canary judged: ")


def test_a_replay_does_not_redeploy_a_rolled_back_version_unless_forced(canary_loop):
    canary_loop.judged(CanaryOutcome.ROLLBACK)
    registered = canary_loop.registered["2"]
    replay = new_envelope(registered, REPLAY_SOURCE, replay_of="registered-2")
    with pytest.raises(TrafficRefused, match="version 2 of breast-cancer was rolled back by canary-judge"):
        canary_loop.handle_registered(registered, replay)
    assert canary_loop.split() == {"1": 100}

    # Forced: v2 was undeployed, so it is deployed again, asynchronously like every deploy.
    assert canary_loop.handle_registered(registered, replay.with_changes(extra={"replay_force": "true"})) == []
    [deployed] = canary_loop.deployer.finish_deploys()  # the tick that finds the deploy done
    assert canary_loop.split()["2"] == 100 and deployed.version_id == "2" and deployed.action == "rollback"
    assert canary_loop.labels("2")["status"] == "champion"
    assert canary_loop.deployer.finish_deploys() == []  # announced once


def test_a_requested_rollback_serves_the_previous_champion_and_marks_the_displaced(loop):
    [deployed] = loop.requested(RequestedAction.ROLLBACK, reason="latency complaints")
    assert loop.split() == {"1": 100, "2": 0}
    assert loop.champion() == "1"
    assert loop.labels("2")["status"] == ROLLED_BACK and loop.labels("2")["rolled_back_by"] == "alice"
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("rollback", "1", "2")
    assert deployed.reason == "latency complaints (requested by alice)"


def test_a_rollback_beside_a_canary_returns_to_the_champion_and_undeploys_the_canary(canary_loop):
    [deployed] = canary_loop.requested(RequestedAction.ROLLBACK)
    assert canary_loop.split() == {"1": 100}
    assert deployed.version_id == "1" and canary_loop.labels("2")["status"] == ROLLED_BACK


def test_nothing_to_roll_back_to_is_refused(registry, endpoints, specs, blobs):
    loop = Loop(registry, endpoints, specs, blobs, canary_percent=0)
    loop.candidate(1)
    with pytest.raises(TrafficRefused, match="no promoted version older than 1"):
        loop.requested(RequestedAction.ROLLBACK)


def test_promoting_a_version_the_gate_rejected_needs_a_reason_and_records_it(loop):
    loop.candidate(3, decision="reject")
    with pytest.raises(TrafficRefused, match="the gate rejected it .reject #3.; overriding the gate needs a reason"):
        loop.requested(RequestedAction.PROMOTE, version="3")
    assert loop.split() == {"1": 0, "2": 100}

    # v3 was never deployed: the push starts its deploy and acks; the tick that finds it done announces.
    assert loop.requested(RequestedAction.PROMOTE, version="3", reason="eval set is stale") == []
    assert loop.split() == {"1": 0, "2": 100}
    [deployed] = loop.deployer.finish_deploys()

    assert loop.split() == {"2": 0, "3": 100}
    assert loop.champion() == "3"
    labels = loop.labels("3")
    assert (labels["status"], labels["override"], labels["override_reason"], labels["override_by"]) == (
        "champion", "promote", "eval-set-is-stale", "alice")
    assert loop.labels("2")["status"] == "retired"
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("promote", "3", "2")
    assert deployed.reason == "eval set is stale (requested by alice)"
    [again] = loop.requested(RequestedAction.PROMOTE, version="3", reason="eval set is stale")
    assert again.deployed_models == deployed.deployed_models and loop.split() == {"2": 0, "3": 100}


def test_promoting_an_earlier_promoted_version_serves_it(loop):
    [deployed] = loop.requested(RequestedAction.PROMOTE, version="1", reason="")
    assert loop.split() == {"1": 100, "2": 0} and loop.champion() == "1"
    assert deployed.action == "promote"


def test_an_unknown_version_is_refused(loop):
    with pytest.raises(TrafficRefused, match="breast-cancer has no version '9'"):
        loop.requested(RequestedAction.PROMOTE, version="9", reason="x")


def test_a_rollback_to_an_undeployed_version_redeploys_it_on_ticks_and_announces_once(registry, endpoints, specs,
                                                                                        blobs):
    loop = Loop(registry, endpoints, specs, blobs, canary_percent=0)
    for n in (1, 2, 3):
        loop.candidate(n)
    assert loop.split() == {"2": 0, "3": 100}  # v1 left the endpoint when v3 came
    started = len(endpoints.operations)

    assert loop.requested(RequestedAction.ROLLBACK, version="1", reason="v2 and v3 leak PII") == []
    assert len(endpoints.operations) == started + 1 and loop.split() == {"2": 0, "3": 100}
    # A redelivery while the deploy runs starts nothing more, nor one after it landed (the tick announces).
    assert loop.requested(RequestedAction.ROLLBACK, version="1", reason="v2 and v3 leak PII") == []
    [operation] = list(endpoints.operations)[started:]
    assert endpoints.deploy_operation(operation).done and "1" in loop.split()
    assert loop.requested(RequestedAction.ROLLBACK, version="1", reason="v2 and v3 leak PII") == []
    assert len(endpoints.operations) == started + 1

    [deployed] = loop.deployer.finish_deploys()
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("rollback", "1", "3")
    assert deployed.reason == "v2 and v3 leak PII (requested by alice)"
    assert loop.split() == {"3": 0, "1": 100} and loop.champion() == "1"
    assert loop.labels("3")["status"] == ROLLED_BACK
    assert loop.deployer.finish_deploys() == []
    # A redelivery after it: the same announcement, nothing changed.
    [again] = loop.requested(RequestedAction.ROLLBACK, version="1", reason="v2 and v3 leak PII")
    assert (again.version_id, again.reason, again.deployed_models) == ("1", deployed.reason, deployed.deployed_models)
    assert len(endpoints.operations) == started + 1

"""deployer: `mlops replay` of an earlier champion's `model.registered` is a rollback, traffic and
champion alias alike; a replay that cannot serve is refused with its reason."""

from __future__ import annotations

import pytest

from deployer.handler import Deployer, RollbackRefused
from mlops.core.errors import PermanentError
from mlops.core.events import Envelope, ModelDeployed, ModelEvaluated, ModelRegistered
from mlops.core.events.envelope import REPLAY_SOURCE, new_envelope
from mlops.core.layout import manifest_path
from mlops.testing.memory import InMemoryModelRegistry
from registrar.handler import Registrar

from .conftest import envelope_for, make_spec

MODEL = "breast-cancer"


class Loop:
    """The registrar and the deployer of one pipeline, over the in-memory registry and endpoint."""

    def __init__(self, registry, endpoints, specs, blobs) -> None:
        specs.put(make_spec())
        self.registry, self.endpoints, self.blobs = registry, endpoints, blobs
        self.registrar = Registrar(registry, serving_image="predictor:test", code_version="abc123")
        self.deployer = Deployer(registry, endpoints, specs, blobs)
        self.registered: dict[str, ModelRegistered] = {}

    def candidate(self, n: int, decision: str = "promote") -> ModelRegistered:
        name = f"d{n:04d}-{n:08x}"
        evaluated = ModelEvaluated.example().model_copy(update={
            "candidate_version": name, "data_version": f"d{n:04d}", "decision": decision,
            "artifact_uri": f"gs://test-bucket/models/{MODEL}/{name}/model.zip",
            "artifact_checksum": "sha256:" + f"{n:x}" * 64, "reason": f"{decision} #{n}",
        })
        [registered] = self.registrar.handle(evaluated, envelope_for(evaluated, event_id=f"evaluated-{n}"))
        self.deployer.handle(registered, envelope_for(registered, event_id=f"registered-{n}", service="registrar"))
        self.deployer.finish_deploys()  # the next tick finishes the deploy the push started
        self.registered[registered.version_id] = registered
        return registered

    def replay(self, version: str, envelope: Envelope | None = None) -> list[ModelDeployed]:
        registered = self.registered[version]
        return self.deployer.handle(registered, envelope or replayed(registered))

    def split(self) -> dict[str, int]:
        [endpoint] = self.endpoints.endpoints
        return {d.version_id: d.traffic_percent for d in self.endpoints.deployments(endpoint)}

    def champion(self) -> str:
        return self.registry.get_version(MODEL, "champion").version_id

    def status(self, version: str) -> str:
        return self.registry.get_version(MODEL, version).labels["status"]


def replayed(registered: ModelRegistered) -> Envelope:
    return new_envelope(registered, REPLAY_SOURCE, replay_of=f"original-of-{registered.version_id}")


@pytest.fixture
def loop(registry, endpoints, specs, blobs) -> Loop:
    return Loop(registry, endpoints, specs, blobs)


def test_replaying_an_earlier_champion_rolls_traffic_and_the_champion_back(loop, endpoints, blobs):
    loop.candidate(1)
    loop.candidate(2)
    assert (loop.split(), loop.champion()) == ({"1": 0, "2": 100}, "2")
    deploys = len(endpoints.deploy_calls)
    [deployed] = loop.replay("1")
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("rollback", "1", "2")
    assert {d.version_id: d.traffic_percent for d in deployed.deployed_models} == {"1": 100, "2": 0}
    assert loop.split() == {"1": 100, "2": 0}  # the endpoint itself, not only the event
    assert len(endpoints.deploy_calls) == deploys  # v1 was still deployed at 0%: a traffic change
    assert (loop.champion(), loop.status("1"), loop.status("2")) == ("1", "champion", "retired")
    assert ModelDeployed.model_validate_json(blobs.get(manifest_path(MODEL))) == deployed  # what a predictor serves


def test_a_rollback_redeploys_a_version_undeployed_since(loop, endpoints):
    for n in (1, 2, 3):
        loop.candidate(n)
    assert loop.split() == {"2": 0, "3": 100}  # v1 left the endpoint when v3 came
    assert loop.replay("1") == []  # the push starts the deploy and acks: no push waits for a deploy
    assert loop.split() == {"2": 0, "3": 100}
    [deployed] = loop.deployer.finish_deploys()  # the tick that finds it done
    assert endpoints.deploy_calls[-1][1:] == ("1", 100)
    assert (deployed.action, deployed.previous_version) == ("rollback", "3")
    assert loop.deployer.finish_deploys() == []
    assert loop.split() == {"3": 0, "1": 100}  # v3 stays at 0% to roll forward; v2 is retired
    assert loop.champion() == "1"


def test_a_redelivered_rollback_changes_nothing_more(loop, registry, endpoints):
    loop.candidate(1)
    loop.candidate(2)
    envelope = replayed(loop.registered["1"])
    first = loop.replay("1", envelope)
    moves, deploys = len(registry.alias_moves), len(endpoints.deploy_calls)
    assert loop.replay("1", envelope) == first
    assert (len(registry.alias_moves), len(endpoints.deploy_calls)) == (moves, deploys)


def test_a_rollback_interrupted_after_the_traffic_moved_completes_on_redelivery(registry, endpoints, specs, blobs):
    class CrashOnce(InMemoryModelRegistry):
        armed = False

        def move_alias(self, model_id, version_id, alias):
            if self.armed:
                self.armed = False
                raise ConnectionError("registry unreachable")
            super().move_alias(model_id, version_id, alias)

    crashy = CrashOnce()
    loop = Loop(crashy, type(endpoints)(crashy), specs, blobs)
    loop.candidate(1)
    loop.candidate(2)
    envelope = replayed(loop.registered["1"])
    crashy.armed = True
    with pytest.raises(ConnectionError):
        loop.replay("1", envelope)
    assert (loop.split(), loop.champion()) == ({"1": 100, "2": 0}, "2")  # half done
    [deployed] = loop.replay("1", envelope)
    assert (deployed.action, deployed.previous_version) == ("rollback", "2")
    assert (loop.split(), loop.champion(), loop.status("2")) == ({"1": 100, "2": 0}, "1", "retired")


def test_replaying_a_version_the_gate_rejected_is_refused_with_its_reason(loop, endpoints):
    loop.candidate(1)
    loop.candidate(2, decision="reject")
    deploys = len(endpoints.deploy_calls)
    with pytest.raises(RollbackRefused) as refused:
        loop.replay("2")
    assert isinstance(refused.value, PermanentError)  # dead-lettered with the reason, and stage.failed
    assert str(refused.value) == ("cannot roll breast-cancer back to version 2: the gate rejected it (reject #2); "
                                  "replay the model.registered of a version that was promoted")
    assert (loop.split(), loop.champion(), len(endpoints.deploy_calls)) == ({"1": 100}, "1", deploys)


def test_replaying_a_version_the_registry_does_not_have_is_refused(loop):
    loop.candidate(1)
    ghost = loop.registered["1"].model_copy(update={"version_id": "9"})
    with pytest.raises(RollbackRefused, match="the registry has no such version"):
        loop.deployer.handle(ghost, replayed(ghost))
    assert loop.split() == {"1": 100}


def test_replaying_the_serving_champion_announces_it_again_and_changes_nothing(loop, endpoints, registry):
    loop.candidate(1)
    deploys, moves = len(endpoints.deploy_calls), len(registry.alias_moves)
    [deployed] = loop.replay("1")
    assert (deployed.version_id, deployed.action) == ("1", "deploy")  # what serves, as announced before
    assert (len(endpoints.deploy_calls), len(registry.alias_moves), loop.split()) == (deploys, moves, {"1": 100})


def test_the_outputs_of_a_replayed_run_deploy_a_new_version_as_usual(loop):
    loop.candidate(1)
    evaluated = ModelEvaluated.example().model_copy(update={
        "artifact_uri": f"gs://test-bucket/models/{MODEL}/d0002-rerun/model.zip", "decision": "promote"})
    [registered] = loop.registrar.handle(evaluated, envelope_for(evaluated, event_id="evaluated-rerun"))
    # The registrar's output in a replayed run carries replay_of, but it is not itself a replay.
    downstream = envelope_for(registered, event_id="registered-rerun", service="registrar").with_changes(
        replay_of="trained-original")
    assert not downstream.is_replay and replayed(registered).is_replay
    assert loop.deployer.handle(registered, downstream) == []  # started; the next tick finishes it
    [deployed] = loop.deployer.finish_deploys()
    assert (deployed.action, deployed.version_id, deployed.previous_version) == ("deploy", "2", "1")

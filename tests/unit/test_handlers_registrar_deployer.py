"""registrar and deployer handlers over the in-memory registry, endpoint and blob store."""

from __future__ import annotations

import json

import pytest

from deployer.handler import Deployer
from mlops.core.events import (
    Continues,
    Envelope,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    StageFailed,
    WatchTick,
)
from mlops.core.layout import manifest_path
from mlops.ports.registry import ModelEndpoint, ModelRegistry, VersionMeta
from mlops.testing.memory import InMemoryModelRegistry
from registrar.handler import Registrar

from .conftest import envelope_for, make_spec

MODEL = "breast-cancer"


def test_the_fakes_implement_the_ports(registry, endpoints):
    assert isinstance(registry, ModelRegistry)
    assert isinstance(endpoints, ModelEndpoint)


def evaluated(n: int, decision: str = "promote") -> ModelEvaluated:
    """The n-th evaluated candidate: its own artifact, data version and checksum."""
    candidate = f"d{n:04d}-{n:08x}"
    return ModelEvaluated.example().model_copy(update={
        "candidate_version": candidate, "data_version": f"d{n:04d}",
        "artifact_uri": f"gs://test-bucket/models/{MODEL}/{candidate}/model.zip",
        "artifact_checksum": "sha256:" + f"{n:x}" * 64,
        "snapshot_table": f"test-project.mlops_snapshots.breast_cancer__d{n:04d}",
        "decision": decision, "reason": f"{decision} #{n}",
    })


def envelope(n: int, kind: str = "evaluated") -> Envelope:
    return envelope_for(ModelEvaluated.example(), event_id=f"{kind}-event-{n}", run_id=f"run-{n}",
                        causation_id=f"trained-event-{n}")


# ---------------------------------------------------------------------------------------------- registrar

@pytest.fixture
def registrar(registry) -> Registrar:
    return Registrar(registry, serving_image="predictor:test", code_version="abc123")


def register(registrar: Registrar, n: int, decision: str = "promote") -> ModelRegistered:
    [registered] = registrar.handle(evaluated(n, decision), envelope(n))
    return registered


def test_a_promoted_candidate_becomes_the_champion_version(registrar, registry):
    registered = register(registrar, 1)
    assert registered.model_id == MODEL and registered.version_id == "1"
    assert registered.resource_name == f"{registry.location}/models/{MODEL}@1"
    assert registered.aliases == ["champion", "default"]
    assert registered.decision == "promote"
    assert registered.candidate_version == evaluated(1).candidate_version
    assert registered.artifact_uri == evaluated(1).artifact_uri
    assert registered.metrics == evaluated(1).metrics
    assert registered.lineage == {
        "run_id": "run-1", "evaluated_event": "evaluated-event-1", "trained_event": "trained-event-1",
        "data_version": "d0001", "snapshot_table": evaluated(1).snapshot_table, "replay_of": "",
        "registrar_code_version": "abc123",
    }
    version = registry.get_version(MODEL, "champion")
    assert version.version_id == "1"
    assert version.labels["status"] == "champion"
    assert version.labels["source_event"] == "evaluated-event-1"
    assert version.labels["decision"] == "promote"
    assert version.artifact_uri == f"gs://test-bucket/models/{MODEL}/{evaluated(1).candidate_version}/"
    meta = VersionMeta.of(version)
    assert (meta.artifact_uri, meta.artifact_checksum) == (evaluated(1).artifact_uri, evaluated(1).artifact_checksum)
    assert meta.metrics == evaluated(1).metrics and meta.decision == "promote"
    assert registry.register_calls[0]["serving_image"] == "predictor:test"


def test_promoting_moves_the_champion_alias_and_retires_the_previous(registrar, registry):
    register(registrar, 1)
    second = register(registrar, 2)
    assert second.version_id == "2"
    assert second.aliases == ["champion", "default"]
    assert registry.get_version(MODEL, "champion").version_id == "2"
    previous = registry.get_version(MODEL, "1")
    assert previous.labels["status"] == "retired"
    assert "champion" not in previous.aliases
    assert registry.get_version(MODEL, "2").labels["status"] == "champion"


def test_a_rejected_candidate_is_registered_without_an_alias(registrar, registry):
    register(registrar, 1)
    rejected = register(registrar, 2, decision="reject")
    assert rejected.version_id == "2" and rejected.decision == "reject"
    assert rejected.aliases == []
    version = registry.get_version(MODEL, "2")
    assert version.labels["status"] == "rejected"
    assert registry.register_calls[-1]["make_default"] is False
    champion = registry.get_version(MODEL, "champion")
    assert champion.version_id == "1" and champion.labels["status"] == "champion"
    assert registry.get_version(MODEL, "default").version_id == "1"


def test_a_late_redelivery_of_an_older_promotion_does_not_take_the_champion_back(registrar, registry):
    register(registrar, 1)
    register(registrar, 2)
    register(registrar, 1)  # version 1's event again, after version 2 was crowned
    champion = registry.get_version(MODEL, "champion")
    assert champion.version_id == "2" and champion.labels["status"] == "champion"
    assert registry.get_version(MODEL, "1").labels["status"] == "retired"


def test_the_same_event_twice_registers_one_version(registrar, registry):
    first = register(registrar, 1)
    second = register(registrar, 1)
    assert second == first
    assert len(registry.list_versions(MODEL)) == 1
    assert len(registry.register_calls) == 1


def test_a_redelivery_after_a_crash_before_crowning_finishes_the_job(registry):
    class CrashOnce(InMemoryModelRegistry):
        armed = False

        def move_alias(self, model_id, version_id, alias):
            if self.armed:
                self.armed = False
                raise ConnectionError("registry unreachable")
            super().move_alias(model_id, version_id, alias)

    crashy = CrashOnce()
    registrar = Registrar(crashy, "img", "v")
    register(registrar, 1)
    crashy.armed = True
    with pytest.raises(ConnectionError):
        register(registrar, 2)
    assert crashy.get_version(MODEL, "champion").version_id == "1"  # half done: registered, not crowned
    again = register(registrar, 2)
    assert again.version_id == "2" and "champion" in again.aliases
    assert len(crashy.list_versions(MODEL)) == 2
    assert crashy.get_version(MODEL, "1").labels["status"] == "retired"


def test_a_replay_is_recorded_in_the_lineage(registrar):
    replayed = envelope(3).with_changes(replay_of="evaluated-event-1")
    [registered] = registrar.handle(evaluated(3), replayed)
    assert registered.lineage["replay_of"] == "evaluated-event-1"


# ---------------------------------------------------------------------------------------------- deployer

@pytest.fixture
def deployer(registry, endpoints, specs, blobs) -> Deployer:
    specs.put(make_spec())
    return Deployer(registry, endpoints, specs, blobs)


def deploy_now(deployer: Deployer, registered: ModelRegistered, env: Envelope) -> list[ModelDeployed]:
    """The push (which only starts the deploy), then the next tick (which finishes it)."""
    started = deployer.handle(registered, env)
    return started + [e for e in deployer.finish_deploys() if isinstance(e, ModelDeployed)]


def promote(registrar: Registrar, deployer: Deployer, n: int, decision: str = "promote") -> list[ModelDeployed]:
    registered = register(registrar, n, decision)
    return deploy_now(deployer, registered, envelope_for(registered, event_id=f"registered-event-{n}"))


def split(deployed: ModelDeployed) -> dict[str, int]:
    return {d.version_id: d.traffic_percent for d in deployed.deployed_models}


def test_a_rejected_version_is_not_deployed(registrar, deployer, endpoints, blobs):
    assert promote(registrar, deployer, 1, decision="reject") == []
    assert endpoints.deploy_calls == []
    assert blobs.list("deployments/") == []


def test_the_first_champion_takes_all_traffic(registrar, deployer, endpoints, blobs):
    [deployed] = promote(registrar, deployer, 1)
    endpoint = f"{endpoints.location}/endpoints/breast-cancer"
    assert endpoints.deploy_calls == [(endpoint, "1", 100)]
    assert deployed.endpoint == endpoint
    assert (deployed.model_id, deployed.version_id, deployed.action) == (MODEL, "1", "deploy")
    assert deployed.previous_version is None
    [model] = deployed.deployed_models
    assert (model.version_id, model.traffic_percent) == ("1", 100)
    assert (model.artifact_uri, model.artifact_checksum) == (evaluated(1).artifact_uri, evaluated(1).artifact_checksum)
    assert model.deployed_model_id == endpoints.deployments(endpoint)[0].deployed_model_id
    manifest = blobs.get(manifest_path(MODEL))
    assert ModelDeployed.model_validate_json(manifest) == deployed


def test_a_new_champion_takes_all_traffic_and_the_previous_stays_at_zero(registrar, deployer, endpoints, blobs):
    promote(registrar, deployer, 1)
    [deployed] = promote(registrar, deployer, 2)
    assert split(deployed) == {"1": 0, "2": 100}
    assert deployed.previous_version == "1" and deployed.action == "deploy"
    assert json.loads(blobs.get(manifest_path(MODEL)))["version_id"] == "2"


def test_versions_older_than_the_previous_are_undeployed(registrar, deployer, endpoints):
    promote(registrar, deployer, 1)
    promote(registrar, deployer, 2)
    [deployed] = promote(registrar, deployer, 3)
    assert split(deployed) == {"2": 0, "3": 100}
    assert deployed.previous_version == "2"
    assert len(endpoints.undeploy_calls) == 1


def test_without_keep_previous_the_previous_is_undeployed(registrar, registry, endpoints, specs, blobs):
    specs.put(make_spec(deployment={"keep_previous": False}))
    deployer = Deployer(registry, endpoints, specs, blobs)
    promote(registrar, deployer, 1)
    [deployed] = promote(registrar, deployer, 2)
    assert split(deployed) == {"2": 100}
    assert deployed.previous_version == "1"


def test_a_duplicate_registration_deploys_nothing_more(registrar, deployer, endpoints, blobs):
    promote(registrar, deployer, 1)
    registered = register(registrar, 2)
    env = envelope_for(registered, event_id="registered-event-2")
    [first] = deploy_now(deployer, registered, env)
    [again] = deployer.handle(registered, env)
    assert len(endpoints.deploy_calls) == 2  # v1 and v2, once each
    assert split(again) == split(first) == {"1": 0, "2": 100}
    assert again.version_id == "2"


@pytest.mark.parametrize("canary", [0, 10], ids=["full", "canary"])
def test_a_duplicate_registration_re_announces_the_same_event(registrar, registry, endpoints, specs, blobs, canary):
    specs.put(make_spec(deployment={"canary_percent": canary}))
    deployer = Deployer(registry, endpoints, specs, blobs)
    promote(registrar, deployer, 1)
    registered = register(registrar, 2)
    env = envelope_for(registered, event_id="registered-event-2")
    first = deploy_now(deployer, registered, env)
    assert deployer.handle(registered, env) == first


def test_a_canary_share_splits_traffic_with_the_previous(registrar, registry, endpoints, specs, blobs):
    specs.put(make_spec(deployment={"canary_percent": 10}))
    deployer = Deployer(registry, endpoints, specs, blobs)
    [first] = promote(registrar, deployer, 1)
    assert split(first) == {"1": 100}  # nothing to share with: all traffic
    [canary] = promote(registrar, deployer, 2)
    assert canary.action == "canary"
    assert split(canary) == {"1": 90, "2": 10}
    assert canary.previous_version == "1"
    assert endpoints.deploy_calls[-1][2] == 10


def test_a_named_endpoint_is_used(registrar, registry, endpoints, specs, blobs):
    specs.put(make_spec(deployment={"endpoint": "shared-endpoint"}))
    deployer = Deployer(registry, endpoints, specs, blobs)
    [deployed] = promote(registrar, deployer, 1)
    assert deployed.endpoint.endswith("/endpoints/shared-endpoint")


def test_the_manifest_is_what_a_restarting_predictor_would_serve(registrar, deployer, blobs):
    promote(registrar, deployer, 1)
    [latest] = promote(registrar, deployer, 2)
    assert blobs.list("deployments/") == ["deployments/breast-cancer.json"]
    assert ModelDeployed.model_validate_json(blobs.get("deployments/breast-cancer.json")) == latest


# ------------------------------------------------------------------------- the serving container's contract

def test_each_version_carries_its_serving_containers_environment_and_routes(registry):
    registrar = Registrar(registry, "predictor:test", "abc123", serving_env={"MLOPS_PROJECT": "p"})
    register(registrar, 1)
    register(registrar, 2, decision="reject")
    first, second = registry.register_calls
    assert first["artifact_uri"] == f"gs://test-bucket/models/{MODEL}/{evaluated(1).candidate_version}/"  # the folder
    assert first["serving_env"] == {"MLOPS_PROJECT": "p", "MLOPS_PIPELINE": MODEL, "MLOPS_MODEL_VERSION": "1",
                                    "MLOPS_ARTIFACT_CHECKSUM": evaluated(1).artifact_checksum}
    assert second["serving_env"]["MLOPS_MODEL_VERSION"] == "2"
    assert (first["predict_route"], first["health_route"]) == ("/predict", "/healthz")


def test_a_deploy_is_started_by_the_push_and_finished_by_a_tick(registrar, registry, endpoints, specs, blobs):
    specs.put(make_spec())
    deployer = Deployer(registry, endpoints, specs, blobs, serving_service_account="serving@p.iam.gserviceaccount.com")
    registered = register(registrar, 1)
    env = envelope_for(registered, event_id="registered-event-1")
    assert deployer.handle(registered, env) == []  # acked at once; nothing serves yet
    assert deployer.handle(registered, env) == []  # a redelivery starts nothing more
    [(_, version, percent, account)] = endpoints.start_deploy_calls
    assert (version, percent, account) == ("1", 100, "serving@p.iam.gserviceaccount.com")
    [deployed] = deployer.finish_deploys()
    assert deployed.version_id == "1" and split(deployed) == {"1": 100}
    assert deployer.finish_deploys() == []  # announced once


def test_a_failed_deploy_is_a_stage_failed_with_the_reason_and_the_champion_keeps_serving(
        registrar, deployer, endpoints):
    promote(registrar, deployer, 1)
    registered = register(registrar, 2)
    endpoints.fail_next_deploy("Model server exited unexpectedly. Model server logs: predictor cannot start: boom")
    assert deployer.handle(registered, envelope_for(registered, event_id="registered-event-2")) == []
    [failed] = deployer.finish_deploys()
    assert isinstance(failed, StageFailed) and failed.permanent and failed.input_event_id == "registered-event-2"
    assert "predictor cannot start: boom" in failed.error_message
    [endpoint] = endpoints.endpoints
    assert {d.version_id: d.traffic_percent for d in endpoints.deployments(endpoint)} == {"1": 100}
    assert deployer.finish_deploys() == []  # reported once
    assert deployer.handle(registered, envelope_for(registered, event_id="registered-event-2")) == []  # no retry


def test_a_second_champion_waits_for_the_deploy_in_flight(registrar, deployer, endpoints):
    promote(registrar, deployer, 1)
    second, third = register(registrar, 2), register(registrar, 3)
    deployer.handle(second, envelope_for(second, event_id="registered-event-2"))
    deployer.handle(third, envelope_for(third, event_id="registered-event-3"))
    assert [c[1] for c in endpoints.start_deploy_calls] == ["1", "2"]  # one deploy per endpoint at a time
    [deployed_2] = deployer.finish_deploys()  # 2 lands; 3 starts on this tick
    assert deployed_2.version_id == "2" and [c[1] for c in endpoints.start_deploy_calls] == ["1", "2", "3"]
    [deployed_3] = deployer.finish_deploys()
    assert deployed_3.version_id == "3" and deployed_3.previous_version == "2"
    assert split(deployed_3) == {"2": 0, "3": 100}


def test_the_tick_that_finishes_a_deploy_announces_it_in_the_run_that_started_it(registrar, registry, endpoints,
                                                                                 specs, blobs):
    """`mlops events --run` and the dashboard's run page show a run's deployment although a tick,
    from another run, is the delivery that finds the deploy done."""
    specs.put(make_spec())
    deployer = Deployer(registry, endpoints, specs, blobs)
    registered = register(registrar, 1)
    deployer.handle(registered, envelope_for(registered, event_id="registered-1", run_id="run-of-the-data"))
    tick = WatchTick.example()
    [continued] = deployer.handle_tick(tick, envelope_for(tick, event_id="tick-9", run_id="run-of-the-tick"))
    assert isinstance(continued, Continues)
    assert (continued.cause_id, continued.run_id) == ("registered-1", "run-of-the-data")
    assert isinstance(continued.event, ModelDeployed) and continued.event.version_id == "1"

"""The contract of the model registry and endpoint ports (`mlops.ports.registry`), written once.

`ModelRegistryContract` needs a `registry` fixture; `ModelEndpointContract` needs `registry` and
`endpoints` (the endpoint deploys versions of that registry). A subclass per implementation provides
them, fresh for each test or at least empty of the model and endpoint names each test makes up: every
test names its own model (`model_name`) and endpoint, so a server shared by a module's tests is fine.

What is pinned here is what Vertex AI does (through the official SDK, against the local Vertex
server), and what the registrar and the deployer rely on.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import pytest

from mlops.ports.registry import (
    DeployedModel,
    ModelEndpoint,
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    TrafficSplitError,
    VersionMeta,
    label_value,
)

# A serving image the tests' Vertex server maps to a stub server (tests/fixtures/serving_stub.py):
# deploys there start a real process, which the predictor image could not be without a real model.
IMAGE = "us-docker.pkg.dev/mlops-test/images/serving-stub:1"


def model_name(prefix: str = "m") -> str:
    """A model id of its own for one test: implementations may share state between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def register(registry: ModelRegistry, model_id: str, event_id: str, *, aliases: tuple[str, ...] = (),
             make_default: bool = True, labels: dict[str, str] | None = None) -> ModelVersion:
    return registry.register_version(
        model_id=model_id,
        display_name=f"{model_id} model",
        artifact_uri=f"gs://artifacts/{model_id}/{event_id}/",
        serving_image=IMAGE,
        labels=labels if labels is not None else {"input_event": event_id, "pipeline": model_id},
        aliases=list(aliases),
        description=json.dumps({"artifact_uri": f"gs://artifacts/{model_id}/{event_id}/model.zip",
                                "artifact_checksum": "sha256:" + "0" * 64}),
        make_default=make_default,
    )


def aliases_of(registry: ModelRegistry, model_id: str) -> dict[str, set[str]]:
    """version id -> its aliases, read back from the registry."""
    return {v.version_id: set(v.aliases) for v in registry.list_versions(model_id)}


class ModelRegistryContract:
    """Every ModelRegistry: versions, aliases and labels, as Vertex AI's model registry keeps them."""

    @pytest.fixture
    def registry(self) -> ModelRegistry:
        raise NotImplementedError("a concrete contract test class provides the `registry` fixture")

    def test_it_implements_the_port(self, registry: ModelRegistry) -> None:
        assert isinstance(registry, ModelRegistry)

    def test_a_model_never_registered_has_no_versions(self, registry: ModelRegistry) -> None:
        model = model_name()
        assert registry.list_versions(model) == []
        assert registry.find_version(model, "input_event", "evt-1") is None
        with pytest.raises(NotFoundError):
            registry.get_version(model, "1")
        with pytest.raises(NotFoundError):
            registry.get_version(model, "default")

    def test_the_first_version_is_1_and_the_default(self, registry: ModelRegistry) -> None:
        model = model_name()
        v1 = register(registry, model, "evt-1")
        assert (v1.model_id, v1.version_id) == (model, "1")
        assert v1.resource_name.endswith(f"/models/{model}@1") and v1.resource_name.startswith("projects/")
        assert v1.display_name == f"{model} model"
        assert v1.artifact_uri == f"gs://artifacts/{model}/evt-1/"
        assert set(v1.aliases) == {"default"}
        assert v1.create_time.tzinfo is not None
        assert VersionMeta.of(v1).artifact_uri == f"gs://artifacts/{model}/evt-1/model.zip"  # description kept
        assert registry.get_version(model, "1") == v1

    def test_the_first_version_is_the_default_even_when_not_asked(self, registry: ModelRegistry) -> None:
        model = model_name()
        v1 = register(registry, model, "evt-1", make_default=False)
        assert set(v1.aliases) == {"default"}
        assert registry.get_version(model, "default").version_id == "1"

    def test_version_ids_count_from_1_per_model(self, registry: ModelRegistry) -> None:
        first, second = model_name(), model_name()
        assert register(registry, first, "a").version_id == "1"
        assert register(registry, second, "b").version_id == "1"
        assert register(registry, first, "c").version_id == "2"
        assert register(registry, second, "d").version_id == "2"
        assert register(registry, first, "e").version_id == "3"

    def test_a_new_default_version_takes_the_alias_and_others_leave_it(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1")
        v2 = register(registry, model, "evt-2")
        assert set(v2.aliases) == {"default"}
        v3 = register(registry, model, "evt-3", make_default=False)
        assert v3.aliases == ()
        assert aliases_of(registry, model) == {"3": set(), "2": {"default"}, "1": set()}
        assert registry.get_version(model, "default").version_id == "2"

    def test_aliases_given_at_registration_belong_to_one_version(self, registry: ModelRegistry) -> None:
        model = model_name()
        v1 = register(registry, model, "evt-1", aliases=("champion",))
        assert set(v1.aliases) == {"champion", "default"}
        v2 = register(registry, model, "evt-2", aliases=("champion",), make_default=False)
        assert set(v2.aliases) == {"champion"}
        assert aliases_of(registry, model) == {"2": {"champion"}, "1": {"default"}}

    def test_versions_are_listed_newest_first(self, registry: ModelRegistry) -> None:
        model = model_name()
        for n in range(1, 4):
            register(registry, model, f"evt-{n}")
        versions = registry.list_versions(model)
        assert [v.version_id for v in versions] == ["3", "2", "1"]
        assert versions[0].create_time >= versions[-1].create_time
        assert [v.labels["input_event"] for v in versions] == ["evt-3", "evt-2", "evt-1"]

    def test_a_version_is_found_by_id_or_alias(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1", aliases=("champion",))
        register(registry, model, "evt-2")
        assert registry.get_version(model, "champion").version_id == "1"
        assert registry.get_version(model, "default").version_id == "2"
        assert registry.get_version(model, "2").labels["input_event"] == "evt-2"
        with pytest.raises(NotFoundError):
            registry.get_version(model, "9")
        with pytest.raises(NotFoundError):
            registry.get_version(model, "no-such-alias")

    def test_label_values_are_stored_as_vertex_allows(self, registry: ModelRegistry) -> None:
        model = model_name()
        long_value = "Run " + "x" * 80
        version = register(registry, model, "evt-1", labels={"input_event": "EVT 2/b", "run": long_value})
        assert version.labels == {"input_event": "evt-2-b", "run": label_value(long_value)}
        assert len(version.labels["run"]) == 63
        assert registry.get_version(model, "1").labels == version.labels

    def test_an_invalid_label_key_is_refused(self, registry: ModelRegistry) -> None:
        model = model_name()
        with pytest.raises(ValueError):
            register(registry, model, "evt-1", labels={"Input Event": "x"})
        assert registry.list_versions(model) == []

    def test_names_vertex_refuses_are_refused(self, registry: ModelRegistry) -> None:
        with pytest.raises(ValueError):
            registry.list_versions("Not A Valid Id")
        with pytest.raises(ValueError):
            register(registry, "9-starts-with-a-digit", "evt-1")
        model = model_name()
        with pytest.raises(ValueError):
            register(registry, model, "evt-1", aliases=("Champion!",))
        with pytest.raises(ValueError):
            registry.register_version(model, "m", "/tmp/model-folder/", IMAGE, {}, [])  # not in Cloud Storage
        assert registry.list_versions(model) == []

    def test_find_version_matches_the_raw_label_value(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1")
        register(registry, model, "EVT 2")
        found = registry.find_version(model, "input_event", "evt-1")
        assert found is not None and found.version_id == "1"
        found = registry.find_version(model, "input_event", "EVT 2")  # cleaned as it was when stored
        assert found is not None and found.version_id == "2"
        assert registry.find_version(model, "input_event", "evt-3") is None
        assert registry.find_version(model, "no_such_label", "evt-1") is None

    def test_find_version_returns_the_newest_carrying_the_label(self, registry: ModelRegistry) -> None:
        model = model_name()
        for n in range(1, 4):
            register(registry, model, f"evt-{n}", labels={"pipeline": "p" if n < 3 else "q"})
        found = registry.find_version(model, "pipeline", "p")
        assert found is not None and found.version_id == "2"

    def test_move_alias_takes_it_away_from_the_previous_holder(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1", aliases=("champion",))
        register(registry, model, "evt-2")
        registry.move_alias(model, "2", "champion")
        assert registry.get_version(model, "champion").version_id == "2"
        assert aliases_of(registry, model) == {"2": {"champion", "default"}, "1": set()}
        registry.move_alias(model, "2", "champion")  # again: nothing changes
        assert aliases_of(registry, model) == {"2": {"champion", "default"}, "1": set()}

    def test_move_alias_can_move_the_default(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1")
        register(registry, model, "evt-2")
        registry.move_alias(model, "1", "default")
        assert registry.get_version(model, "default").version_id == "1"
        assert aliases_of(registry, model) == {"2": set(), "1": {"default"}}

    def test_move_alias_to_a_missing_version_is_not_found(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1", aliases=("champion",))
        with pytest.raises(NotFoundError):
            registry.move_alias(model, "7", "champion")
        with pytest.raises(NotFoundError):
            registry.move_alias(model_name(), "1", "champion")
        assert registry.get_version(model, "champion").version_id == "1"

    def test_set_labels_adds_and_overwrites_keeping_the_others(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1", labels={"input_event": "evt-1", "status": "champion"})
        register(registry, model, "evt-2", labels={"input_event": "evt-2", "status": "champion"})
        retired = registry.set_labels(model, "1", {"status": "Retired", "reason": "beaten"})
        assert retired.version_id == "1"
        assert retired.labels == {"input_event": "evt-1", "status": "retired", "reason": "beaten"}
        assert registry.get_version(model, "1").labels == retired.labels
        assert registry.get_version(model, "2").labels == {"input_event": "evt-2", "status": "champion"}
        assert set(registry.get_version(model, "2").aliases) == {"default"}  # labels leave aliases alone

    def test_set_labels_on_a_missing_version_is_not_found(self, registry: ModelRegistry) -> None:
        model = model_name()
        register(registry, model, "evt-1")
        with pytest.raises(NotFoundError):
            registry.set_labels(model, "5", {"status": "retired"})


class ModelEndpointContract:
    """Every ModelEndpoint: endpoints found or made by name, deploys that split traffic like the
    Vertex SDK, traffic changes that must add up, and undeploys that never move traffic."""

    @pytest.fixture
    def registry(self) -> ModelRegistry:
        raise NotImplementedError("a concrete contract test class provides the `registry` fixture")

    @pytest.fixture
    def endpoints(self) -> ModelEndpoint:
        raise NotImplementedError("a concrete contract test class provides the `endpoints` fixture")

    @pytest.fixture
    def model(self, registry: ModelRegistry) -> tuple[ModelVersion, ModelVersion, ModelVersion]:
        """Three versions of a model of this test's own."""
        model = model_name()
        return register(registry, model, "a"), register(registry, model, "b"), register(registry, model, "c")

    @pytest.fixture
    def endpoint(self, endpoints: ModelEndpoint) -> str:
        return endpoints.ensure_endpoint(model_name("ep"))

    @staticmethod
    def split(endpoints: ModelEndpoint, endpoint: str) -> dict[str, int]:
        return {d.deployed_model_id: d.traffic_percent for d in endpoints.deployments(endpoint)}

    def test_it_implements_the_port(self, endpoints: ModelEndpoint) -> None:
        assert isinstance(endpoints, ModelEndpoint)

    def test_an_endpoint_named_by_a_valid_id_is_made_once_with_that_id(self, endpoints: ModelEndpoint) -> None:
        name = model_name("ep")
        made = endpoints.ensure_endpoint(name)
        assert made.startswith("projects/") and made.endswith(f"/endpoints/{name}")
        assert endpoints.ensure_endpoint(name) == made
        assert endpoints.ensure_endpoint(made) == made  # by resource name
        assert endpoints.deployments(made) == []
        assert endpoints.deployments(name) == []  # the id works wherever the resource name does

    def test_an_endpoint_named_by_display_name_gets_a_numeric_id_once(self, endpoints: ModelEndpoint) -> None:
        name = f"Fraud endpoint (EU) {uuid.uuid4().hex[:6]}"  # not a valid id
        made = endpoints.ensure_endpoint(name)
        endpoint_id = made.rsplit("/", 1)[-1]
        assert endpoint_id.isdigit()
        assert endpoints.ensure_endpoint(name) == made
        assert endpoints.ensure_endpoint(endpoint_id) == made  # a numeric id names an existing endpoint

    def test_an_endpoint_that_does_not_exist_is_not_found(self, endpoints: ModelEndpoint,
                                                          model: tuple[ModelVersion, ...]) -> None:
        parent = endpoints.ensure_endpoint(model_name("ep")).rsplit("/endpoints/", 1)[0]
        missing = f"{parent}/endpoints/{model_name('nope')}"
        with pytest.raises(NotFoundError):
            endpoints.ensure_endpoint(missing)
        with pytest.raises(NotFoundError):
            endpoints.ensure_endpoint("987654321")
        with pytest.raises(NotFoundError):
            endpoints.deployments(missing)
        with pytest.raises(NotFoundError):
            endpoints.deploy(missing, model[0], 100)
        with pytest.raises(NotFoundError):
            endpoints.set_traffic(missing, {})
        with pytest.raises(NotFoundError):
            endpoints.undeploy(missing, "1")

    def test_the_first_deploy_takes_all_traffic(self, endpoints: ModelEndpoint, endpoint: str,
                                                model: tuple[ModelVersion, ...]) -> None:
        v1 = model[0]
        first = endpoints.deploy(endpoint, v1, traffic_percent=10)  # nothing else to serve: 100
        assert first.endpoint == endpoint
        assert first.traffic_split == {first.deployed_model_id: 100}
        [deployed] = endpoints.deployments(endpoint)
        assert deployed == DeployedModel(first.deployed_model_id, v1.model_id, "1", 100, f"{v1.model_id}-v1")
        assert first.models == (deployed,)

    def test_a_display_name_can_be_given(self, endpoints: ModelEndpoint, endpoint: str,
                                         model: tuple[ModelVersion, ...]) -> None:
        deployment = endpoints.deploy(endpoint, model[0], 100, display_name="first-of-many")
        assert [d.display_name for d in endpoints.deployments(endpoint)] == ["first-of-many"]
        assert deployment.models[0].display_name == "first-of-many"

    def test_a_canary_takes_its_share_and_the_rest_stays(self, endpoints: ModelEndpoint, endpoint: str,
                                                         model: tuple[ModelVersion, ...]) -> None:
        first = endpoints.deploy(endpoint, model[0], 100)
        canary = endpoints.deploy(endpoint, model[1], 10)
        assert canary.traffic_split == {first.deployed_model_id: 90, canary.deployed_model_id: 10}
        assert self.split(endpoints, endpoint) == canary.traffic_split
        by_id = {d.deployed_model_id: d for d in endpoints.deployments(endpoint)}
        assert (by_id[canary.deployed_model_id].model_id, by_id[canary.deployed_model_id].version_id) == (
            model[1].model_id, "2")
        assert [d.deployed_model_id for d in endpoints.deployments(endpoint)] == [
            first.deployed_model_id, canary.deployed_model_id]  # in deployment order

    def test_the_others_are_scaled_and_rounded_as_the_sdk_does(self, endpoints: ModelEndpoint, endpoint: str,
                                                               model: tuple[ModelVersion, ...]) -> None:
        a = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        b = endpoints.deploy(endpoint, model[1], 30).deployed_model_id  # a 70, b 30
        c = endpoints.deploy(endpoint, model[2], 15).deployed_model_id
        split = self.split(endpoints, endpoint)
        # int(70 / 100 * 85) = 59 and int(30 / 100 * 85) = 25: the point lost to rounding goes to one
        # of them, which one depends on the order of a protobuf map in the SDK.
        assert split[c] == 15 and sum(split.values()) == 100
        assert (split[a], split[b]) in {(60, 25), (59, 26)}

    def test_a_full_deploy_leaves_the_others_deployed_at_zero(self, endpoints: ModelEndpoint, endpoint: str,
                                                              model: tuple[ModelVersion, ...]) -> None:
        first = endpoints.deploy(endpoint, model[0], 100)
        second = endpoints.deploy(endpoint, model[1], 100)
        assert second.traffic_split == {first.deployed_model_id: 0, second.deployed_model_id: 100}
        assert len(endpoints.deployments(endpoint)) == 2

    def test_a_share_outside_1_to_100_is_refused(self, endpoints: ModelEndpoint, endpoint: str,
                                                 model: tuple[ModelVersion, ...]) -> None:
        for share in (0, -5, 101):
            with pytest.raises(TrafficSplitError):
                endpoints.deploy(endpoint, model[0], share)
        assert endpoints.deployments(endpoint) == []

    def test_a_version_the_registry_lacks_is_not_deployed(self, endpoints: ModelEndpoint, endpoint: str,
                                                          model: tuple[ModelVersion, ...]) -> None:
        v1 = model[0]
        ghost = replace(v1, version_id="9", resource_name=v1.resource_name.rsplit("@", 1)[0] + "@9")
        with pytest.raises(NotFoundError):
            endpoints.deploy(endpoint, ghost, 100)
        assert endpoints.deployments(endpoint) == []

    def test_set_traffic_replaces_the_split_and_absent_models_get_zero(
            self, endpoints: ModelEndpoint, endpoint: str, model: tuple[ModelVersion, ...]) -> None:
        a = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        b = endpoints.deploy(endpoint, model[1], 10).deployed_model_id
        c = endpoints.deploy(endpoint, model[2], 10).deployed_model_id
        after = endpoints.set_traffic(endpoint, {a: 100, b: 0})  # roll back; c is not named
        assert {d.deployed_model_id: d.traffic_percent for d in after} == {a: 100, b: 0, c: 0}
        assert self.split(endpoints, endpoint) == {a: 100, b: 0, c: 0}
        endpoints.set_traffic(endpoint, {b: 75, c: 25})
        assert self.split(endpoints, endpoint) == {a: 0, b: 75, c: 25}

    def test_a_split_that_does_not_add_up_is_refused_and_changes_nothing(
            self, endpoints: ModelEndpoint, endpoint: str, model: tuple[ModelVersion, ...]) -> None:
        a = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        b = endpoints.deploy(endpoint, model[1], 10).deployed_model_id
        bad_splits: list[dict[str, int]] = [
            {a: 50, b: 40},  # 90
            {a: 100, b: 10},  # 110
            {a: 110, b: -10},  # a negative share
            {a: 100, "123456789": 0},  # a model not deployed here
            {},
        ]
        for bad in bad_splits:
            with pytest.raises(TrafficSplitError):
                endpoints.set_traffic(endpoint, bad)
        assert self.split(endpoints, endpoint) == {a: 90, b: 10}

    def test_a_model_without_traffic_is_undeployed(self, endpoints: ModelEndpoint, endpoint: str,
                                                   model: tuple[ModelVersion, ...]) -> None:
        a = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        b = endpoints.deploy(endpoint, model[1], 10).deployed_model_id
        endpoints.set_traffic(endpoint, {a: 100})
        endpoints.undeploy(endpoint, b)
        [remaining] = endpoints.deployments(endpoint)
        assert (remaining.deployed_model_id, remaining.version_id, remaining.traffic_percent) == (a, "1", 100)
        with pytest.raises(NotFoundError):
            endpoints.undeploy(endpoint, b)  # gone already

    def test_a_model_with_traffic_is_not_undeployed_while_others_are_deployed(
            self, endpoints: ModelEndpoint, endpoint: str, model: tuple[ModelVersion, ...]) -> None:
        a = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        b = endpoints.deploy(endpoint, model[1], 10).deployed_model_id
        c = endpoints.deploy(endpoint, model[2], 100).deployed_model_id  # a and b at 0
        endpoints.set_traffic(endpoint, {a: 10, c: 90})
        for holder in (a, c):  # a share, or all of it: the SDK would move it, the port refuses
            with pytest.raises(TrafficSplitError):
                endpoints.undeploy(endpoint, holder)
        assert self.split(endpoints, endpoint) == {a: 10, b: 0, c: 90}

    def test_the_last_model_can_always_be_undeployed(self, endpoints: ModelEndpoint, endpoint: str,
                                                     model: tuple[ModelVersion, ...]) -> None:
        only = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        endpoints.undeploy(endpoint, only)
        assert endpoints.deployments(endpoint) == []
        again = endpoints.deploy(endpoint, model[1], 25)  # empty again: takes everything
        assert again.traffic_split == {again.deployed_model_id: 100}

    def test_undeploying_a_model_not_deployed_is_not_found(self, endpoints: ModelEndpoint, endpoint: str,
                                                           model: tuple[ModelVersion, ...]) -> None:
        endpoints.deploy(endpoint, model[0], 100)
        with pytest.raises(NotFoundError):
            endpoints.undeploy(endpoint, "123456789")
        assert len(endpoints.deployments(endpoint)) == 1

    def test_a_started_deploy_is_followed_by_its_operation(self, endpoints: ModelEndpoint, endpoint: str,
                                                           model: tuple[ModelVersion, ...]) -> None:
        first = endpoints.deploy(endpoint, model[0], 100).deployed_model_id
        name = endpoints.start_deploy(endpoint, model[1], 20, service_account="serving@p.iam.gserviceaccount.com")
        status = endpoints.deploy_operation(name)
        deadline = time.monotonic() + 60
        while not status.done and time.monotonic() < deadline:
            time.sleep(0.2)
            status = endpoints.deploy_operation(name)
        assert status.done and status.error is None and status.deployed_model_id
        split = {d.deployed_model_id: d.traffic_percent for d in endpoints.deployments(endpoint)}
        assert split == {first: 80, status.deployed_model_id: 20}
        assert endpoints.deploy_operation(name) == status  # done stays done

    def test_a_start_refused_up_front_raises_and_an_unknown_operation_is_not_found(
            self, endpoints: ModelEndpoint, endpoint: str, model: tuple[ModelVersion, ...]) -> None:
        with pytest.raises(TrafficSplitError):
            endpoints.start_deploy(endpoint, model[0], 0)
        ghost = replace(model[0], version_id="99", resource_name=model[0].resource_name.replace("@1", "@99"))
        with pytest.raises(NotFoundError):
            endpoints.start_deploy(endpoint, ghost, 100)
        with pytest.raises(NotFoundError):
            endpoints.deploy_operation(f"{endpoint}/operations/424242")

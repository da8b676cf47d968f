"""The topology agrees with the schemas, with the services' code, and with what Terraform is given."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mlops.core.events import EVENTS_BY_TYPE
from mlops.core.events.catalog import schema_files
from mlops.core.settings import CommonSettings
from mlops.core.topology import (
    ALL_TOPICS,
    DEAD_LETTER_TOPIC,
    EVENT_TOPICS,
    OPERATOR_APPS,
    SERVICES,
    SERVICES_BY_NAME,
    TABLES,
    archive_subscription,
    as_tfvars,
    push_subscription,
)

ROOT = Path(__file__).resolve().parents[2]
TFVARS = ROOT / "deploy" / "terraform" / "topology.auto.tfvars.json"

# Event types published from outside the services' push handlers, and by whom. Everything else must
# be published by a service listed in the topology.
PUBLISHED_OUTSIDE_SERVICES = {
    "watch.tick.v1": "Cloud Scheduler in the cloud, the stack's ticker locally, and `mlops trigger`",
    "stage.failed.v1": "every service's push endpoint, on any failure (PushEndpoint.report_failure)",
    "deployment.requested.v1": "`mlops rollback` and `mlops promote` (mlops.ops.traffic)",
}
# Event types nobody subscribes to with a push subscription: they are for operators (archive, alerts).
# model.deployed.v1: the Vertex AI endpoint serves what the deployer deployed; nothing listens to it.
CONSUMED_BY_OPERATORS = {"stage.failed.v1", "data.skipped.v1", "model.deployed.v1"}
EVENTS_BY_TYPE_BY_CLASS = {cls.__name__: event_type for event_type, cls in EVENTS_BY_TYPE.items()}


def test_every_topic_a_service_touches_has_a_schema():
    schemas = set(schema_files())
    for service in SERVICES:
        for topic in (*service.consumes, *service.publishes):
            assert topic in schemas, f"{service.name} uses {topic}, which has no schema"


def test_every_event_type_has_a_topic_and_every_topic_a_schema():
    assert set(EVENT_TOPICS) == set(EVENTS_BY_TYPE) == set(schema_files())
    assert set(ALL_TOPICS) == set(EVENT_TOPICS) | {DEAD_LETTER_TOPIC}
    assert DEAD_LETTER_TOPIC not in schema_files()  # it carries any bytes, so no schema


def test_every_event_type_is_published_by_someone():
    published = {topic for service in SERVICES for topic in service.publishes}
    unpublished = set(EVENT_TOPICS) - published - set(PUBLISHED_OUTSIDE_SERVICES)
    assert unpublished == set(), f"nobody publishes {sorted(unpublished)}"
    # The outside list stays honest: nothing on it is also a service's output.
    assert not published & set(PUBLISHED_OUTSIDE_SERVICES)


def test_every_event_type_is_consumed_by_someone():
    consumed = {topic for service in SERVICES for topic in service.consumes}
    assert set(EVENT_TOPICS) - consumed == CONSUMED_BY_OPERATORS


def test_each_event_type_has_one_producer_service():
    producers: dict[str, list[str]] = {}
    for service in SERVICES:
        for topic in service.publishes:
            producers.setdefault(topic, []).append(service.name)
    assert {t: p for t, p in producers.items() if len(p) > 1} == {}


def test_the_loop_is_one_chain_from_tick_to_prediction():
    # The loop's own line: a tick's first consumer is the data-watcher (the monitor hears ticks too).
    by_input = {topic: service for service in reversed(SERVICES) for topic in service.consumes}
    # No event starts the predictor: the deployer's DeployModel does (a Vertex AI serving container).
    by_input["model.deployed.v1"] = SERVICES_BY_NAME["predictor"]
    topic, chain = "watch.tick.v1", []
    while topic in by_input:
        service = by_input[topic]
        chain.append(service.name)
        topic = service.publishes[0] if service.publishes else None
    assert chain == ["data-watcher", "trainer", "evaluator", "registrar", "deployer", "predictor", "inference-logger"]


def test_every_service_directory_is_in_the_topology_and_back():
    directories = {p.name for p in (ROOT / "services").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert directories == set(SERVICES_BY_NAME) | set(OPERATOR_APPS)


def routed_event_classes(app_file: Path) -> set[str]:
    """Names `X` in the route mapping `{X.EVENT_TYPE: Route(...)}` of a service's app.py."""
    tree = ast.parse(app_file.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            routes_here = (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Route")
            if routes_here and isinstance(key, ast.Attribute) and key.attr == "EVENT_TYPE" \
                    and isinstance(key.value, ast.Name):
                found.add(key.value.id)
    return found


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_app_routes_exactly_what_the_topology_says_it_consumes(service):
    app_file = ROOT / "services" / service.name / service.name.replace("-", "_") / "app.py"
    assert app_file.exists(), app_file
    routed = {EVENTS_BY_TYPE_BY_CLASS[name] for name in routed_event_classes(app_file)}
    assert routed == set(service.consumes)


def test_subscription_names_are_unique_and_derived_from_topic_and_service():
    names = [push_subscription(t, s.name) for s in SERVICES for t in s.consumes]
    names += [archive_subscription(t) for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert push_subscription("data.ready.v1", "trainer") == "data.ready.v1--trainer"


def test_the_default_dead_letter_topic_is_the_provisioned_one():
    assert CommonSettings.model_fields["dead_letter_topic"].default == DEAD_LETTER_TOPIC


def test_tfvars_carry_the_whole_topology():
    tfvars = as_tfvars()
    assert tfvars["topics"] == list(EVENT_TOPICS)
    assert tfvars["dead_letter_topic"] == DEAD_LETTER_TOPIC
    assert set(tfvars["services"]) == set(SERVICES_BY_NAME)
    for service in SERVICES:
        assert tfvars["services"][service.name]["consumes"] == list(service.consumes)
        assert tfvars["services"][service.name]["publishes"] == list(service.publishes)
    assert set(tfvars["tables"]) == set(TABLES)
    assert tfvars["delivery"]["max_delivery_attempts"] >= 5  # Pub/Sub's minimum
    json.dumps(tfvars)  # it must be JSON


def test_the_committed_tfvars_file_is_current():
    if not TFVARS.exists():
        pytest.skip(f"{TFVARS.relative_to(ROOT)} does not exist yet (render it with `mlops topology --tfvars`)")
    from mlops.stack.provision import tfvars_json

    relative = TFVARS.relative_to(ROOT)
    assert TFVARS.read_text(encoding="utf-8") == tfvars_json(), (
        f"{relative} is stale: regenerate it with `mlops topology --tfvars > {relative}`")

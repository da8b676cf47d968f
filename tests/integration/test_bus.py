"""The event backbone against Google's Pub/Sub emulator: schema checks, dead-lettering, causation,
and the archive in bqemulator. Services here are real PushEndpoints served over HTTP."""

from __future__ import annotations

import json
import threading

import pytest
from google.api_core.exceptions import InvalidArgument
from google.cloud import pubsub_v1

from mlops.adapters.pubsub import PubSubEventBus
from mlops.core.events import DataReady, EventValidationError, ModelTrained, build
from mlops.core.events.envelope import new_envelope
from mlops.core.topology import DEAD_LETTER_TOPIC, DeliveryPolicy, archive_subscription
from mlops.ports.bus import publish_new
from mlops.runtime.push import PushEndpoint, Route, create_push_app
from mlops.stack.provision import provision_pubsub
from tests.integration.harness import pull, serving, unique_project, wait_for

pytestmark = pytest.mark.integration

FAST_RETRIES = DeliveryPolicy(min_backoff_s=0, max_backoff_s=1, max_delivery_attempts=5, ack_deadline_s=10)


@pytest.fixture
def project(pubsub_emulator, monkeypatch) -> str:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.env()["PUBSUB_EMULATOR_HOST"])
    return unique_project()


@pytest.fixture
def bus(project) -> PubSubEventBus:
    bus = PubSubEventBus(project)
    yield bus
    bus.close()


def endpoint(service: str, project: str, bus: PubSubEventBus, routes: dict[str, Route]) -> PushEndpoint:
    return PushEndpoint(service=service, project=project, bus=bus, routes=routes, dead_letter_topic=DEAD_LETTER_TOPIC)


def test_an_event_that_does_not_fit_its_schema_is_refused_before_it_is_sent(project, bus):
    provision_pubsub(project, {}, FAST_RETRIES)
    bad = {"pipeline": 7, "total_rows": -1, "trigger": None}
    with pytest.raises(EventValidationError) as refused:
        publish_new(bus, build(DataReady.EVENT_TYPE, bad), "test")
    problems = refused.value.problems
    for field in ("pipeline", "total_rows", "trigger", "source_table", "snapshot_table", "watermark"):
        assert any(p.startswith(field) for p in problems), (field, problems)
    assert pull(project, archive_subscription(DataReady.EVENT_TYPE), wanted=1, timeout=2) == []


def test_the_topic_itself_rejects_an_off_schema_message_from_any_client(project):
    provision_pubsub(project, {}, FAST_RETRIES)
    publisher = pubsub_v1.PublisherClient()
    with pytest.raises(InvalidArgument):
        publisher.publish(publisher.topic_path(project, DataReady.EVENT_TYPE), b'{"pipeline": 1}').result(timeout=10)


def test_a_handler_that_always_fails_ends_in_the_dead_letter_topic_with_the_reason_findable(project, bus):
    attempts = []

    def always_fails(event, envelope):
        attempts.append(envelope.id)
        raise RuntimeError("the warehouse is on fire")

    app = create_push_app(endpoint("trainer", project, bus, {DataReady.EVENT_TYPE: Route(always_fails)}))
    with serving(app) as url:
        provision_pubsub(project, {"trainer": url}, FAST_RETRIES)
        event = DataReady.example()
        envelope = new_envelope(event, "test")
        bus.publish(event, envelope).result(timeout=10)

        dead = pull(project, archive_subscription(DEAD_LETTER_TOPIC), wanted=1, timeout=60)
    assert len(dead) == 1
    assert dead[0].attributes["ce-id"] == envelope.id
    assert dead[0].attributes["CloudPubSubDeadLetterSourceSubscription"].endswith("data.ready.v1--trainer")
    assert len(attempts) == FAST_RETRIES.max_delivery_attempts
    failures = pull(project, archive_subscription("stage.failed.v1"), wanted=len(attempts), timeout=10)
    reasons = [json.loads(m.data) for m in failures]
    assert {r["input_event_id"] for r in reasons} == {envelope.id}
    assert all("the warehouse is on fire" in r["error_message"] and r["permanent"] is False for r in reasons)


def test_a_poison_message_is_dead_lettered_at_once_with_the_reason_attached(project, bus):
    calls = []
    app = create_push_app(endpoint("trainer", project, bus,
                                   {DataReady.EVENT_TYPE: Route(lambda e, env: calls.append(e) or [])}))
    with serving(app) as url:
        provision_pubsub(project, {"trainer": url}, FAST_RETRIES)
        publisher = pubsub_v1.PublisherClient()
        from mlops.core.events import encode

        # Fits the schema, but carries no envelope beyond its type: no stage can ever handle it.
        publisher.publish(publisher.topic_path(project, DataReady.EVENT_TYPE), encode(DataReady.example()),
                          **{"ce-type": DataReady.EVENT_TYPE}).result(timeout=10)
        dead = pull(project, archive_subscription(DEAD_LETTER_TOPIC), wanted=1, timeout=30)
    assert calls == []
    assert len(dead) == 1
    assert dead[0].attributes["dead_letter_stage"] == "trainer"
    assert "missing attribute 'ce-source'" in dead[0].attributes["dead_letter_reason"]


def test_an_event_one_service_publishes_reaches_the_next_with_causation_and_run(project, bus):
    received = []
    arrived = threading.Event()

    def trainer(event, envelope):
        return [ModelTrained.example()]

    def evaluator(event, envelope):
        received.append((event, envelope))
        arrived.set()
        return []

    trainer_app = create_push_app(endpoint("trainer", project, bus, {DataReady.EVENT_TYPE: Route(trainer)}))
    evaluator_app = create_push_app(endpoint("evaluator", project, bus, {ModelTrained.EVENT_TYPE: Route(evaluator)}))
    with serving(trainer_app) as trainer_url, serving(evaluator_app) as evaluator_url:
        provision_pubsub(project, {"trainer": trainer_url, "evaluator": evaluator_url}, FAST_RETRIES)
        event = DataReady.example()
        envelope = new_envelope(event, "test", run_id="run-42")
        bus.publish(event, envelope).result(timeout=10)
        assert arrived.wait(30), "model.trained never reached the evaluator"
    trained, trained_envelope = received[0]
    assert trained == ModelTrained.example()
    assert trained_envelope.causation_id == envelope.id
    assert trained_envelope.run_id == "run-42"
    assert trained_envelope.source.endswith("/trainer")


def test_every_published_event_lands_in_the_archive(project, bus, bigquery_emulator, monkeypatch):
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client
    from mlops.ops.archive import query_events
    from mlops.stack.archiver import Archiver
    from mlops.stack.provision import provision_bigquery

    warehouse = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops", "mlops_snapshots")
    provision_bigquery(warehouse)
    provision_pubsub(project, {}, FAST_RETRIES)
    archiver = Archiver(project, warehouse)
    runner = threading.Thread(target=archiver.run_forever, daemon=True)
    runner.start()
    try:
        sent = []
        for cls in (DataReady, ModelTrained):
            event = cls.example()
            envelope = new_envelope(event, "test", run_id="run-archive")
            bus.publish(event, envelope).result(timeout=10)
            sent.append(envelope.id)
        archived = wait_for(lambda: len(query_events(warehouse, run_id="run-archive")) >= 2 and
                            query_events(warehouse, run_id="run-archive"), timeout=30, what="archived events")
    finally:
        archiver.stop()
        runner.join(timeout=10)
    assert {e.id for e in archived} == set(sent)
    row = archived[0]
    assert row.subscription.endswith("--archive") and row.message_id and row.payload()["pipeline"]

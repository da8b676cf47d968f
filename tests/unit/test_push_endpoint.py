"""The push endpoint: what Pub/Sub is told (status code) and what lands on the bus, for every case.

The HTTP layer is driven through Flask's test client with the golden push bodies in
`tests/data/push/` (the shape Pub/Sub and its emulator POST); the decisions themselves through
`PushEndpoint.handle_message`, against the in-memory bus.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mlops.core.errors import PermanentError
from mlops.core.events import (
    Continues,
    DataReady,
    DataSkipped,
    Envelope,
    Event,
    ModelTrained,
    StageFailed,
    TickReason,
    WatchTick,
    decode,
    encode,
)
from mlops.core.topology import DEAD_LETTER_TOPIC
from mlops.runtime.push import PushEndpoint, Route, create_push_app
from mlops.testing.memory import InMemoryEventBus

from .conftest import FlakyBus

PUSH = Path(__file__).resolve().parents[1] / "data" / "push"
SERVICE = "data-watcher"
SUBSCRIPTION = "projects/mlops-local/subscriptions/watch.tick.v1--data-watcher"
DEAD_LETTER_KEYS = {"dead_letter_reason", "dead_letter_stage", "dead_letter_error_class",
                    "dead_letter_subscription", "dead_letter_message_id"}


def golden(name: str) -> dict[str, Any]:
    return json.loads((PUSH / f"{name}.json").read_text())


GOOD = golden("watch_tick")
GOOD_ATTRIBUTES: dict[str, str] = GOOD["message"]["attributes"]


class RecordingHandler:
    """A handler that records its inputs and returns (or raises) what the test asks for."""

    def __init__(self, outputs: Sequence[Event] = (), error: Exception | None = None):
        self.outputs = list(outputs)
        self.error = error
        self.calls: list[tuple[Event, Envelope]] = []

    def __call__(self, event: Event, envelope: Envelope) -> list[Event]:
        self.calls.append((event, envelope))
        if self.error is not None:
            raise self.error
        return list(self.outputs)


def make_endpoint(bus, handler: RecordingHandler, starts_run: bool = False, **kwargs: Any) -> PushEndpoint:
    return PushEndpoint(service=SERVICE, project="mlops-local", bus=bus,
                        routes={WatchTick.EVENT_TYPE: Route(handler, starts_run=starts_run)},
                        dead_letter_topic=DEAD_LETTER_TOPIC, **kwargs)


def message(attributes: dict[str, str] | None = None, data: bytes | None = None, message_id: str = "m-1",
            **extra: Any) -> dict[str, Any]:
    raw = encode(WatchTick.example()) if data is None else data
    return {"attributes": dict(GOOD_ATTRIBUTES if attributes is None else attributes),
            "data": base64.b64encode(raw).decode(), "messageId": message_id, **extra}


def second_ready() -> DataReady:
    return DataReady.example().model_copy(update={"pipeline": "iris", "data_version": "d0001"})


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler(outputs=[DataReady.example()])


@pytest.fixture
def client(bus: InMemoryEventBus, handler: RecordingHandler):
    return create_push_app(make_endpoint(bus, handler)).test_client()


def only_failure(bus: InMemoryEventBus) -> StageFailed:
    failures = bus.on(StageFailed.EVENT_TYPE)
    assert len(failures) == 1, [m.topic for m in bus.messages]
    event = decode(StageFailed.EVENT_TYPE, failures[0].data)
    assert isinstance(event, StageFailed)
    return event


def assert_dead_lettered(bus: InMemoryEventBus, status: int, body: dict[str, Any], raw: bytes,
                         attributes: dict[str, str], error_class: str, reason_part: str,
                         message_id: str = "m-1", subscription: str = SUBSCRIPTION) -> None:
    assert status == 200
    assert body["status"] == "dead-lettered"
    assert reason_part in body["reason"]
    parked = bus.on(DEAD_LETTER_TOPIC)
    assert len(parked) == 1
    assert parked[0].data == raw  # the original bytes, untouched
    assert {k: v for k, v in parked[0].attributes.items() if k not in DEAD_LETTER_KEYS} == attributes
    assert parked[0].attributes["dead_letter_reason"] == body["reason"]
    assert parked[0].attributes["dead_letter_error_class"] == error_class
    assert parked[0].attributes["dead_letter_stage"] == SERVICE
    assert parked[0].attributes["dead_letter_subscription"] == subscription
    assert parked[0].attributes["dead_letter_message_id"] == message_id
    failure = only_failure(bus)
    assert failure.permanent is True
    assert failure.stage == SERVICE
    assert failure.error_class == error_class
    assert reason_part in failure.error_message
    assert failure.input_event_id == attributes.get("ce-id", "")
    assert failure.input_event_type == attributes.get("ce-type", "")
    assert failure.message_id == message_id
    assert not bus.on(DataReady.EVENT_TYPE)


# ---------------------------------------------------------------------------------------------- HTTP layer

def test_golden_push_request_is_handled_with_204_and_an_empty_body(client, bus, handler):
    response = client.post("/push", json=GOOD)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert len(handler.calls) == 1
    event, envelope = handler.calls[0]
    assert event == WatchTick.example()
    assert envelope == Envelope.from_attributes(GOOD_ATTRIBUTES)
    outputs = bus.on(DataReady.EVENT_TYPE)
    assert len(outputs) == 1 and outputs[0].event == DataReady.example()
    assert decode(DataReady.EVENT_TYPE, outputs[0].data) == DataReady.example()


@pytest.mark.parametrize(("body", "content_type"), [
    ("not json at all", "application/json"),
    ("[1, 2, 3]", "application/json"),
    ('"just a string"', "application/json"),
    (json.dumps(golden("not_push")), "application/json"),
    (json.dumps({"message": "not an object", "subscription": "s"}), "application/json"),
    (json.dumps({"message": None}), "application/json"),
    (json.dumps(GOOD), "text/plain"),
    ("", "application/json"),
], ids=["not-json", "array", "string", "no-message", "message-not-object", "message-null", "wrong-content-type",
        "empty"])
def test_a_request_that_is_not_a_push_gets_400_with_a_message(client, bus, handler, body, content_type):
    response = client.post("/push", data=body, content_type=content_type)
    assert response.status_code == 400
    assert "not a Pub/Sub push request" in response.get_json()["error"]
    assert bus.messages == [] and handler.calls == []


def test_only_post_is_accepted_on_push(client):
    assert client.get("/push").status_code == 405


def test_a_message_whose_data_is_not_a_string_gets_400(client, bus):
    body = copy.deepcopy(GOOD)
    body["message"]["data"] = 123
    response = client.post("/push", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]


@pytest.mark.parametrize("attributes", [["ce-id"], {**GOOD_ATTRIBUTES, "ce-time": 123}], ids=["list", "int-time"])
def test_attributes_that_are_not_a_string_map_get_a_clean_answer(client, attributes):
    body = copy.deepcopy(GOOD)
    body["message"]["attributes"] = attributes
    response = client.post("/push", json=body)
    assert response.status_code in (200, 400)
    assert response.is_json


def test_golden_not_base64_push_is_dead_lettered(client, bus, handler):
    body = golden("not_base64")
    response = client.post("/push", json=body)
    assert_dead_lettered(bus, response.status_code, response.get_json(), raw=body["message"]["data"].encode(),
                         attributes=GOOD_ATTRIBUTES, error_class="PermanentError", reason_part="not base64",
                         message_id=body["message"]["messageId"])
    assert handler.calls == []


def test_not_base64_dead_letter_keeps_the_original_data(client, bus):
    body = golden("not_base64")
    client.post("/push", json=body)
    assert bus.on(DEAD_LETTER_TOPIC)[0].data == body["message"]["data"].encode()


def test_golden_push_with_missing_attributes_is_dead_lettered_naming_all_of_them(client, bus, handler):
    body = golden("missing_attributes")
    response = client.post("/push", json=body)
    raw = base64.b64decode(body["message"]["data"])
    assert_dead_lettered(bus, response.status_code, response.get_json(), raw=raw,
                         attributes=body["message"]["attributes"], error_class="EnvelopeError",
                         reason_part="missing attribute 'ce-source'", message_id=body["message"]["messageId"])
    reason = response.get_json()["reason"]
    # ce-id, ce-time and run_id come from Pub/Sub's messageId/publishTime when absent (Cloud Scheduler).
    for name in ("ce-source", "ce-specversion", "ce-dataschema"):
        assert f"'{name}'" in reason
    assert handler.calls == []


def test_golden_off_schema_push_is_dead_lettered(client, bus, handler):
    body = golden("off_schema")
    response = client.post("/push", json=body)
    assert_dead_lettered(bus, response.status_code, response.get_json(),
                         raw=base64.b64decode(body["message"]["data"]), attributes=GOOD_ATTRIBUTES,
                         error_class="EventValidationError", reason_part="reason",
                         message_id=body["message"]["messageId"])
    assert handler.calls == []


def test_healthz_reports_the_service_and_its_health(bus, handler):
    app = create_push_app(make_endpoint(bus, handler, health=lambda: {"serving": {"p": {"1": 100}}}))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "service": SERVICE, "serving": {"p": {"1": 100}}}


def test_a_cloud_trace_header_is_accepted(client):
    response = client.post("/push", json=GOOD,
                           headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})
    assert response.status_code == 204


# ---------------------------------------------------------------------------------------------- outputs

def test_outputs_are_linked_to_their_input(bus, handler):
    endpoint = make_endpoint(bus, handler)
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert (status, body) == (204, {})
    [out] = bus.on(DataReady.EVENT_TYPE)
    attributes = out.attributes
    envelope = Envelope.from_attributes(attributes)
    assert envelope.causation_id == GOOD_ATTRIBUTES["ce-id"]
    assert envelope.run_id == GOOD_ATTRIBUTES["run_id"]
    assert envelope.type == DataReady.EVENT_TYPE
    assert envelope.dataschema == "schemas/data.ready.v1.avsc"
    assert envelope.source == f"//mlops/services/{SERVICE}"
    assert envelope.pipeline == "breast-cancer"
    assert envelope.replay_of == ""
    assert envelope.id != GOOD_ATTRIBUTES["ce-id"] and uuid.UUID(envelope.id)


def test_outputs_carry_the_code_version_of_the_stage_that_made_them(bus, handler):
    make_endpoint(bus, handler, code_version="git-1a2b3c").handle_message(message(), SUBSCRIPTION)
    assert Envelope.from_attributes(bus.messages[0].attributes).code_version == "git-1a2b3c"


def test_output_ids_are_deterministic_per_input_and_position(bus):
    handler = RecordingHandler(outputs=[DataReady.example(), second_ready()])
    endpoint = make_endpoint(bus, handler)
    assert endpoint.handle_message(message(), SUBSCRIPTION)[0] == 204
    assert endpoint.handle_message(message(message_id="m-2"), SUBSCRIPTION)[0] == 204  # a redelivery
    first, second = bus.messages[:2], bus.messages[2:]
    ids_first = [m.attributes["ce-id"] for m in first]
    assert ids_first == [m.attributes["ce-id"] for m in second]
    assert len(set(ids_first)) == 2  # two outputs of one input differ
    other = message(attributes=GOOD_ATTRIBUTES | {"ce-id": "another-input"})
    endpoint.handle_message(other, SUBSCRIPTION)
    assert not {m.attributes["ce-id"] for m in bus.messages[4:]} & set(ids_first)


def test_an_output_that_continues_an_earlier_event_takes_its_run_cause_and_a_stable_id(bus):
    """A deploy started by one event and found done by a later delivery (a tick) is announced in the
    starting event's run, caused by it, with the same id whichever delivery publishes it."""
    handler = RecordingHandler(outputs=[Continues(DataReady.example(), cause_id="started-it", run_id="run-0")])
    endpoint = make_endpoint(bus, handler)
    endpoint.handle_message(message(), SUBSCRIPTION)
    endpoint.handle_message(message(attributes=GOOD_ATTRIBUTES | {"ce-id": "another-tick"}), SUBSCRIPTION)
    first, second = (Envelope.from_attributes(m.attributes) for m in bus.messages)
    assert (first.run_id, first.causation_id) == ("run-0", "started-it")
    assert first.id == second.id
    assert bus.messages[0].topic == DataReady.EVENT_TYPE


def test_a_redelivery_that_now_decides_otherwise_gets_a_new_id(bus):
    """A tick first skipped (data.skipped) and, redelivered after rows landed, snapshotted (data.ready):
    the archive keeps one event per id, so the two answers must not share one."""
    handler = RecordingHandler(outputs=[DataSkipped.example()])
    endpoint = make_endpoint(bus, handler)
    endpoint.handle_message(message(), SUBSCRIPTION)
    handler.outputs = [DataReady.example()]
    endpoint.handle_message(message(message_id="m-2"), SUBSCRIPTION)
    skipped, ready = bus.messages
    assert (skipped.topic, ready.topic) == (DataSkipped.EVENT_TYPE, DataReady.EVENT_TYPE)
    assert skipped.attributes["ce-id"] != ready.attributes["ce-id"]


def test_output_ids_differ_between_services_handling_the_same_input(bus, handler):
    make_endpoint(bus, handler).handle_message(message(), SUBSCRIPTION)
    other = PushEndpoint(service="trainer", project="p", bus=bus,
                         routes={WatchTick.EVENT_TYPE: Route(handler)}, dead_letter_topic=DEAD_LETTER_TOPIC)
    other.handle_message(message(), SUBSCRIPTION)
    assert bus.messages[0].attributes["ce-id"] != bus.messages[1].attributes["ce-id"]


def test_starts_run_routes_mint_a_new_deterministic_run_per_output(bus):
    handler = RecordingHandler(outputs=[DataReady.example(), second_ready()])
    endpoint = make_endpoint(bus, handler, starts_run=True)
    endpoint.handle_message(message(), SUBSCRIPTION)
    endpoint.handle_message(message(), SUBSCRIPTION)
    runs = [m.attributes["run_id"] for m in bus.messages]
    assert GOOD_ATTRIBUTES["run_id"] not in runs
    assert runs[:2] == runs[2:]  # a redelivered tick starts the same runs again
    assert runs[0] != runs[1]  # each data.ready is its own run
    assert all(m.attributes["causation_id"] == GOOD_ATTRIBUTES["ce-id"] for m in bus.messages)
    assert [m.attributes["pipeline"] for m in bus.messages[:2]] == ["breast-cancer", "iris"]


def test_replay_of_is_carried_to_the_outputs(bus, handler):
    endpoint = make_endpoint(bus, handler)
    endpoint.handle_message(message(attributes=GOOD_ATTRIBUTES | {"replay_of": "orig-1"}), SUBSCRIPTION)
    assert bus.messages[0].attributes["replay_of"] == "orig-1"


def test_no_outputs_is_still_a_success(bus):
    endpoint = make_endpoint(bus, RecordingHandler(outputs=[]))
    assert endpoint.handle_message(message(), SUBSCRIPTION) == (204, {})
    assert bus.messages == []


def test_snake_case_message_id_is_understood(bus):
    endpoint = make_endpoint(bus, RecordingHandler(error=PermanentError("no")))
    msg = message()
    del msg["messageId"]
    msg["message_id"] = "snake-7"
    endpoint.handle_message(msg, SUBSCRIPTION)
    assert bus.on(DEAD_LETTER_TOPIC)[0].attributes["dead_letter_message_id"] == "snake-7"


# ---------------------------------------------------------------------------------------------- dead-lettering

def test_unknown_event_type_is_dead_lettered_naming_what_is_handled(bus, handler):
    endpoint = make_endpoint(bus, handler)
    raw = encode(ModelTrained.example())
    attributes = GOOD_ATTRIBUTES | {"ce-type": ModelTrained.EVENT_TYPE,
                                    "ce-dataschema": "schemas/model.trained.v1.avsc"}
    status, body = endpoint.handle_message(message(attributes, raw), SUBSCRIPTION)
    assert_dead_lettered(bus, status, body, raw, attributes, "PermanentError", "does not handle 'model.trained.v1'")
    assert "watch.tick.v1" in body["reason"]
    assert handler.calls == []


def test_a_type_nobody_knows_is_dead_lettered(bus, handler):
    endpoint = PushEndpoint(service=SERVICE, project="p", bus=bus,
                            routes={"made.up.v1": Route(handler)}, dead_letter_topic=DEAD_LETTER_TOPIC)
    attributes = GOOD_ATTRIBUTES | {"ce-type": "made.up.v1"}
    status, body = endpoint.handle_message(message(attributes, b"{}"), SUBSCRIPTION)
    assert_dead_lettered(bus, status, body, b"{}", attributes, "EventValidationError", "made.up.v1")


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"pipeline": null}', b'{"reason": "manual", "pipeline": 5}'],
                         ids=["empty", "not-json", "missing-reason", "wrong-union"])
def test_off_schema_payloads_are_dead_lettered(bus, handler, raw):
    endpoint = make_endpoint(bus, handler)
    status, body = endpoint.handle_message(message(data=raw), SUBSCRIPTION)
    assert_dead_lettered(bus, status, body, raw, GOOD_ATTRIBUTES, "EventValidationError", "watch.tick.v1")
    assert handler.calls == []


def test_a_time_without_timezone_is_dead_lettered(bus, handler):
    endpoint = make_endpoint(bus, handler)
    attributes = GOOD_ATTRIBUTES | {"ce-time": "2026-11-22T06:30:00"}
    status, body = endpoint.handle_message(message(attributes), SUBSCRIPTION)
    assert_dead_lettered(bus, status, body, encode(WatchTick.example()), attributes, "EnvelopeError", "no timezone")


def test_a_handlers_permanent_error_is_dead_lettered(bus):
    handler = RecordingHandler(error=PermanentError("pipeline 'breast-cancer' has no spec"))
    endpoint = make_endpoint(bus, handler)
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert_dead_lettered(bus, status, body, encode(WatchTick.example()), GOOD_ATTRIBUTES, "PermanentError",
                         "has no spec")
    assert len(handler.calls) == 1
    failure = only_failure(bus)
    assert failure.pipeline == "breast-cancer"
    failure_envelope = Envelope.from_attributes(bus.on(StageFailed.EVENT_TYPE)[0].attributes)
    assert failure_envelope.causation_id == GOOD_ATTRIBUTES["ce-id"]
    assert failure_envelope.source == f"//mlops/services/{SERVICE}"


def test_a_dead_lettered_message_keeps_one_set_of_dead_letter_attributes(bus):
    """A message parked before (and replayed) gets this stage's reason, not a stale one alongside."""
    endpoint = make_endpoint(bus, RecordingHandler(error=PermanentError("new reason")))
    stale = GOOD_ATTRIBUTES | {"dead_letter_reason": "old", "dead_letter_stage": "trainer"}
    endpoint.handle_message(message(stale), SUBSCRIPTION)
    parked = bus.on(DEAD_LETTER_TOPIC)[0].attributes
    assert parked["dead_letter_reason"] == "PermanentError: new reason"
    assert parked["dead_letter_stage"] == SERVICE


def test_long_reasons_are_cut_to_fit_an_attribute(bus):
    endpoint = make_endpoint(bus, RecordingHandler(error=PermanentError("x" * 5000)))
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 200
    assert len(bus.on(DEAD_LETTER_TOPIC)[0].attributes["dead_letter_reason"]) == 1000
    assert len(only_failure(bus).error_message) == 2000


@pytest.mark.parametrize("fail_in_future", [False, True], ids=["raises", "failed-future"])
def test_a_failing_dead_letter_publish_keeps_the_message_for_a_retry(fail_in_future):
    bus = FlakyBus(failing_topics={DEAD_LETTER_TOPIC}, fail_in_future=fail_in_future)
    endpoint = make_endpoint(bus, RecordingHandler(error=PermanentError("poison")))
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 503
    assert body["status"] == "retry" and "dead-letter publish failed" in body["error"]
    assert bus.failures == 1
    assert bus.delivered == []  # no stage.failed claims it was parked


def test_a_failing_stage_failed_publish_does_not_change_the_answer():
    bus = FlakyBus(failing_topics={StageFailed.EVENT_TYPE})
    endpoint = make_endpoint(bus, RecordingHandler(error=PermanentError("poison")))
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 200 and body["status"] == "dead-lettered"
    assert len(bus.on(DEAD_LETTER_TOPIC)) == 1


# ---------------------------------------------------------------------------------------------- retries

def test_a_transient_handler_error_asks_for_a_retry_and_reports_it(bus):
    handler = RecordingHandler(error=TimeoutError("warehouse slow"))
    endpoint = make_endpoint(bus, handler)
    status, body = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 503
    assert body == {"status": "retry", "error": "TimeoutError: warehouse slow"}
    assert bus.on(DEAD_LETTER_TOPIC) == [] and bus.on(DataReady.EVENT_TYPE) == []
    failure = only_failure(bus)
    assert failure.permanent is False
    assert (failure.error_class, failure.error_message) == ("TimeoutError", "warehouse slow")
    assert (failure.input_event_id, failure.input_event_type) == (GOOD_ATTRIBUTES["ce-id"], WatchTick.EVENT_TYPE)
    assert (failure.pipeline, failure.message_id, failure.stage) == ("breast-cancer", "m-1", SERVICE)


def test_a_transient_error_over_http_is_a_503_with_json(bus):
    client = create_push_app(make_endpoint(bus, RecordingHandler(error=RuntimeError("boom")))).test_client()
    response = client.post("/push", json=GOOD)
    assert response.status_code == 503
    assert response.get_json()["status"] == "retry"


def test_a_transient_error_is_still_503_when_stage_failed_cannot_be_sent():
    bus = FlakyBus(failing_topics={StageFailed.EVENT_TYPE})
    status, _ = make_endpoint(bus, RecordingHandler(error=RuntimeError("boom"))).handle_message(message(), "s")
    assert status == 503


@pytest.mark.parametrize("fail_in_future", [False, True], ids=["raises", "failed-future"])
def test_a_failing_output_publish_asks_for_a_retry(fail_in_future):
    bus = FlakyBus(failing_topics={DataReady.EVENT_TYPE}, fail_in_future=fail_in_future)
    handler = RecordingHandler(outputs=[DataReady.example()])
    status, body = make_endpoint(bus, handler).handle_message(message(), SUBSCRIPTION)
    assert status == 503
    assert body["status"] == "retry" and "publish failed" in body["error"]
    assert bus.on(DEAD_LETTER_TOPIC) == []


def test_a_retry_after_a_partial_publish_republishes_the_same_ids():
    bus = FlakyBus(failing_topics={"data.ready.v1"})
    handler = RecordingHandler(outputs=[WatchTick(reason=TickReason.MANUAL), DataReady.example()])
    endpoint = PushEndpoint(service=SERVICE, project="p", bus=bus, routes={WatchTick.EVENT_TYPE: Route(handler)},
                            dead_letter_topic=DEAD_LETTER_TOPIC)
    assert endpoint.handle_message(message(), SUBSCRIPTION)[0] == 503
    bus.failing_topics.clear()
    assert endpoint.handle_message(message(), SUBSCRIPTION)[0] == 204
    ticks = bus.on(WatchTick.EVENT_TYPE)
    assert len(ticks) == 2 and ticks[0].attributes["ce-id"] == ticks[1].attributes["ce-id"]


def test_stage_failed_belongs_to_the_run_of_the_failed_event(bus):
    make_endpoint(bus, RecordingHandler(error=RuntimeError("boom"))).handle_message(message(), SUBSCRIPTION)
    assert bus.on(StageFailed.EVENT_TYPE)[0].attributes["run_id"] == GOOD_ATTRIBUTES["run_id"]


def test_duplicates_of_one_event_are_handled_one_at_a_time(bus):
    """Concurrent deliveries of one ce-id must not overlap, or each stage's 'already done?' check races."""
    import threading
    import time as clock

    active, overlaps = [], []

    def slow(event, envelope):
        active.append(envelope.id)
        if len(active) > 1:
            overlaps.append(list(active))
        clock.sleep(0.05)
        active.remove(envelope.id)
        return []

    endpoint = make_endpoint(bus, slow)
    threads = [threading.Thread(target=endpoint.handle_message, args=(message(), SUBSCRIPTION)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


def test_a_scheduler_tick_with_fixed_attributes_takes_its_identity_from_pubsub(bus):
    """Cloud Scheduler sends the same attributes every time: id, time and run come from the message."""
    fixed = {k: v for k, v in GOOD_ATTRIBUTES.items() if k not in ("ce-id", "ce-time", "run_id")}
    handler = RecordingHandler()
    endpoint = make_endpoint(bus, handler)
    pushed = message(attributes=fixed, message_id="777")
    pushed["publishTime"] = "2026-11-22T07:00:00.123Z"
    status, _ = endpoint.handle_message(pushed, SUBSCRIPTION)
    assert status == 204
    (event, envelope), = handler.calls
    assert envelope.id == "pubsub-777" and envelope.run_id == "pubsub-777"
    assert envelope.time == "2026-11-22T07:00:00.123Z"

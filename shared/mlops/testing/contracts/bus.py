"""The contract of the event-bus port (`mlops.ports.bus`), written once.

`EventBusContract` needs two fixtures: `bus`, an EventBus on topics provisioned as `mlops up`
provisions them (one per event type with its Avro schema, JSON encoding; the dead-letter topic
without one), fresh for each test; and `received`, which reads back what reached a topic: a
callable `(topic, wanted) -> [(data, attributes)]` that waits until `wanted` messages arrived (or a
few seconds passed). What is pinned is what Pub/Sub's emulator does, read back by a subscription.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from mlops.core.events import EVENT_CLASSES, DataReady, Envelope, ModelTrained, WatchTick, decode, encode
from mlops.core.events.envelope import new_envelope
from mlops.core.topology import DEAD_LETTER_TOPIC
from mlops.ports.bus import (
    MAX_PUBLISH_REQUEST_BYTES,
    SCHEMA_ATTRIBUTES,
    SCHEMA_ENCODING_ATTRIBUTE,
    SCHEMA_NAME_ATTRIBUTE,
    SCHEMA_REVISION_ATTRIBUTE,
    EventBus,
    MessageRefused,
    TopicNotFound,
)

Delivered = tuple[bytes, dict[str, str]]
Received = Callable[[str, int], list[Delivered]]
RESULT_TIMEOUT_S = 10.0

DATA_READY = DataReady.EVENT_TYPE
GOOD = json.loads(encode(DataReady.example()))


def payload(**changes: object) -> bytes:
    """data.ready bytes with fields changed (`...` removes one)."""
    document = dict(GOOD)
    for name, value in changes.items():
        if value is ...:
            document.pop(name)
        else:
            document[name] = value
    return json.dumps(document).encode()


def split_schema_attributes(attributes: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the attributes as sent, those Pub/Sub added for the topic's schema)."""
    sent = {k: v for k, v in attributes.items() if k not in SCHEMA_ATTRIBUTES}
    return sent, {k: v for k, v in attributes.items() if k in SCHEMA_ATTRIBUTES}


def failure(future: Future[str]) -> BaseException | None:
    """What the future failed with (None if it resolved)."""
    try:
        future.result(timeout=RESULT_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - the caller asserts on the type
        return error
    return None


class EventBusContract:
    """Every EventBus: typed events with their envelope, and raw bytes checked by the topic's schema."""

    @pytest.fixture
    def bus(self) -> EventBus:
        raise NotImplementedError("a concrete contract test class provides the `bus` fixture")

    @pytest.fixture
    def received(self) -> Received:
        raise NotImplementedError("a concrete contract test class provides the `received` fixture")

    @staticmethod
    def marker(bus: EventBus) -> bytes:
        """Publish one good data.ready after something that must not arrive: reading until it is
        there proves the earlier one was not delivered, without waiting out a timeout."""
        data = payload(pipeline="marker")
        bus.publish_raw(DATA_READY, data, {"marker": "yes"}).result(timeout=RESULT_TIMEOUT_S)
        return data

    def test_it_implements_the_port(self, bus: EventBus) -> None:
        assert isinstance(bus, EventBus)

    def test_an_event_arrives_with_its_envelope_as_attributes(self, bus: EventBus, received: Received) -> None:
        event = DataReady.example()
        envelope = new_envelope(event, "contract", run_id="run-1", causation_id="evt-0")
        message_id = bus.publish(event, envelope).result(timeout=RESULT_TIMEOUT_S)
        assert isinstance(message_id, str) and message_id
        [(data, attributes)] = received(DATA_READY, 1)
        assert data == encode(event)
        sent, _ = split_schema_attributes(attributes)
        assert sent == envelope.to_attributes()
        assert decode(DATA_READY, data) == event and Envelope.from_attributes(sent) == envelope

    def test_a_message_that_passed_a_schema_carries_pubsubs_schema_attributes(self, bus: EventBus,
                                                                             received: Received) -> None:
        # A consumer sees them (its envelope keeps them in `extra`): the fake must add them too.
        event = WatchTick.example()
        bus.publish(event, new_envelope(event, "contract")).result(timeout=RESULT_TIMEOUT_S)
        [(_, attributes)] = received(WatchTick.EVENT_TYPE, 1)
        _, added = split_schema_attributes(attributes)
        assert set(added) == set(SCHEMA_ATTRIBUTES)
        assert re.fullmatch(rf"projects/[^/]+/schemas/{re.escape(WatchTick.EVENT_TYPE)}", added[SCHEMA_NAME_ATTRIBUTE])
        assert added[SCHEMA_ENCODING_ATTRIBUTE] == "JSON" and added[SCHEMA_REVISION_ATTRIBUTE]

    def test_every_event_type_is_accepted_on_its_topic(self, bus: EventBus, received: Received) -> None:
        # Records in arrays, maps, unions: each schema's shapes as the codec writes them.
        for cls in EVENT_CLASSES:
            event = cls.example()
            bus.publish(event, new_envelope(event, "contract")).result(timeout=RESULT_TIMEOUT_S)
        for cls in EVENT_CLASSES:
            assert [data for data, _ in received(cls.EVENT_TYPE, 1)] == [encode(cls.example())], cls.EVENT_TYPE

    def test_each_message_has_its_own_id(self, bus: EventBus, received: Received) -> None:
        events = [DataReady.example(), DataReady.example().model_copy(update={"data_version": "d0003"})]
        ids = [bus.publish(e, new_envelope(e, "contract")).result(timeout=RESULT_TIMEOUT_S) for e in events]
        assert len(set(ids)) == 2
        assert sorted(data for data, _ in received(DATA_READY, 2)) == sorted(encode(e) for e in events)

    def test_an_envelope_of_another_event_type_is_refused_at_once(self, bus: EventBus, received: Received) -> None:
        event = DataReady.example()
        wrong = new_envelope(ModelTrained.example(), "contract")
        with pytest.raises(ValueError):
            bus.publish(event, wrong)
        marker = self.marker(bus)
        assert [data for data, _ in received(DATA_READY, 1)] == [marker]

    @pytest.mark.parametrize("data", [
        pytest.param(payload(pipeline=...), id="a-required-field-missing"),
        pytest.param(payload(drift_score=...), id="a-field-with-a-default-missing"),
        pytest.param(payload(total_rows="240"), id="a-long-as-a-string"),
        pytest.param(payload(drift_score=0.3), id="a-union-value-not-wrapped"),
        pytest.param(payload(drift_score={"string": "0.3"}), id="a-union-branch-it-does-not-have"),
        pytest.param(b'["not", "a", "record"]', id="not-a-record"),
        pytest.param(b"\x00 not json", id="not-json"),
    ])
    def test_bytes_that_do_not_fit_the_topic_schema_are_refused(self, bus: EventBus, received: Received,
                                                                data: bytes) -> None:
        assert isinstance(failure(bus.publish_raw(DATA_READY, data, {"ce-type": DATA_READY})), MessageRefused)
        marker = self.marker(bus)
        assert [data for data, _ in received(DATA_READY, 1)] == [marker]

    def test_bytes_that_fit_arrive_as_they_are(self, bus: EventBus, received: Received) -> None:
        # A wrapped union value, and a field the schema does not know (Avro's JSON decoding skips it).
        data = payload(drift_score={"double": 0.3}, added_later="x")
        attributes = {"ce-type": DATA_READY, "replay_of": "evt-9"}
        assert bus.publish_raw(DATA_READY, data, attributes).result(timeout=RESULT_TIMEOUT_S)
        [(arrived, arrived_attributes)] = received(DATA_READY, 1)
        assert (arrived, split_schema_attributes(arrived_attributes)[0]) == (data, attributes)
        assert decode(DATA_READY, data) == DataReady.example().model_copy(update={"drift_score": 0.3})

    def test_the_dead_letter_topic_takes_any_bytes(self, bus: EventBus, received: Received) -> None:
        data, attributes = b"\x00\xff not an event", {"dead_letter_reason": "poison", "dead_letter_stage": "trainer"}
        assert bus.publish_raw(DEAD_LETTER_TOPIC, data, attributes).result(timeout=RESULT_TIMEOUT_S)
        assert received(DEAD_LETTER_TOPIC, 1) == [(data, attributes)]  # no schema, nothing added

    def test_a_message_larger_than_a_publish_request_may_be_is_refused(self, bus: EventBus,
                                                                      received: Received) -> None:
        # Over by the topic's name and the framing alone: the data by itself is exactly the limit.
        too_large = b"x" * MAX_PUBLISH_REQUEST_BYTES
        outcome = failure(bus.publish_raw(DEAD_LETTER_TOPIC, too_large, {"dead_letter_reason": "big"}))
        assert isinstance(outcome, MessageRefused) and str(MAX_PUBLISH_REQUEST_BYTES) in str(outcome)
        assert bus.publish_raw(DEAD_LETTER_TOPIC, b"after", {}).result(timeout=RESULT_TIMEOUT_S)
        assert [data for data, _ in received(DEAD_LETTER_TOPIC, 1)] == [b"after"]

    def test_a_topic_that_does_not_exist_fails_the_publish(self, bus: EventBus) -> None:
        outcome = failure(bus.publish_raw("no.such.topic.v1", encode(WatchTick.example()), {}))
        assert isinstance(outcome, TopicNotFound)

    def test_attributes_are_text_and_data_is_bytes(self, bus: EventBus, received: Received) -> None:
        with pytest.raises(TypeError):
            bus.publish_raw(DATA_READY, payload(), {"attempt": 1})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            bus.publish_raw(DATA_READY, payload().decode(), {})  # type: ignore[arg-type]
        marker = self.marker(bus)
        assert [data for data, _ in received(DATA_READY, 1)] == [marker]

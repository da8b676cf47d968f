"""The event-bus port: what every service publishes through.

`mlops.adapters.pubsub.PubSubEventBus` sends to Pub/Sub (or its emulator); the in-memory bus in
`mlops.testing.memory` records messages for unit tests. Both pass `mlops.testing.contracts.bus`.

A topic named after an event type carries that event's Avro schema (JSON encoding) and refuses
bytes that do not fit it; the dead-letter topic has no schema and takes anything. Refusals arrive
through the returned future, as Pub/Sub reports them, with the port's exception types. A message
that passed a topic's schema arrives with the attributes it was sent with plus Pub/Sub's own
`SCHEMA_ATTRIBUTES` (which a consumer's envelope keeps in `extra`).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from mlops.core.events import Envelope, Event, new_envelope

# Added by Pub/Sub to every message of a topic with a schema: the schema's resource name, its
# revision, and the encoding (always JSON here).
SCHEMA_NAME_ATTRIBUTE = "googclient_schemaname"
SCHEMA_REVISION_ATTRIBUTE = "googclient_schemarevisionid"
SCHEMA_ENCODING_ATTRIBUTE = "googclient_schemaencoding"
SCHEMA_ATTRIBUTES = (SCHEMA_NAME_ATTRIBUTE, SCHEMA_REVISION_ATTRIBUTE, SCHEMA_ENCODING_ATTRIBUTE)


# The largest publish request Pub/Sub takes, counted as the request is encoded (the topic's name, the
# message's data and attributes): google-cloud-pubsub refuses a bigger one before sending it
# (MessageTooLargeError; `_SERVER_PUBLISH_MAX_BYTES` in its publisher/_batch/thread.py), and so does the port,
# with MessageRefused. Bytes of data a message can carry are a little fewer.
MAX_PUBLISH_REQUEST_BYTES = 10_000_000


class MessageRefused(ValueError):
    """The topic refused the message: its bytes do not fit the topic's schema, or the message is larger
    than a publish request may be (MAX_PUBLISH_REQUEST_BYTES)."""


class TopicNotFound(LookupError):
    """No topic of that name (topics exist only once provisioned)."""


@runtime_checkable
class EventBus(Protocol):
    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        """Send a typed event with its envelope (as Pub/Sub attributes) to the topic named by its
        type; the future resolves to the message id. An envelope of another event type raises
        ValueError at once, and nothing is sent."""
        ...

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        """Send bytes as they are (dead letters, replays of archived messages); the future resolves
        to the message id, or fails with MessageRefused or TopicNotFound."""
        ...


PUBLISH_TIMEOUT_S = 30.0


def publish_new(bus: EventBus, event: Event, service: str, *, run_id: str | None = None, replay_of: str = "",
                timeout: float = PUBLISH_TIMEOUT_S) -> str:
    """Publish an event that starts from nothing (a tick, a CLI command, a replay) and wait until
    the bus has it; returns its event id (`ce-id`). The event was validated when it was built."""
    envelope = new_envelope(event, service, run_id=run_id, replay_of=replay_of)
    bus.publish(event, envelope).result(timeout=timeout)
    return envelope.id

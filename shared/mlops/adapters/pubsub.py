"""The event-bus port on Pub/Sub (or its emulator): validate, encode, attach the envelope, send.

A payload that does not fit its schema never leaves the process: building the event lists every
problem at once (`EventValidationError`). Pub/Sub (and the emulator) check the schema again at the
topic, so a client that bypasses this still cannot put a bad event on the bus; that refusal (and a
missing topic) reaches the caller through the future as the port's `MessageRefused` / `TopicNotFound`.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.api_core.exceptions import InvalidArgument, NotFound
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError
from google.cloud.pubsub_v1.types import BatchSettings
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from mlops.core.events import Envelope, Event, encode
from mlops.ports.bus import MessageRefused, TopicNotFound


def topic_path(project: str, topic_id: str) -> str:
    return f"projects/{project}/topics/{topic_id}"


def _in_port_terms(sent: Future[str], topic_id: str) -> Future[str]:
    """A future settled as `sent` is, with Pub/Sub's refusals renamed to the port's exceptions."""
    settled: Future[str] = Future()

    def settle(done: Future[str]) -> None:
        if done.cancelled():
            settled.cancel()
            return
        error = done.exception()
        if error is None:
            settled.set_result(done.result())
        elif isinstance(error, InvalidArgument):
            settled.set_exception(MessageRefused(f"{topic_id} refused the message: {error.message}"))
        elif isinstance(error, NotFound):
            settled.set_exception(TopicNotFound(f"topic {topic_id!r} not found: {error.message}"))
        else:
            settled.set_exception(error)

    sent.add_done_callback(settle)
    return settled


def publisher_client(emulator_host: str | None = None, **options: Any) -> pubsub_v1.PublisherClient:
    """A publisher for Pub/Sub, or for the emulator at `emulator_host` (`host:port`) over a plain
    gRPC channel, which is what the client itself builds when PUBSUB_EMULATOR_HOST is set."""
    if emulator_host:
        channel = grpc.insecure_channel(emulator_host)
        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel), **options)
    return pubsub_v1.PublisherClient(**options)


class PubSubEventBus:
    """EventBus over google-cloud-pubsub; the topic of an event is its event type."""

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None, max_latency: float = 0.005,
                 emulator_host: str | None = None):
        self.project = project
        # A short batch window: stage outputs are few and someone is waiting on them; the
        # predictor's traffic batches itself before it gets here.
        self._client = client or publisher_client(
            emulator_host, batch_settings=BatchSettings(max_latency=max_latency, max_messages=1000))

    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        if envelope.type != event.EVENT_TYPE:
            raise ValueError(f"envelope type {envelope.type!r} does not match event {event.EVENT_TYPE!r}")
        return self.publish_raw(event.EVENT_TYPE, encode(event), envelope.to_attributes())

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        try:
            sent = self._client.publish(topic_path(self.project, topic_id), data, **attributes)
        except MessageTooLargeError as error:  # raised by the client before sending: through the future, as a refusal
            refused: Future[str] = Future()
            refused.set_exception(MessageRefused(f"{topic_id} refused the message: {error}"))
            return refused
        return _in_port_terms(sent, topic_id)

    def close(self) -> None:
        self._client.stop()

"""The event bus in memory: every published message recorded, in order, with its decoded event."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from mlops.core.events import Envelope, Event, encode


def _done(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


@dataclass
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]
    event: Event | None = None


@dataclass
class InMemoryEventBus:
    messages: list[Published] = field(default_factory=list)
    fail_with: Exception | None = None

    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        future = self.publish_raw(event.EVENT_TYPE, encode(event), envelope.to_attributes())
        self.messages[-1].event = event
        return future

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(Published(topic_id, data, dict(attributes)))
        return _done(str(len(self.messages)))

    def on(self, topic: str) -> list[Published]:
        return [m for m in self.messages if m.topic == topic]

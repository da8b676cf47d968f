"""The event-bus port: what every service publishes through.

`mlops.adapters.pubsub.PubSubEventBus` sends to Pub/Sub (or its emulator); the in-memory bus in
`mlops.testing.memory` records messages for unit tests. Both pass `mlops.testing.contracts.bus`.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from mlops.core.events import Envelope, Event


class EventBus(Protocol):
    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        """Send a typed event with its envelope; the future resolves to the message id."""
        ...

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        """Send bytes as they are (dead letters, replays of archived messages)."""
        ...

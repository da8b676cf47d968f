"""The event-bus contract, run against each implementation.

- in memory (`mlops.testing.memory.InMemoryEventBus`), what the unit tests use;
- the Pub/Sub adapter (`mlops.adapters.pubsub.PubSubEventBus`) on Google's Pub/Sub emulator, each
  test in a project of its own with topics, schemas and archive subscriptions provisioned by
  `mlops.stack.provision.provision_pubsub` as `mlops up` does; what arrived is pulled from the
  topic's archive subscription.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops.adapters.pubsub import PubSubEventBus
from mlops.core.topology import archive_subscription
from mlops.ports.bus import EventBus
from mlops.stack.emulators import PubSubEmulator
from mlops.testing.contracts.bus import Delivered, EventBusContract, Received
from mlops.testing.memory import InMemoryEventBus
from tests.integration.harness import pull, unique_project

PULL_TIMEOUT_S = 10.0


class TestInMemoryEventBus(EventBusContract):
    @pytest.fixture
    def bus(self) -> InMemoryEventBus:
        return InMemoryEventBus()

    @pytest.fixture
    def received(self, bus: InMemoryEventBus) -> Received:
        def on(topic: str, wanted: int) -> list[Delivered]:
            return [(m.data, m.attributes) for m in bus.on(topic)]

        return on


@pytest.mark.integration
class TestPubSubEventBus(EventBusContract):
    @pytest.fixture
    def project(self, pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
        from mlops.stack.provision import provision_pubsub

        for key, value in pubsub_emulator.env().items():
            monkeypatch.setenv(key, value)
        project = unique_project()
        provision_pubsub(project, {})
        return project

    @pytest.fixture
    def bus(self, project: str, pubsub_emulator: PubSubEmulator) -> Iterator[EventBus]:
        bus = PubSubEventBus(project, emulator_host=pubsub_emulator.endpoint)
        yield bus
        bus.close()

    @pytest.fixture
    def received(self, project: str) -> Received:
        def pulled(topic: str, wanted: int) -> list[Delivered]:
            return [(m.data, dict(m.attributes)) for m in pull(project, archive_subscription(topic), wanted,
                                                               timeout=PULL_TIMEOUT_S)]

        return pulled

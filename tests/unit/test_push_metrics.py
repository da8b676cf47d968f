"""The push endpoint's metrics: each stage failure it reports is also counted as `stage_failed`
(labels service, event_type, permanent), the metric the `stage.failed` rate alert watches."""

from __future__ import annotations

from mlops.core.errors import PermanentError
from mlops.core.events import StageFailed, WatchTick
from mlops.testing.memory import InMemoryEventBus, InMemoryMetrics

from .conftest import FlakyBus
from .test_push_endpoint import GOOD_ATTRIBUTES, SUBSCRIPTION, RecordingHandler, make_endpoint, message


def stage_failed(metrics: InMemoryMetrics) -> list[tuple[float, dict[str, str]]]:
    return [(p.value, p.labels) for p in metrics.points if p.name == "stage_failed"]


def test_a_transient_failure_counts_once_as_not_permanent():
    metrics = InMemoryMetrics()
    endpoint = make_endpoint(InMemoryEventBus(), RecordingHandler(error=TimeoutError("slow")), metrics=metrics)
    status, _ = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 503
    assert stage_failed(metrics) == [
        (1.0, {"service": "data-watcher", "event_type": WatchTick.EVENT_TYPE, "permanent": "false"})]


def test_a_dead_lettered_message_counts_once_as_permanent():
    metrics = InMemoryMetrics()
    endpoint = make_endpoint(InMemoryEventBus(), RecordingHandler(error=PermanentError("poison")), metrics=metrics)
    status, _ = endpoint.handle_message(message(), SUBSCRIPTION)
    assert status == 200
    assert stage_failed(metrics) == [
        (1.0, {"service": "data-watcher", "event_type": WatchTick.EVENT_TYPE, "permanent": "true"})]


def test_a_message_without_a_type_counts_under_unknown():
    metrics = InMemoryMetrics()
    attributes = {k: v for k, v in GOOD_ATTRIBUTES.items() if k != "ce-type"}
    endpoint = make_endpoint(InMemoryEventBus(), RecordingHandler(), metrics=metrics)
    status, _ = endpoint.handle_message(message(attributes), SUBSCRIPTION)
    assert status == 200
    assert stage_failed(metrics) == [(1.0, {"service": "data-watcher", "event_type": "unknown", "permanent": "true"})]


def test_the_failure_is_counted_even_when_stage_failed_cannot_be_published():
    metrics = InMemoryMetrics()
    bus = FlakyBus(failing_topics={StageFailed.EVENT_TYPE})
    make_endpoint(bus, RecordingHandler(error=RuntimeError("boom")), metrics=metrics).handle_message(message(), "s")
    assert len(stage_failed(metrics)) == 1


def test_a_success_counts_no_failure():
    metrics = InMemoryMetrics()
    status, _ = make_endpoint(InMemoryEventBus(), RecordingHandler(), metrics=metrics).handle_message(message(), "s")
    assert status == 204
    assert stage_failed(metrics) == []

"""Predictor: prediction logging off the request path (the batcher). Each serving container serves
one model version; the traffic split between versions is the Vertex AI endpoint's (tests/integration)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from mlops.core.events import Envelope, Event, Prediction, PredictionMade, decode
from mlops.testing.memory import InMemoryEventBus
from predictor.batcher import PredictionBatcher

# ---------------------------------------------------------------------------------------------- batcher

def prediction(i: int) -> Prediction:
    return Prediction(request_id=f"req-{i}", model_version="1", features="{}", predicted_label="1", score=0.9,
                      latency_ms=0.5, predicted_at="2026-11-22T06:31:00.000000Z")


@dataclass
class FailingFirstBus(InMemoryEventBus):
    """Fails its first `failures` publishes (alternately raising and returning a failed future)."""

    failures: int = 0
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        with self.lock:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                if self.failures % 2:
                    raise ConnectionError("pubsub unavailable")
                future: Future[str] = Future()
                future.set_exception(ConnectionError("pubsub unavailable"))
                return future
            return super().publish(event, envelope)


def logged(bus: InMemoryEventBus) -> list[tuple[str, list[str]]]:
    out = []
    for message in bus.on(PredictionMade.EVENT_TYPE):
        event = decode(PredictionMade.EVENT_TYPE, message.data)
        out.append((event.pipeline, [p.request_id for p in event.predictions]))
    return out


def wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def test_predictions_are_published_in_batches_per_pipeline(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=0.02, max_batch=100)
    try:
        batcher.add("breast-cancer", [prediction(1), prediction(2)])
        batcher.add("iris", [prediction(3)])
        batcher.add("breast-cancer", [prediction(4)])
        wait_until(lambda: batcher.published == 4)
    finally:
        batcher.close(timeout=2)
    assert sorted(logged(bus)) == [("breast-cancer", ["req-1", "req-2", "req-4"]), ("iris", ["req-3"])]
    for message in bus.messages:
        assert message.attributes["ce-source"] == "//mlops/services/predictor"
        assert message.attributes["pipeline"] in {"breast-cancer", "iris"}


def test_a_full_batch_is_published_without_waiting_for_the_interval(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=3)
    try:
        batcher.add("p1", [prediction(i) for i in range(3)])
        wait_until(lambda: batcher.published == 3, timeout=1.0)
    finally:
        batcher.close(timeout=2)


def test_batches_never_exceed_max_batch(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=4)
    batcher.close(timeout=2)  # the thread is gone: flush by hand from here on
    batcher.add("p1", [prediction(i) for i in range(10)])
    batcher.flush()
    assert [ids for _, ids in logged(bus)] == [[f"req-{i}" for i in range(0, 4)], [f"req-{i}" for i in range(4, 8)],
                                                ["req-8", "req-9"]]


def test_a_failed_publish_is_retried_without_losing_or_reordering_predictions():
    bus = FailingFirstBus(failures=3)
    batcher = PredictionBatcher(bus, "predictor", interval=0.01, max_batch=100)
    try:
        batcher.add("p1", [prediction(i) for i in range(5)])
        wait_until(lambda: batcher.published == 5)
        batcher.add("p1", [prediction(5)])
        wait_until(lambda: batcher.published == 6)
    finally:
        batcher.close(timeout=2)
    assert batcher.failed_publishes == 3
    ids = [i for _, batch in logged(bus) for i in batch]
    assert ids == [f"req-{i}" for i in range(6)]  # each exactly once, in order
    assert batcher.pending == 0


def test_close_drains_what_is_waiting(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.add("p1", [prediction(i) for i in range(7)])
    assert batcher.pending == 7
    started = time.monotonic()
    batcher.close(timeout=2)
    assert time.monotonic() - started < 1.0  # woken, not waiting out the interval
    assert batcher.pending == 0 and batcher.published == 7
    assert [ids for _, ids in logged(bus)] == [[f"req-{i}" for i in range(7)]]


def test_close_keeps_predictions_it_could_not_publish():
    bus = FailingFirstBus(failures=100)
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.add("p1", [prediction(i) for i in range(4)])
    batcher.close(timeout=2)
    assert batcher.pending == 4 and batcher.published == 0

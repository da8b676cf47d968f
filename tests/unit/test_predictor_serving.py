"""Predictor: prediction logging off the request path (the batcher). Each serving container serves
one model version; the traffic split between versions is the Vertex AI endpoint's (tests/integration)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest

from mlops.core.events import Prediction, PredictionMade, decode, encode
from mlops.core.events.codec import encode_prediction
from mlops.core.events.envelope import new_envelope
from mlops.ports.bus import MAX_PUBLISH_REQUEST_BYTES, MessageRefused
from mlops.testing.memory import InMemoryEventBus
from predictor.batcher import MAX_EVENT_BYTES, PredictionBatcher, PredictionTooLarge

# ---------------------------------------------------------------------------------------------- batcher

def prediction(i: int) -> Prediction:
    return Prediction(request_id=f"req-{i}", model_version="1", features="{}", predicted_label="1", score=0.9,
                      latency_ms=0.5, predicted_at="2026-11-22T06:31:00.000000Z")


@dataclass
class FailingFirstBus(InMemoryEventBus):
    """Fails its first `failures` publishes (alternately raising and returning a failed future). The
    batcher publishes the bytes it joined (`publish_raw`)."""

    failures: int = 0
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        with self.lock:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                if self.failures % 2:
                    raise ConnectionError("pubsub unavailable")
                future: Future[str] = Future()
                future.set_exception(ConnectionError("pubsub unavailable"))
                return future
            return super().publish_raw(topic_id, data, attributes)


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


# ---------------------------------------------------------------------------------------------- byte cap

def wide_prediction(i: int, width: int = 2000) -> Prediction:
    """A prediction with ~`width` bytes of features, quotes and non-ASCII among them (escaped again in the event)."""
    text = ('a"é' * width)[:width]
    return Prediction(request_id=f"wide-{i:05d}", model_version="1", features=json.dumps({"text": text, "n": i}),
                      predicted_label="1", score=0.9, latency_ms=0.5, predicted_at="2026-11-22T06:31:00.000000Z")


def test_wide_rows_are_split_over_events_under_the_byte_cap_losing_and_reordering_nothing(bus):
    rows = [wide_prediction(i) for i in range(5000)]
    # Why the cap: those rows as one event are more than Pub/Sub takes in one publish, and the bus refuses them.
    whole = PredictionMade(pipeline="p1", predictions=rows)
    assert len(encode(whole)) > MAX_PUBLISH_REQUEST_BYTES
    too_large = bus.publish(whole, new_envelope(whole, "predictor"))
    assert isinstance(too_large.exception(timeout=1), MessageRefused)

    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=5000)
    batcher.close(timeout=2)  # flush by hand
    batcher.add("p1", rows[:2500])
    batcher.add("p1", rows[2500:])
    batcher.flush()
    sent = bus.on(PredictionMade.EVENT_TYPE)
    assert batcher.failed_publishes == 0 and batcher.pending == 0 and batcher.published == 5000
    assert len(sent) == batcher.published_events > 2
    assert all(len(m.data) <= MAX_EVENT_BYTES for m in sent)
    widest = max(len(encode_prediction(p)) for p in rows)
    assert all(len(m.data) > MAX_EVENT_BYTES - widest - 2 for m in sent[:-1])  # each as full as a row allows
    assert [i for _, ids in logged(bus) for i in ids] == [p.request_id for p in rows]
    # The joined bytes are exactly what the codec writes for each event.
    for message in sent:
        assert encode(decode(PredictionMade.EVENT_TYPE, message.data)) == message.data


def test_an_events_worth_of_bytes_is_published_without_waiting_for_the_interval(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=5000)
    try:
        per_row = len(encode_prediction(wide_prediction(0)))
        batcher.add("p1", [wide_prediction(i) for i in range(MAX_EVENT_BYTES // per_row + 1)])
        wait_until(lambda: batcher.published_events >= 1, timeout=5.0)
    finally:
        batcher.close(timeout=5)


def test_a_prediction_alone_over_the_cap_is_refused_and_none_of_its_request_is_queued(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=5000)
    batcher.close(timeout=2)
    huge = wide_prediction(1, width=MAX_EVENT_BYTES // 2)  # each '"' and 'é' grows when escaped again
    with pytest.raises(PredictionTooLarge, match=f"prediction 1 is .* at most {MAX_EVENT_BYTES} bytes"):
        batcher.add("p1", [wide_prediction(0), huge])
    assert batcher.pending == 0
    batcher.add("p1", [wide_prediction(2, width=MAX_EVENT_BYTES // 8)])  # large but under: one event
    batcher.flush()
    assert [ids for _, ids in logged(bus)] == [["wide-00002"]]


def test_the_cap_leaves_room_under_pubsubs_publish_request_limit(bus):
    with pytest.raises(ValueError, match="no room"):
        PredictionBatcher(bus, "predictor", max_event_bytes=MAX_PUBLISH_REQUEST_BYTES)

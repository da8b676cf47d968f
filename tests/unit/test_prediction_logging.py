"""Prediction logs keyed on the request id: the predictor's batches keep their event id when they are
re-published, and the inference-logger never writes a request id twice, whatever the event id."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from inference_logger.handler import InferenceLogger
from mlops.core.events import Envelope, Prediction, PredictionMade, decode
from mlops.core.events.envelope import new_envelope
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ports.warehouse import WarehouseError
from mlops.testing.memory import InMemoryEventBus, InMemoryWarehouse
from mlops.testing.memory.bus import Published
from predictor.batcher import LogBacklogFull, PredictionBatcher, batch_event_id


def prediction(request_id: str, version: str = "1") -> Prediction:
    return Prediction(request_id=request_id, model_version=version, features="{}", predicted_label="1", score=0.9,
                      latency_ms=0.5, predicted_at="2026-11-22T06:31:00.000000Z")


def made(pipeline: str, *ids: str) -> PredictionMade:
    return PredictionMade(pipeline=pipeline, predictions=[prediction(i) for i in ids])


@dataclass
class LandsButTimesOut(InMemoryEventBus):
    """The publish lands, but the publisher is told it failed (a timed-out future): the case that
    used to double rows, because the batch went out again under a new event id."""

    failures: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        landed = super().publish_raw(topic_id, data, attributes)
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                failed: Future[str] = Future()
                failed.set_exception(TimeoutError("publish timed out"))
                return failed
        return landed


def request_ids(message: Published) -> list[str]:
    return [p.request_id for p in decode(PredictionMade.EVENT_TYPE, message.data).predictions]


# ------------------------------------------------------------------------------------ the batcher

def test_a_batch_event_id_depends_on_its_content_only():
    first = [prediction("a"), prediction("b")]
    assert batch_event_id("p", first) == batch_event_id("p", list(reversed(first)))
    assert batch_event_id("p", first) != batch_event_id("q", first)
    assert batch_event_id("p", first) != batch_event_id("p", [prediction("a")])


def test_a_timed_out_batch_is_republished_unchanged_with_the_same_event_id():
    bus = LandsButTimesOut()
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.close(timeout=2)  # flush by hand
    batcher.add("p", [prediction("a"), prediction("b")])
    batcher.flush()  # lands, but the batcher is told it failed
    batcher.add("p", [prediction("c")])  # must not join the batch being retried
    batcher.flush()
    sent = bus.on(PredictionMade.EVENT_TYPE)
    assert [request_ids(m) for m in sent] == [["a", "b"], ["a", "b"], ["c"]]
    assert sent[0].attributes["ce-id"] == sent[1].attributes["ce-id"] != sent[2].attributes["ce-id"]
    assert batcher.pending == 0 and batcher.published == 3 and batcher.failed_publishes == 1


def test_a_failed_batch_goes_first_and_nothing_overtakes_it():
    bus = LandsButTimesOut(failures=0)
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=2)
    batcher.close(timeout=2)
    original = bus.publish_raw
    calls = {"n": 0}

    def first_call_fails(topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("down")
        return original(topic_id, data, attributes)

    bus.publish_raw = first_call_fails  # type: ignore[method-assign]
    batcher.add("p", [prediction(i) for i in "abcde"])
    batcher.flush()  # [a b] fails: nothing after it goes out
    assert bus.on(PredictionMade.EVENT_TYPE) == [] and batcher.pending == 5
    batcher.flush()
    assert [request_ids(m) for m in bus.on(PredictionMade.EVENT_TYPE)] == [["a", "b"], ["c", "d"], ["e"]]


def test_the_backlog_is_bounded():
    batcher = PredictionBatcher(InMemoryEventBus(), "predictor", interval=30, max_batch=500, max_pending=3)
    batcher.close(timeout=2)
    batcher.add("p", [prediction("a"), prediction("b"), prediction("c")])
    with pytest.raises(LogBacklogFull, match="3 predictions are waiting"):
        batcher.add("p", [prediction("d")])
    batcher.flush()
    batcher.add("p", [prediction("d")])


def test_durable_tickets_are_released_only_by_the_publish_of_all_their_predictions():
    bus = InMemoryEventBus()
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=2, durable=True)
    batcher.close(timeout=2)  # no thread: nothing is published unless flushed here
    ticket = batcher.add("p", [prediction("a"), prediction("b"), prediction("c")])
    assert ticket is not None and not ticket.wait(0)
    batcher.flush()
    assert ticket.wait(0) and len(bus.on(PredictionMade.EVENT_TYPE)) == 2


def test_durable_requests_share_the_next_flush():
    bus = InMemoryEventBus()
    batcher = PredictionBatcher(bus, "predictor", interval=0.05, max_batch=500, durable=True)
    try:
        tickets = [batcher.add("p", [prediction(i)]) for i in "abc"]
        assert all(ticket is not None and ticket.wait(5) for ticket in tickets)
        assert [request_ids(m) for m in bus.on(PredictionMade.EVENT_TYPE)] == [["a", "b", "c"]]
    finally:
        batcher.close(timeout=2)


def test_close_publishes_what_failed_before_and_what_waits():
    bus = LandsButTimesOut(failures=1)
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.add("p", [prediction("a")])
    batcher.flush()  # told it failed: kept
    batcher.add("p", [prediction("b")])
    batcher.close(timeout=2)
    assert batcher.pending == 0
    assert [request_ids(m) for m in bus.on(PredictionMade.EVENT_TYPE)] == [["a"], ["a"], ["b"]]


# ------------------------------------------------------------------------------------ the inference-logger

@pytest.fixture
def logger(warehouse: InMemoryWarehouse) -> InferenceLogger:
    return InferenceLogger(warehouse)


def logged_rows(warehouse: InMemoryWarehouse) -> list[dict]:
    return warehouse.tables[warehouse.qualified(PREDICTIONS_TABLE)]


def rows(warehouse: InMemoryWarehouse) -> list[tuple[str, str]]:
    return sorted((r["pipeline"], r["request_id"]) for r in logged_rows(warehouse))


def envelope_of(event: PredictionMade, event_id: str) -> Envelope:
    return new_envelope(event, "predictor", id=event_id)


def test_a_redelivered_batch_writes_nothing_twice(logger: InferenceLogger, warehouse: InMemoryWarehouse):
    batch = made("p", "a", "b")
    for _ in range(2):
        assert logger.handle(batch, envelope_of(batch, "evt-1")) == []
    assert rows(warehouse) == [("p", "a"), ("p", "b")]


def test_a_batch_republished_under_another_event_id_writes_only_new_request_ids(
        logger: InferenceLogger, warehouse: InMemoryWarehouse):
    logger.handle(made("p", "a", "b"), envelope_of(made("p", "a", "b"), "evt-1"))
    again = made("p", "b", "a", "c")  # the old batch, re-formed with one new prediction
    logger.handle(again, envelope_of(again, "evt-2"))
    assert rows(warehouse) == [("p", "a"), ("p", "b"), ("p", "c")]
    assert [r["event_id"] for r in logged_rows(warehouse) if r["request_id"] == "c"] == ["evt-2"]


def test_a_request_id_twice_in_one_batch_is_one_row(logger: InferenceLogger, warehouse: InMemoryWarehouse):
    batch = made("p", "a", "a", "b")
    logger.handle(batch, envelope_of(batch, "evt-1"))
    assert rows(warehouse) == [("p", "a"), ("p", "b")]


def test_request_ids_are_per_pipeline(logger: InferenceLogger, warehouse: InMemoryWarehouse):
    logger.handle(made("p", "a"), envelope_of(made("p", "a"), "evt-1"))
    logger.handle(made("q", "a"), envelope_of(made("q", "a"), "evt-2"))
    assert rows(warehouse) == [("p", "a"), ("q", "a")]


def test_overlapping_batches_pushed_at_once_write_each_request_id_once(
        logger: InferenceLogger, warehouse: InMemoryWarehouse):
    batches = [made("p", *[f"r{j}" for j in range(i, i + 50)]) for i in range(0, 200, 25)]
    threads = [threading.Thread(target=logger.handle, args=(b, envelope_of(b, f"evt-{n}")))
               for n, b in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert rows(warehouse) == sorted(("p", f"r{j}") for j in range(225))


class _SlowWarehouse(InMemoryWarehouse):
    """Holds the first append until released, so pushes pile up behind a write under way."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_next = False

    def insert_rows(self, table, rows, row_ids=None):
        if not self.appends:
            self.entered.set()
            self.release.wait(10)
        self.appends.append(len(rows))
        if self.fail_next:
            self.fail_next = False
            raise WarehouseError("append refused")
        super().insert_rows(table, rows, row_ids)


def test_pushes_arriving_during_a_write_share_the_next_round():
    warehouse = _SlowWarehouse()
    logger = InferenceLogger(warehouse)
    first = made("p", "a")
    leader = threading.Thread(target=logger.handle, args=(first, envelope_of(first, "evt-0")))
    leader.start()
    assert warehouse.entered.wait(10)  # the leader's append is under way: the others queue behind it
    others = [made("p", f"b{i}", "a") for i in range(6)]
    threads = [threading.Thread(target=logger.handle, args=(b, envelope_of(b, f"evt-{i + 1}")))
               for i, b in enumerate(others)]
    for thread in threads:
        thread.start()
    warehouse.release.set()
    for thread in [leader, *threads]:
        thread.join(10)
    assert rows(warehouse) == [("p", "a"), *sorted(("p", f"b{i}") for i in range(6))]
    assert sum(warehouse.appends) == 7 and len(warehouse.appends) < 7  # fewer appends than pushes


def test_a_failed_round_fails_its_pushes_and_writes_nothing_so_a_redelivery_lands_once():
    warehouse = _SlowWarehouse()
    warehouse.release.set()
    warehouse.fail_next = True
    logger = InferenceLogger(warehouse)
    batch = made("p", "a", "b")
    with pytest.raises(WarehouseError):
        logger.handle(batch, envelope_of(batch, "evt-1"))
    assert rows(warehouse) == []
    logger.handle(batch, envelope_of(batch, "evt-1"))  # Pub/Sub's redelivery
    logger.handle(batch, envelope_of(batch, "evt-1"))
    assert rows(warehouse) == [("p", "a"), ("p", "b")]


class _HeldAppends(InMemoryWarehouse):
    """Holds each append until its own release: the test decides when each round's write ends."""

    def __init__(self, appends: int) -> None:
        super().__init__()
        self.entered = [threading.Event() for _ in range(appends)]
        self.release = [threading.Event() for _ in range(appends)]
        self.appends = 0

    def insert_rows(self, table, rows, row_ids=None):
        index, self.appends = self.appends, self.appends + 1
        self.entered[index].set()
        self.release[index].wait(10)
        super().insert_rows(table, rows, row_ids)


def test_a_push_answers_after_its_own_round_not_after_the_rounds_that_follow():
    warehouse = _HeldAppends(2)
    logger = InferenceLogger(warehouse)
    first, second = made("p", "a"), made("p", "b")
    leader = threading.Thread(target=logger.handle, args=(first, envelope_of(first, "evt-1")))
    leader.start()
    assert warehouse.entered[0].wait(10)  # round 1 under way; the second push waits for it
    follower = threading.Thread(target=logger.handle, args=(second, envelope_of(second, "evt-2")))
    follower.start()
    warehouse.release[0].set()
    assert warehouse.entered[1].wait(10)  # round 2 (the second push's) under way, held...
    leader.join(10)
    assert not leader.is_alive()  # ...and the first push has answered without waiting for it
    warehouse.release[1].set()
    follower.join(10)
    assert rows(warehouse) == [("p", "a"), ("p", "b")]


def at(request_id: str, predicted_at: str) -> Prediction:
    return prediction(request_id).model_copy(update={"predicted_at": predicted_at})


def test_the_presence_check_looks_back_one_horizon_from_the_earliest_prediction(warehouse: InMemoryWarehouse):
    logger = InferenceLogger(warehouse, dedupe_horizon=timedelta(hours=1))
    asked: list[tuple[str, datetime] | None] = []
    real = warehouse.present_values

    def watching(table, column, values, where=None, since=None):
        asked.append(since)
        return real(table, column, values, where=where, since=since)

    warehouse.present_values = watching  # type: ignore[method-assign]
    first = PredictionMade(pipeline="p", predictions=[at("a", "2026-11-22T10:00:00Z"), at("b", "2026-11-22T09:30:00")])
    logger.handle(first, envelope_of(first, "e1"))
    assert asked == [("predicted_at", datetime(2026, 11, 22, 8, 30, tzinfo=UTC))]  # no offset: UTC, as the table

    # A client retries "a" 50 minutes later: within the horizon, found, not logged twice.
    retry = PredictionMade(pipeline="p", predictions=[at("a", "2026-11-22T10:50:00Z"), at("c", "2026-11-22T10:50:00Z")])
    logger.handle(retry, envelope_of(retry, "e2"))
    # A redelivery of the first batch a week later: its rows keep their times, so it is found too.
    logger.handle(first, envelope_of(first, "e3"))
    # A retry of "b" 3 hours after it: beyond the horizon, logged as a new row (the documented limit).
    late = PredictionMade(pipeline="p", predictions=[at("b", "2026-11-22T12:30:00Z")])
    logger.handle(late, envelope_of(late, "e4"))
    assert rows(warehouse) == [("p", "a"), ("p", "b"), ("p", "b"), ("p", "c")]

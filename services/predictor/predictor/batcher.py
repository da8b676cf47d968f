"""Prediction logging off the request path: a queue drained by one thread into `prediction.made`.

A request only appends to a deque (no lock, no I/O). Every `interval` seconds, or sooner when
`max_batch` predictions wait, the thread forms chunks (one per pipeline, up to `max_batch`
predictions each) and publishes one event per chunk.

Exactly once downstream: a chunk's event id is derived from its content (uuid5 over the pipeline
and its sorted request ids), and a chunk whose publish failed (or timed out, though it may have
landed) is retried as it was formed, with the same id, before anything newer. The inference-logger
keys rows on the request id, so a chunk that reaches it twice logs nothing twice whatever its id.

What a crash can lose: a graceful stop (SIGTERM, then `close()` at exit) publishes everything first.
A hard crash (SIGKILL, OOM) loses what was waiting: at most `interval` seconds of answered
predictions while Pub/Sub answers, more if it does not (bounded by `max_pending`: above it `add`
refuses, and the predictor answers 503 rather than grow a backlog it could lose).

Durable mode (`durable=True`) is a group commit: `add` returns a `Ticket`, and the request answers
only when its ticket says published, so a crash loses no answered prediction. Flushes keep their
rhythm (every `interval`, or at `max_batch`): each request waits for the next one, at most
`interval` plus one publish. Publishing at once for every request would not be cheaper overall:
each event costs the inference-logger a query and an insert and the archiver another insert, and
at a few hundred requests a second the warehouse falls behind (measured in docs/performance.md),
so durable mode is run with a short interval (0.2 s) rather than none.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

import structlog

from mlops.core.events import Envelope, Prediction, PredictionMade
from mlops.core.events.envelope import new_envelope
from mlops.ports.bus import EventBus

log = structlog.get_logger("predictor.batcher")

BATCH_ID_NAMESPACE = uuid.UUID("0d9c6a51-7a0e-4f43-b3c5-7f2f6d1e8a42")
PUBLISH_TIMEOUT_S = 30.0


class LogBacklogFull(RuntimeError):
    """Too many predictions wait to be published (Pub/Sub unreachable?): refuse new ones."""


def batch_event_id(pipeline: str, predictions: list[Prediction]) -> str:
    """The same chunk always gets the same event id, so a re-publish is a duplicate, not a new batch."""
    seed = "\n".join([pipeline, *sorted(p.request_id for p in predictions)])
    return str(uuid.uuid5(BATCH_ID_NAMESPACE, seed))


class Ticket:
    """A durable request's wait for the publish of all its predictions."""

    def __init__(self, count: int):
        self._left = count
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count == 0:
            self._done.set()

    def published(self, count: int) -> None:
        with self._lock:
            self._left -= count
            if self._left <= 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


@dataclass
class _Chunk:
    pipeline: str
    predictions: list[Prediction]
    tickets: list[Ticket | None]  # one per prediction
    event: PredictionMade = field(init=False)
    envelope: Envelope = field(init=False)

    def seal(self, service: str) -> _Chunk:
        self.event = PredictionMade(pipeline=self.pipeline, predictions=self.predictions)
        self.envelope = new_envelope(self.event, service, id=batch_event_id(self.pipeline, self.predictions))
        return self


class PredictionBatcher:
    def __init__(self, bus: EventBus, service: str, interval: float = 0.1, max_batch: int = 500, *,
                 durable: bool = False, max_pending: int = 50_000):
        self._bus = bus
        self._service = service
        self._interval = interval
        self._max_batch = max_batch
        self._durable = durable
        self._max_pending = max_pending
        self._queue: deque[tuple[str, Prediction, Ticket | None]] = deque()
        self._unsent: deque[_Chunk] = deque()  # formed, publish failed: retried first, as they are
        self._unsent_count = 0  # predictions in _unsent (read by requests without a lock)
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.published = 0
        self.failed_publishes = 0
        self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
        self._thread.start()

    @property
    def durable(self) -> bool:
        return self._durable

    def add(self, pipeline: str, predictions: list[Prediction]) -> Ticket | None:
        """Queue predictions for publishing; in durable mode, the ticket to wait on before answering.
        Raises LogBacklogFull when `max_pending` already wait."""
        if self.pending >= self._max_pending:
            raise LogBacklogFull(f"{self.pending} predictions are waiting to be logged (limit {self._max_pending})")
        ticket = Ticket(len(predictions)) if self._durable else None
        self._queue.extend((pipeline, p, ticket) for p in predictions)
        if len(self._queue) >= self._max_batch:
            self._wake.set()
        return ticket

    @property
    def pending(self) -> int:
        return len(self._queue) + self._unsent_count

    def _form_chunks(self) -> list[_Chunk]:
        by_pipeline: dict[str, _Chunk] = {}
        chunks: list[_Chunk] = []
        for _ in range(min(len(self._queue), self._max_batch * 4)):
            pipeline, prediction, ticket = self._queue.popleft()
            chunk = by_pipeline.get(pipeline)
            if chunk is None or len(chunk.predictions) == self._max_batch:
                chunk = by_pipeline[pipeline] = _Chunk(pipeline, [], [])
                chunks.append(chunk)
            chunk.predictions.append(prediction)
            chunk.tickets.append(ticket)
        return [chunk.seal(self._service) for chunk in chunks]

    def flush(self) -> None:
        """Publish what failed before (first, unchanged), then what waits. Stops at the first failure,
        keeping it and everything after it, in order, for the next round."""
        with self._flush_lock:
            formed = self._form_chunks()
            self._unsent.extend(formed)
            self._unsent_count += sum(len(chunk.predictions) for chunk in formed)
            while self._unsent:
                chunk = self._unsent[0]
                try:
                    self._bus.publish(chunk.event, chunk.envelope).result(timeout=PUBLISH_TIMEOUT_S)
                except Exception as error:  # noqa: BLE001 - kept, retried with the same event id
                    self.failed_publishes += 1
                    log.error("prediction log publish failed; will retry", error=repr(error),
                              count=len(chunk.predictions), waiting=self.pending)
                    return
                self._unsent.popleft()
                self._unsent_count -= len(chunk.predictions)
                self.published += len(chunk.predictions)
                for ticket in chunk.tickets:
                    if ticket is not None:
                        ticket.published(1)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self, timeout: float = 30.0) -> None:
        """Publish everything before the process exits (registered with atexit: gunicorn's graceful stop)."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)
        self.flush()
        if self.pending:
            log.error("predictions could not be logged before exit", lost=self.pending)

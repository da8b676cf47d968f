"""Prediction logging off the request path: a queue drained by one thread into `prediction.made`.

A request encodes its predictions (each once, `encode_prediction`) and appends them to a deque (no
I/O). Every `interval` seconds, or sooner when `max_batch` predictions or `max_event_bytes` of them
wait, the thread forms chunks (one per pipeline, up to `max_batch` predictions and `max_event_bytes`
of serialized event each) and publishes one event per chunk, joined from the encoded predictions.

Why a byte cap: Pub/Sub takes at most 10,000,000 bytes in one publish request (topic, data and
attributes; google-cloud-pubsub refuses more before sending, and the bus port with it: see
`mlops.ports.bus.MAX_PUBLISH_REQUEST_BYTES`), and an event it refuses would be retried forever,
holding back every prediction behind it. `MAX_EVENT_BYTES` says how far under that limit an event stays, and why. A
single prediction larger than the cap is refused when it is added (`PredictionTooLarge`: the
predictor answers 413), never queued.

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
from mlops.core.events.codec import encode_prediction, join_predictions, prediction_made_size
from mlops.core.events.envelope import new_envelope
from mlops.ports.bus import MAX_PUBLISH_REQUEST_BYTES, EventBus

log = structlog.get_logger("predictor.batcher")

BATCH_ID_NAMESPACE = uuid.UUID("0d9c6a51-7a0e-4f43-b3c5-7f2f6d1e8a42")
PUBLISH_TIMEOUT_S = 30.0
# Most bytes of one serialized prediction.made, under Pub/Sub's 10 MB per publish request
# (MAX_PUBLISH_REQUEST_BYTES: topic, data and attributes). Not 10 MB less the attributes (~1 KB): the event
# travels on as text, and wherever it is carried inside JSON it is escaped again - the archive's row of
# it (BigQuery's 10 MB request and row limits), `mlops events --json` - which at most doubles it (the
# event is ASCII, json.dumps escapes the rest; every " and \ gains a backslash). At 4 MB it stays
# under 8 MB in any such form, inside one 8 MiB Storage Write append, and a push of it (base64) under 5.4 MB.
MAX_EVENT_BYTES = 4_000_000


class LogBacklogFull(RuntimeError):
    """Too many predictions wait to be published (Pub/Sub unreachable?): refuse new ones."""


class PredictionTooLarge(ValueError):
    """One prediction alone makes an event over the byte cap: it could never be published."""

    def __init__(self, index: int, size: int, limit: int):
        super().__init__(f"prediction {index} is {size} bytes as logged; one prediction.made event holds at most "
                         f"{limit} bytes")
        self.index = index
        self.size = size
        self.limit = limit


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
class _Queued:
    pipeline: str
    prediction: Prediction
    encoded: bytes  # the prediction as the event carries it (`encode_prediction`)
    ticket: Ticket | None


@dataclass
class _Chunk:
    pipeline: str
    predictions: list[Prediction] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    tickets: list[Ticket | None] = field(default_factory=list)  # one per prediction
    size: int = 0  # of the serialized event, as joined so far
    data: bytes = field(init=False, default=b"")
    envelope: Envelope = field(init=False)

    def __post_init__(self) -> None:
        self.size = prediction_made_size(self.pipeline, [])

    def size_with(self, encoded: bytes) -> int:
        return self.size + len(encoded) + (2 if self.encoded else 0)  # ", " between predictions

    def append(self, item: _Queued) -> None:
        self.size = self.size_with(item.encoded)
        self.predictions.append(item.prediction)
        self.encoded.append(item.encoded)
        self.tickets.append(item.ticket)

    def seal(self, service: str) -> _Chunk:
        self.data = join_predictions(self.pipeline, self.encoded)
        self.envelope = new_envelope(PredictionMade(pipeline=self.pipeline, predictions=self.predictions), service,
                                     id=batch_event_id(self.pipeline, self.predictions))
        return self


class PredictionBatcher:
    def __init__(self, bus: EventBus, service: str, interval: float = 0.1, max_batch: int = 5000, *,
                 durable: bool = False, max_pending: int = 50_000, max_event_bytes: int = MAX_EVENT_BYTES):
        if max_event_bytes >= MAX_PUBLISH_REQUEST_BYTES:
            raise ValueError(f"max_event_bytes {max_event_bytes} leaves no room under Pub/Sub's "
                             f"{MAX_PUBLISH_REQUEST_BYTES}-byte publish requests")
        self._bus = bus
        self._service = service
        self._interval = interval
        self._max_batch = max_batch
        self._max_event_bytes = max_event_bytes
        self._durable = durable
        self._max_pending = max_pending
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0  # encoded bytes in _queue: wakes the thread once an event's worth waits
        self._bytes_lock = threading.Lock()
        self._unsent: deque[_Chunk] = deque()  # formed, publish failed: retried first, as they are
        self._unsent_count = 0  # predictions in _unsent (read by requests without a lock)
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.published = 0
        self.published_events = 0
        self.failed_publishes = 0
        self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
        self._thread.start()

    @property
    def durable(self) -> bool:
        return self._durable

    @property
    def max_event_bytes(self) -> int:
        return self._max_event_bytes

    def add(self, pipeline: str, predictions: list[Prediction]) -> Ticket | None:
        """Queue predictions for publishing; in durable mode, the ticket to wait on before answering.
        Raises LogBacklogFull when `max_pending` already wait, and PredictionTooLarge (queueing none of
        them) when one of them alone would make an event over `max_event_bytes`."""
        if self.pending >= self._max_pending:
            raise LogBacklogFull(f"{self.pending} predictions are waiting to be logged (limit {self._max_pending})")
        encoded = [encode_prediction(p) for p in predictions]
        for index, data in enumerate(encoded):
            size = prediction_made_size(pipeline, [len(data)])
            if size > self._max_event_bytes:
                raise PredictionTooLarge(index, size, self._max_event_bytes)
        ticket = Ticket(len(predictions)) if self._durable else None
        self._queue.extend(_Queued(pipeline, p, data, ticket) for p, data in zip(predictions, encoded, strict=True))
        with self._bytes_lock:
            self._queued_bytes += sum(len(data) for data in encoded)
            full = self._queued_bytes >= self._max_event_bytes
        if full or len(self._queue) >= self._max_batch:
            self._wake.set()
        return ticket

    @property
    def pending(self) -> int:
        return len(self._queue) + self._unsent_count

    def _form_chunks(self) -> list[_Chunk]:
        """Chunks of what waits, in order: per pipeline, a new chunk once `max_batch` predictions or
        `max_event_bytes` of serialized event would be exceeded."""
        by_pipeline: dict[str, _Chunk] = {}
        chunks: list[_Chunk] = []
        taken = 0
        for _ in range(min(len(self._queue), self._max_batch * 4)):
            item = self._queue.popleft()
            taken += len(item.encoded)
            chunk = by_pipeline.get(item.pipeline)
            if chunk is None or len(chunk.predictions) == self._max_batch \
                    or chunk.size_with(item.encoded) > self._max_event_bytes:
                chunk = by_pipeline[item.pipeline] = _Chunk(item.pipeline)
                chunks.append(chunk)
            chunk.append(item)
        with self._bytes_lock:
            self._queued_bytes -= taken
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
                    # The bytes the codec writes for the event (`join_predictions`), encoded once per prediction.
                    self._bus.publish_raw(PredictionMade.EVENT_TYPE, chunk.data, chunk.envelope.to_attributes()) \
                        .result(timeout=PUBLISH_TIMEOUT_S)
                except Exception as error:  # noqa: BLE001 - kept, retried with the same event id
                    self.failed_publishes += 1
                    log.error("prediction log publish failed; will retry", error=repr(error),
                              count=len(chunk.predictions), bytes=len(chunk.data), waiting=self.pending)
                    return
                self._unsent.popleft()
                self._unsent_count -= len(chunk.predictions)
                self.published += len(chunk.predictions)
                self.published_events += 1
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

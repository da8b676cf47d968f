"""Prediction logging off the request path: a queue drained by one thread into `prediction.made`.

A request only appends to a deque (no lock, no I/O). Every `interval` seconds, or sooner when
`max_batch` predictions wait, the thread publishes one event per pipeline carrying up to
`max_batch` predictions. A publish that fails puts its predictions back at the front, so nothing
is dropped while the process lives; `close()` drains everything before exit.
"""

from __future__ import annotations

import threading
from collections import deque

import structlog

from mlops.core.events import Prediction, PredictionMade
from mlops.core.events.envelope import new_envelope
from mlops.ports.bus import EventBus

log = structlog.get_logger("predictor.batcher")


class PredictionBatcher:
    def __init__(self, bus: EventBus, service: str, interval: float = 0.1, max_batch: int = 500):
        self._bus = bus
        self._service = service
        self._interval = interval
        self._max_batch = max_batch
        self._queue: deque[tuple[str, Prediction]] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.published = 0
        self.failed_publishes = 0
        self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
        self._thread.start()

    def add(self, pipeline: str, predictions: list[Prediction]) -> None:
        self._queue.extend((pipeline, p) for p in predictions)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _take(self) -> dict[str, list[Prediction]]:
        batches: dict[str, list[Prediction]] = {}
        for _ in range(min(len(self._queue), self._max_batch * 4)):
            pipeline, prediction = self._queue.popleft()
            batches.setdefault(pipeline, []).append(prediction)
        return batches

    def flush(self) -> None:
        batches = self._take()
        for pipeline, predictions in batches.items():
            for start in range(0, len(predictions), self._max_batch):
                chunk = predictions[start:start + self._max_batch]
                event = PredictionMade(pipeline=pipeline, predictions=chunk)
                try:
                    self._bus.publish(event, new_envelope(event, self._service)).result(timeout=30)
                    self.published += len(chunk)
                except Exception as error:  # noqa: BLE001 - keep them for the next round
                    self.failed_publishes += 1
                    log.error("prediction log publish failed; will retry", error=repr(error), count=len(chunk))
                    self._queue.extendleft((pipeline, p) for p in reversed(chunk))

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)
        self.flush()

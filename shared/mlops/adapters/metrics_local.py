"""MetricsSink for the local stack: each point is a JSON log line (`"message": "metric"`), and the
last value of each series is kept for the service's /healthz.

A log line that cannot be written (a closed stream, a broken processor) is dropped: metrics are not
data, and `record` must never fail the stage that calls it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import structlog


class _Logger(Protocol):
    def info(self, event: str, **fields: Any) -> Any: ...


class LogMetrics:
    def __init__(self, logger: _Logger | None = None) -> None:
        self._log: _Logger = logger if logger is not None else structlog.get_logger("metrics")
        self._lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.dropped = 0

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        labels = dict(labels or {})
        key = name + "".join(f",{k}={v}" for k, v in sorted(labels.items()))
        with self._lock:
            self.last[key] = value
        try:
            self._log.info("metric", metric=name, value=value, labels=labels)
        except Exception:  # noqa: BLE001 - a metric must never break a stage
            with self._lock:
                self.dropped += 1

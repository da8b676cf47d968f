"""MetricsSink for the local stack: each point is a JSON log line (`"message": "metric"`), and the
last value of each series is kept for the service's /healthz."""

from __future__ import annotations

import threading

import structlog

log = structlog.get_logger("metrics")


class LogMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: dict[str, float] = {}

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        key = name + "".join(f",{k}={v}" for k, v in sorted((labels or {}).items()))
        with self._lock:
            self.last[key] = value
        log.info("metric", metric=name, value=value, labels=labels or {})

"""The metrics sink in memory: every point recorded, in order, for unit tests to read.

Like the real sinks (`mlops.testing.contracts.metrics` checks all of them) it never raises into the
stage that records: with `fail_with` set it behaves as a sink whose backend is down, dropping each
point (counted in `dropped`) as the Cloud Monitoring adapter drops a failed write.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    labels: dict[str, str]


@dataclass
class InMemoryMetrics:
    points: list[MetricPoint] = field(default_factory=list)
    fail_with: Exception | None = None
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            if self.fail_with is not None:
                self.dropped += 1
                return
            self.points.append(MetricPoint(name, float(value), dict(labels or {})))

    def values(self, name: str, **labels: str) -> list[float]:
        """Values recorded for `name` whose labels include `labels`, in order."""
        return [p.value for p in self.points if p.name == name and labels.items() <= p.labels.items()]

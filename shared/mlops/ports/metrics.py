"""The metrics port: stage timings, outcomes and model quality as named numbers with labels.

Two adapters, picked by `MLOPS_METRICS_SINK`: `local` writes each point as a structured log line (what
the local stack and tests read), `cloud-monitoring` writes custom metrics to Cloud Monitoring, which
has no emulator.
"""

from __future__ import annotations

from typing import Protocol

METRIC_PREFIX = "mlops"


class MetricsSink(Protocol):
    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """One observation of `name` (e.g. `stage_latency_ms`); must never raise into the caller."""


class NullMetrics:
    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        return None

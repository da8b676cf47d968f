"""The metrics port: stage timings, outcomes and model quality as named numbers with labels.

Two adapters, picked by `MLOPS_METRICS_SINK`: `local` writes each point as a structured log line (what
the local stack and tests read), `cloud-monitoring` writes custom metrics to Cloud Monitoring, which
has no emulator. Unit tests read points from `mlops.testing.memory.InMemoryMetrics`. All of them, and
`NullMetrics`, pass `mlops.testing.contracts.metrics`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

METRIC_PREFIX = "mlops"


@runtime_checkable
class MetricsSink(Protocol):
    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """One observation of `name` (e.g. `stage_latency_ms`) with its labels, kept as they are when
        recorded. Must never raise into the caller, even when the backend fails: metrics are not data,
        a point that cannot be written is dropped."""


class NullMetrics:
    """Records nothing: the sink of a stage that is given none."""

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        return None

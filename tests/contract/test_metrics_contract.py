"""The metrics-sink contract, run against each implementation.

- `NullMetrics` (the default of every stage that is given no sink): the part every sink keeps;
- in memory (`mlops.testing.memory.InMemoryMetrics`), what the unit tests use;
- the local sink (`mlops.adapters.metrics_local.LogMetrics`) on a logger that records each line;
- the Cloud Monitoring adapter (`mlops.adapters.cloud_monitoring.CloudMonitoringMetrics`) on an
  injected client that records each request, since Cloud Monitoring has no emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops.adapters.cloud_monitoring import CloudMonitoringMetrics, metric_type
from mlops.adapters.metrics_local import LogMetrics
from mlops.ports.metrics import MetricsSink, NullMetrics
from mlops.testing.contracts.metrics import MetricsSinkContract, ObservableMetricsSinkContract, ObservedSink
from mlops.testing.memory import InMemoryMetrics, MetricPoint


class TestNullMetrics(MetricsSinkContract):
    @pytest.fixture
    def sink(self) -> MetricsSink:
        return NullMetrics()


class TestInMemoryMetrics(ObservableMetricsSinkContract):
    @pytest.fixture
    def observed(self) -> ObservedSink:
        sink = InMemoryMetrics()
        return ObservedSink(sink, lambda: list(sink.points), lambda: sink.dropped)

    @pytest.fixture
    def failing(self) -> ObservedSink:
        sink = InMemoryMetrics(fail_with=ConnectionError("metrics backend down"))
        return ObservedSink(sink, lambda: list(sink.points), lambda: sink.dropped)


class RecordingLogger:
    def __init__(self, fail: bool = False) -> None:
        self.lines: list[dict[str, Any]] = []
        self.fail = fail

    def info(self, event: str, **fields: Any) -> None:
        if self.fail:
            raise ValueError("I/O operation on closed file")
        self.lines.append({"event": event, **fields})

    def points(self) -> list[MetricPoint]:
        return [MetricPoint(line["metric"], float(line["value"]), line["labels"])
                for line in self.lines if line["event"] == "metric"]


class TestLogMetrics(ObservableMetricsSinkContract):
    @pytest.fixture
    def observed(self) -> ObservedSink:
        logger = RecordingLogger()
        sink = LogMetrics(logger)
        return ObservedSink(sink, logger.points, lambda: sink.dropped)

    @pytest.fixture
    def failing(self) -> ObservedSink:
        logger = RecordingLogger(fail=True)
        sink = LogMetrics(logger)
        return ObservedSink(sink, logger.points, lambda: sink.dropped)


class RecordingMonitoringClient:
    """What `MetricServiceClient.create_time_series` was asked to write (or a failure, like a quota)."""

    def __init__(self, fail: bool = False) -> None:
        self.series: list[Any] = []
        self.fail = fail

    def create_time_series(self, name: str, time_series: list[Any]) -> None:
        if self.fail:
            raise RuntimeError("429 quota exceeded")
        self.series.extend(time_series)


def monitoring_sink(client: RecordingMonitoringClient) -> ObservedSink:
    # A long interval: the contract drains the buffer itself (flush), the writer thread never does.
    sink = CloudMonitoringMetrics("contract-project", "trainer", "us-central1", client=client,  # type: ignore[arg-type]
                                  interval=3600)
    prefix = metric_type("")

    def points() -> list[MetricPoint]:
        sink.flush()
        return [MetricPoint(s.metric.type.removeprefix(prefix), s.points[0].value.double_value, dict(s.metric.labels))
                for s in client.series]

    return ObservedSink(sink, points, lambda: sink.dropped)


class TestCloudMonitoringMetrics(ObservableMetricsSinkContract):
    @pytest.fixture
    def observed(self) -> ObservedSink:
        return monitoring_sink(RecordingMonitoringClient())

    @pytest.fixture
    def failing(self) -> ObservedSink:
        return monitoring_sink(RecordingMonitoringClient(fail=True))

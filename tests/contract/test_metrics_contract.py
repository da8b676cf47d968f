"""The metrics-sink contract, run against each implementation.

- `NullMetrics` (the default of every stage that is given no sink): the part every sink keeps;
- in memory (`mlops.testing.memory.InMemoryMetrics`), what the unit tests use;
- the local sink (`mlops.adapters.metrics_local.LogMetrics`) on a logger that records each line;
- the Cloud Monitoring adapter (`mlops.adapters.cloud_monitoring.CloudMonitoringMetrics`) on an
  injected client that records each request and refuses what `projects.timeSeries.create` refuses,
  since Cloud Monitoring has no emulator.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from google.api_core.exceptions import InvalidArgument

from mlops.adapters.cloud_monitoring import MIN_PERIOD_S, CloudMonitoringMetrics, metric_type
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
    """What `MetricServiceClient.create_time_series` was asked to write, refusing what the API refuses
    (or everything, like a quota): more than 200 series in a request; a series that is not exactly one
    point; one series twice in a request; a `generic_task` resource without its five labels; a point
    not more recent than its series' last one, or less than 5 s after it (the maximum sampling
    period). As the API does, the series that are fine are written and the request fails."""

    RESOURCE_LABELS = {"project_id", "location", "namespace", "job", "task_id"}

    def __init__(self, fail: bool = False) -> None:
        self.series: list[Any] = []
        self.requests = 0
        self.fail = fail
        self._last_end: dict[tuple[Any, ...], float] = {}

    def create_time_series(self, name: str, time_series: list[Any]) -> None:
        self.requests += 1
        if self.fail:
            raise RuntimeError("429 quota exceeded")
        if len(time_series) > 200:
            raise InvalidArgument(f"{len(time_series)} time series in one request; at most 200")
        problems, seen = [], set()
        for index, series in enumerate(time_series):
            key = (series.metric.type, tuple(sorted(series.metric.labels.items())), series.resource.type,
                   tuple(sorted(series.resource.labels.items())))
            end = series.points[0].interval.end_time.timestamp() if len(series.points) == 1 else None
            if end is None:
                problems.append(f"timeSeries[{index}]: exactly one point per series, got {len(series.points)}")
            elif key in seen:
                problems.append(f"timeSeries[{index}]: duplicate TimeSeries encountered; only one point can "
                                "be written per TimeSeries per request")
            elif set(series.resource.labels) != self.RESOURCE_LABELS:
                problems.append(f"timeSeries[{index}]: generic_task needs the labels {sorted(self.RESOURCE_LABELS)}")
            elif key in self._last_end and end < self._last_end[key] + MIN_PERIOD_S:
                problems.append(f"timeSeries[{index}]: One or more points were written more frequently than "
                                "the maximum sampling period configured for the metric")
            else:
                seen.add(key)
                self._last_end[key] = end
                self.series.append(series)
        if problems:
            raise InvalidArgument("One or more TimeSeries could not be written: " + "; ".join(problems))


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


sink_to_close: list[CloudMonitoringMetrics] = []


def monitoring_sink(client: RecordingMonitoringClient) -> ObservedSink:
    # A long interval: the contract drains the buffer itself (flush), the writer thread never does.
    sink = CloudMonitoringMetrics("contract-project", "trainer", "us-central1", client=client,  # type: ignore[arg-type]
                                  interval=3600)
    sink_to_close.append(sink)
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

    @pytest.fixture(autouse=True)
    def _closed_after(self):
        yield
        while sink_to_close:
            sink_to_close.pop().close()


def strict_sink(client: RecordingMonitoringClient, clock: FakeClock, service: str = "trainer") -> CloudMonitoringMetrics:
    return CloudMonitoringMetrics("contract-project", service, "us-central1", client=client,  # type: ignore[arg-type]
                                  interval=3600, clock=clock, sleep=clock.sleep)


def test_two_instances_write_distinct_series_of_one_metric():
    client, clock = RecordingMonitoringClient(), FakeClock()
    first, second = strict_sink(client, clock), strict_sink(client, clock)
    assert first.task_id != second.task_id
    for sink in (first, second):
        sink.record("stage_latency_ms", 5.0, {"stage": "trainer"})
        assert sink.flush() == 1  # the same metric, labels and instant: refused if the series were one
        sink.close()
    assert {s.resource.labels["task_id"] for s in client.series} == {first.task_id, second.task_id}
    assert {s.resource.labels["job"] for s in client.series} == {"trainer"}


def test_close_writes_what_is_pending():
    client, clock = RecordingMonitoringClient(), FakeClock()
    sink = strict_sink(client, clock)
    sink.record("stage_failed", 1, {"service": "trainer", "event_type": "data.ready.v1", "permanent": "true"})
    sink.close()
    assert [(s.metric.type, s.points[0].value.double_value) for s in client.series] == [(metric_type("stage_failed"), 1.0)]
    assert clock.slept == []
    sink.close()  # twice is fine
    assert client.requests == 1


def test_a_series_is_written_at_most_once_per_sampling_period_and_close_waits_for_it():
    client, clock = RecordingMonitoringClient(), FakeClock()
    sink = strict_sink(client, clock)
    sink.record("rows", 1.0)
    assert sink.flush() == 1
    clock.now += 1
    sink.record("rows", 2.0)
    sink.record("other", 3.0)
    assert sink.flush() == 1  # `other` now; `rows` stays buffered, the API would refuse it
    clock.now += MIN_PERIOD_S - 1
    sink.record("rows", 4.0)
    assert sink.flush() == 1
    sink.record("rows", 5.0)
    sink.close()
    assert clock.slept == [MIN_PERIOD_S]
    assert [s.points[0].value.double_value for s in client.series if s.metric.type == metric_type("rows")] == [1.0, 4.0, 5.0]
    assert sink.dropped == 0


def test_more_than_200_series_go_in_several_requests():
    client, clock = RecordingMonitoringClient(), FakeClock()
    sink = strict_sink(client, clock)
    for index in range(450):
        sink.record("candidate_metric", index, {"pipeline": f"p{index}"})
    assert sink.flush() == 450
    assert client.requests == 3
    sink.close()


def test_the_stand_in_refuses_what_the_api_refuses():
    client, clock = RecordingMonitoringClient(), FakeClock()
    sink = strict_sink(client, clock)
    point = sink.series("rows", (), 1.0, clock.now)
    client.create_time_series(name="projects/p", time_series=[point])
    with pytest.raises(InvalidArgument, match="maximum sampling period"):
        client.create_time_series(name="projects/p", time_series=[sink.series("rows", (), 2.0, clock.now + 1)])
    with pytest.raises(InvalidArgument, match="Duplicate|duplicate"):
        later = clock.now + 10
        client.create_time_series(name="projects/p", time_series=[sink.series("x", (), 1.0, later)] * 2)
    sink.close()


def test_points_pending_at_interpreter_exit_are_written():
    """What a gunicorn worker does on SIGTERM: `sys.exit`, so the exit hooks run."""
    program = textwrap.dedent("""
        import sys
        from mlops.adapters.cloud_monitoring import CloudMonitoringMetrics

        class PrintingClient:
            def create_time_series(self, name, time_series):
                for series in time_series:
                    print("wrote", series.metric.type, series.points[0].value.double_value, flush=True)

        sink = CloudMonitoringMetrics("p", "trainer", "us-central1", client=PrintingClient(), interval=3600)
        sink.record("stage_failed", 1.0, {"service": "trainer"})
        sys.exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == [f"wrote {metric_type('stage_failed')} 1.0"]

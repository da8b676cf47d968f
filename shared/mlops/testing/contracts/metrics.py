"""The contract of the metrics port (`mlops.ports.metrics`), written once.

`MetricsSinkContract` needs a `sink` fixture; it holds for every sink, NullMetrics included: a
stage records and carries on, whatever it records. `ObservableMetricsSinkContract` is for sinks with
a backend to read back: it needs `observed` (a working sink and what reached its backend) and
`failing` (the same sink on a backend that fails every write). Cloud Monitoring has no emulator, so
its adapter runs here on an injected client that records (or refuses) each request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mlops.ports.metrics import MetricsSink
from mlops.testing.memory.metrics import MetricPoint


@dataclass(frozen=True)
class ObservedSink:
    sink: MetricsSink
    points: Callable[[], list[MetricPoint]]  # what reached the backend so far (draining any buffer first)
    dropped: Callable[[], int]  # points lost because the backend failed


def as_set(points: list[MetricPoint]) -> set[tuple[str, float, tuple[tuple[str, str], ...]]]:
    return {(p.name, p.value, tuple(sorted(p.labels.items()))) for p in points}


class MetricsSinkContract:
    """Every MetricsSink: `record` takes any observation and never raises into the stage."""

    @pytest.fixture
    def sink(self) -> MetricsSink:
        raise NotImplementedError("a concrete contract test class provides the `sink` fixture")

    def test_it_implements_the_port(self, sink: MetricsSink) -> None:
        assert isinstance(sink, MetricsSink)

    @pytest.mark.parametrize("value", [0.0, -1.5, 3, math.inf, math.nan])
    @pytest.mark.parametrize("labels", [None, {"stage": "trainer", "outcome": "ok"}])
    def test_record_takes_any_value_with_or_without_labels(self, sink: MetricsSink, value: float,
                                                           labels: dict[str, str] | None) -> None:
        assert sink.record("stage_latency_ms", value, labels) is None  # type: ignore[func-returns-value]


class ObservableMetricsSinkContract(MetricsSinkContract):
    """A sink with a backend: each series arrives with its labels, and a failing backend stays hidden."""

    @pytest.fixture
    def observed(self) -> ObservedSink:
        raise NotImplementedError("a concrete contract test class provides the `observed` fixture")

    @pytest.fixture
    def failing(self) -> ObservedSink:
        raise NotImplementedError("a concrete contract test class provides the `failing` fixture")

    @pytest.fixture
    def sink(self, observed: ObservedSink) -> MetricsSink:
        return observed.sink

    def test_each_series_arrives_with_its_labels_and_value(self, observed: ObservedSink) -> None:
        observed.sink.record("stage_latency_ms", 12.5, {"stage": "trainer", "outcome": "ok"})
        observed.sink.record("stage_latency_ms", 99, {"stage": "trainer", "outcome": "retry"})
        observed.sink.record("candidate_metric", 0.91, {"pipeline": "p", "metric": "roc_auc"})
        assert as_set(observed.points()) == {
            ("stage_latency_ms", 12.5, (("outcome", "ok"), ("stage", "trainer"))),
            ("stage_latency_ms", 99.0, (("outcome", "retry"), ("stage", "trainer"))),
            ("candidate_metric", 0.91, (("metric", "roc_auc"), ("pipeline", "p"))),
        }

    def test_no_labels_arrive_as_empty_labels(self, observed: ObservedSink) -> None:
        observed.sink.record("ticks", 1)
        assert observed.points() == [MetricPoint("ticks", 1.0, {})]

    def test_labels_are_taken_as_they_were_when_recorded(self, observed: ObservedSink) -> None:
        labels = {"pipeline": "p"}
        observed.sink.record("rows", 5.0, labels)
        labels["pipeline"] = "changed afterwards"
        assert observed.points() == [MetricPoint("rows", 5.0, {"pipeline": "p"})]

    def test_a_failing_backend_never_reaches_the_caller(self, failing: ObservedSink) -> None:
        for stage in ("trainer", "evaluator", "registrar"):
            assert failing.sink.record("stage_latency_ms", 1.0, {"stage": stage}) is None  # type: ignore[func-returns-value]
        assert failing.points() == []  # draining the buffer does not raise either
        assert failing.dropped() == 3

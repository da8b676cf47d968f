"""Metrics adapters: the exact Cloud Monitoring request, and the local sink's log line."""

from __future__ import annotations

from mlops.adapters.cloud_monitoring import CloudMonitoringMetrics, metric_type
from mlops.adapters.metrics_local import LogMetrics


class RecordingClient:
    def __init__(self, fail: bool = False):
        self.calls = []
        self.fail = fail

    def create_time_series(self, name, time_series):
        if self.fail:
            raise RuntimeError("quota exceeded")
        self.calls.append((name, list(time_series)))


def test_cloud_monitoring_writes_the_latest_point_of_each_series_as_a_custom_gauge():
    client = RecordingClient()
    sink = CloudMonitoringMetrics("proj-1", "trainer", "us-central1", client=client, interval=3600)
    sink.record("stage_latency_ms", 10.0, {"stage": "trainer", "outcome": "ok"})
    sink.record("stage_latency_ms", 12.5, {"stage": "trainer", "outcome": "ok"})
    sink.record("stage_latency_ms", 99.0, {"stage": "trainer", "outcome": "retry"})
    assert sink.flush() == 2
    (name, series), = client.calls
    assert name == "projects/proj-1"
    ok = next(s for s in series if s.metric.labels["outcome"] == "ok")
    assert ok.metric.type == metric_type("stage_latency_ms") == "custom.googleapis.com/mlops/stage_latency_ms"
    assert ok.points[0].value.double_value == 12.5
    assert ok.resource.type == "generic_task" and ok.resource.labels["job"] == "trainer"
    assert sink.flush() == 0  # nothing new


def test_a_failing_monitoring_api_never_reaches_the_stage():
    sink = CloudMonitoringMetrics("proj-1", "trainer", "us-central1", client=RecordingClient(fail=True), interval=3600)
    sink.record("x", 1.0)
    assert sink.flush() == 0


def test_the_local_sink_logs_each_point_and_keeps_the_last(capsys):
    sink = LogMetrics()
    sink.record("candidate_metric", 0.91, {"metric": "roc_auc", "pipeline": "p"})
    assert sink.last["candidate_metric,metric=roc_auc,pipeline=p"] == 0.91

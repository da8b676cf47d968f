"""MetricsSink on Cloud Monitoring: custom metrics `custom.googleapis.com/mlops/<name>` as gauges.

Points are buffered and written by one background thread every `interval` seconds, one point per
series (the latest), because Cloud Monitoring accepts at most one point per series every few seconds
and a stage must never wait on monitoring. Write failures are logged and dropped: metrics are not data.
"""

from __future__ import annotations

import threading
import time

import structlog
from google.cloud import monitoring_v3

from mlops.ports.metrics import METRIC_PREFIX

log = structlog.get_logger("metrics")


def metric_type(name: str) -> str:
    return f"custom.googleapis.com/{METRIC_PREFIX}/{name}"


class CloudMonitoringMetrics:
    def __init__(self, project: str, service: str, location: str,
                 client: monitoring_v3.MetricServiceClient | None = None, interval: float = 30.0):
        self._project = project
        self._service = service
        self._location = location
        self._client = client or monitoring_v3.MetricServiceClient()
        self._interval = interval
        self._pending: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.dropped = 0  # points lost to failed writes
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cloud-monitoring", daemon=True)
        self._thread.start()

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            self._pending[(name, tuple(sorted((labels or {}).items())))] = float(value)

    def series(self, name: str, labels: tuple[tuple[str, str], ...], value: float,
               now: float) -> monitoring_v3.TimeSeries:
        series = monitoring_v3.TimeSeries()
        series.metric.type = metric_type(name)
        series.metric.labels.update(dict(labels))
        series.resource.type = "generic_task"
        series.resource.labels.update({"project_id": self._project, "location": self._location,
                                       "namespace": METRIC_PREFIX, "job": self._service, "task_id": "0"})
        seconds = int(now)
        interval = monitoring_v3.TimeInterval({"end_time": {"seconds": seconds, "nanos": int((now - seconds) * 1e9)}})
        series.points = [monitoring_v3.Point({"interval": interval, "value": {"double_value": value}})]
        return series

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        now = time.time()
        try:
            # Built inside the guard too: a point the API types cannot hold must not end the writer thread.
            batch = [self.series(name, labels, value, now) for (name, labels), value in pending.items()]
            for start in range(0, len(batch), 200):  # the API takes at most 200 series per call
                self._client.create_time_series(name=f"projects/{self._project}", time_series=batch[start:start + 200])
        except Exception as error:  # noqa: BLE001 - monitoring must never break a stage
            log.warning("metrics write failed; points dropped", error=repr(error), points=len(pending))
            with self._lock:
                self.dropped += len(pending)
            return 0
        return len(batch)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            self.flush()

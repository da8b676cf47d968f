"""MetricsSink on Cloud Monitoring: custom metrics `custom.googleapis.com/mlops/<name>` as gauges.

Points are buffered and written by one background thread every `interval` seconds, the latest
value of each series, so a stage never waits on monitoring. Write failures are logged and dropped:
metrics are not data. What `projects.timeSeries.create` refuses, and how this adapter keeps clear:
- one point per series per request, more recent than the series' last point, at most 200 series
  per request: one buffered value per series, written with the time of the write, in chunks of 200;
- at most one point per series every 5 s ("One or more points were written more frequently than the
  maximum sampling period configured for the metric"): a series written less than `MIN_PERIOD_S`
  ago stays buffered until the next flush;
- a series is its metric labels plus its monitored resource's labels: instances writing the same
  `generic_task` labels would write into one series, out of order, and be refused. Each process
  gets its own `task_id` (Cloud Run's instance id lives on the metadata server, out of reach
  offline: the revision or host name, the pid and a random part instead).
Pending points are written on `close()`, which runs at interpreter exit too (a gunicorn worker
exits through `sys.exit` on SIGTERM, so Cloud Run's scale-in gets them).
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import structlog
from google.cloud import monitoring_v3

from mlops.ports.metrics import METRIC_PREFIX

log = structlog.get_logger("metrics")

MIN_PERIOD_S = 5.0
MAX_SERIES_PER_CALL = 200

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def metric_type(name: str) -> str:
    return f"custom.googleapis.com/{METRIC_PREFIX}/{name}"


def unique_task_id() -> str:
    """This process's `task_id`: readable (revision or host, pid) and unique (random part)."""
    where = (os.environ.get("K_REVISION") or socket.gethostname() or "host")[:60]
    return f"{where}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class CloudMonitoringMetrics:
    def __init__(self, project: str, service: str, location: str,
                 client: monitoring_v3.MetricServiceClient | None = None, interval: float = 30.0,
                 task_id: str | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._project = project
        self._service = service
        self._location = location
        self._client = client or monitoring_v3.MetricServiceClient()
        self._interval = interval
        self.task_id = task_id or unique_task_id()
        self._clock = clock
        self._sleep = sleep
        self._pending: dict[SeriesKey, float] = {}
        self._written_at: dict[SeriesKey, float] = {}  # when each series was last written (or tried)
        self.dropped = 0  # points lost to failed writes
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write at a time: the thread's and close()'s
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloud-monitoring", daemon=True)
        self._thread.start()
        atexit.register(self.close)

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
                                       "namespace": METRIC_PREFIX, "job": self._service, "task_id": self.task_id})
        seconds = int(now)
        interval = monitoring_v3.TimeInterval({"end_time": {"seconds": seconds, "nanos": int((now - seconds) * 1e9)}})
        series.points = [monitoring_v3.Point({"interval": interval, "value": {"double_value": value}})]
        return series

    def flush(self) -> int:
        """Write each pending series that may be written now; the number of series written. A series
        written less than MIN_PERIOD_S ago stays pending (see `close` for the last ones)."""
        with self._write_lock:
            now = self._clock()
            with self._lock:
                due = {key: value for key, value in self._pending.items()
                       if now - self._written_at.get(key, -MIN_PERIOD_S) >= MIN_PERIOD_S}
                for key in due:
                    del self._pending[key]
                    self._written_at[key] = now  # a refused request may still have written some series
            items = list(due.items())
            written = 0
            for start in range(0, len(items), MAX_SERIES_PER_CALL):
                chunk = items[start:start + MAX_SERIES_PER_CALL]
                try:
                    # Built inside the guard too: a point the API types cannot hold must not end the writer thread.
                    batch = [self.series(name, labels, value, now) for (name, labels), value in chunk]
                    self._client.create_time_series(name=f"projects/{self._project}", time_series=batch)
                except Exception as error:  # noqa: BLE001 - monitoring must never break a stage
                    log.warning("metrics write failed; points dropped", error=repr(error), points=len(chunk))
                    with self._lock:
                        self.dropped += len(chunk)
                    continue
                written += len(chunk)
            return written

    def close(self) -> None:
        """Stop the writer thread and write every pending point, waiting (at most MIN_PERIOD_S) for
        the series written just before. Idempotent; also run at interpreter exit."""
        self._closed.set()
        atexit.unregister(self.close)
        self.flush()
        with self._lock:
            if not self._pending:
                return
            latest = max(self._written_at.get(key, 0.0) for key in self._pending)
        self._sleep(max(0.0, latest + MIN_PERIOD_S - self._clock()))
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            self.flush()

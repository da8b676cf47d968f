"""monitor: checks of a window of serving against the training snapshot and the labels, written once
per window, breaches announced once; on the in-memory ports."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from mlops.core.events import CanaryJudged, CheckKind, MonitoringBreached, StageFailed, Trigger, WatchTick
from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE, TABLES
from mlops.ports.metrics import MetricsSink
from mlops.ports.registry import VersionMeta
from mlops.testing.memory import InMemoryModelRegistry, InMemoryWarehouse
from monitor.handler import Monitor, window_of

from .conftest import envelope_for, make_spec
from .monitor_figures import MemoryServingFigures

NOW = datetime(2026, 11, 22, 7, 0, 30, tzinfo=UTC)  # the 06:59-07:00 window closed 30 s ago
SNAPSHOT = "test-project.mlops_snapshots.breast_cancer__d0001"


class Recorded(MetricsSink):
    def __init__(self) -> None:
        self.points: list[tuple[str, float, dict[str, str]]] = []

    def record(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.points.append((name, value, dict(labels or {})))


@pytest.fixture
def world(warehouse: InMemoryWarehouse, specs):
    for table in (PREDICTIONS_TABLE, LABELS_TABLE, MONITORING_CHECKS_TABLE):
        warehouse.ensure_table(table, TABLES[table])
    rng = random.Random(7)
    warehouse.ensure_table(SNAPSHOT, [("_row_id", "STRING", "REQUIRED"), ("mean_radius", "FLOAT64", "NULLABLE"), ("mean_texture", "FLOAT64", "NULLABLE"),
                                      ("sex", "STRING", "NULLABLE")])
    warehouse.insert_rows(SNAPSHOT, [{"_row_id": f"{i:04d}", "mean_radius": rng.gauss(14, 3),
                                      "mean_texture": rng.gauss(19, 4), "sex": rng.choice("MF")} for i in range(500)])
    registry = InMemoryModelRegistry()
    meta = VersionMeta("gs://test-bucket/models/breast-cancer/d0001-a", "sha256:" + "0" * 64,
                       metrics={"roc_auc": 0.95}, lineage={"snapshot_table": SNAPSHOT})
    version = registry.register_version("breast-cancer", "breast-cancer", "gs://test-bucket/models/breast-cancer/d0001-a",
                                        "img", labels={}, aliases=("champion",),
                                        description=json.dumps(meta.to_json()))
    spec = make_spec(source={"table": "breast_cancer", "label": "malignant",
                             "features": ["mean_radius", "mean_texture", "sex"]},
                     monitoring={"window_minutes": 1, "min_rows": 50, "drift": {"js_threshold": 0.2}})
    specs.put(spec)
    metrics = Recorded()
    monitor = Monitor(warehouse, MemoryServingFigures(warehouse), specs, registry, metrics)
    return monitor, warehouse, version.version_id, metrics


def serve(warehouse, version, n, at, shift=1.0, sex="M", scores=None, prefix="r"):
    rng = random.Random(11)
    rows = []
    for i in range(n):
        features = {"mean_radius": rng.gauss(14, 3) * shift, "mean_texture": rng.gauss(19, 4), "sex": sex}
        score = scores[i] if scores else rng.random()
        rows.append({"event_id": "e", "pipeline": "breast-cancer", "request_id": f"{prefix}{i}", "model_version": version,
                     "features": json.dumps(features), "predicted_label": "1" if score > 0.5 else "0",
                     "predicted_value": None, "score": score, "latency_ms": 1.0,
                     "predicted_at": at + timedelta(milliseconds=i)})
    warehouse.insert_rows(PREDICTIONS_TABLE, rows)
    return rows


def tick(monitor, event_id="tick-1", at=NOW):
    event = WatchTick(pipeline="breast-cancer", reason="schedule")
    envelope = envelope_for(event, event_id=event_id).with_changes(time=at.isoformat().replace("+00:00", "Z"))
    return monitor.handle(event, envelope)


def checks(warehouse):
    return warehouse.tables[warehouse.qualified(MONITORING_CHECKS_TABLE)]


def test_the_window_is_the_last_one_closed_a_settle_time_ago():
    assert window_of(NOW, 1) == (datetime(2026, 11, 22, 6, 59, tzinfo=UTC), datetime(2026, 11, 22, 7, 0, tzinfo=UTC))
    # 10 s after the boundary the last minute may still be arriving: the one before is judged
    assert window_of(NOW - timedelta(seconds=20), 1)[1] == datetime(2026, 11, 22, 6, 59, tzinfo=UTC)


def test_serving_like_training_breaches_nothing_and_writes_one_row_per_check(world):
    monitor, warehouse, version, metrics = world
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), sex="M")
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 20, tzinfo=UTC), sex="F", prefix="f")
    assert tick(monitor) == []
    rows = checks(warehouse)
    kinds = {(r["check_kind"], r["feature"], r["measure"]) for r in rows}
    assert ("drift", "mean_radius", "js") in kinds and ("drift", "sex", "linf") in kinds
    assert ("quality", "sex", "unseen_rate") in kinds and ("quality", "mean_radius", "out_of_range_rate") in kinds
    assert not any(r["breached"] for r in rows)
    assert all(r["rows"] == 400 and r["version"] == version for r in rows)
    assert any(name == "monitoring_value" for name, _, _ in metrics.points)


def test_shifted_inputs_breach_drift_once_per_window_and_ask_for_a_retrain(world):
    monitor, warehouse, version, metrics = world
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0, sex="X")
    events = tick(monitor)
    drift = [e for e in events if e.check_kind == CheckKind.DRIFT and e.measure == "js"]
    assert [e.feature for e in drift] == ["mean_radius"]
    assert drift[0].trigger == Trigger.DRIFT and drift[0].value > 0.2 and drift[0].version == version
    assert drift[0].window_end == "2026-11-22T07:00:00Z" and drift[0].rows == 200
    quality = {(e.feature, e.measure) for e in events if e.check_kind == CheckKind.QUALITY}
    assert ("sex", "unseen_rate") in quality and ("mean_radius", "out_of_range_rate") in quality
    assert all(e.trigger is None for e in events if e.check_kind == CheckKind.QUALITY)
    assert ("monitoring_breach", 1.0, {"pipeline": "breast-cancer", "check_kind": "drift"}) in metrics.points
    written = len(checks(warehouse))

    # The same tick again (a redelivery): nothing written twice, the same breaches re-announced.
    again = tick(monitor)
    assert len(checks(warehouse)) == written
    assert [e.check_id for e in again] == [e.check_id for e in events]
    # A later tick in the same window: nothing written, nothing announced again.
    assert tick(monitor, "tick-2", NOW + timedelta(seconds=10)) == []
    assert len(checks(warehouse)) == written
    assert len({r["check_id"] for r in checks(warehouse)}) == written


def test_too_few_predictions_are_not_judged(world):
    monitor, warehouse, version, _ = world
    serve(warehouse, version, 20, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0)
    assert tick(monitor) == []
    assert [r for r in checks(warehouse) if r["check_kind"] == "drift"] == []


def test_realized_performance_below_the_evaluation_breaches_degradation(world):
    monitor, warehouse, version, metrics = world
    rows = serve(warehouse, version, 100, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC))
    # Labels that disagree with the scores: the realized AUC is near 0, far below the registered 0.95.
    warehouse.insert_rows(LABELS_TABLE, [{"pipeline": "breast-cancer", "request_id": r["request_id"],
                                          "label": "0" if r["score"] > 0.5 else "1", "labeled_at": NOW} for r in rows])
    events = [e for e in tick(monitor) if e.check_kind == CheckKind.PERFORMANCE]
    assert [e.measure for e in events] == ["roc_auc_drop"]
    assert events[0].trigger == Trigger.DEGRADATION and events[0].value == pytest.approx(0.95)
    realized = [p for p in metrics.points if p[0] == "realized_metric"]
    assert realized == [("realized_metric", 0.0, {"pipeline": "breast-cancer", "version": version, "metric": "roc_auc"})]


def test_the_breach_event_fits_its_schema(world):
    from mlops.core.events import decode, encode

    monitor, warehouse, version, _ = world
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0)
    for event in tick(monitor):
        assert decode(MonitoringBreached.EVENT_TYPE, encode(event)) == event


def test_a_version_the_registry_does_not_know_gets_no_input_checks(world):
    monitor, warehouse, _, _ = world
    serve(warehouse, "99", 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0)
    assert [e for e in tick(monitor) if e.check_kind == CheckKind.DRIFT] == []


def test_a_heartbeat_checks_nothing(world):
    # Heartbeats come every few seconds while a deploy is open, for every pipeline: not a window's look.
    monitor, warehouse, version, _ = world
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0, sex="X")
    beat = WatchTick(pipeline=None, reason="heartbeat")
    assert monitor.handle(beat, envelope_for(beat, event_id="beat-1").with_changes(time="2026-11-22T07:00:30Z")) == []
    assert checks(warehouse) == []
    assert [e.check_kind for e in tick(monitor)]  # the pipeline's own tick does check


def test_a_pipeline_whose_checks_fail_is_reported_and_the_others_are_checked(world, specs):
    monitor, warehouse, version, metrics = world
    other = make_spec(name="other", source={"table": "other", "label": "malignant", "features": ["mean_radius"]},
                      monitoring={"window_minutes": 1, "min_rows": 50})
    specs.put(other)
    serve(warehouse, version, 200, datetime(2026, 11, 22, 6, 59, 5, tzinfo=UTC), shift=3.0, sex="X")
    spans = monitor._figures.served_span

    def unreadable(pipeline):
        if pipeline == "other":
            raise KeyError("model_version")  # what a query answered with another query's rows raises
        return spans(pipeline)

    monitor._figures.served_span = unreadable
    every = WatchTick(pipeline=None, reason="schedule")
    events = monitor.handle(every, envelope_for(every, event_id="tick-all").with_changes(time="2026-11-22T07:00:30Z"))

    [failed] = [e for e in events if isinstance(e, StageFailed)]
    assert (failed.pipeline, failed.stage, failed.error_class, failed.permanent) == ("other", "monitor", "KeyError", True)
    assert failed.input_event_id == "tick-all" and "monitoring checks of other failed" in failed.error_message
    assert any(isinstance(e, MonitoringBreached) and e.pipeline == "breast-cancer" for e in events)
    assert ("stage_failed", 1, {"service": "monitor", "event_type": "watch.tick.v1", "permanent": "true"}) in metrics.points


def test_a_failing_part_of_the_tick_does_not_stop_the_other():
    from monitor.app import each_on_its_own

    judged = CanaryJudged.example()

    class Broken:
        def handle(self, tick, envelope):
            raise KeyError("version")

    class Judge:
        def handle(self, tick, envelope):
            return [judged]

    metrics = Recorded()
    event = WatchTick(pipeline="breast-cancer", reason="schedule")
    out = each_on_its_own([("monitoring checks", Broken()), ("canary judgement", Judge())], metrics)(
        event, envelope_for(event, event_id="tick-9"))
    assert isinstance(out[0], StageFailed) and out[0].pipeline == "breast-cancer" and out[1] == judged
    assert "monitoring checks of breast-cancer failed: KeyError" in out[0].error_message
    out = each_on_its_own([("canary judgement", Broken()), ("monitoring checks", Judge())], metrics)(
        event, envelope_for(event, event_id="tick-9"))
    assert isinstance(out[0], StageFailed) and out[1] == judged

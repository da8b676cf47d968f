"""data-watcher: when a tick makes a snapshot, when it does not (and says why in `data.skipped`), and
what a redelivered tick does."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from data_watcher.handler import DataWatcher, SpecDoesNotFitTable, decide, next_data_version
from mlops.core.errors import PermanentError
from mlops.core.events import DataReady, DataSkipped, SkipCause, StageFailed, WatchTick
from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN
from mlops.ports.warehouse import SnapshotRecord, SourceStatus

from .conftest import T0, envelope_for, make_spec

TABLE = "breast_cancer"


SOURCE_COLUMNS = [(ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED"),
                  ("mean_radius", "FLOAT64", "NULLABLE"), ("mean_texture", "FLOAT64", "NULLABLE"),
                  ("malignant", "INT64", "NULLABLE")]


class Source:
    """Rows landing in a source table (created on first use, as `mlops ingest` does), each batch an
    hour after the previous one."""

    def __init__(self, warehouse) -> None:
        self.warehouse = warehouse
        self.count = 0
        self.batches = 0

    def land(self, rows: int, table: str = TABLE) -> None:
        self.batches += 1
        at = T0 + timedelta(hours=self.batches)
        batch = []
        for _ in range(rows):
            self.count += 1
            batch.append({ROW_ID_COLUMN: f"r{self.count:05d}", INGESTED_AT_COLUMN: at,
                          "mean_radius": float(self.count), "mean_texture": 1.0, "malignant": self.count % 2})
        self.warehouse.ensure_table(table, SOURCE_COLUMNS)
        self.warehouse.insert_rows(table, batch)


@pytest.fixture
def source(warehouse) -> Source:
    return Source(warehouse)


@pytest.fixture
def watcher(warehouse, specs, clock) -> DataWatcher:
    specs.put(make_spec())  # new_rows_fraction 0.5, min_rows 10
    return DataWatcher(warehouse, specs, clock=clock)


def tick(watcher: DataWatcher, reason: str = "schedule", pipeline: str | None = "breast-cancer",
         event_id: str | None = None) -> list[DataReady | DataSkipped | StageFailed]:
    event = WatchTick(pipeline=pipeline, reason=reason)
    return watcher.handle(event, envelope_for(event, event_id=event_id))


def skipped(out: list) -> DataSkipped:
    """The one answer of a tick that trained nothing."""
    [skip] = out
    assert isinstance(skip, DataSkipped), skip
    return skip


def test_no_table_makes_no_snapshot_and_says_so(watcher, warehouse):
    skip = skipped(tick(watcher, reason="data_landed"))
    assert skip == DataSkipped(
        pipeline="breast-cancer", source_table="test-project.mlops.breast_cancer", reason="data_landed",
        cause="no_table", why="table breast_cancer does not exist yet", total_rows=0, new_rows=0)
    assert warehouse.snapshots == []


def test_the_first_tick_with_data_takes_the_first_snapshot(watcher, warehouse, source):
    source.land(20)
    [ready] = tick(watcher, event_id="tick-1")
    assert ready == DataReady(
        pipeline="breast-cancer",
        source_table="test-project.mlops.breast_cancer",
        snapshot_table="test-project.mlops_snapshots.breast_cancer__d0001",
        data_version="d0001",
        total_rows=20, new_rows=20,
        watermark="2026-11-22T07:00:00Z",
        trigger="new_rows",
        drift_score=None,
    )
    [record] = warehouse.snapshots
    assert (record.pipeline, record.data_version, record.source_event_id) == ("breast-cancer", "d0001",
                                                                              "tick-1/breast-cancer")
    assert len(warehouse.tables[ready.snapshot_table]) == 20


def test_no_new_rows_since_the_last_snapshot_make_nothing(watcher, warehouse, source):
    source.land(20)
    [first] = tick(watcher)
    skip = skipped(tick(watcher, reason="manual"))
    assert (skip.cause, skip.reason, skip.total_rows, skip.new_rows) == ("no_new_rows", "manual", 20, 0)
    assert skip.why == "no new rows in breast_cancer since snapshot d0001"
    assert (skip.last_data_version, skip.last_watermark) == ("d0001", first.watermark)
    assert len(warehouse.snapshots) == 1


def test_new_rows_below_the_fraction_wait_and_reaching_it_snapshots(watcher, warehouse, source):
    source.land(20)
    tick(watcher)
    source.land(9)  # 9 < 0.5 * 20
    skip = skipped(tick(watcher))
    assert (skip.cause, skip.total_rows, skip.new_rows, skip.last_data_version) == ("below_thresholds", 29, 9, "d0001")
    assert skip.why == "9 new rows in breast_cancer since snapshot d0001, below the spec's threshold (10 (50% of 20) new rows)"
    source.land(1)  # 10 >= 0.5 * 20
    [ready] = tick(watcher)
    assert (ready.data_version, ready.total_rows, ready.new_rows, ready.trigger) == ("d0002", 30, 10, "new_rows")
    assert ready.snapshot_table.endswith("breast_cancer__d0002")
    assert ready.watermark == "2026-11-22T09:00:00Z"


def test_a_snapshot_is_frozen_at_its_watermark(watcher, warehouse, source):
    source.land(20)
    [first] = tick(watcher)
    source.land(15)
    [second] = tick(watcher)
    assert len(warehouse.tables[first.snapshot_table]) == 20
    assert len(warehouse.tables[second.snapshot_table]) == 35


def test_fewer_rows_than_min_rows_never_train(watcher, warehouse, source):
    source.land(5)
    assert skipped(tick(watcher)).cause == "too_few_rows"
    skip = skipped(tick(watcher, reason="manual"))  # not even by hand
    assert (skip.cause, skip.why, skip.last_data_version) == (
        "too_few_rows", "breast_cancer has 5 rows, fewer than min_rows 10", None)
    assert warehouse.snapshots == []
    source.land(5)  # 10 rows: min_rows reached
    [ready] = tick(watcher)
    assert ready.total_rows == 10


def test_new_rows_min_triggers_below_the_fraction(warehouse, specs, clock, source):
    specs.put(make_spec(retrain={"new_rows_fraction": None, "new_rows_min": 3}))
    watcher = DataWatcher(warehouse, specs, clock=clock)
    source.land(100)
    tick(watcher)
    source.land(2)
    assert "below the spec's threshold (3 new rows)" in skipped(tick(watcher)).why
    source.land(1)
    [ready] = tick(watcher)
    assert (ready.new_rows, ready.trigger) == (3, "new_rows")


def test_a_manual_tick_trains_on_any_new_rows(watcher, source):
    source.land(20)
    tick(watcher)
    source.land(1)
    assert skipped(tick(watcher, reason="schedule")).cause == "below_thresholds"
    [ready] = tick(watcher, reason="manual")
    assert (ready.trigger, ready.new_rows, ready.data_version) == ("manual", 1, "d0002")


def test_drift_triggers_with_its_score(warehouse, specs, clock, source):
    specs.put(make_spec(retrain={"new_rows_fraction": 0.9, "drift_psi": 0.2}))
    seen = []

    def drift(reference, current, features):
        seen.append((len(reference), len(current), list(features)))
        return 0.35

    watcher = DataWatcher(warehouse, specs, drift=drift, clock=clock)
    source.land(20)
    [first] = tick(watcher)
    assert first.drift_score is None and seen == []  # nothing to compare the first snapshot with
    source.land(4)
    [ready] = tick(watcher)
    assert (ready.trigger, ready.drift_score) == ("drift", 0.35)
    assert seen == [(20, 4, ["mean_radius", "mean_texture"])]


def test_drift_below_the_threshold_does_not_trigger(warehouse, specs, clock, source):
    specs.put(make_spec(retrain={"new_rows_fraction": 0.9, "drift_psi": 0.2}))
    watcher = DataWatcher(warehouse, specs, drift=lambda *_: 0.1, clock=clock)
    source.land(20)
    tick(watcher)
    source.land(4)
    skip = skipped(tick(watcher))
    assert (skip.cause, skip.drift_score) == ("below_thresholds", 0.1)
    assert skip.why.endswith("(18 (90% of 20) new rows or drift above PSI 0.2, now 0.100)")


def test_a_redelivered_tick_re_announces_the_same_snapshot(watcher, warehouse, source):
    source.land(20)
    first = tick(watcher, event_id="tick-1")
    source.land(50)  # more data arrives before the redelivery: it must not change the answer
    again = tick(watcher, event_id="tick-1")
    assert again == first
    assert len(warehouse.snapshots) == 1
    assert again[0].data_version == "d0001"
    [fresh] = tick(watcher, event_id="tick-2")  # a new tick does see the new rows
    assert fresh.data_version == "d0002"


def test_a_redelivered_drift_tick_re_announces_the_same_event(warehouse, specs, clock, source):
    specs.put(make_spec(retrain={"new_rows_fraction": 0.9, "drift_psi": 0.2}))
    watcher = DataWatcher(warehouse, specs, drift=lambda *_: 0.35, clock=clock)
    source.land(20)
    tick(watcher)
    source.land(4)
    first = tick(watcher, event_id="tick-drift")
    assert first[0].trigger == "drift"
    assert tick(watcher, event_id="tick-drift") == first


def test_a_tick_for_every_pipeline_handles_each_once(warehouse, specs, clock, source):
    specs.put(make_spec())
    specs.put(make_spec(name="iris", source={"table": "iris", "label": "malignant", "features": ["mean_radius"]}))
    watcher = DataWatcher(warehouse, specs, clock=clock)
    source.land(20)
    source.land(12, table="iris")
    ready = tick(watcher, pipeline=None, event_id="tick-all")
    assert sorted((r.pipeline, r.total_rows) for r in ready) == [("breast-cancer", 20), ("iris", 12)]
    assert sorted(s.source_event_id for s in warehouse.snapshots) == ["tick-all/breast-cancer", "tick-all/iris"]
    assert tick(watcher, pipeline=None, event_id="tick-all") == ready  # redelivered: the same, no new snapshots
    assert len(warehouse.snapshots) == 2


def test_two_pipelines_are_looked_at_side_by_side_and_one_pipeline_one_look_at_a_time(warehouse, specs, clock,
                                                                                       source):
    """Each look is several warehouse round trips: one lock for all pipelines queued every tick behind
    the others'. Here a look at breast-cancer waits inside the warehouse until iris's look has begun."""
    import threading

    specs.put(make_spec())
    specs.put(make_spec(name="iris", source={"table": "iris", "label": "malignant", "features": ["mean_radius"]}))
    source.land(20)
    source.land(12, table="iris")
    iris_started = threading.Event()
    status_of = warehouse.source_status

    def source_status(table, after):
        if table == "iris":
            iris_started.set()
        elif not iris_started.wait(timeout=10):
            raise AssertionError("the look at iris waited for breast-cancer's to end")
        return status_of(table, after)

    warehouse.source_status = source_status
    watcher = DataWatcher(warehouse, specs, clock=clock)
    answers: dict[str, list] = {}
    threads = [threading.Thread(target=lambda p=p: answers.__setitem__(p, tick(watcher, pipeline=p, event_id=f"t-{p}")))
               for p in ("breast-cancer", "iris")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert {p: [type(e).__name__ for e in out] for p, out in answers.items()} == {
        "breast-cancer": ["DataReady"], "iris": ["DataReady"]}
    # Two looks at the same pipeline at once (a redelivery beside the original) still make one snapshot.
    source.land(20)
    both = [threading.Thread(target=tick, args=(watcher,), kwargs={"event_id": "t-same"}) for _ in range(2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(timeout=20)
    assert sorted(s.data_version for s in warehouse.snapshots if s.pipeline == "breast-cancer") == ["d0001", "d0002"]


def test_a_redelivered_skip_is_the_same_decision(watcher, source):
    source.land(20)
    tick(watcher)
    source.land(2)
    first = tick(watcher, event_id="tick-1")
    assert tick(watcher, event_id="tick-1") == first  # the same event, so the same output ce-id


def test_a_tick_for_every_pipeline_answers_each_one(warehouse, specs, clock, source):
    specs.put(make_spec())
    specs.put(make_spec(name="iris", source={"table": "iris", "label": "malignant", "features": ["mean_radius"]}))
    specs.put(make_spec(name="wine", source={"table": "wine", "label": "malignant", "features": ["mean_radius"]}))
    watcher = DataWatcher(warehouse, specs, clock=clock)
    source.land(20)
    source.land(3, table="iris")
    out = tick(watcher, pipeline=None, event_id="tick-all")
    assert {e.pipeline: type(e).__name__ for e in out} == {
        "breast-cancer": "DataReady", "iris": "DataSkipped", "wine": "DataSkipped"}
    causes = {e.pipeline: e.cause for e in out if isinstance(e, DataSkipped)}
    assert causes == {"iris": SkipCause.TOO_FEW_ROWS, "wine": SkipCause.NO_TABLE}
    assert tick(watcher, pipeline=None, event_id="tick-all") == out  # redelivered: the same answers, in order


def test_a_tick_for_an_unknown_pipeline_does_nothing(watcher, warehouse, source):
    source.land(20)
    assert tick(watcher, pipeline="no-such-pipeline") == []
    assert warehouse.snapshots == []


def test_versions_count_up_per_pipeline():
    assert next_data_version(None) == "d0001"
    record = SnapshotRecord("p", "d0041", "t", 1, 1, T0, "new_rows", "e", T0)
    assert next_data_version(record) == "d0042"


@pytest.mark.parametrize(("status", "last_total", "reason", "drift", "trigger"), [
    (SourceStatus(100, 0, T0), 100, "manual", None, None),
    (SourceStatus(9, 9, T0), None, "manual", None, None),
    (SourceStatus(10, 10, T0), None, "schedule", None, "new_rows"),
    (SourceStatus(150, 50, T0), 100, "schedule", None, "new_rows"),
    (SourceStatus(149, 49, T0), 100, "schedule", None, None),
    (SourceStatus(149, 49, T0), 100, "schedule", 0.5, "drift"),
    (SourceStatus(149, 49, T0), 100, "manual", None, "manual"),
])
def test_decide(status, last_total, reason, drift, trigger):
    spec = make_spec(retrain={"new_rows_fraction": 0.5, "min_rows": 10, "drift_psi": 0.2})
    last = None if last_total is None else SnapshotRecord("p", "d0001", "t", last_total, last_total, T0, "new_rows",
                                                          "e", T0)
    decision = decide(spec, status, last, reason, drift)
    assert decision.trigger == trigger
    assert decision.why
    assert (decision.skipped is None) == (trigger is not None)  # every "no" has a cause


# ------------------------------------------------------------------------- pipelines sharing a table

def test_pipelines_sharing_a_source_table_each_keep_their_own_snapshots(watcher, warehouse, specs, source):
    specs.put(make_spec(name="breast-cancer-2"))  # the same source table
    source.land(20)
    [first] = tick(watcher)
    source.land(15)
    [second] = tick(watcher)
    [other] = tick(watcher, pipeline="breast-cancer-2")
    # Its first snapshot is its own, of every row: not the other pipeline's d0001 of 20 rows.
    assert (other.data_version, other.total_rows, other.new_rows) == ("d0001", 35, 35)
    assert other.snapshot_table == "test-project.mlops_snapshots.breast_cancer_2__d0001"
    assert first.snapshot_table == "test-project.mlops_snapshots.breast_cancer__d0001"
    assert [len(warehouse.tables[r.snapshot_table]) for r in (first, second, other)] == [20, 35, 35]
    assert {r.pipeline: r.snapshot_table for r in warehouse.snapshots if r.data_version == "d0001"} == {
        "breast-cancer": first.snapshot_table, "breast-cancer-2": other.snapshot_table}


# ------------------------------------------------------------------------- a spec that does not fit

def test_a_spec_naming_a_missing_label_is_refused_before_anything_is_written(watcher, warehouse, specs, source):
    specs.put(make_spec(source={"label": "is_malignant"}))
    source.land(20)
    with pytest.raises(SpecDoesNotFitTable) as refused:
        tick(watcher)
    assert isinstance(refused.value, PermanentError)  # dead-lettered with its reason, and stage.failed
    message = str(refused.value)
    assert "label column 'is_malignant' (did you mean 'malignant'?) is not in table breast_cancer" in message
    assert "table breast_cancer has columns: mean_radius, mean_texture, malignant" in message
    assert warehouse.snapshots == []
    assert not [t for t in warehouse.tables if ".mlops_snapshots." in t]


def test_the_rows_a_refused_spec_left_pending_are_snapshotted_once_it_is_fixed(watcher, specs, source):
    specs.put(make_spec(source={"features": ["mean_radius", "texture"]}))
    source.land(20)
    with pytest.raises(SpecDoesNotFitTable, match="feature column 'texture'"):
        tick(watcher)
    specs.put(make_spec())  # the fix, applied: the next tick of any kind finds the rows still new
    [ready] = tick(watcher, reason="schedule")
    assert (ready.data_version, ready.total_rows, ready.new_rows, ready.trigger) == ("d0001", 20, 20, "new_rows")


def test_a_tick_for_every_pipeline_reports_a_bad_spec_beside_the_others_snapshots(watcher, specs, source):
    specs.put(make_spec(name="broken", source={"features": ["mean_radius", "no_such"]}))
    source.land(20)
    out = tick(watcher, pipeline=None, event_id="tick-all")
    [ready] = [e for e in out if isinstance(e, DataReady)]
    [failed] = [e for e in out if isinstance(e, StageFailed)]
    assert (ready.pipeline, ready.total_rows) == ("breast-cancer", 20)
    assert (failed.pipeline, failed.stage, failed.input_event_id, failed.input_event_type, failed.error_class,
            failed.permanent) == ("broken", "data-watcher", "tick-all", "watch.tick.v1", "SpecDoesNotFitTable", True)
    assert "feature column 'no_such' is not in table breast_cancer" in failed.error_message


# ------------------------------------------------------------------------- a changed spec

def test_a_changed_spec_retrains_the_same_rows_once(watcher, warehouse, specs, source):
    source.land(20)
    [first] = tick(watcher)
    assert warehouse.snapshots[0].spec_hash == make_spec().fingerprint
    specs.put(make_spec(deployment={"canary_percent": 10}, retrain={"new_rows_fraction": 0.3}))
    # thresholds and deployment do not change the model a snapshot yields
    assert skipped(tick(watcher)).cause == "no_new_rows"
    fixed = make_spec(source={"features": ["mean_radius"]})
    specs.put(fixed)
    [again] = tick(watcher)
    assert (again.data_version, again.trigger, again.total_rows, again.new_rows) == ("d0002", "spec_changed", 20, 0)
    assert again.watermark == first.watermark
    assert warehouse.snapshots[-1].spec_hash == fixed.fingerprint
    assert skipped(tick(watcher)).cause == "no_new_rows"  # once per change
    specs.put(make_spec(source={"features": ["mean_radius"]}, promotion={"min_gain": 0.0, "tolerance": 0.01}))
    [gate] = tick(watcher)  # a new gate judges a fresh candidate on the same rows
    assert (gate.data_version, gate.trigger) == ("d0003", "spec_changed")


def test_a_snapshot_recorded_without_a_fingerprint_is_not_a_changed_spec():
    spec = make_spec()
    older = SnapshotRecord("p", "d0001", "t", 100, 100, T0, "new_rows", "e", T0)  # spec_hash: None
    status = SourceStatus(100, 0, T0)
    assert decide(spec, status, older, "schedule", None).trigger is None
    assert decide(spec, status, replace(older, spec_hash=spec.fingerprint), "schedule", None).trigger is None
    changed = decide(spec, status, replace(older, spec_hash="0" * 16), "schedule", None)
    assert (changed.trigger, changed.why) == ("spec_changed", "the spec's source, model or gate changed since "
                                                              "d0001: 100 rows, retrained")


# ------------------------------------------------------------------------ monitoring breaches

# The first snapshot is recorded at T0 (the test clock), a breach retrain a second later: the
# monitor's window closed in between.
AFTER_FIRST_SNAPSHOT = "2026-11-22T06:00:00.500000Z"


def breach(window_end: str = "2026-11-22T12:00:00Z", trigger: str | None = "drift"):
    from mlops.core.events import MonitoringBreached

    return MonitoringBreached.example().model_copy(update={
        "pipeline": "breast-cancer", "window_end": window_end, "trigger": trigger})


def test_a_drift_breach_retrains_below_the_row_thresholds_once_per_window(watcher, warehouse, source, clock):
    source.land(20)
    [first] = tick(watcher)
    assert isinstance(first, DataReady)
    source.land(2)  # far below new_rows_fraction 0.5
    assert skipped(tick(watcher)).cause == SkipCause.BELOW_THRESHOLDS
    event = breach(window_end=AFTER_FIRST_SNAPSHOT)
    [ready] = watcher.on_breach(event, envelope_for(event, event_id="breach-1"))
    assert isinstance(ready, DataReady) and ready.trigger == "drift" and ready.data_version == "d0002"
    assert ready.drift_score == event.value
    # The same breach redelivered: the same snapshot re-announced, none new.
    [again] = watcher.on_breach(event, envelope_for(event, event_id="breach-1"))
    assert again == ready and len(warehouse.snapshots) == 2
    # Another feature's breach of the same window: already retrained since the window closed.
    source.land(2)
    other = skipped(watcher.on_breach(event, envelope_for(event, event_id="breach-2")))
    assert "already retrained" in other.why and len(warehouse.snapshots) == 2


def test_a_degradation_breach_retrains_with_trigger_degradation_and_an_alert_only_breach_does_nothing(
        watcher, warehouse, source):
    source.land(20)
    tick(watcher)
    source.land(2)
    event = breach(window_end=AFTER_FIRST_SNAPSHOT, trigger="degradation")
    [ready] = watcher.on_breach(event, envelope_for(event, event_id="breach-3"))
    assert ready.trigger == "degradation"
    quality = breach(trigger=None)
    assert watcher.on_breach(quality, envelope_for(quality, event_id="breach-4")) == []


def test_a_breach_with_no_new_rows_retrains_nothing(watcher, source):
    source.land(20)
    tick(watcher)
    event = breach(window_end=AFTER_FIRST_SNAPSHOT)
    skip = skipped(watcher.on_breach(event, envelope_for(event, event_id="breach-5")))
    assert skip.cause == SkipCause.NO_NEW_ROWS and "no new rows" in skip.why

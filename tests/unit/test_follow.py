"""`--wait`: a tick's run followed through the archive to its outcome, or to why nothing happened.

The archive is replaced by a list of archived events (the real envelopes and payloads, encoded as
the archive stores them); the "nothing to train" reasons read the in-memory warehouse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.events import (
    DataReady,
    Decision,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
    StageFailed,
    TickReason,
    encode,
    new_envelope,
)
from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, parse_spec
from mlops.ops import follow as follow_module
from mlops.ops.archive import ArchivedEvent
from mlops.ops.errors import RunFailed
from mlops.ops.follow import follow
from mlops.ports.warehouse import SnapshotRecord
from mlops.testing.memory import InMemoryWarehouse

SPEC = parse_spec("""
name: breast-cancer
source: {table: breast_cancer, label: y, features: [a]}
model: {type: LOGISTIC_REG}
retrain: {new_rows_fraction: 0.5}
promotion: {metric: roc_auc}
""")
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


class Archive:
    """The event archive as `query_events` answers it, newest first."""

    def __init__(self) -> None:
        self.events: list[ArchivedEvent] = []

    def add(self, event: Any, run_id: str, causation_id: str, seconds: float) -> ArchivedEvent:
        envelope = new_envelope(event, "test", run_id=run_id, causation_id=causation_id)
        attributes = {**envelope.to_attributes(), "ce-time": (T0 + timedelta(seconds=seconds)).isoformat()}
        archived = ArchivedEvent(
            id=envelope.id, type=envelope.type, time=attributes["ce-time"], run_id=run_id,
            causation_id=causation_id, replay_of="", pipeline=envelope.pipeline, message_id=envelope.id,
            subscription="x", attributes=attributes, data=encode(event).decode())
        self.events.append(archived)
        return archived

    def query(self, warehouse: Any, run_id: str | None = None, event_type: str | None = None,
              since: str | None = None, limit: int = 200, event_id: str | None = None,
              caused_by: str | None = None) -> list[ArchivedEvent]:
        found = [e for e in self.events
                 if (not run_id or e.run_id.startswith(run_id)) and (not event_type or e.type == event_type)
                 and (not caused_by or e.causation_id == caused_by)]
        return sorted(found, key=lambda e: e.time, reverse=True)[:limit]


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> Archive:
    fake = Archive()
    monkeypatch.setattr(follow_module, "query_events", fake.query)
    return fake


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_follow(warehouse: Any, tick_id: str, clock: Clock, reason: TickReason = TickReason.DATA_LANDED,
               timeout: float = 60.0) -> list[Any]:
    return list(follow(warehouse, tick_id, [SPEC], started_at=T0, reason=reason, timeout=timeout,
                       clock=clock, sleep=clock.sleep))


def whole_run(archive: Archive, tick_id: str, decision: Decision) -> None:
    ready = DataReady.example().model_copy(update={"pipeline": SPEC.name})
    archive.add(ready, "run-1", tick_id, 1)
    archive.add(ModelTrained.example().model_copy(update={"pipeline": SPEC.name}), "run-1", "x", 2)
    evaluated = ModelEvaluated.example().model_copy(update={"pipeline": SPEC.name, "decision": decision,
                                                            "reason": "roc_auc 0.95 beats champion v1"})
    archive.add(evaluated, "run-1", "y", 3)
    archive.add(ModelRegistered.example().model_copy(update={"pipeline": SPEC.name, "decision": decision}),
                "run-1", "z", 4)
    if decision == Decision.PROMOTE:
        archive.add(ModelDeployed.example().model_copy(update={"pipeline": SPEC.name}), "run-1", "w", 5)


def test_a_promoted_run_is_followed_from_snapshot_to_deployment(archive):
    whole_run(archive, "tick-1", Decision.PROMOTE)
    steps = run_follow(InMemoryWarehouse(), "tick-1", Clock())
    texts = [s.text for s in steps]
    assert texts[0].startswith("snapshot ") and texts[1].startswith("trained ")
    assert "gate: promote (roc_auc 0.95 beats champion v1)" in texts
    assert texts[-1].startswith("deployed version") and steps[-1].outcome == "deployed"


def test_a_rejected_candidate_ends_at_its_registration_with_the_gates_reason(archive):
    whole_run(archive, "tick-1", Decision.REJECT)
    steps = run_follow(InMemoryWarehouse(), "tick-1", Clock())
    assert any(s.text.startswith("gate: reject") for s in steps)
    assert steps[-1].outcome == "rejected"


def test_a_permanent_failure_fails_the_follow_naming_the_stage_and_error(archive):
    archive.add(DataReady.example().model_copy(update={"pipeline": SPEC.name}), "run-1", "tick-1", 1)
    failed = StageFailed(stage="trainer", input_event_id="ready-1", input_event_type="data.ready.v1",
                         error_class="TrainingDataError", error_message='column "is_fraud" not found',
                         permanent=True, pipeline=SPEC.name)
    archive.add(failed, "run-1", "ready-1", 2)
    with pytest.raises(RunFailed, match="trainer failed: TrainingDataError: column \"is_fraud\" not found"):
        run_follow(InMemoryWarehouse(), "tick-1", Clock())


def test_transient_failures_are_progress_until_pubsub_gives_up(archive):
    archive.add(DataReady.example().model_copy(update={"pipeline": SPEC.name}), "run-1", "tick-1", 1)
    failed = StageFailed(stage="trainer", input_event_id="ready-1", input_event_type="data.ready.v1",
                         error_class="ConnectionError", error_message="warehouse busy", permanent=False,
                         pipeline=SPEC.name)
    for attempt in range(follow_module.MAX_ATTEMPTS):
        archive.add(failed, "run-1", "ready-1", 2 + attempt)
    with pytest.raises(RunFailed, match="5 attempts"):
        run_follow(InMemoryWarehouse(), "tick-1", Clock())


def landed(warehouse: InMemoryWarehouse, count: int, at: datetime) -> None:
    warehouse.ensure_table("breast_cancer", [(ROW_ID_COLUMN, "STRING", "REQUIRED"),
                                             (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED"),
                                             ("a", "FLOAT64", "NULLABLE"), ("y", "INT64", "NULLABLE")])
    start = len(warehouse.tables.get(warehouse.qualified("breast_cancer"), []))
    warehouse.insert_rows("breast_cancer", [{ROW_ID_COLUMN: f"r{start + i}", INGESTED_AT_COLUMN: at.isoformat(),
                                             "a": 1.0, "y": i % 2} for i in range(count)])


def test_rows_below_the_threshold_end_with_the_watchers_reason_and_how_to_train_anyway(archive):
    warehouse = InMemoryWarehouse()
    landed(warehouse, 100, T0)
    warehouse.record_snapshot(SnapshotRecord(SPEC.name, "d0001", "p.s.breast_cancer__d0001", 100, 100, T0, "new_rows",
                                             "t0", T0))
    landed(warehouse, 20, T0 + timedelta(minutes=1))
    steps = run_follow(warehouse, "tick-1", Clock())
    assert steps[-1].outcome == "nothing"
    assert "20 new rows since snapshot d0001" in steps[-1].text and "50 (50% of 100)" in steps[-1].text
    assert "mlops trigger --pipeline breast-cancer" in steps[-1].text


def test_no_new_rows_or_no_table_are_said_as_such(archive):
    warehouse = InMemoryWarehouse()
    assert "does not exist yet" in run_follow(warehouse, "t", Clock())[-1].text
    landed(warehouse, 100, T0)
    warehouse.record_snapshot(SnapshotRecord(SPEC.name, "d0001", "p.s.breast_cancer__d0001", 100, 100, T0, "new_rows",
                                             "t0", T0))
    assert "no new rows in breast_cancer since snapshot d0001" in run_follow(
        warehouse, "t", Clock(), reason=TickReason.MANUAL)[-1].text


def test_a_run_another_tick_started_on_the_same_rows_is_followed(archive):
    warehouse = InMemoryWarehouse()
    landed(warehouse, 100, T0)
    whole_run(archive, "the-tickers-tick", Decision.PROMOTE)
    steps = run_follow(warehouse, "my-tick", Clock())
    assert "snapshotted by another tick" in steps[0].text and steps[-1].outcome == "deployed"


def test_silence_with_rows_to_train_on_times_out_with_one_clear_line(archive):
    warehouse = InMemoryWarehouse()
    landed(warehouse, 100, T0)  # a first snapshot is due: the watcher should answer
    with pytest.raises(RunFailed, match="data-watcher neither snapshotted"):
        run_follow(warehouse, "tick-1", Clock(), timeout=600)
    with pytest.raises(RunFailed, match="no outcome within 20 s"):
        run_follow(warehouse, "tick-1", Clock(), timeout=20)


def test_hyperparameters_are_shown_as_values_not_json_strings():
    from mlops.ops.lineage import plain_values

    assert plain_values({"data_split_method": json.dumps("RANDOM"), "max_iterations": "30", "odd": "{x"}) == \
        {"data_split_method": "RANDOM", "max_iterations": 30, "odd": "{x"}

"""`--wait`: a tick's run followed through the archive to its outcome, or to why nothing happened.

The archive is replaced by a list of archived events (the real envelopes and payloads, encoded as
the archive stores them). Why nothing happened is the data-watcher's own `data.skipped`, never a
second reading of its rules.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.events import (
    DataReady,
    DataSkipped,
    Decision,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
    SkipCause,
    StageFailed,
    TickReason,
    encode,
    new_envelope,
)
from mlops.core.spec import parse_spec
from mlops.ops import follow as follow_module
from mlops.ops.archive import ArchivedEvent
from mlops.ops.errors import RunFailed
from mlops.ops.follow import follow
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


def run_follow(warehouse: Any, tick_id: str, clock: Clock, timeout: float = 60.0, specs: Any = (SPEC,)) -> list[Any]:
    return list(follow(warehouse, tick_id, list(specs), started_at=T0, timeout=timeout, clock=clock, sleep=clock.sleep))


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


def skip(cause: SkipCause, why: str, last_watermark: str | None = None, pipeline: str = SPEC.name,
         reason: TickReason = TickReason.DATA_LANDED) -> DataSkipped:
    return DataSkipped(pipeline=pipeline, source_table=f"p.mlops.{pipeline}", reason=reason, cause=cause, why=why,
                       total_rows=120, new_rows=0 if cause == SkipCause.NO_NEW_ROWS else 20,
                       last_data_version="d0002" if last_watermark else None, last_watermark=last_watermark)


def test_a_skip_ends_with_the_watchers_own_words_and_how_to_train_anyway(archive):
    why = "20 new rows in breast_cancer since snapshot d0001, below the spec's threshold (50 (50% of 100) new rows)"
    archive.add(skip(SkipCause.BELOW_THRESHOLDS, why), "run-s", "tick-1", 1)
    [step] = run_follow(InMemoryWarehouse(), "tick-1", Clock())
    assert step.outcome == "nothing"
    assert step.text == f"nothing to train: {why}; `mlops trigger --pipeline breast-cancer` trains on them now"


def test_no_table_or_no_new_rows_are_said_in_the_watchers_words(archive):
    archive.add(skip(SkipCause.NO_TABLE, "table breast_cancer does not exist yet"), "run-s", "tick-1", 1)
    [step] = run_follow(InMemoryWarehouse(), "tick-1", Clock())
    assert step.text == ("nothing to train: table breast_cancer does not exist yet "
                         "(land rows with `mlops ingest --pipeline breast-cancer`)")
    # The last snapshot predates the command: these rows are simply not new.
    earlier = (T0 - timedelta(hours=1)).isoformat()
    archive.add(skip(SkipCause.NO_NEW_ROWS, "no new rows in breast_cancer since snapshot d0002", earlier,
                     reason=TickReason.MANUAL), "run-s", "tick-2", 2)
    [step] = run_follow(InMemoryWarehouse(), "tick-2", Clock())
    assert (step.outcome, step.text) == ("nothing", "nothing to train: no new rows in breast_cancer since snapshot d0002")


def test_rows_another_tick_snapshotted_since_the_command_began_are_followed_in_that_run(archive):
    # The ticker's tick took the rows this command landed; this command's tick then found none new.
    whole_run(archive, "the-tickers-tick", Decision.PROMOTE)  # its data.ready is snapshot d0002
    mine = skip(SkipCause.NO_NEW_ROWS, "no new rows in breast_cancer since snapshot d0002",
                (T0 + timedelta(seconds=0.5)).isoformat())
    archive.add(mine, "run-s", "my-tick", 1.5)
    steps = run_follow(InMemoryWarehouse(), "my-tick", Clock())
    assert steps[0].text == "these rows were snapshotted by another tick (d0002); following run run-1"
    assert steps[-1].outcome == "deployed"
    assert not any(s.text.startswith("nothing to train") for s in steps)


def test_a_snapshot_of_another_tick_not_yet_archived_is_waited_for_then_named(archive):
    archive.add(skip(SkipCause.NO_NEW_ROWS, "no new rows", (T0 + timedelta(seconds=1)).isoformat()), "run-s",
                "my-tick", 1.5)
    with pytest.raises(RunFailed, match="snapshot d0002 of another tick is not in the archive yet"):
        run_follow(InMemoryWarehouse(), "my-tick", Clock(), timeout=10)


def test_a_tick_for_every_pipeline_ends_each_with_its_own_answer(archive):
    other = SPEC.model_copy(update={"name": "iris"})
    whole_run(archive, "tick-all", Decision.PROMOTE)
    archive.add(skip(SkipCause.TOO_FEW_ROWS, "iris has 5 rows, fewer than min_rows 50", pipeline="iris"),
                "run-s", "tick-all", 1)
    steps = run_follow(InMemoryWarehouse(), "tick-all", Clock(), specs=(SPEC, other))
    outcomes = {s.pipeline: s.outcome for s in steps if s.outcome}
    assert outcomes == {"breast-cancer": "deployed", "iris": "nothing"}


def test_a_watcher_that_never_answers_times_out_with_one_clear_line(archive):
    with pytest.raises(RunFailed, match="no outcome within 20 s .*data-watcher has not answered the tick"):
        run_follow(InMemoryWarehouse(), "tick-1", Clock(), timeout=20)


def test_hyperparameters_are_shown_as_values_not_json_strings():
    from mlops.ops.lineage import plain_values

    assert plain_values({"data_split_method": json.dumps("RANDOM"), "max_iterations": "30", "odd": "{x"}) == \
        {"data_split_method": "RANDOM", "max_iterations": 30, "odd": "{x"}

"""Pipelines sharing one source table, and a spec that does not fit its table, on the real stack.

Each pipeline snapshots the table under its own name and trains on exactly the rows it counted; a
spec naming a column the table lacks is refused (stage.failed, nothing snapshotted) and the rows wait
for the fixed spec; a changed spec retrains them. Driven in-process, as test_exactly_once is, to
keep the wall time short.
"""

from __future__ import annotations

import pytest

from mlops.core.events import WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import parse_spec
from mlops.core.sql import quote_qualified
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.ingest import ingest_rows
from tests.integration.harness import wait_for

pytestmark = pytest.mark.e2e

FEATURES = ["sex", "length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight", "shell_weight"]


def spec_for(name: str, table: str, features: list[str] = FEATURES, label: str = "rings_above_9"):
    return parse_spec(
        f"name: {name}\n"
        f"source: {{table: {table}, label: {label}, features: [{', '.join(features)}]}}\n"
        "model: {type: LOGISTIC_REG, options: {max_iterations: 20, data_split_method: RANDOM, "
        "data_split_eval_fraction: 0.2}}\n"
        "retrain: {new_rows_fraction: 0.2, min_rows: 50}\n"
        "promotion: {metric: roc_auc, minimum: 0.5}\n"
    )


def tick(ctx: CliContext, pipeline: str) -> None:
    event = WatchTick(pipeline=pipeline, reason="data_landed")
    ctx.bus.publish(event, new_envelope(event, "test")).result(timeout=30)


def archived(ctx: CliContext, event_type: str, pipelines: set[str]) -> list[dict]:
    return [e.payload() for e in query_events(ctx.warehouse, event_type=event_type, limit=200)
            if e.pipeline in pipelines]


def table_rows(ctx: CliContext, table: str) -> int:
    return int(ctx.warehouse.query(f"SELECT COUNT(*) AS n FROM {quote_qualified(table)}")[0]["n"])


def test_two_pipelines_on_one_source_table_each_train_on_their_own_snapshots(stack, stack_dir):
    ctx = CliContext(stack_dir)
    first, second = spec_for("shared-first", "shared_abalone"), spec_for("shared-second", "shared_abalone",
                                                                         FEATURES[:4])
    names = {first.name, second.name}
    ctx.specs.put(first)
    ctx.specs.put(second)
    rows = load_demo_dataset().rows
    ingest_rows(ctx.warehouse, first, rows[:200])
    tick(ctx, first.name)
    wait_for(lambda: archived(ctx, "data.ready.v1", names), timeout=30, interval=0.5, what="the first snapshot")
    ingest_rows(ctx.warehouse, first, rows[200:500])  # 300 more rows in the shared table
    tick(ctx, first.name)
    tick(ctx, second.name)

    def three_evaluated() -> list[dict] | None:
        found = archived(ctx, "model.evaluated.v1", names)
        return found if len(found) == 3 else None

    evaluations = wait_for(three_evaluated, timeout=90, interval=0.5, what="three evaluated candidates")
    ready = {(r["pipeline"], r["data_version"]): r for r in archived(ctx, "data.ready.v1", names)}
    project = ctx.settings.project
    assert {key: (r["snapshot_table"], r["total_rows"]) for key, r in ready.items()} == {
        ("shared-first", "d0001"): (f"{project}.mlops_snapshots.shared_first__d0001", 200),
        ("shared-first", "d0002"): (f"{project}.mlops_snapshots.shared_first__d0002", 500),
        # Its own first snapshot, of every row: not the other pipeline's d0001 of 200 rows.
        ("shared-second", "d0001"): (f"{project}.mlops_snapshots.shared_second__d0001", 500),
    }
    for r in ready.values():
        assert table_rows(ctx, r["snapshot_table"]) == r["total_rows"], r["snapshot_table"]
    trained_rows = {(t["pipeline"], t["data_version"]): (t["snapshot_table"], t["train_rows"])
                    for t in archived(ctx, "model.trained.v1", names)}
    for evaluated in evaluations:
        key = (evaluated["pipeline"], evaluated["data_version"])
        snapshot, train_rows = trained_rows[key]
        assert snapshot == evaluated["snapshot_table"] == ready[key]["snapshot_table"]
        assert train_rows + evaluated["eval_rows"] == ready[key]["total_rows"], key  # every row, on one side


def test_a_spec_naming_a_missing_label_is_refused_and_its_rows_wait_for_the_fix(stack, stack_dir):
    ctx = CliContext(stack_dir)
    good = spec_for("typo-label", "typo_abalone")
    ingest_rows(ctx.warehouse, good, load_demo_dataset().rows[:120])
    ctx.specs.put(spec_for("typo-label", "typo_abalone", label="rings_above_10"))
    tick(ctx, "typo-label")
    [failed] = wait_for(lambda: archived(ctx, "stage.failed.v1", {"typo-label"}), timeout=30, interval=0.5,
                        what="the refusal")
    assert (failed["stage"], failed["error_class"], failed["permanent"]) == ("data-watcher", "SpecDoesNotFitTable",
                                                                             True)
    assert "label column 'rings_above_10' (did you mean 'rings_above_9'?) is not in table typo_abalone" in \
        failed["error_message"]
    assert not archived(ctx, "data.ready.v1", {"typo-label"})

    ctx.specs.put(good)  # the fix; the next tick finds the 120 rows still new
    tick(ctx, "typo-label")
    [ready] = wait_for(lambda: archived(ctx, "data.ready.v1", {"typo-label"}), timeout=30, interval=0.5,
                       what="the snapshot after the fix")
    assert (ready["data_version"], ready["total_rows"], ready["new_rows"]) == ("d0001", 120, 120)

    # A changed gate retrains the same rows once (the snapshot recorded the spec's fingerprint).
    ctx.specs.put(good.model_copy(update={"promotion": good.promotion.model_copy(update={"tolerance": 0.01})}))
    tick(ctx, "typo-label")
    again = wait_for(lambda: [r for r in archived(ctx, "data.ready.v1", {"typo-label"}) if r["data_version"] == "d0002"],
                     timeout=30, interval=0.5, what="the snapshot for the changed spec")
    assert (again[0]["trigger"], again[0]["total_rows"], again[0]["new_rows"]) == ("spec_changed", 120, 0)

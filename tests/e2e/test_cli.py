"""The `mlops` command on the real stack, as a new user meets it (issue 11): bad input is one line and
a non-zero exit with nothing lost, `--wait` follows a run to its outcome, the views read well.

Runs on the package's stack beside the other e2e tests, under pipeline names of its own (the demo
test owns `abalone`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlops.ml.datasets import load_demo_dataset
from mlops.ops.demo import DEMO_SPEC
from tests.e2e.conftest import mlops

pytestmark = pytest.mark.e2e

PIPELINE = "abalone-cli"
TABLE = "abalone_cli"


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    data = load_demo_dataset()
    columns = [*data.feature_columns, data.label_column]
    rows = [{c: row[c] for c in columns} for row in data.rows]
    spec = folder / "spec.yaml"
    spec.write_text(DEMO_SPEC.replace("name: abalone", f"name: {PIPELINE}").replace("table: abalone", f"table: {TABLE}"))
    bad = [dict(r) for r in rows[800:1200]]
    bad[9]["length"] = "yes"
    return {
        "spec": spec,
        "first": write_csv(folder / "first.csv", rows[:800]),
        "bad": write_csv(folder / "bad.csv", bad),
        "second": write_csv(folder / "second.csv", rows[800:1200]),
    }


def source_rows(stack_dir: Path) -> int:
    from mlops.ops.context import CliContext

    return CliContext(stack_dir).warehouse.source_status(TABLE, None).total_rows


def test_ingest_wait_follows_the_run_to_its_deployment_and_bad_input_loses_nothing(stack, stack_dir, batches):
    mlops("pipeline", "apply", str(batches["spec"]), data_dir=stack_dir)

    first = mlops("ingest", "-p", PIPELINE, "--csv", str(batches["first"]), "--wait", data_dir=stack_dir)
    out = " ".join(first.stderr.split())
    assert "800 rows landed" in out and "snapshot d0001: 800 rows" in out
    assert "trained candidate d0001" in out and "gate: promote" in out
    assert "deployed version 1" in out and f"{PIPELINE}: deployed" in out

    # A text value in a numeric column: one line naming it, nothing landed, no tick.
    line = one_line_error(mlops("ingest", "-p", PIPELINE, "--csv", str(batches["bad"]), data_dir=stack_dir,
                                check=False))
    assert "row 10" in line and "'length'" in line and "'yes'" in line
    assert source_rows(stack_dir) == 800

    header = batches["bad"].with_name("header.csv")
    header.write_text(batches["bad"].read_text().splitlines()[0] + "\n")
    assert "no data rows" in one_line_error(
        mlops("ingest", "-p", PIPELINE, "--csv", str(header), data_dir=stack_dir, check=False))

    # The loop still works: the corrected file trains version 2, which the gate judges.
    second = mlops("ingest", "-p", PIPELINE, "--csv", str(batches["second"]), "--wait", data_dir=stack_dir)
    out = " ".join(second.stderr.split())
    assert "snapshot d0002: 1200 rows (400 new)" in out and "registered version 2" in out
    assert source_rows(stack_dir) == 1200

    # Nothing new: the follow prints the data-watcher's own answer (its data.skipped) and exits 0.
    again = mlops("trigger", "-p", PIPELINE, "--wait", data_dir=stack_dir)
    out = " ".join(again.stderr.split())
    assert f"nothing to train: no new rows in {TABLE} since snapshot d0002" in out
    assert f"{PIPELINE}: nothing (no run: nothing to train)" in out
    skips = json.loads(mlops("events", "--type", "data.skipped", "--json", data_dir=stack_dir).stdout)
    said = [e["data"] for e in skips if e["pipeline"] == PIPELINE and e["data"]["reason"] == "manual"]
    assert said and (said[0]["cause"], said[0]["last_data_version"], said[0]["total_rows"]) == (
        "no_new_rows", "d0002", 1200)


def test_the_watchers_no_is_said_and_a_corrected_spec_retries_the_waiting_rows_at_once(stack, stack_dir, batches):
    """Each "nothing to train" is the data-watcher's own answer (data.skipped), exit 0; re-applying a
    corrected spec ticks the watcher (spec_applied), which snapshots the rows that waited."""
    from mlops.ops.archive import query_events
    from mlops.ops.context import CliContext
    from tests.integration.harness import wait_for

    name, table = "abalone-gate", "abalone_gate"
    spec = (batches["spec"].read_text().replace(f"name: {PIPELINE}", f"name: {name}")
            .replace(f"table: {TABLE}", f"table: {table}").replace("  schedule_seconds: 600\n", ""))  # no ticker
    strict, fixed = batches["spec"].with_name("strict.yaml"), batches["spec"].with_name("fixed.yaml")
    strict.write_text(spec.replace("retrain:\n", "retrain:\n  min_rows: 1000\n"))
    fixed.write_text(spec.replace("retrain:\n", "retrain:\n  min_rows: 100\n"))

    out = " ".join(mlops("pipeline", "apply", str(strict), data_dir=stack_dir).stderr.split())
    assert f"table {table} does not exist yet" in out and "tick" not in out  # nothing to look at yet
    out = " ".join(mlops("trigger", "-p", name, "--wait", data_dir=stack_dir).stderr.split())
    assert f"nothing to train: table {table} does not exist yet (land rows with `mlops ingest --pipeline {name}`)" in out
    out = " ".join(mlops("ingest", "-p", name, "--csv", str(batches["second"]), "--wait", data_dir=stack_dir)
                   .stderr.split())
    assert f"nothing to train: {table} has 400 rows, fewer than min_rows 1000" in out
    assert f"{name}: nothing (no run: nothing to train)" in out

    out = " ".join(mlops("pipeline", "apply", str(fixed), data_dir=stack_dir).stderr.split())
    assert f"checked against table {table}; the data-watcher looks at its rows now (tick " in out
    tick = out.split("(tick ")[1][:8]
    ctx = CliContext(stack_dir)

    def of_the_tick(event_type: str) -> list:
        return [e for e in query_events(ctx.warehouse, event_type=event_type, limit=100)
                if e.pipeline == name and e.causation_id.startswith(tick)]

    [ready] = wait_for(lambda: of_the_tick("data.ready.v1"), timeout=30, interval=0.5, what="the snapshot")
    assert (ready.payload()["data_version"], ready.payload()["total_rows"]) == ("d0001", 400)
    # Let its run finish here, so no later test shares the stack with a half-done run.
    [registered] = wait_for(lambda: [e for e in query_events(ctx.warehouse, run_id=ready.run_id, limit=50)
                                     if e.type == "model.registered.v1"], timeout=90, interval=0.5, what="the run")
    if registered.payload()["decision"] == "promote":
        wait_for(lambda: [e for e in query_events(ctx.warehouse, run_id=ready.run_id, limit=50)
                          if e.type == "model.deployed.v1"], timeout=90, interval=0.5, what="the deployment")


def test_unknown_names_and_bad_specs_are_one_line_errors(stack, stack_dir, batches, tmp_path):
    mlops("pipeline", "apply", str(batches["spec"]), data_dir=stack_dir)
    for command in (("trigger", "--pipeline", "nope"), ("models", "--pipeline", "nope")):
        line = one_line_error(mlops(*command, data_dir=stack_dir, check=False))
        assert "no pipeline 'nope'" in line and PIPELINE in line

    assert "no file" in one_line_error(mlops("pipeline", "apply", str(tmp_path / "missing.yaml"),
                                             data_dir=stack_dir, check=False))
    wrong = tmp_path / "fraud.yaml"
    wrong.write_text(batches["spec"].read_text().replace(f"name: {PIPELINE}", "name: fraud")
                     .replace("label: rings_above_9", "label: is_fraud"))
    from mlops.ops.context import CliContext

    if CliContext(stack_dir).warehouse.table_columns(TABLE) is not None:  # once the first test landed rows
        line = one_line_error(mlops("pipeline", "apply", str(wrong), data_dir=stack_dir, check=False))
        assert "label column 'is_fraud' is not in table" in line
        names = [s["name"] for s in json.loads(mlops("pipeline", "list", "--json", data_dir=stack_dir).stdout)]
        assert "fraud" not in names

    assert "data.ready.v1" in one_line_error(mlops("events", "--type", "bogus", data_dir=stack_dir, check=False))


def test_the_read_views_take_short_ids_and_read_as_text(stack, stack_dir):
    ready = json.loads(mlops("events", "--type", "data.ready", "--json", "--limit", "50", data_dir=stack_dir).stdout)
    mine = [e for e in ready if e["pipeline"] == PIPELINE]
    assert mine, "the first test's runs are archived"
    run = mine[-1]["run_id"]
    by_prefix = json.loads(mlops("events", "--run", run[:8], "--json", data_dir=stack_dir).stdout)
    assert by_prefix and {e["run_id"] for e in by_prefix} == {run}
    times = [e["time"] for e in by_prefix]
    assert times == sorted(times, reverse=True)  # newest first

    table = mlops("events", "--run", run[:8], data_dir=stack_dir).stdout
    assert "data.ready.v1" in table and "{" not in table

    text = mlops("lineage", PIPELINE, "1", data_dir=stack_dir).stdout
    assert "snapshot d0001" in text and "drift PSI" in text and "data_split_method=RANDOM" in text
    assert '\\"' not in text and not text.lstrip().startswith("{")

    models = mlops("models", "-p", PIPELINE, data_dir=stack_dir).stdout
    assert "roc_auc" in models and "promote:" in models
    assert all(len(line) <= 80 for line in models.splitlines())

"""The `mlops` command on in-memory ports: each user mistake is one line on stderr and a non-zero exit,
nothing is lost, and the next correct command works.

The CLI builds its clients through `mlops.ops.context.CliContext`; here that is replaced by one
holding the in-memory warehouse, bus, bucket and registry, so every command runs its real code path
(parsing, the operator function, printing, exit codes) without a stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from mlops.cli.main import app
from mlops.core.spec import parse_spec
from mlops.ports.registry import VersionMeta
from mlops.ports.specs import SpecStore
from mlops.testing.memory import InMemoryBlobStore, InMemoryEventBus, InMemoryModelRegistry, InMemoryWarehouse

SPEC_YAML = """
name: tiny
source: {table: tiny, label: y, features: [a, b]}
model: {type: LOGISTIC_REG}
promotion: {metric: roc_auc, min_gain: 0.01}
"""
GOOD_CSV = "a,b,y\n1.5,x,1\n2.5,y,0\n3.5,x,1\n"


class MemoryContext:
    """A `CliContext` over in-memory ports (no stack: nothing to check)."""

    def __init__(self) -> None:
        self.warehouse = InMemoryWarehouse()
        self.bus = InMemoryEventBus()
        self.blobs = InMemoryBlobStore()
        self.specs = SpecStore(self.blobs, cache_seconds=0)
        self.registry = InMemoryModelRegistry()
        self.readers = SimpleNamespace(warehouse=self.warehouse, registry=self.registry, specs=self.specs)

    def require_stack(self, *components: str) -> None:
        return None

    def predictor_url(self) -> str:
        return ""


@pytest.fixture(autouse=True)
def default_logging():
    """The CLI sets structlog up for its process; other tests expect the defaults back."""
    import structlog

    yield
    structlog.reset_defaults()


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> MemoryContext:
    context = MemoryContext()
    monkeypatch.setattr("mlops.ops.context.CliContext", lambda data_dir=None: context)
    return context


@pytest.fixture
def applied(ctx: MemoryContext, tmp_path: Path) -> MemoryContext:
    """The `tiny` pipeline applied and one good file landed."""
    (tmp_path / "tiny.yaml").write_text(SPEC_YAML)
    assert run("pipeline", "apply", str(tmp_path / "tiny.yaml")).exit_code == 0
    (tmp_path / "good.csv").write_text(GOOD_CSV)
    assert run("ingest", "-p", "tiny", "--csv", str(tmp_path / "good.csv")).exit_code == 0
    return ctx


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Any, code: int = 2) -> str:
    """The single stderr line of a refused command (and no traceback, nothing on stdout)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def source_rows(ctx: MemoryContext) -> list[dict[str, Any]]:
    return ctx.warehouse.tables.get(ctx.warehouse.qualified("tiny"), [])


def ticks(ctx: MemoryContext) -> list[Any]:
    return ctx.bus.on("watch.tick.v1")


# ------------------------------------------------------------------------------------ ingest

def test_a_text_value_in_a_numeric_column_names_row_column_and_value_and_lands_nothing(applied, tmp_path):
    before, ticked = len(source_rows(applied)), len(ticks(applied))
    (tmp_path / "bad.csv").write_text("a,b,y\n1.0,x,1\nyes,y,0\n")
    line = one_line_error(run("ingest", "-p", "tiny", "--csv", str(tmp_path / "bad.csv")))
    assert "row 2" in line and "'a'" in line and "'yes'" in line and "FLOAT64" in line
    assert len(source_rows(applied)) == before and len(ticks(applied)) == ticked
    # Fixed, the same file lands and the data-watcher is told.
    (tmp_path / "bad.csv").write_text("a,b,y\n1.0,x,1\n4.0,y,0\n")
    assert run("ingest", "-p", "tiny", "--csv", str(tmp_path / "bad.csv")).exit_code == 0
    assert len(source_rows(applied)) == before + 2 and len(ticks(applied)) == ticked + 1


@pytest.mark.parametrize("content", ["", "a,b,y\n"], ids=["empty", "header-only"])
def test_an_empty_or_header_only_file_is_an_error_not_zero_rows(applied, tmp_path, content):
    before = len(source_rows(applied))
    (tmp_path / "empty.csv").write_text(content)
    assert "no data rows" in one_line_error(run("ingest", "-p", "tiny", "--csv", str(tmp_path / "empty.csv")))
    assert len(source_rows(applied)) == before


def test_a_missing_csv_or_a_file_without_the_specs_columns_is_one_line(applied, tmp_path):
    assert "no file" in one_line_error(run("ingest", "-p", "tiny", "--csv", str(tmp_path / "nope.csv")))
    (tmp_path / "other.csv").write_text("a,c\n1,2\n")
    assert "['b', 'y']" in one_line_error(run("ingest", "-p", "tiny", "--csv", str(tmp_path / "other.csv")))


def test_ingest_into_an_unknown_pipeline_names_the_known_ones(applied, tmp_path):
    line = one_line_error(run("ingest", "-p", "nope", "--csv", str(tmp_path / "good.csv")))
    assert "'nope'" in line and "known: tiny" in line


def test_a_regression_label_that_is_text_is_refused_before_the_table_is_made(ctx, tmp_path):
    (tmp_path / "reg.yaml").write_text(SPEC_YAML.replace("LOGISTIC_REG", "LINEAR_REG")
                                       .replace("roc_auc", "mean_absolute_error"))
    assert run("pipeline", "apply", str(tmp_path / "reg.yaml")).exit_code == 0
    (tmp_path / "rows.csv").write_text("a,b,y\n1,x,high\n2,y,low\n")
    line = one_line_error(run("ingest", "-p", "tiny", "--csv", str(tmp_path / "rows.csv")))
    assert "'y'" in line and "must be numeric" in line
    assert ctx.warehouse.table_columns("tiny") is None


# ---------------------------------------------------------------------------- pipeline apply

def test_applying_a_missing_or_invalid_spec_file_is_one_line(ctx, tmp_path):
    assert "no file" in one_line_error(run("pipeline", "apply", str(tmp_path / "missing.yaml")))
    (tmp_path / "bad.yaml").write_text(SPEC_YAML.replace("roc_auc", "mean_absolute_error"))
    assert "promotion.metric" in one_line_error(run("pipeline", "apply", str(tmp_path / "bad.yaml")))
    assert ctx.specs.names() == []


def test_a_spec_is_checked_against_its_table_when_the_table_exists(applied, tmp_path):
    (tmp_path / "fraud.yaml").write_text(SPEC_YAML.replace("name: tiny", "name: fraud")
                                         .replace("label: y", "label: is_fraud").replace("[a, b]", "[a, colour]"))
    line = one_line_error(run("pipeline", "apply", str(tmp_path / "fraud.yaml")))
    assert "label column 'is_fraud' is not in table tiny" in line and "'colour'" in line
    assert applied.specs.names() == ["tiny"]  # nothing applied
    result = run("pipeline", "list")
    assert result.exit_code == 0 and "tiny" in result.stdout and "{" not in result.stdout  # a table, not a dict


def test_applying_a_spec_whose_table_exists_tells_the_data_watcher_to_look_again(applied, tmp_path):
    ticked = len(ticks(applied))
    result = run("pipeline", "apply", str(tmp_path / "tiny.yaml"))
    assert result.exit_code == 0
    [tick] = ticks(applied)[ticked:]
    assert (tick.event.pipeline, tick.event.reason) == ("tiny", "spec_applied")
    line = " ".join(result.stderr.split())
    assert "checked against table tiny; the data-watcher looks at its rows now" in line
    assert f"(tick {tick.attributes['ce-id'][:8]})" in line


def test_applying_a_spec_before_its_table_exists_sends_no_tick(ctx, tmp_path):
    (tmp_path / "tiny.yaml").write_text(SPEC_YAML)
    result = run("pipeline", "apply", str(tmp_path / "tiny.yaml"))
    assert result.exit_code == 0 and "table tiny does not exist yet" in " ".join(result.stderr.split())
    assert ticks(ctx) == [] and ctx.specs.names() == ["tiny"]


def test_a_tick_that_cannot_be_sent_after_apply_says_the_spec_is_applied_and_what_to_do(applied, tmp_path,
                                                                                         monkeypatch):
    def refuse(*args: Any) -> Any:
        raise ConnectionError("pubsub unreachable")

    monkeypatch.setattr(applied.bus, "publish", refuse)
    changed = tmp_path / "tiny2.yaml"
    changed.write_text(SPEC_YAML.replace("min_gain: 0.01", "min_gain: 0.02"))
    line = one_line_error(run("pipeline", "apply", str(changed)), code=1)
    assert "pipeline tiny applied" in line and "not told to look again" in line and "mlops trigger --pipeline tiny" in line
    assert applied.specs.get("tiny").promotion.min_gain == 0.02  # the spec itself is stored


# ------------------------------------------------------------------------ unknown names, types

def test_trigger_and_models_for_an_unknown_pipeline_fail_naming_the_known_ones(applied):
    ticked = len(ticks(applied))
    for command in (("trigger", "--pipeline", "nope"), ("models", "--pipeline", "nope")):
        line = one_line_error(run(*command))
        assert "'nope'" in line and "known: tiny" in line
    assert len(ticks(applied)) == ticked  # no tick was published
    assert run("trigger", "--pipeline", "tiny").exit_code == 0
    assert len(ticks(applied)) == ticked + 1


def test_event_types_are_accepted_without_their_version_and_a_bogus_one_lists_them():
    from mlops.ops.archive import event_type_name

    assert event_type_name("data.ready") == "data.ready.v1" == event_type_name("data.ready.v1")
    line = one_line_error(run("events", "--type", "bogus"))
    assert "data.ready.v1" in line and "model.deployed.v1" in line


def test_every_option_of_every_command_has_help_text():
    import typer.main

    group = typer.main.get_command(app)
    commands = [(name, c) for name, c in group.commands.items()]
    commands += [(f"pipeline {n}", c) for n, c in group.commands["pipeline"].commands.items()]
    for name, command in commands:
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert getattr(param, "help", None), f"mlops {name} {param.opts[0]} has no help"


# --------------------------------------------------------------------------------- models view

def test_models_shows_the_gate_metric_and_the_reason_and_fits_80_columns(applied):
    meta = VersionMeta(artifact_uri="gs://b/m/model.zip", artifact_checksum="sha256:x",
                       metrics={"roc_auc": 0.9123}, champion_metrics={"roc_auc": 0.9001}, decision="reject",
                       reason="roc_auc 0.9123 vs champion v1 0.9001: gain +0.0122 < required 0.05")
    applied.registry.register_version("tiny", "tiny", "gs://b/m", "image", {"status": "rejected"}, [],
                                      json.dumps(meta.to_json()))
    result = run("models", "--pipeline", "tiny")
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    text = " ".join(result.stdout.split())
    assert "roc_auc 0.9123 (-)" in text or "roc_auc 0.9123 (0.9001)" in text
    assert "required 0.05" in text  # the reason's end: wrapped, not cut
    rows = json.loads(run("models", "--pipeline", "tiny", "--json").stdout)
    assert rows[0]["gate"] == {"metric": "roc_auc", "value": 0.9123, "champion_value": 0.9001}


# ------------------------------------------------------------------------------ stack, reset

def test_a_stack_that_is_down_is_one_line_not_a_retry_loop(tmp_path):
    from mlops.stack.supervisor import Component, StackState

    state = StackState(project="p", data_dir=str(tmp_path),
                       env={"MLOPS_PROJECT": "p", "MLOPS_BUCKET": "b"},
                       components={"bigquery": Component("bigquery", "emulator", 2 ** 22 + 1, 1, None, "x.log")})
    state.save(tmp_path / "state.json")
    (tmp_path / "rows.csv").write_text(GOOD_CSV)
    line = one_line_error(run("events", "--data-dir", str(tmp_path)), code=1)
    assert "not running" in line and "mlops up" in line


def test_no_stack_and_no_cloud_settings_is_one_line(tmp_path):
    line = one_line_error(run("models", "--data-dir", str(tmp_path / "none")), code=1)
    assert "mlops up" in line


def test_reset_removes_a_stack_folder_and_refuses_any_other(tmp_path):
    stack = tmp_path / "stack"
    for folder in ("bigquery", "storage", "logs", "pubsub"):
        (stack / folder).mkdir(parents=True)
    (stack / "vertex.json").write_text("{}")
    result = run("reset", "--data-dir", str(stack))
    assert result.exit_code == 0 and "removed" in result.stderr and not stack.exists()

    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "logs").mkdir()
    assert "not deleting" in one_line_error(run("reset", "--data-dir", str(tmp_path / "home")))
    assert (tmp_path / "home" / "notes").exists()


# ---------------------------------------------------------------------------------- the demo

def test_the_demo_takes_a_free_pipeline_name_in_a_folder_that_has_one():
    from mlops.ops.demo import demo_spec, free_pipeline_name

    assert free_pipeline_name([]) == "abalone"
    assert free_pipeline_name(["abalone", "abalone-2"]) == "abalone-3"
    spec = demo_spec("abalone-3")
    assert (spec.name, spec.source.table) == ("abalone-3", "abalone_3")
    assert parse_spec(spec.to_yaml()) == spec

"""`mlops`: run the local stack, feed it data, and look at what the loop did.

Every command works against the local stack when one is up under `--data-dir` (default `.mlops/`),
and against the cloud project in the environment otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlops.core.events import TickReason
from mlops.ops.context import CliContext
from mlops.stack.supervisor import DEFAULT_DATA_DIR

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
pipeline_app = typer.Typer(no_args_is_help=True, help="Pipeline specs: what to train, when, and how to ship it.")
app.add_typer(pipeline_app, name="pipeline")
console = Console(stderr=True)

@app.callback()
def _logs_to_stderr() -> None:
    """stdout carries only what a command prints (tables, JSON); library logs go to stderr."""
    import logging

    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


DataDir = Annotated[Path, typer.Option("--data-dir", help="The local stack's state folder.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline name.")]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def up(data_dir: DataDir = DEFAULT_DATA_DIR,
       ticker: Annotated[bool, typer.Option(help="Run the scheduler stand-in.")] = True,
       log_level: Annotated[str, typer.Option(help="Services' log level.")] = "INFO") -> None:
    """Start the emulators, provision the topology, start every service; return once all are healthy."""
    from mlops.stack.supervisor import Stack

    with console.status("starting the local stack..."):
        state = Stack(data_dir, log_level=log_level).up(ticker=ticker)
    table = Table("component", "kind", "port", "pid", title=f"local stack up ({state.data_dir})")
    for c in state.components.values():
        table.add_row(c.name, c.kind, str(c.port or "-"), str(c.pid))
    console.print(table)


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Every component of the local stack with its port, PID and health."""
    from mlops.stack.supervisor import Stack

    report = Stack(data_dir).status()
    if as_json:
        _print_json(report)
    else:
        table = Table("component", "kind", "port", "pid", "healthy", title="local stack" if report["up"] else "local stack (not up)")
        for name, c in report["components"].items():
            table.add_row(name, c["kind"], str(c["port"] or "-"), str(c["pid"]), "yes" if c["healthy"] else "[red]no[/red]")
        console.print(table)
    raise typer.Exit(0 if report["up"] else 1)


@app.command()
def down(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Stop everything `mlops up` started, by PID (process groups: no emulator child survives)."""
    from mlops.stack.supervisor import Stack

    stopped = Stack(data_dir).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def doctor(install: Annotated[bool, typer.Option("--install", help="Also prepare what can be prepared offline.")] = False) -> None:
    """Check this machine has what the local stack needs (Java + the Pub/Sub emulator, the Python stand-ins)."""
    from mlops.stack import emulators

    problems = []
    try:
        console.print(f"pubsub emulator: {emulators.find_pubsub_emulator()}")
    except Exception as error:  # noqa: BLE001
        problems.append(str(error))
    for script in ("bqemulator", "gcp-storage-emulator", "gunicorn"):
        found = emulators.venv_script(script)
        console.print(f"{script}: {found or 'MISSING'}")
        if not found:
            problems.append(f"{script} is not installed (make install)")
    if install:
        import tempfile

        with tempfile.TemporaryDirectory() as home:
            console.print(f"duckdb spatial extension installs offline: {emulators.install_duckdb_spatial(Path(home))}")
    if problems:
        _fail("; ".join(problems))


@app.command()
def topology(tfvars: Annotated[bool, typer.Option("--tfvars", help="Terraform variables (JSON).")] = True) -> None:
    """The deployment's topology, rendered for deploy/terraform."""
    from mlops.stack.provision import tfvars_json

    sys.stdout.write(tfvars_json())


@pipeline_app.command("apply")
def pipeline_apply(spec_file: Path, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Validate a pipeline spec (YAML) and store it where every service reads it."""
    from mlops.core.spec import SpecError, load_spec
    from mlops.ml.errors import ModelOptionsError
    from mlops.ml.options import parse_model_options

    try:
        spec = load_spec(spec_file)
        parse_model_options(spec.model.type, spec.model.options)
    except (SpecError, ModelOptionsError) as error:
        _fail(str(error), 2)
    uri = CliContext(data_dir).specs.put(spec)
    console.print(f"pipeline [bold]{spec.name}[/bold] applied: {uri}")


@pipeline_app.command("list")
def pipeline_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """The pipelines the services know."""
    ctx = CliContext(data_dir)
    specs = [ctx.specs.get(name).model_dump(mode="json") for name in ctx.specs.names()]
    _print_json(specs) if as_json else console.print(specs)


@app.command()
def ingest(pipeline: PipelineOpt, csv_file: Annotated[Path, typer.Option("--csv", help="CSV with a header row.")],
           labels: Annotated[bool, typer.Option("--labels", help="The CSV holds late labels: request_id + label column.")] = False,
           tick: Annotated[bool, typer.Option(help="Tell the data-watcher data landed.")] = True,
           data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Append CSV rows to a pipeline's source table (or late labels), then nudge the data-watcher."""
    from mlops.ops.ingest import IngestError, ingest_labels, ingest_rows, read_csv
    from mlops.ports.specs import UnknownPipeline

    ctx = CliContext(data_dir)
    try:
        spec = ctx.specs.get(pipeline)
        rows = read_csv(csv_file)
        count = (ingest_labels(ctx.warehouse, pipeline, rows, spec.source.label) if labels
                 else ingest_rows(ctx.warehouse, spec, rows))
    except (IngestError, UnknownPipeline, FileNotFoundError) as error:
        _fail(str(error), 2)
    console.print(f"{count} {'labels' if labels else 'rows'} landed in {pipeline}")
    if tick:
        _publish_tick(ctx, pipeline, TickReason.DATA_LANDED)


def _publish_tick(ctx: CliContext, pipeline: str | None, reason: str) -> str:
    from mlops.core.events import WatchTick

    return ctx.bus.publish_payload(WatchTick.EVENT_TYPE, WatchTick(pipeline=pipeline, reason=reason).model_dump(), "cli")


@app.command()
def trigger(pipeline: Annotated[Optional[str], typer.Option("--pipeline", "-p", help="Pipeline; all when omitted.")] = None,
            data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Publish a `watch.tick` now (the ticker does it on each spec's schedule anyway)."""
    event_id = _publish_tick(CliContext(data_dir), pipeline, TickReason.MANUAL)
    console.print(f"watch.tick published ({event_id})")


@app.command()
def models(pipeline: Annotated[Optional[str], typer.Option("--pipeline", "-p")] = None,
           data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Every registered version: aliases, status, metrics, data snapshot, created time."""
    from mlops.ops.reports import model_versions

    ctx = CliContext(data_dir)
    names = [pipeline] if pipeline else ctx.specs.names()
    rows = [row for name in names for row in model_versions(ctx.registry, name)]
    if as_json:
        _print_json(rows)
        return
    table = Table("pipeline", "version", "status", "aliases", "data", "metrics", "created")
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(r["metrics"].items())[:3])
        table.add_row(r["pipeline"], r["version"], r["status"], ",".join(r["aliases"]), r["data_version"], metrics,
                      r["created"][:19])
    console.print(table)


@app.command()
def predict(pipeline: PipelineOpt, body: Annotated[str, typer.Option("--json", help='{"instances": [...]}')],
            data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Call the serving endpoint."""
    import requests

    url = CliContext(data_dir).predictor_url()
    if not url:
        _fail("no predictor: start the stack (mlops up) or set MLOPS_PREDICTOR_URL")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        _fail(f"--json is not JSON: {error}", 2)
    response = requests.post(f"{url}/predict/{pipeline}", json=payload, timeout=30)
    _print_json(response.json())
    if response.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def events(run: Annotated[Optional[str], typer.Option("--run")] = None,
           event_type: Annotated[Optional[str], typer.Option("--type")] = None,
           since: Annotated[Optional[str], typer.Option("--since", help="RFC 3339 time.")] = None,
           limit: Annotated[int, typer.Option(help="At most this many.")] = 200,
           data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Archived events, newest first."""
    from mlops.ops.archive import query_events

    found = query_events(CliContext(data_dir).warehouse, run_id=run, event_type=event_type, since=since, limit=limit)
    if as_json:
        _print_json([e.as_dict() for e in found])
        return
    table = Table("time", "type", "pipeline", "run", "id", "caused by")
    for e in found:
        table.add_row(e.time[:23], e.type, e.pipeline, e.run_id[:8], e.id[:8], e.causation_id[:8])
    console.print(table)


@app.command()
def replay(event_id: Annotated[Optional[str], typer.Option("--event", help="ce-id of an archived event.")] = None,
           run: Annotated[Optional[str], typer.Option("--run", help="Rerun this run ...")] = None,
           from_stage: Annotated[Optional[str], typer.Option("--from-stage", help="... from this stage on.")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
           data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Re-publish an archived event as a new one (`replay_of` = the original), to rerun a stage or a run."""
    from mlops.core.events import EventValidationError
    from mlops.ops.replay import (
        ReplayError,
        find_event,
        plan_replay,
        publish,
        stage_input,
    )

    if bool(event_id) == bool(run):
        _fail("give either --event ID, or --run RUN with --from-stage STAGE", 2)
    if run and not from_stage:
        _fail("--run needs --from-stage (e.g. trainer, evaluator, registrar, deployer)", 2)
    ctx = CliContext(data_dir)
    try:
        if event_id:
            original = find_event(ctx.warehouse, event_id)
        else:
            assert run and from_stage  # both checked above
            original = stage_input(ctx.warehouse, run, from_stage)
        planned = plan_replay(original)
    except (ReplayError, EventValidationError) as error:
        _fail(str(error), 2)
    if not dry_run:
        publish(ctx.bus, planned)
    _print_json({"dry_run": dry_run, **planned.describe()})


@app.command()
def lineage(pipeline: str, version: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """From a model version back to its data snapshot, params, evaluation, deployments and code versions."""
    from mlops.ops.lineage import lineage as build_lineage
    from mlops.ports.registry import NotFoundError

    ctx = CliContext(data_dir)
    try:
        report = build_lineage(ctx.registry, ctx.warehouse, pipeline, version)
    except NotFoundError as error:
        _fail(str(error), 2)
    if as_json:
        _print_json(report)
        return
    console.print_json(data=report, default=str)


@app.command()
def demo(data_dir: DataDir = DEFAULT_DATA_DIR,
         keep: Annotated[bool, typer.Option("--keep", help="Leave the stack running afterwards.")] = False,
         as_json: JsonFlag = False) -> None:
    """Play a real dataset into BigQuery in batches and watch the loop retrain, gate, register and deploy."""
    from mlops.ops.demo import run_demo

    summary = run_demo(data_dir, keep=keep, console=console)
    if as_json:
        _print_json(summary)
    if not summary.get("ok"):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

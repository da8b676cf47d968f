"""`mlops`: run the local stack, feed it data, and look at what the loop did.

Every command works against the local stack when one is up under `--data-dir` (default `.mlops/`),
and against the cloud project in the environment otherwise.
"""

# The CLI only parses, prints and maps errors to exit codes; the work is in mlops.ops. Modules are
# imported inside the commands that use them: a user runs `mlops events` or `mlops models` in a
# loop, and the cloud client libraries alone take seconds to import (docs/performance.md).

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from mlops.stack.supervisor import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from mlops.ops.context import CliContext

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
pipeline_app = typer.Typer(no_args_is_help=True, help="Pipeline specs: what to train, when, and how to ship it.")
app.add_typer(pipeline_app, name="pipeline")

F = TypeVar("F", bound=Callable[..., Any])

# Exit codes: 0 something happened as asked; 1 it did not (stack down, run failed, timeout);
# 2 the user asked for something wrong (bad file, unknown name).
EXIT_FAILED, EXIT_USAGE = 1, 2


@functools.cache
def _out() -> Console:
    """Tables and views for people, on stdout (80 columns when it is not a terminal)."""
    from rich.console import Console

    return Console()


@functools.cache
def _err() -> Console:
    """Progress and status lines, on stderr."""
    from rich.console import Console

    return Console(stderr=True)


# Commands that only read: nothing they run logs, so they skip structlog's import and set-up.
READ_ONLY = frozenset({"status", "models", "events", "lineage", "topology", "pipeline list"})


@app.callback()
def _logs_to_stderr(ctx: typer.Context) -> None:
    """stdout carries only what a command prints (tables, JSON); library logs go to stderr."""
    if ctx.invoked_subcommand not in READ_ONLY and ctx.invoked_subcommand != "pipeline":
        _configure_logs()


@pipeline_app.callback()
def _pipeline_logs(ctx: typer.Context) -> None:
    if f"pipeline {ctx.invoked_subcommand}" not in READ_ONLY:
        _configure_logs()


class _Stderr:
    """Whatever `sys.stderr` is when a line is logged (not the stream it was when logging was set up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _configure_logs() -> None:
    import logging

    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


DataDir = Annotated[Path, typer.Option("--data-dir", help="The local stack's state folder.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline name (see `mlops pipeline list`).")]
WaitFlag = Annotated[bool, typer.Option("--wait", help="Follow the run this causes to its outcome (snapshot, "
                                                       "training, gate, deployment); exit 1 if it fails.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1, help="With --wait: give up after this many seconds.")]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    # Plain write: one line whatever the terminal's width (rich would wrap it).
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(code)


def _one_line_errors(command: F) -> F:
    """Turn every error a user can cause or meet into one line and an exit code; a bug still shows
    its traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as error:  # noqa: BLE001 - sorted below; anything unknown is re-raised
            message, code = _known_error(error)
            if message is None:
                raise
            _fail(message, code)

    return run  # type: ignore[return-value]


def _known_error(error: Exception) -> tuple[str | None, int]:
    from mlops.core.settings import SettingsError
    from mlops.ops.errors import OperatorError
    from mlops.ports.registry import NotFoundError
    from mlops.ports.specs import UnknownPipeline

    if isinstance(error, OperatorError):
        return str(error), error.exit_code
    if isinstance(error, UnknownPipeline):
        return error.args[0] if error.args else str(error), EXIT_USAGE
    if isinstance(error, NotFoundError):
        return str(error), EXIT_USAGE
    if isinstance(error, SettingsError):
        return ("no local stack here and no cloud settings in the environment: start one with `mlops up` "
                f"(or pass --data-dir), or set them ({error})"), EXIT_FAILED
    module = type(error).__module__
    if module.startswith(("requests", "urllib3", "google.api_core", "google.auth")) or isinstance(
            error, (ConnectionError, TimeoutError)):
        return (f"could not reach the service ({type(error).__name__}: {str(error)[:300]}); is the stack up? "
                "`mlops status`"), EXIT_FAILED
    return None, EXIT_FAILED


def _command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    def register(function: F) -> F:
        return group.command(name)(_one_line_errors(function))

    return register


def _context(data_dir: Path, *needs: str) -> CliContext:
    """The clients for the stack under `data_dir` (or the cloud), after checking the components
    this command needs answer."""
    from mlops.ops.context import CliContext

    ctx = CliContext(data_dir)
    ctx.require_stack(*needs)
    return ctx


def _table(*columns: str, title: str | None = None, keep: tuple[str, ...] = ()) -> Table:
    """A table that fits 80 columns by wrapping cells (never cutting them), without vertical rules;
    the `keep` columns (times, ids, numbers) are never wrapped, the others give way."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  collapse_padding=True)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in keep)
    return table


def _when(iso: str, seconds: bool = True) -> str:
    """`2026-12-01T10:55:30.950785Z` -> `12-01 10:55:30.950` (or `12-01 10:55`)."""
    text = iso.replace("T", " ")[5:]
    return text[:18] if seconds else text[:11]


# ------------------------------------------------------------------------------------------ stack

@_command()
def up(data_dir: DataDir = DEFAULT_DATA_DIR,
       ticker: Annotated[bool, typer.Option(help="Run the scheduler stand-in.")] = True,
       log_level: Annotated[str, typer.Option(help="Services' log level.")] = "INFO") -> None:
    """Start the emulators, provision the topology, start every service under a supervisor that restarts
    whatever dies; return once all are healthy. On a stack already up, bring back only what is down."""
    from mlops.ops.errors import NotReachable
    from mlops.stack.supervisor import Stack

    with _err().status("starting the local stack..."):
        try:
            state = Stack(data_dir, log_level=log_level).up(ticker=ticker)
        except RuntimeError as error:
            raise NotReachable(f"the local stack did not start: {error}") from None
    table = _table("component", "kind", "port", "pid", title=f"local stack up ({state.data_dir})")
    for c in state.components.values():
        table.add_row(c.name, c.kind, str(c.port or "-"), str(c.pid))
    _out().print(table)


@_command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Every component of the local stack with its port, PID and health."""
    from mlops.stack.supervisor import Stack

    report = Stack(data_dir).status()
    if as_json:
        _print_json(report)
    else:
        table = _table("component", "kind", "port", "pid", "healthy",
                       title="local stack" if report["up"] else "local stack (not up)")
        for name, c in report["components"].items():
            table.add_row(name, c["kind"], str(c["port"] or "-"), str(c["pid"]), "yes" if c["healthy"] else "[red]no[/red]")
        _out().print(table)
    raise typer.Exit(0 if report["up"] else 1)


@_command()
def down(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Stop everything `mlops up` started, by PID (process groups: no emulator child survives)."""
    from mlops.stack.supervisor import Stack

    stopped = Stack(data_dir).down()
    _err().print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@_command()
def restart(component: Annotated[str, typer.Argument(help="A service, worker or emulator, as `mlops status` names it.")],
            data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Restart one component of the local stack now and wait until it answers (a crashed one is
    restarted by the stack's supervisor without asking)."""
    from mlops.stack.supervisor import Stack, StackError, UnknownComponent

    try:
        restarted = Stack(data_dir).restart(component)
    except UnknownComponent as error:
        _fail(str(error), EXIT_USAGE)
    except StackError as error:
        _fail(str(error))
    _err().print(f"{restarted.name} restarted (pid {restarted.pid}, restart {restarted.restarts})")


@_command()
def reset(data_dir: DataDir = DEFAULT_DATA_DIR,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first (asked only on a terminal).")] = False,
          ) -> None:
    """Stop the local stack and delete its data folder: the next `mlops up` starts empty."""
    from mlops.ops.reset import STACK_ENTRIES, WHAT_IS_REMOVED, check_resettable
    from mlops.ops.reset import reset as reset_stack

    entries = check_resettable(data_dir)
    if not entries:
        _err().print(f"nothing to reset: {data_dir} does not exist")
        return
    if not yes and sys.stdin.isatty():
        typer.confirm(f"delete {data_dir} ({WHAT_IS_REMOVED})?", abort=True)
    report = reset_stack(data_dir)
    if report.stopped:
        _err().print(f"stopped: {', '.join(report.stopped)}")
    for name in report.removed:
        _err().print(f"removed {report.data_dir / name}: {STACK_ENTRIES.get(name, 'a partial write')}", soft_wrap=True)
    _err().print(f"{data_dir} reset: {WHAT_IS_REMOVED} are gone; `mlops up` starts an empty stack")


@_command()
def doctor(install: Annotated[bool, typer.Option("--install", help="Also prepare what can be prepared offline.")] = False) -> None:
    """Check this machine has what the local stack needs (Java + the Pub/Sub emulator, the Python stand-ins)."""
    from mlops.stack import emulators

    problems = []
    try:
        _err().print(f"pubsub emulator: {emulators.find_pubsub_emulator()}")
    except Exception as error:  # noqa: BLE001
        problems.append(str(error))
    for script in ("bqemulator", "gcp-storage-emulator", "gunicorn"):
        found = emulators.venv_script(script)
        _err().print(f"{script}: {found or 'MISSING'}")
        if not found:
            problems.append(f"{script} is not installed (make install)")
    if install:
        import tempfile

        with tempfile.TemporaryDirectory() as home:
            _err().print(f"duckdb spatial extension installs offline: {emulators.install_duckdb_spatial(Path(home))}")
    if problems:
        _fail("; ".join(problems))


@_command()
def topology(tfvars: Annotated[bool, typer.Option("--tfvars", help="Terraform variables (JSON).")] = True) -> None:
    """The deployment's topology, rendered for deploy/terraform."""
    from mlops.stack.provision import tfvars_json

    sys.stdout.write(tfvars_json())


# -------------------------------------------------------------------------------------- pipelines

@_command(pipeline_app, "apply")
def pipeline_apply(spec_file: Annotated[Path, typer.Argument(help="The spec (YAML); see the README for its fields.")],
                   data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Validate a pipeline spec (and against its table, when that exists); store it for every service.

    When the table exists, the data-watcher is then told to look again (a `watch.tick`, spec_applied):
    rows a bad spec left waiting, or a changed model or gate, are trained on now.
    """
    from mlops.ops.pipelines import apply_spec, read_spec_file

    read_spec_file(spec_file)  # a bad file is refused before any client starts
    ctx = _context(data_dir, "storage", "bigquery", "pubsub")
    applied = apply_spec(ctx.specs, ctx.warehouse, spec_file, ctx.bus)
    table = applied.spec.source.table
    against = (f"checked against table {table}; the data-watcher looks at its rows now (tick {applied.tick_id[:8]})"
               if applied.checked else f"table {table} does not exist yet; the first `mlops ingest` creates it")
    _err().print(f"pipeline [bold]{applied.spec.name}[/bold] applied: {applied.uri} ({against})")


@_command(pipeline_app, "list")
def pipeline_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """The pipelines the services know: source, model, when they retrain, how they are gated."""
    from mlops.ops.pipelines import known_pipelines, summary

    reader = _context(data_dir, "storage").readers.specs
    specs = [reader.get(name) for name in known_pipelines(reader)]
    if as_json:
        _print_json([spec.model_dump(mode="json") for spec in specs])
        return
    if not specs:
        _err().print("no pipelines yet: apply a spec with `mlops pipeline apply FILE`")
        return
    table = _table("name", "learns", "model", "retrains on", "promotes when", keep=("model",))
    for spec in specs:
        s = summary(spec)
        table.add_row(s["name"], f"{s['label']} from {s['features']} columns of {s['table']}", s["model"], s["retrain"],
                      s["gate"])
    _out().print(table)


# ------------------------------------------------------------------------------------ data, ticks

@_command()
def ingest(pipeline: PipelineOpt,
           csv_file: Annotated[Path, typer.Option("--csv", help="CSV with a header row; columns as the spec names them.")],
           labels: Annotated[bool, typer.Option("--labels", help="The CSV holds late labels: request_id + label column.")] = False,
           tick: Annotated[bool, typer.Option(help="Tell the data-watcher data landed.")] = True,
           wait: WaitFlag = False, timeout: TimeoutOpt = 300.0,
           data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Append CSV rows to a pipeline's source table (or late labels), then nudge the data-watcher.

    Every value is checked against the table's columns first: one that does not fit lands nothing.
    """
    from datetime import UTC, datetime

    from mlops.core.events import TickReason
    from mlops.ops.ingest import ingest_labels, ingest_rows, read_csv
    from mlops.ops.pipelines import require_pipeline
    from mlops.ops.ticks import publish_tick

    rows = read_csv(csv_file)  # a bad file is refused before any client starts
    if wait and (labels or not tick):
        _fail("--wait follows the run a data tick starts: not with --labels or --no-tick", EXIT_USAGE)
    ctx = _context(data_dir, "storage", "bigquery", "pubsub")
    spec = require_pipeline(ctx.specs, pipeline)
    started = datetime.now(UTC)
    if labels:
        count = ingest_labels(ctx.warehouse, pipeline, rows.rows(), spec.source.label)
        _err().print(f"{count} labels landed in {pipeline} ({spec.source.table})")
    else:
        landed = ingest_rows(ctx.warehouse, spec, rows)
        again = f"; {landed.already_there} were already there from an earlier run of this file" if landed.already_there else ""
        _err().print(f"{landed.rows} rows landed in {pipeline} ({spec.source.table}){again}")
        if not landed.rows:
            tick = False  # nothing new: no tick, and nothing to follow
            _err().print("nothing new to train on: every row of this file had landed before")
    if tick:
        tick_id = publish_tick(ctx.bus, pipeline, TickReason.DATA_LANDED)
        if wait:
            _follow(ctx, tick_id, [pipeline], started, timeout)


OUTCOMES = {
    "deployed": "a new model serves",
    "rejected": "the candidate was registered, rejected by the gate; the champion keeps serving",
    "nothing": "no run: nothing to train",
}


def _follow(ctx: CliContext, tick_id: str, pipelines: list[str], started: Any, timeout: float) -> None:
    """Print each step of the run(s) tick `tick_id` caused, then each pipeline's outcome."""
    from mlops.ops.follow import follow

    specs = [ctx.specs.get(name) for name in pipelines]
    outcomes = {}
    _err().print(f"following the run (tick {tick_id[:8]}; up to {timeout:.0f} s)...")
    for step in follow(ctx.warehouse, tick_id, specs, started_at=started, timeout=timeout):
        prefix = f"{step.pipeline}: " if len(specs) > 1 else ""
        _err().print(f"  {prefix}{step.text}", highlight=False, markup=False, soft_wrap=True)
        if step.outcome:
            outcomes[step.pipeline] = step.outcome
    for name, outcome in outcomes.items():
        _err().print(f"{name}: {outcome} ({OUTCOMES.get(outcome, outcome)})", highlight=False, soft_wrap=True)


@_command()
def trigger(pipeline: Annotated[Optional[str], typer.Option("--pipeline", "-p", help="Pipeline; all when omitted.")] = None,
            wait: WaitFlag = False, timeout: TimeoutOpt = 300.0,
            data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Publish a `watch.tick` now: new rows are snapshotted and trained on, even below the thresholds.

    The ticker sends one on each spec's schedule anyway.
    """
    from datetime import UTC, datetime

    from mlops.core.events import TickReason
    from mlops.ops.pipelines import require_pipelines
    from mlops.ops.ticks import publish_tick

    ctx = _context(data_dir, "storage", "pubsub")
    names = require_pipelines(ctx.specs, pipeline)
    started = datetime.now(UTC)
    event_id = publish_tick(ctx.bus, pipeline, TickReason.MANUAL)
    _err().print(f"watch.tick published for {', '.join(names)} ({event_id})")
    if wait:
        _follow(ctx, event_id, names, started, timeout)


# ------------------------------------------------------------------------------------ read views

def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


@_command()
def models(pipeline: Annotated[Optional[str], typer.Option("--pipeline", "-p", help="Pipeline; all when omitted.")] = None,
           data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Every registered version, newest first: status, data, gate metric, the gate's decision and why."""
    from mlops.ops.pipelines import known_pipelines, require_pipelines
    from mlops.ops.reports import model_versions

    ctx = _context(data_dir, "storage", "vertex")
    if pipeline is None and not known_pipelines(ctx.readers.specs):
        _print_json([]) if as_json else _err().print("no pipelines yet: apply a spec with `mlops pipeline apply FILE`")
        return
    names = require_pipelines(ctx.readers.specs, pipeline)
    rows = [row for name in names
            for row in model_versions(ctx.readers.registry, name, ctx.readers.specs.get(name).promotion.metric)]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _err().print(f"no model versions yet for {', '.join(names)}")
        return
    several = len(names) > 1
    table = _table(*(("pipeline",) if several else ()), "v", "status", "data", "gate metric (champion)", "decision and reason",
                   "created", keep=("v", "status", "data", "created"))
    for r in rows:
        gate = r["gate"] or {}
        metric = f"{gate.get('metric')} {_fmt(gate.get('value'))} ({_fmt(gate.get('champion_value'))})"
        status = r["status"] + (f" ({', '.join(a for a in r['aliases'] if a != r['status'])})"
                                if set(r["aliases"]) - {r["status"]} else "")
        table.add_row(*((r["pipeline"],) if several else ()), r["version"], status, r["data_version"], metric,
                      f"{r['decision']}: {r['reason']}" if r["decision"] else "-", _when(r["created"], seconds=False))
    _out().print(table)


@_command()
def predict(pipeline: PipelineOpt, body: Annotated[str, typer.Option("--json", help='{"instances": [...]}')],
            data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Call the pipeline's Vertex AI endpoint (`:predict`; the traffic split picks the model version)."""
    import requests

    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        _fail(f"--json is not JSON: {error}", EXIT_USAGE)
    from mlops.ops.errors import NotReachable
    from mlops.ops.serving import EndpointClient
    from mlops.ports.specs import UnknownPipeline

    ctx = _context(data_dir, "vertex")
    try:
        status, answer = EndpointClient(ctx.settings).predict(ctx.specs.get(pipeline).endpoint_name, payload)
    except (UnknownPipeline, NotReachable) as error:
        _fail(str(error).strip('"'))
    except requests.RequestException as error:
        _fail(f"the endpoint did not answer: {error}")
    _print_json(answer)
    if status >= 400:
        raise typer.Exit(1)


@_command()
def events(run: Annotated[Optional[str], typer.Option("--run", help="A run id, or its first characters as tables show them.")] = None,
           event_type: Annotated[Optional[str], typer.Option("--type", help="Event type, e.g. data.ready (newest version) or data.ready.v1.")] = None,
           since: Annotated[Optional[str], typer.Option("--since", help="Only events archived from this RFC 3339 time on.")] = None,
           limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 200,
           data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Archived events, newest first."""
    from mlops.ops.archive import SHORT_ID, event_type_name, query_events, runs_matching

    type_name = event_type_name(event_type) if event_type else None
    ctx = _context(data_dir, "bigquery")
    found = query_events(ctx.readers.warehouse, run_id=run, event_type=type_name, since=since, limit=limit)
    if run and len(runs := runs_matching(found, run)) > 1:
        _fail(f"--run {run} matches {len(runs)} runs ({', '.join(r[:12] for r in runs[:5])}): give more characters",
              EXIT_USAGE)
    if as_json:
        _print_json([e.as_dict() for e in found])
        return
    if not found:
        _err().print("no archived events match")
        return
    table = _table("time", "type", "pipeline", "run", "id", "caused by", keep=("time", "run", "id", "caused by"))
    for e in found:
        table.add_row(_when(e.time), e.type, e.pipeline, e.run_id[:SHORT_ID], e.id[:SHORT_ID],
                      e.causation_id[:SHORT_ID])
    _out().print(table)


@_command()
def replay(event_id: Annotated[Optional[str], typer.Option("--event", help="ce-id of an archived event.")] = None,
           run: Annotated[Optional[str], typer.Option("--run", help="Rerun this run ...")] = None,
           from_stage: Annotated[Optional[str], typer.Option("--from-stage", help="... from this stage on.")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
           force: Annotated[bool, typer.Option("--force", help="Redeploy a version that was rolled back, too.")] = False,
           data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Re-publish an archived event as a new one (`replay_of` = the original), to rerun a stage or a run."""
    from mlops.core.events import EventValidationError
    from mlops.ops.replay import find_event, plan_replay, publish, stage_input

    if bool(event_id) == bool(run):
        _fail("give either --event ID, or --run RUN with --from-stage STAGE", EXIT_USAGE)
    if run and not from_stage:
        _fail("--run needs --from-stage (e.g. trainer, evaluator, registrar, deployer)", EXIT_USAGE)
    ctx = _context(data_dir, "bigquery", "pubsub")
    try:
        if event_id:
            original = find_event(ctx.warehouse, event_id)
        else:
            assert run and from_stage  # both checked above
            original = stage_input(ctx.warehouse, run, from_stage)
        planned = plan_replay(original, force=force)
    except EventValidationError as error:
        _fail(str(error), EXIT_USAGE)
    if not dry_run:
        publish(ctx.bus, planned)
    _print_json({"dry_run": dry_run, **planned.describe()})


@_command()
def rollback(pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
             to: Annotated[Optional[str], typer.Option("--to", help="Version to serve; default: the previous champion.")] = None,
             reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the event.")] = "",
             timeout: TimeoutOpt = 120.0, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Serve the previous champion again (or --to VERSION), through the deployer; the displaced version is
    marked rolled_back. Waits for the deployer's model.deployed and prints it."""
    _traffic(data_dir, pipeline, "rollback", to, reason, timeout)


@_command()
def promote(pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
            version: Annotated[str, typer.Argument(help="Version to serve (as `mlops models` lists them).")],
            reason: Annotated[str, typer.Option("--reason", help="Why; required for a version the gate rejected.")] = "",
            timeout: TimeoutOpt = 120.0, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Serve VERSION with all the traffic and make it the champion, overriding the gate (with a reason)."""
    _traffic(data_dir, pipeline, "promote", version, reason, timeout)


def _traffic(data_dir: Path, pipeline: str, action: str, version: str | None, reason: str, timeout: float) -> None:
    from mlops.core.events import RequestedAction
    from mlops.ops.traffic import follow_change, request_change
    from mlops.ports.intents import IntentLog

    ctx = _context(data_dir, "storage", "pubsub", "vertex", "bigquery")
    request_id = request_change(ctx.bus, ctx.specs, ctx.registry, pipeline, RequestedAction(action), version, reason)
    _err().print(f"deployment.requested published ({request_id}); waiting for the deployer...", highlight=False)
    change = follow_change(ctx.warehouse, request_id, timeout=timeout, intents=IntentLog(ctx.blobs, "deployer"))
    sys.stdout.write(change.line() + "\n")


@_command()
def alerts(lookback: Annotated[float, typer.Option("--hours", min=0.01, help="Archived failures of the last this many hours.")] = 24.0,
           data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Open alerts: breached monitoring checks, silent pipelines, canary rollbacks, dead letters, stage failures."""
    from mlops.ops.alerts import list_alerts

    found = list_alerts(_context(data_dir, "bigquery", "storage"), lookback_hours=lookback)
    if as_json:
        _print_json([a.as_dict() for a in found])
        return
    if not found:
        _err().print("no open alerts")
        return
    table = _table("severity", "pipeline", "condition", "since", "detail", keep=("since",))
    for a in found:
        table.add_row(a.severity, a.pipeline, a.condition, a.since, a.detail)
    _out().print(table)


@_command()
def lineage(pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
            version: Annotated[str, typer.Argument(help="Model version (as `mlops models` lists them).")],
            data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """From a model version back to its data snapshot, params, evaluation, deployments and code versions."""
    from mlops.ops.lineage import lineage as build_lineage

    ctx = _context(data_dir, "vertex", "bigquery")
    report = build_lineage(ctx.readers.registry, ctx.readers.warehouse, pipeline, version)
    if as_json:
        _print_json(report)
        return
    _print_lineage(report)


def _print_lineage(r: dict[str, Any]) -> None:
    out = _out()
    data, training, evaluation = r["data"], r["training"] or {}, r["evaluation"]
    aliases = ", ".join(a for a in r["aliases"] if a not in ("default", r["status"]))
    lines = [
        f"[bold]{r['pipeline']} version {r['version']}[/bold]  {r['status']}" + (f" ({aliases})" if aliases else ""),
        f"  registered {r['created'][:19].replace('T', ' ')}, run {r['run_id']}"
        + (f", replay of {r['replay_of']}" if r["replay_of"] else ""),
        "[bold]data[/bold]",
        f"  snapshot {data['data_version']}: {data['snapshot_table']}",
        f"  {data['total_rows']} rows ({data['new_rows']} new) from {data['source_table']}, ingested up to "
        f"{str(data['watermark'])[:19]}",
        f"  trigger {data['trigger']}, drift PSI "
        + (f"{data['drift_score']:.3f}" if data.get("drift_score") is not None else "not measured"),
    ]
    if training:
        params = ", ".join(f"{k}={v}" for k, v in training["hyperparameters"].items())
        lines += [
            "[bold]training[/bold]",
            f"  {training['model_type']} ({training['backend']}) on {training['train_rows']} rows in "
            f"{training['train_seconds']:.2f} s, candidate {training['candidate_version']}",
            f"  hyper-parameters: {params or 'defaults'}",
            f"  artifact {training['artifact_uri']} ({training['artifact_checksum']})",
        ]
    champion = evaluation["champion_metrics"]
    metrics = ", ".join(f"{k} {v:.4f}" + (f" (champion {champion[k]:.4f})" if k in champion else "")
                        for k, v in sorted(evaluation["metrics"].items()))
    lines += [
        "[bold]evaluation[/bold]" + (f" on {evaluation['eval_rows']} held-out rows" if evaluation["eval_rows"] else ""),
        f"  {metrics}",
        f"  decision {evaluation['decision']}: {evaluation['reason']}",
        "[bold]deployments[/bold]",
        *([f"  {d['time'][:19].replace('T', ' ')} {d['action']} v{d['version_id']}: this version at "
           f"{d['traffic_percent']}%" + (f" ({d['reason']})" if d.get("reason") else "")
           for d in r["deployments"]] or ["  never deployed"]),
        "[bold]stages[/bold] (time, service, event, code version)",
        *[f"  {_when(s['time'])} {s['stage']:<16} {s['type']:<20} {s['code_version']}" for s in r["stages"]],
    ]
    for line in lines:
        out.print(line, highlight=False)


# ------------------------------------------------------------------------------------- dashboard

@_command()
def ui(data_dir: DataDir = DEFAULT_DATA_DIR,
       port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1.")] = 8050,
       host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
       ) -> None:
    """Serve the dashboard: pipelines, versions and the gate, traffic, drift, runs, failures (Ctrl-C stops it)."""
    from mlops.ui import create_app

    ctx = _context(data_dir, "storage", "bigquery", "vertex")
    ctx.settings  # no stack here and no cloud settings: one line now, not an error page per request
    app = create_app(ctx)
    _err().print(f"dashboard on http://{host}:{port}/ (reading {ctx.data_dir if ctx.state else 'the cloud project'})")
    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port} ({error.strerror}): choose another with --port")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


# ------------------------------------------------------------------------------------------- demo

@_command()
def demo(data_dir: Annotated[Optional[Path], typer.Option(
             "--data-dir", help="Stack folder; default .mlops-demo/, the demo's own, reset at the start.")] = None,
         keep: Annotated[bool, typer.Option("--keep", help="Leave the stack running afterwards.")] = False,
         canary: Annotated[int, typer.Option("--canary", min=0, max=99,
                                             help="Each new champion first takes this % of the traffic.")] = 0,
         as_json: JsonFlag = False) -> None:
    """Play a real dataset into BigQuery in batches and watch the loop retrain, gate, register and deploy."""
    from mlops.ops.demo import run_demo

    summary = run_demo(data_dir, keep=keep, console=_err(), canary_percent=canary)
    if as_json:
        _print_json(summary)
    if not summary.get("ok"):
        _fail(f"the demo ran but not as expected: {summary.get('predictions_logged')} of "
              f"{summary.get('predictions_sent')} predictions logged, decisions "
              f"{[r['decision'] for r in summary['rounds']]} (expected a promote and a reject)")


if __name__ == "__main__":
    app()

"""What every benchmark shares: result records, a throw-away stack, landing data, waiting for a version
to be served, and reading the stack's processes from /proc.

A result is one JSON object per line appended to `bench/results/<name>.jsonl`, carrying when it ran,
on which commit, on what machine, with which parameters, and the figures; it is also printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
PIPELINE = "abalone"

# The demo data's pipeline, with a gate that promotes every round, so that every round ends in a
# deployment: the model is fit on all rows of the snapshot and scored on those same rows (NO_SPLIT, as
# BigQuery ML evaluates without a split), and the gate compares log_loss with no absolute bar and
# min_gain 0.0. Each candidate minimises (regularised) log loss on exactly the rows both are scored on,
# a superset of the champion's, so it beats the champion; with a held-out split and roc_auc about half
# of the rounds are rejected by tiny margins once the model has converged. A round rejected anyway is
# recorded and left out of the figures. A fixed number of new rows triggers each run, so every round
# adds a similar amount of data.
SPEC_YAML = """\
name: {name}
source:
  table: {name}
  label: rings_above_9
  features: [sex, length, diameter, height, whole_weight, shucked_weight, viscera_weight, shell_weight]
model:
  type: LOGISTIC_REG
  options: {{l2_reg: 0.1, max_iterations: 50, data_split_method: NO_SPLIT}}
retrain: {{new_rows_fraction: null, new_rows_min: {new_rows_min}}}
promotion: {{metric: log_loss, min_gain: 0.0}}
"""


# ----------------------------------------------------------------------------------------- results


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty() -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def machine_facts() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, parameters: dict[str, Any], figures: dict[str, Any],
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Append one record to bench/results/<name>.jsonl and print it (one line)."""
    record = {
        "benchmark": name,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_facts(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "parameters": parameters,
        "figures": figures,
        **({"details": details} if details else {}),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, default=str)
    with (RESULTS_DIR / f"{name}.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    print(line, flush=True)
    return record


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ----------------------------------------------------------------------------------------- the stack


@dataclass
class BenchStack:
    data_dir: Path
    stack: Any  # mlops.stack.supervisor.Stack
    ctx: Any  # mlops.ops.context.CliContext

    @property
    def predictor_url(self) -> str:
        """The Vertex stand-in, whose endpoints serve the predictions (each version its own process)."""
        state = self.state()
        url = f"http://127.0.0.1:{state.components['vertex'].port}"
        _PROJECTS[url] = state.project
        return url

    def state(self):
        return self.stack.state()


def _sessions_alive(sessions: set[int]) -> list[tuple[int, str]]:
    """Processes whose session is one the stack started (every component leads its own session)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) in sessions:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    alive.append((int(entry.name), cmd))
        except (OSError, ProcessLookupError, IndexError):
            continue
    return alive


@contextlib.contextmanager
def bench_stack(label: str, keep_data: bool = False, ticker: bool = False) -> Iterator[BenchStack]:
    """A whole local stack in a fresh temporary folder, ticker off unless asked; always stopped afterwards."""
    from mlops.ops.context import CliContext
    from mlops.stack.supervisor import Stack

    data_dir = Path(tempfile.mkdtemp(prefix=f"mlops-bench-{label}-"))
    stack = Stack(data_dir)
    sessions: set[int] = set()
    failed = False
    say(f"starting a stack in {data_dir}")
    try:
        started = time.perf_counter()
        state = stack.up(ticker=ticker)
        sessions = {c.pid for c in state.components.values()}
        say(f"stack up in {time.perf_counter() - started:.1f} s ({len(state.components)} components)")
        yield BenchStack(data_dir, stack, CliContext(data_dir))
    except BaseException:
        failed = True
        raise
    finally:
        state = stack.state()
        if state is not None:
            sessions |= {c.pid for c in state.components.values()}
        stopped = stack.down()
        say(f"stack stopped: {', '.join(stopped) or 'nothing'}")
        deadline = time.monotonic() + 10
        left = _sessions_alive(sessions)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = _sessions_alive(sessions)
        if left:
            say(f"WARNING: processes of this stack still alive: {left}")
        if keep_data or failed:
            say(f"data and logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def apply_spec(bs: BenchStack, new_rows_min: int, name: str = PIPELINE):
    from mlops.core.spec import parse_spec

    spec = parse_spec(SPEC_YAML.format(name=name, new_rows_min=new_rows_min), "<bench>")
    bs.ctx.specs.put(spec)
    warm_clients(bs, spec)
    return spec


def warm_clients(bs: BenchStack, spec) -> None:
    """Build this process's clients now: the first registry call imports and sets up the Vertex AI SDK
    (seconds), which must not happen inside a measured wait and stall its 10 ms /healthz polling."""
    with contextlib.suppress(Exception):
        bs.ctx.registry.list_versions(spec.model_id)
    with contextlib.suppress(Exception):
        bs.ctx.warehouse.table_columns(spec.source.table)
    with contextlib.suppress(Exception):
        from mlops.ops.archive import query_events

        query_events(bs.ctx.warehouse, run_id="warm-up", limit=1)
    with contextlib.suppress(Exception):
        serving_map(requests.Session(), bs.predictor_url, spec.name)


class RowFeed:
    """The demo data (real abalone rows) in a fixed shuffled order; recycled with fresh ids when used up."""

    def __init__(self, seed: int = 7):
        from mlops.ml.datasets import load_demo_dataset

        dataset = load_demo_dataset()
        self.rows = list(dataset.rows)
        self.features = list(dataset.feature_columns)
        self.label = dataset.label_column
        random.Random(seed).shuffle(self.rows)
        self._next = 0
        self._lap = 0

    def take(self, count: int) -> list[dict[str, Any]]:
        taken = []
        while len(taken) < count:
            if self._next == len(self.rows):
                self._next, self._lap = 0, self._lap + 1
            row = dict(self.rows[self._next])
            if self._lap:
                row["_row_id"] = f"{row['_row_id']}-lap{self._lap}"
            taken.append(row)
            self._next += 1
        return taken

    def instances(self, count: int) -> list[dict[str, Any]]:
        return [{f: row[f] for f in self.features} for row in self.rows[:count]]


@dataclass(frozen=True)
class Landed:
    rows: int
    ingest_s: float  # streaming the rows into BigQuery (not part of the loop's figures)
    landed_at: float  # wall clock (time.time()) when the rows were in the table
    tick_id: str
    tick_publish_s: float


def land_rows(bs: BenchStack, spec, rows: list[dict[str, Any]]) -> Landed:
    """What `mlops ingest` does: append the rows, then publish a watch.tick for the pipeline."""
    from mlops.core.events import TickReason, WatchTick
    from mlops.ops.ingest import ingest_rows
    from mlops.ports.bus import publish_new

    started = time.perf_counter()
    ingest_rows(bs.ctx.warehouse, spec, rows)
    landed_at = time.time()
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    tick_id = publish_new(bs.ctx.bus, WatchTick(pipeline=spec.name, reason=TickReason.DATA_LANDED), "cli")
    return Landed(len(rows), ingest_s, landed_at, tick_id, time.perf_counter() - started)


def serving_map(session: requests.Session, url: str, pipeline: str) -> dict[str, int]:
    """Version -> traffic share on the pipeline's Vertex AI endpoint (`url`: the stand-in's)."""
    from mlops.ops.serving import EndpointClient

    client = _ENDPOINT_CLIENTS.get(url)
    if client is None:
        from mlops.core.settings import CommonSettings

        settings = CommonSettings.model_construct(project=_project_of(url), location="us-central1",
                                                  vertex_endpoint=url)
        client = _ENDPOINT_CLIENTS[url] = EndpointClient(settings, session)
    return client.split(pipeline)


_ENDPOINT_CLIENTS: dict[str, Any] = {}
_PROJECTS: dict[str, str] = {}


def _project_of(url: str) -> str:
    return _PROJECTS.get(url, "mlops-local")


def endpoint_target(bs: BenchStack, pipeline: str) -> tuple[int, str]:
    """(port, path) of the pipeline's endpoint `:predict` on the Vertex stand-in."""
    from mlops.ops.serving import EndpointClient

    state = bs.state()
    resource = EndpointClient(bs.ctx.settings).resource(bs.ctx.specs.get(pipeline).endpoint_name)
    return state.components["vertex"].port, f"/v1/{resource}:predict"


def serving_target(bs: BenchStack, version: str) -> tuple[int, str]:
    """(port, predict route) of the serving process of `version` (the container the endpoint forwards to)."""
    from mlops.stack.supervisor import serving_containers

    vertex = json.loads((Path(bs.state().data_dir) / "vertex.json").read_text())
    for record in vertex.get("containers", {}).values():
        if record["modelVersionId"] == version:
            return int(record["port"]), record["predictRoute"]
    raise RuntimeError(f"no serving process for version {version}: {list(serving_containers(Path(bs.state().data_dir)))}")


@dataclass(frozen=True)
class Outcome:
    version_id: str | None
    decision: str  # promote | reject | timeout
    seen_at: float | None  # wall clock of the healthz answer that first showed the new version
    polls: int


def wait_for_new_version(bs: BenchStack, pipeline: str, known_versions: set[str], poll_s: float = 0.01,
                         registry_every_s: float = 0.5, timeout_s: float = 300.0) -> Outcome:
    """Poll the predictor's /healthz every poll_s until it serves a version not in known_versions with
    traffic; every registry_every_s also look in the registry for a new version the gate rejected."""
    from mlops.ports.registry import VersionMeta

    url = bs.predictor_url
    deadline = time.monotonic() + timeout_s
    next_registry = time.monotonic() + registry_every_s
    polls = 0
    with requests.Session() as session:
        while time.monotonic() < deadline:
            polls += 1
            try:
                split = serving_map(session, url, pipeline)
            except requests.RequestException:
                split = {}
            seen_at = time.time()
            fresh = [v for v, share in split.items() if v not in known_versions and share > 0]
            if fresh:
                return Outcome(fresh[0], "promote", seen_at, polls)
            if time.monotonic() >= next_registry:
                next_registry = time.monotonic() + registry_every_s
                for version in bs.ctx.registry.list_versions(pipeline):
                    if version.version_id not in known_versions and VersionMeta.of(version).decision == "reject":
                        return Outcome(version.version_id, "reject", None, polls)
            time.sleep(poll_s)
    return Outcome(None, "timeout", None, polls)


def serve_first_model(bs: BenchStack, feed: Any, bootstrap_rows: int) -> tuple[Any, Outcome]:
    """Apply the bench spec, land the first rows and wait until a first version serves: the starting
    point of every load test. Returns the spec and the version that serves."""
    spec = apply_spec(bs, new_rows_min=100)
    land_rows(bs, spec, feed.take(bootstrap_rows))
    outcome = wait_for_new_version(bs, spec.name, set())
    if outcome.decision != "promote":
        raise RuntimeError(f"no model deployed to load-test: {outcome}")
    return spec, outcome


# ----------------------------------------------------------------------------------------- /proc


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(roots: dict[str, int]) -> dict[int, str]:
    """pid -> component name, for each root pid and all its descendants."""
    children = _children_map()
    owner: dict[int, str] = {}
    for name, root in roots.items():
        todo = [root]
        while todo:
            pid = todo.pop()
            if pid in owner:
                continue
            owner[pid] = name
            todo.extend(children.get(pid, []))
    return owner


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def memory_sample(roots: dict[str, int]) -> dict[str, Any]:
    """RSS (and PSS, which does not count shared pages twice) of every process of the stack, in MiB."""
    owner = process_tree(roots)
    per_component: dict[str, float] = {}
    rss_total = pss_total = 0
    for pid, name in owner.items():
        rss = _status_kib(pid, "VmRSS")
        rss_total += rss
        pss_total += _pss_kib(pid)
        per_component[name] = per_component.get(name, 0.0) + rss / 1024
    return {"processes": len(owner), "rss_mib": rss_total / 1024, "pss_mib": pss_total / 1024,
            "rss_mib_by_component": per_component}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each component's processes (all threads)."""
    owner = process_tree(roots)
    used: dict[str, float] = {}
    for pid, name in owner.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
        used[name] = used.get(name, 0.0) + ticks / CLOCK_TICKS
    return used


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores; idle and iowait excluded), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


class CpuWindow:
    """Who used the CPU between start() and stop(): the stack by component, this benchmark process with
    its children (the load generator), and everything else on the machine (other people's work)."""

    def __init__(self, roots: dict[str, int]):
        self._roots = {**roots, "bench": os.getpid()}  # the stack first: its processes are our children too

    def start(self) -> CpuWindow:
        self._cpu, self._busy, self._t = cpu_seconds(self._roots), machine_busy_seconds(), time.perf_counter()
        return self

    def stop(self) -> dict[str, Any]:
        cpu, busy, elapsed = cpu_seconds(self._roots), machine_busy_seconds(), time.perf_counter() - self._t
        used = {name: (cpu.get(name, 0.0) - self._cpu.get(name, 0.0)) / elapsed for name in cpu}
        stack = sum(v for k, v in used.items() if k != "bench")
        machine = (busy - self._busy) / elapsed
        return {
            "window_s": round(elapsed, 2),
            "machine_busy_cores": round(machine, 3),
            "stack_cores": round(stack, 3),
            "bench_cores": round(used.get("bench", 0.0), 3),
            "other_cores": round(max(0.0, machine - stack - used.get("bench", 0.0)), 3),
            "stack_cores_by_component": {k: round(v, 3) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                                         if k != "bench" and v >= 0.0005},
        }


STACK_PROCESS_WORDS = ("gunicorn", "-m predictor", "bqemulator", "pubsub-emulator", "gcp-storage-emulator",
                       "mlops.stack.")


def foreign_stack_processes(ours: dict[str, int]) -> int:
    """Processes of other local stacks (other people's tests) running now: they compete for the CPU."""
    mine = set(process_tree(ours)) | {os.getpid()}
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(word in cmd for word in STACK_PROCESS_WORDS):
            count += 1
    return count


def component_pids(bs: BenchStack) -> dict[str, int]:
    state = bs.state()
    return {name: c.pid for name, c in state.components.items()} if state else {}

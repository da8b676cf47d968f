"""The local stack, supervised as Cloud Run would: emulators, the local Vertex AI server, every service
under gunicorn, the archiver and the ticker, each restarted when its process dies.

Two halves, in two processes:

- `Stack` is what `mlops up` / `status` / `restart` / `down` and the tests use, from any process.
  `up` starts the supervisor process and returns once it reports every component healthy; `down`
  stops the supervisor first (so nothing is restarted behind its back), then every component by PID.
- `Supervisor` runs in its own process (`python -m mlops.stack.supervisor`, the `supervisor`
  component of `mlops status`). It starts the components, records each in the state file as soon as
  it is launched (`<data_dir>/state.json`: ports, PIDs, the command that starts it again), then
  watches: a component whose process dies is started again on the same port, with what that kind
  of component needs afterwards (see `Supervisor._after_restart`). `mlops restart NAME` asks it,
  over its control port, to restart one component now.

The state file is what lets `down`, `status` and `restart` work from another process, and what
tests and the CLI read to find ports and PIDs. A supervisor that is itself killed leaves the
components running; the next `mlops up` starts a new one that adopts them and restarts what is down.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.stack.emulators import (
    DEFAULT_PROJECT,
    HOST,
    BigQueryEmulator,
    Emulator,
    PubSubEmulator,
    StorageEmulator,
)
from mlops.stack.processes import (
    ManagedProcess,
    free_port,
    http_ok,
    kill_group,
    launch,
    pid_alive,
    stop_pid,
)


def _log() -> Any:
    # structlog and the topology (with every event class) load only when a stack starts: the
    # operator's read commands import this module for the state file alone (docs/performance.md).
    import structlog

    return structlog.get_logger("stack")

STATE_FILE = "state.json"
# The Vertex stand-in's state (models, endpoints, and the serving containers it runs).
VERTEX_STATE_FILE = "vertex.json"
VERTEX_STATE_ENV = "MLOPS_VERTEX_STATE"
SERVING = "serving"  # the kind of a serving container in `status`
ACK_DEADLINE_ENV = "MLOPS_PUSH_ACK_DEADLINE_S"
DEFAULT_DATA_DIR = Path(".mlops")
READY_TIMEOUT_S = 90.0
# How long `up` waits for the supervisor to report the whole stack healthy (emulators boot in
# parallel in ~10 s; the BigQuery emulator alone may take a minute on a busy machine).
START_TIMEOUT_S = 240.0
SUPERVISOR = "supervisor"
WATCH_EVERY_S = 0.25
# A component that dies again within this long of a restart is crash-looping: wait before the next try.
STABLE_AFTER_S = 10.0
MAX_BACKOFF_S = 30.0
# Slow registry calls whose caller crashed: how long a redelivery waits for one to land (locally;
# the services' defaults are the cloud's, where a deploy takes many minutes). See docs/architecture.md.
LOCAL_CALL_DEADLINE_S = "60"
# Start order; restarts follow it too, so a service never comes back before the emulators it needs.
KIND_ORDER = {SUPERVISOR: 0, "emulator": 1, "stand-in": 2, "service": 3, "worker": 4}


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says why and what to do."""


class UnknownComponent(StackError, KeyError):
    """No component of that name in the stack."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass
class Component:
    name: str
    kind: str  # supervisor | emulator | stand-in | service | worker
    pid: int
    port: int | None
    health_url: str | None
    log: str
    # How to start it again: the command, its folder, and what its environment adds to the stack's.
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    # Restarted, but what follows a restart (redelivery, provisioning) is not done yet: not healthy.
    recovering: bool = False

    def healthy(self) -> bool:
        if self.recovering or not pid_alive(self.pid):
            return False
        return http_ok(self.health_url) if self.health_url else True


@dataclass
class StackState:
    project: str
    data_dir: str
    env: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    ready: bool = False  # set by the supervisor once every component answered after a start

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        components = {name: Component(**c) for name, c in data.pop("components", {}).items()}
        return cls(components=components, **data)

    def url(self, component: str) -> str:
        return f"http://{HOST}:{self.components[component].port}"


def repo_root() -> Path:
    """The checkout whose services/ the stack runs: the working directory's, else the library's own."""
    for candidate in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[3]):
        if (candidate / "services").is_dir() and (candidate / "schemas").is_dir():
            return candidate
    raise RuntimeError("cannot find the project checkout (a folder with services/ and schemas/)")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def gunicorn_argv(app: str, port: int, chdir: Path | None = None, threads: int = 8) -> list[str]:
    argv = [_bin("gunicorn")]
    if chdir is not None:
        argv += ["--chdir", str(chdir)]
    # One worker (state like the predictor's models lives in the process), threads for concurrency,
    # no timeout (training answers when done), and no control socket under $HOME.
    return argv + ["--bind", f"{HOST}:{port}", "--workers", "1", "--threads", str(threads), "--timeout", "0",
                   "--graceful-timeout", "5", "--no-control-socket", app]


def service_argv(service, port: int) -> tuple[list[str], Path]:
    """gunicorn command and working folder of a service (the predictor, serving traffic, gets more threads)."""
    folder = repo_root() / "services" / service.name
    argv = gunicorn_argv(f"{service_package(service.name)}.app:create_app()", port, chdir=folder,
                         threads=16 if service.serves_traffic else 8)
    return argv, folder


def code_version() -> str:
    """The checkout's commit (with `-dirty` for local changes): what each stage records in lineage."""
    import subprocess

    try:
        root = repo_root()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if commit and dirty else commit or "unknown"


def service_package(name: str) -> str:
    return name.replace("-", "_")


def _in_order(components: Iterable[Component]) -> list[Component]:
    return sorted(components, key=lambda c: KIND_ORDER.get(c.kind, 9))


# ================================================================================================ client


class Stack:
    """The local stack under `data_dir`, as seen from any process: start, inspect, restart, stop."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, project: str = DEFAULT_PROJECT,
                 log_level: str = "INFO", extra_env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.project = project
        self.log_level = log_level
        self.extra_env = extra_env or {}
        # The supervisor, when this object launched it: reaped after `down` so no zombie remains.
        self._children: dict[int, ManagedProcess] = {}

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def state(self) -> StackState | None:
        return StackState.load(self.state_path)

    # ---------------------------------------------------------------- up

    def up(self, ticker: bool = True) -> StackState:
        """Start the stack (or bring back what is down) and return once every component is healthy."""
        existing = self.state()
        adopt = False
        if existing is not None:
            supervisor = existing.components.get(SUPERVISOR)
            if supervisor is not None and supervisor.healthy():
                # It restarts whatever is down by itself: nothing else is stopped, nothing is lost.
                # (It may still be starting the stack, for another `up`: wait for that first.)
                deadline = time.monotonic() + START_TIMEOUT_S
                while not (self.state() or existing).ready and pid_alive(supervisor.pid):
                    if time.monotonic() > deadline:
                        raise StackError(f"the stack's supervisor has been starting it for {START_TIMEOUT_S:.0f} s; "
                                         f"see {supervisor.log}")
                    time.sleep(0.2)
                state = self.wait_healthy(timeout=START_TIMEOUT_S)
                _log().info("stack already up", data_dir=str(self.data_dir))
                return state
            alive = [c for c in existing.components.values() if c.kind != SUPERVISOR and pid_alive(c.pid)]
            adopt = bool(alive) and all(c.argv for c in existing.components.values() if c.kind != SUPERVISOR)
            if not adopt:
                self.down()  # leftovers of a stack that is gone (or too old to adopt): start afresh
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "mlops.stack.supervisor", "--data-dir", str(self.data_dir),
                "--project", self.project, "--log-level", self.log_level]
        argv += (["--adopt"] if adopt else []) + ([] if ticker else ["--no-ticker"])
        for key, value in self.extra_env.items():
            argv += ["--env", f"{key}={value}"]
        process = launch(argv, name=SUPERVISOR, log_dir=self.data_dir / "logs", env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         cwd=self.data_dir)
        self._children[process.pid] = process
        try:
            state = self._wait_started(process)
        except BaseException:
            self.down()
            raise
        _log().info("stack up", components=len(state.components), adopted=adopt)
        return state

    def _wait_started(self, process: ManagedProcess) -> StackState:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not process.alive():
                raise StackError(f"{_failure_line(process)}; see {process.log_path}")
            state = self.state()
            if state is not None and state.ready and SUPERVISOR in state.components \
                    and state.components[SUPERVISOR].pid == process.pid:
                return state
            if time.monotonic() > deadline:
                waiting = sorted(c.name for c in state.components.values() if not c.healthy()) if state else []
                raise StackError(f"the local stack was not healthy after {START_TIMEOUT_S:.0f} s "
                                 f"(waiting for {', '.join(waiting) or 'the supervisor'}); see {process.log_path}")
            time.sleep(0.2)

    def wait_healthy(self, names: Iterable[str] | None = None, timeout: float = READY_TIMEOUT_S) -> StackState:
        """Wait until these components (all by default) run and answer, e.g. after the supervisor
        restarted one; returns the state as it is then."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state is None:
                raise StackError(f"no local stack in {self.data_dir}: start it with `mlops up`")
            wanted = list(names) if names is not None else list(state.components)
            missing = [n for n in wanted if n not in state.components]
            if missing:
                raise UnknownComponent(f"no component {missing[0]!r} in the stack; components: "
                                       f"{', '.join(state.components)}")
            waiting = [n for n in wanted if not state.components[n].healthy()]
            if not waiting:
                return state
            if time.monotonic() > deadline:
                raise StackError(f"not healthy after {timeout:.0f} s: {', '.join(waiting)} "
                                 f"(see {state.components[waiting[0]].log})")
            time.sleep(0.1)

    # ---------------------------------------------------------------- status / restart / down

    def status(self) -> dict[str, Any]:
        state = self.state()
        if state is None:
            return {"up": False, "data_dir": str(self.data_dir), "components": {}}
        components = {
            name: {"kind": c.kind, "pid": c.pid, "port": c.port, "alive": pid_alive(c.pid), "healthy": c.healthy(),
                   "restarts": c.restarts, "log": c.log}
            for name, c in state.components.items()
        }
        for name, c in serving_containers(Path(state.data_dir)).items():
            components[name] = {"kind": SERVING, "pid": c.pid, "port": c.port, "alive": pid_alive(c.pid),
                                "healthy": c.healthy(), "restarts": c.restarts, "log": c.log}
        return {"up": all(c["healthy"] for c in components.values()), "data_dir": state.data_dir,
                "project": state.project, "components": components, "env": state.env}

    def restart(self, name: str, timeout: float = 180.0) -> Component:
        """Restart one component now (its process is stopped, then started again on its port) and
        return it once healthy. Done by the supervisor, so it never races its own restarts."""
        state = self.state()
        if state is None:
            raise StackError(f"no local stack in {self.data_dir}: start it with `mlops up --data-dir {self.data_dir}`")
        if name not in state.components or name == SUPERVISOR:
            names = ", ".join(n for n in state.components if n != SUPERVISOR)
            raise UnknownComponent(f"no component {name!r} to restart; the stack's components: {names}")
        supervisor = state.components.get(SUPERVISOR)
        if supervisor is None or not supervisor.healthy():
            raise StackError(f"the stack's supervisor is not running: `mlops up --data-dir {self.data_dir}` brings it "
                             "back (and restarts whatever is down)")
        request = urllib.request.Request(f"{state.url(SUPERVISOR)}/restart/{name}", method="POST", data=b"")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return Component(**json.loads(response.read()))
        except urllib.error.HTTPError as error:
            reason = json.loads(error.read() or b"{}").get("error", f"HTTP {error.code}")
            raise StackError(f"restarting {name} failed: {reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise StackError(f"the supervisor did not answer ({error}); see {supervisor.log}") from None

    def down(self) -> list[str]:
        state = self.state()
        if state is None:
            return []
        stopped = []
        supervisor = state.components.get(SUPERVISOR)
        if supervisor is not None:
            # First, so that nothing is restarted while the rest stops; it records every process it
            # launched before it exits, so the state read again below names them all.
            if stop_pid(supervisor.pid):
                stopped.append(SUPERVISOR)
            child = self._children.pop(supervisor.pid, None)
            if child is not None:
                child.stop()  # already gone: this only reaps it
            state = self.state() or state
        # Producers first (workers, services, the Vertex stand-in), emulators last, so nothing publishes
        # into a dead bus; within each wave in parallel, as each may take its grace period to stop.
        from concurrent.futures import ThreadPoolExecutor

        rest = [c for c in state.components.values() if c.kind != SUPERVISOR]
        # The stand-ins first, so the Vertex one starts no serving container again; then those
        # containers with the services; emulators last.
        rest += list(serving_containers(Path(state.data_dir)).values())
        for wave in ([c for c in rest if c.kind == "stand-in"],
                     [c for c in rest if c.kind not in ("emulator", "stand-in")],
                     [c for c in rest if c.kind == "emulator"]):
            if wave:
                with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                    done = list(pool.map(lambda c: stop_pid(c.pid), wave))
                stopped += [c.name for c, ok in zip(wave, done, strict=True) if ok]
        self.state_path.unlink(missing_ok=True)
        return stopped


def serving_containers(data_dir: Path) -> dict[str, Component]:
    """The serving containers the Vertex stand-in runs (one per deployed model), from its state file,
    as components named `serving-<deployed model id>`: listed by `status` (with how often the stand-in
    started one again after it died), stopped by `down`."""
    path = data_dir / VERTEX_STATE_FILE
    try:
        containers = json.loads(path.read_text()).get("containers", {}) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    found = {}
    for dm_id, record in containers.items():
        name = f"{SERVING}-{dm_id}"
        found[name] = Component(name, SERVING, int(record.get("pid") or 0), record.get("port"),
                                f"http://{HOST}:{record.get('port')}{record.get('healthRoute', '/')}",
                                record.get("log", ""), restarts=int(record.get("restarts") or 0))
    return found


def _failure_line(process: ManagedProcess) -> str:
    """The supervisor's last word on why it stopped (its `stack failed` line), else its log's last line."""
    lines = process.log_tail(200).splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(line)
            if record.get("message") == "stack failed":
                return str(record.get("error", "unknown error"))
    return lines[-1] if lines else f"exited with code {process.popen.returncode}"


# ============================================================================================ supervisor


class Supervisor:
    """Starts and watches the stack's processes; runs in its own process (see `main`)."""

    def __init__(self, data_dir: Path, project: str = DEFAULT_PROJECT, log_level: str = "INFO",
                 ticker: bool = True, extra_env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.project = project
        self.log_level = log_level
        self.ticker = ticker
        self.extra_env = extra_env or {}
        self.logs = self.data_dir / "logs"
        # The environment components are started in: ours as we were started, before the stack's
        # client variables are added for our own clients (an emulator must not see another's).
        self._base_env = dict(os.environ)
        self.state = StackState(project=project, data_dir=str(self.data_dir))
        self._children: dict[int, ManagedProcess] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._started_at: dict[str, float] = {}
        self._control: Any = None

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def stop(self, *_: object) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _save(self) -> None:
        self.state.save(self.state_path)

    # ---------------------------------------------------------------- start

    def start(self, adopt: bool = False) -> None:
        """Start every component (or, adopting a stack whose supervisor died, only those that are down)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._serve_control()
        if adopt:
            loaded = StackState.load(self.state_path)
            if loaded is None:
                raise StackError(f"no stack to adopt in {self.data_dir}")
            self.state = loaded
            self.state.ready = False
        self._record_self(port)
        if adopt:
            os.environ.update(self.state.env)
            self._heal(initial=True)
        else:
            self._start_fresh()
        self._wait_healthy()
        self.state.ready = True
        self._save()
        _log().info("stack up", components=len(self.state.components), adopted=adopt)

    def _record_self(self, port: int) -> None:
        self.state.components[SUPERVISOR] = Component(
            SUPERVISOR, SUPERVISOR, os.getpid(), port, f"http://{HOST}:{port}/healthz", str(self.logs / "supervisor.log"))
        self._save()

    def _start_fresh(self) -> None:
        from mlops.core.topology import SERVICES

        self._start_emulators()
        self._provision_storage_and_warehouse()
        # The predictor is no Cloud Run service: the Vertex stand-in starts one per deployed model.
        cloud_run = [s for s in SERVICES if s.runs_on == "cloud-run"]
        service_ports = {s.name: free_port(HOST) for s in cloud_run}
        self._start_vertex()
        for service in cloud_run:
            argv, folder = service_argv(service, service_ports[service.name])
            port = service_ports[service.name]
            self._launch_new(Component(service.name, "service", 0, port, f"http://{HOST}:{port}/healthz", "",
                                       argv=argv, cwd=str(folder), env={"PORT": str(port), "PYTHONUNBUFFERED": "1"}))
        self._provision_pubsub()  # push subscriptions to the ports just recorded
        self._start_worker("archiver", "mlops.stack.archiver")
        if self.ticker:
            self._start_worker("ticker", "mlops.stack.ticker")

    def _start_emulators(self) -> None:
        emulators: list[Emulator] = [
            PubSubEmulator(self.data_dir / "pubsub", project=self.project, log_dir=self.logs),
            BigQueryEmulator(self.data_dir / "bigquery", project=self.project, log_dir=self.logs),
            StorageEmulator(self.data_dir / "storage", project=self.project, log_dir=self.logs),
        ]
        for emulator in emulators:
            process = emulator.launch().process
            assert process is not None  # launch() just set it
            own_env = {k: v for k, v in emulator.child_env().items() if self._base_env.get(k) != v}
            self.state.components[emulator.name] = Component(
                emulator.name, "emulator", process.pid, emulator.port, emulator.probe_url(emulator.port, self.project),
                str(process.log_path), argv=list(process.argv), cwd=str(emulator.data_dir), env=own_env)
            self._children[process.pid] = process
            self._started_at[emulator.name] = time.monotonic()
            self._save()
        for emulator in emulators:  # launched together above, so they boot in parallel
            emulator.wait_ready()
        for emulator in emulators:
            self.state.env.update(emulator.env())
        self.state.env.update({
            "MLOPS_PROJECT": self.project,
            "MLOPS_CODE_VERSION": code_version(),
            "MLOPS_BUCKET": f"{self.project}-mlops",
            "MLOPS_LOG_LEVEL": self.log_level,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "MLOPS_REGISTER_DEADLINE_S": LOCAL_CALL_DEADLINE_S,
            "MLOPS_DEPLOY_DEADLINE_S": LOCAL_CALL_DEADLINE_S,
            **self.extra_env,
        })
        os.environ.update(self.state.env)  # our own clients (provisioning) talk to these emulators
        self._save()

    def _start_vertex(self) -> None:
        port = free_port(HOST)
        # The serving containers it starts log beside the components (logs/serving-<deployed model>.log).
        self._launch_new(Component(
            "vertex", "stand-in", 0, port, f"http://{HOST}:{port}/healthz", "",
            argv=gunicorn_argv("mlops.stack.vertex_local:create_app()", port), cwd=str(self.data_dir),
            env={VERTEX_STATE_ENV: str(self.data_dir / VERTEX_STATE_FILE), "PYTHONUNBUFFERED": "1",
                 "MLOPS_VERTEX_LOG_DIR": str(self.logs)}))
        self.state.env["MLOPS_VERTEX_ENDPOINT"] = f"http://{HOST}:{port}"
        self._save()

    def _start_worker(self, name: str, module: str) -> None:
        self._launch_new(Component(name, "worker", 0, None, None, "", argv=[sys.executable, "-m", module],
                                   cwd=str(self.data_dir), env={"PYTHONUNBUFFERED": "1"}))

    def _launch_new(self, component: Component) -> None:
        self.state.components[component.name] = component
        self._launch(component)

    def _launch(self, component: Component) -> ManagedProcess:
        """Start a component's recorded command and record its PID at once, so `down` finds it
        even if we are stopped in the next instant."""
        base = self._base_env if component.kind == "emulator" else {**self._base_env, **self.state.env}
        process = launch(component.argv, name=component.name, log_dir=self.logs, env={**base, **component.env},
                         cwd=Path(component.cwd) if component.cwd else None)
        component.pid = process.pid
        component.log = str(process.log_path)
        self._children[process.pid] = process
        self._started_at[component.name] = time.monotonic()
        self._save()
        return process

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = {n: c for n, c in self.state.components.items() if n != SUPERVISOR}
        while waiting and not self._stop.is_set():
            for name, component in list(waiting.items()):
                if not self._alive(component):
                    raise StackError(f"{name} exited during start-up; see {component.log}")
                if component.healthy():
                    del waiting[name]
            if time.monotonic() > deadline:
                raise StackError(f"not healthy after {READY_TIMEOUT_S:.0f} s: {sorted(waiting)}")
            if waiting:
                time.sleep(0.1)
        if self._stop.is_set():
            raise StackError("stopped while starting")

    # ---------------------------------------------------------------- provisioning

    def _provision_storage_and_warehouse(self) -> None:
        self._provision_storage()
        self._provision_bigquery()

    def _settings(self) -> Any:
        from mlops.core.settings import CommonSettings, load_settings

        return load_settings(CommonSettings, SUPERVISOR, {**os.environ, **self.state.env})

    def _provision_storage(self) -> None:
        from mlops import runtime
        from mlops.stack.provision import provision_storage

        settings = self._settings()
        provision_storage(runtime.blob_store(settings), settings.location)

    def _provision_bigquery(self) -> None:
        from mlops import runtime
        from mlops.stack.provision import provision_bigquery

        provision_bigquery(runtime.warehouse(self._settings()))

    def _provision_pubsub(self) -> None:
        from mlops.core.topology import DeliveryPolicy
        from mlops.stack.provision import provision_pubsub

        urls = {c.name: f"http://{HOST}:{c.port}" for c in self.state.components.values() if c.kind == "service"}
        # A shorter push ack deadline (tests: a deploy that outlives its push) via MLOPS_PUSH_ACK_DEADLINE_S.
        ack = self.state.env.get(ACK_DEADLINE_ENV)
        provision_pubsub(self.project, urls, DeliveryPolicy(ack_deadline_s=int(ack)) if ack else DeliveryPolicy())

    # ---------------------------------------------------------------- watch and restart

    def watch(self) -> None:
        """Until stopped: start again any component whose process died."""
        while not self._stop.is_set():
            with self._lock:
                self._heal()
            self._stop.wait(WATCH_EVERY_S)

    def _alive(self, component: Component) -> bool:
        child = self._children.get(component.pid)
        if child is not None:
            return child.alive()  # also reaps it once it exited: no zombie
        return pid_alive(component.pid)

    def _heal(self, initial: bool = False) -> None:
        for component in _in_order(self.state.components.values()):
            if self._stop.is_set() or component.kind == SUPERVISOR:
                continue
            if not self._alive(component):
                if time.monotonic() >= self._retry_at.get(component.name, 0.0):
                    self._recover(component, initial)
            elif component.recovering:  # back, but what follows its restart failed last time
                self._finish_restart(component)

    def _recover(self, component: Component, initial: bool) -> None:
        child = self._children.get(component.pid)
        code = child.popen.returncode if child is not None else None
        up_for = time.monotonic() - self._started_at.get(component.name, 0.0)
        if not initial and up_for < STABLE_AFTER_S:
            self._failures[component.name] = self._failures.get(component.name, 0) + 1
        else:
            self._failures[component.name] = 0
        _log().warning("component down; starting it again", component=component.name, pid=component.pid,
                       exit_code=code, up_s=round(up_for, 1), restarts=component.restarts)
        try:
            self._restart(component, graceful=False)
        except Exception as error:  # noqa: BLE001 - logged; the next look tries again, later
            failures = self._failures[component.name] = self._failures.get(component.name, 0) + 1
            wait = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
            self._retry_at[component.name] = time.monotonic() + wait
            _log().error("restart failed; trying again", component=component.name, error=str(error)[:2000],
                         in_s=wait)
            return
        failures = self._failures.get(component.name, 0)
        if failures:  # it came back, but it had died young: the next crash waits a little first
            self._retry_at[component.name] = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** (failures - 1))

    def restart(self, name: str) -> Component:
        """A restart asked for by `mlops restart`: stop (gracefully), start again, wait until healthy."""
        with self._lock:
            component = self.state.components.get(name)
            if component is None or component.kind == SUPERVISOR:
                raise UnknownComponent(f"no component {name!r} to restart")
            self._restart(component, graceful=True)
            self._failures[name] = 0
            self._retry_at.pop(name, None)
            return component

    def _restart(self, component: Component, graceful: bool) -> None:
        old_pid = component.pid
        if graceful:
            stop_pid(old_pid)
        else:
            # What is left of its process group (gunicorn's worker after its master was killed) would
            # still hold the port: a crash takes the whole group, as a container's would.
            kill_group(old_pid)
        old = self._children.pop(old_pid, None)
        if old is not None:
            old.stop(grace=0.5)  # reaps it
        component.recovering = True
        process = self._launch(component)
        component.restarts += 1
        self._save()
        self._wait_ready(component, process)
        self._finish_restart(component)

    def _wait_ready(self, component: Component, process: ManagedProcess) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._stop.is_set():
            if not process.alive():
                raise StackError(f"{component.name} exited with code {process.popen.returncode} right after its "
                                 f"restart; see {component.log}")
            if component.health_url is None or http_ok(component.health_url):
                return
            if time.monotonic() > deadline:
                raise StackError(f"{component.name} was not healthy {READY_TIMEOUT_S:.0f} s after its restart")
            time.sleep(0.05)
        raise StackError(f"stopped while {component.name} was starting")

    def _finish_restart(self, component: Component) -> None:
        try:
            self._after_restart(component)
        except Exception as error:  # noqa: BLE001 - retried on the next look
            _log().error("after-restart step failed; retrying", component=component.name, error=str(error)[:2000])
            return
        component.recovering = False
        self._save()
        _log().info("component restarted", component=component.name, pid=component.pid,
                    restarts=component.restarts)

    def _after_restart(self, component: Component) -> None:
        """What each kind of component needs once it is back.

        - a service: the Pub/Sub emulator stopped pushing it the messages it could not deliver while
          it was down (a limit of the emulator): they are redelivered.
        - the Pub/Sub emulator: it lost every topic, subscription and message it held (they live in its
          memory only; a limit of the stand-in): the topology is provisioned again, and the archiver,
          whose streams died with it, is restarted.
        - the BigQuery and Cloud Storage emulators: they kept their data on disk; provisioning again
          is a no-op unless something was lost.
        - the archiver: its unacknowledged messages are redelivered at once (instead of after their
          ack deadline).
        """
        from mlops.core.topology import ALL_TOPICS, SERVICES_BY_NAME, archive_subscription, push_subscription
        from mlops.stack.provision import redeliver_unacked

        if component.kind == "service":
            service = SERVICES_BY_NAME[component.name]
            redeliver_unacked(self.project, [push_subscription(topic, service.name) for topic in service.consumes])
        elif component.name == "pubsub":
            self._provision_pubsub()
            archiver = self.state.components.get("archiver")
            if archiver is not None and self._alive(archiver):
                self._restart(archiver, graceful=True)
        elif component.name == "bigquery":
            self._provision_bigquery()
        elif component.name == "storage":
            self._provision_storage()
        elif component.name == "archiver":
            redeliver_unacked(self.project, [archive_subscription(topic) for topic in ALL_TOPICS])

    # ---------------------------------------------------------------- control port

    def _serve_control(self) -> int:
        """`GET /healthz`, `POST /restart/<name>` on a local port, for `Stack.restart`."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        supervisor = self

        class Control(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/healthz":
                    self._answer(200, {"status": "ok", "ready": supervisor.state.ready})
                else:
                    self._answer(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                prefix = "/restart/"
                if not self.path.startswith(prefix):
                    self._answer(404, {"error": f"no route {self.path}"})
                    return
                try:
                    component = supervisor.restart(self.path[len(prefix):])
                except UnknownComponent as error:
                    self._answer(404, {"error": str(error)})
                except Exception as error:  # noqa: BLE001 - the client prints it
                    self._answer(500, {"error": str(error)[:2000]})
                else:
                    self._answer(200, asdict(component))

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((HOST, 0), Control)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        self._control = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()

    def abort(self) -> None:
        """A fresh start failed: stop what it launched and forget the stack."""
        for component in reversed(_in_order(self.state.components.values())):
            if component.kind != SUPERVISOR and component.pid:
                with contextlib.suppress(Exception):
                    stop_pid(component.pid)
        for child in self._children.values():
            child.stop(grace=0.5)
        self.state_path.unlink(missing_ok=True)


def _env_pairs(pairs: Iterable[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    """The supervisor process: start (or adopt) the stack, then watch it until SIGTERM."""
    import argparse
    import signal

    from mlops.core.log import configure_logging

    parser = argparse.ArgumentParser(prog="python -m mlops.stack.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--no-ticker", action="store_true")
    parser.add_argument("--adopt", action="store_true", help="take over the running components of a stack")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra variable for every component")
    args = parser.parse_args(argv)
    configure_logging(SUPERVISOR, args.log_level)
    supervisor = Supervisor(args.data_dir, args.project, args.log_level, ticker=not args.no_ticker,
                            extra_env=_env_pairs(args.env))
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        supervisor.start(adopt=args.adopt)
    except Exception as error:  # noqa: BLE001 - one line the client shows; the stack is stopped
        stopping = supervisor.stopping
        _log().error("stack failed", error=str(error).splitlines()[0][:2000] if str(error) else repr(error),
                     exc_info=not stopping)
        if not stopping and not args.adopt:
            supervisor.abort()  # `down`, when it stopped us, stops what is recorded itself
        supervisor.close()
        return 1
    supervisor.watch()
    supervisor.close()
    _log().info("supervisor stopped; the components keep running until `mlops down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

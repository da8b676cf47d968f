"""The local stack: emulators, the local Vertex AI server, every service under gunicorn, the archiver
and the ticker, started in order, recorded by PID in one state file, stopped by PID.

`mlops up` / `mlops status --json` / `mlops down` are thin wrappers over `Stack`. The state file
(`<data_dir>/state.json`) is what lets `down` and `status` work from another process, and what
tests and the CLI read to find ports and PIDs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from mlops.core.topology import SERVICES
from mlops.stack.emulators import (
    DEFAULT_PROJECT,
    HOST,
    BigQueryEmulator,
    Emulator,
    PubSubEmulator,
    StorageEmulator,
    start_emulators,
)
from mlops.stack.processes import (
    ManagedProcess,
    free_port,
    http_ok,
    launch,
    pid_alive,
    stop_pid,
)

log = structlog.get_logger("stack")

STATE_FILE = "state.json"
DEFAULT_DATA_DIR = Path(".mlops")
READY_TIMEOUT_S = 90.0


@dataclass
class Component:
    name: str
    kind: str  # emulator | stand-in | service | worker
    pid: int
    port: int | None
    health_url: str | None
    log: str

    def healthy(self) -> bool:
        if not pid_alive(self.pid):
            return False
        return http_ok(self.health_url) if self.health_url else True


@dataclass
class StackState:
    project: str
    data_dir: str
    env: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)

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


class Stack:
    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, project: str = DEFAULT_PROJECT,
                 log_level: str = "INFO", extra_env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.project = project
        self.log_level = log_level
        self.extra_env = extra_env or {}
        # Processes this object launched: reaped after `down` so no zombie (or Popen warning) remains.
        self._children: dict[int, ManagedProcess | Emulator] = {}

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def state(self) -> StackState | None:
        return StackState.load(self.state_path)

    # ---------------------------------------------------------------- up

    def up(self, ticker: bool = True) -> StackState:
        existing = self.state()
        if existing and all(c.healthy() for c in existing.components.values()):
            log.info("stack already up", data_dir=str(self.data_dir))
            return existing
        if existing:
            self.down()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = StackState(project=self.project, data_dir=str(self.data_dir))
        started: list[ManagedProcess | Emulator] = []
        try:
            self._start_emulators(state, started)
            self._provision_storage_and_warehouse(state)
            service_ports = {s.name: free_port(HOST) for s in SERVICES}
            self._start_vertex(state, started, service_ports["predictor"])
            self._provision_pubsub(state, service_ports)
            self._start_services(state, started, service_ports)
            self._start_worker(state, started, "archiver", "mlops.stack.archiver")
            if ticker:
                self._start_worker(state, started, "ticker", "mlops.stack.ticker")
            state.save(self.state_path)
            self._children.update({process.pid: process for process in started})
            self._wait_healthy(state)
        except BaseException:
            for process in reversed(started):
                process.stop()
            self.state_path.unlink(missing_ok=True)
            raise
        log.info("stack up", components=len(state.components))
        return state

    def _record(self, state: StackState, name: str, kind: str, process: ManagedProcess | Emulator,
                port: int | None, health_path: str | None) -> None:
        pid = process.pid
        log_path = process.log_path
        health = f"http://{HOST}:{port}{health_path}" if port and health_path else None
        state.components[name] = Component(name, kind, pid, port, health, str(log_path))

    def _start_emulators(self, state: StackState, started: list) -> None:
        emulators = [
            PubSubEmulator(self.data_dir / "pubsub", project=self.project, log_dir=self.data_dir / "logs"),
            BigQueryEmulator(self.data_dir / "bigquery", project=self.project, log_dir=self.data_dir / "logs"),
            StorageEmulator(self.data_dir / "storage", project=self.project, log_dir=self.data_dir / "logs"),
        ]
        started.extend(emulators)
        start_emulators(emulators)
        for emulator in emulators:
            self._record(state, emulator.name, "emulator", emulator, emulator.port, None)
            state.env.update(emulator.env())
        state.env.update({
            "MLOPS_PROJECT": self.project,
            "MLOPS_CODE_VERSION": code_version(),
            "MLOPS_BUCKET": f"{self.project}-mlops",
            "MLOPS_LOG_LEVEL": self.log_level,
            "GOOGLE_CLOUD_PROJECT": self.project,
            **self.extra_env,
        })

    def _client_env(self, state: StackState) -> None:
        os.environ.update(state.env)

    def _provision_storage_and_warehouse(self, state: StackState) -> None:
        from mlops import runtime
        from mlops.core.settings import CommonSettings, load_settings
        from mlops.stack.provision import provision_bigquery, provision_storage

        self._client_env(state)
        settings = load_settings(CommonSettings, "stack", state.env)
        provision_storage(runtime.blob_store(settings), settings.location)
        provision_bigquery(runtime.warehouse(settings))

    def _provision_pubsub(self, state: StackState, service_ports: dict[str, int]) -> None:
        from mlops.stack.provision import provision_pubsub

        self._client_env(state)
        provision_pubsub(self.project, {name: f"http://{HOST}:{port}" for name, port in service_ports.items()})

    def _child_env(self, state: StackState, **more: str) -> dict[str, str]:
        return {**os.environ, **state.env, "PYTHONUNBUFFERED": "1", **more}

    def _start_vertex(self, state: StackState, started: list, predictor_port: int) -> None:
        port = free_port(HOST)
        env = self._child_env(state, MLOPS_VERTEX_STATE=str(self.data_dir / "vertex.json"),
                              MLOPS_VERTEX_PREDICT_URL=f"http://{HOST}:{predictor_port}/predict")
        process = launch(gunicorn_argv("mlops.stack.vertex_local:create_app()", port), name="vertex",
                         log_dir=self.data_dir / "logs", env=env, cwd=self.data_dir)
        started.append(process)
        self._record(state, "vertex", "stand-in", process, port, "/healthz")
        state.env["MLOPS_VERTEX_ENDPOINT"] = f"http://{HOST}:{port}"

    def _start_services(self, state: StackState, started: list, ports: dict[str, int]) -> None:
        for service in SERVICES:
            port = ports[service.name]
            argv, folder = service_argv(service, port)
            process = launch(argv, name=service.name, log_dir=self.data_dir / "logs",
                             env=self._child_env(state, PORT=str(port)), cwd=folder)
            started.append(process)
            self._record(state, service.name, "service", process, port, "/healthz")

    def _start_worker(self, state: StackState, started: list, name: str, module: str) -> None:
        process = launch([sys.executable, "-m", module], name=name, log_dir=self.data_dir / "logs",
                         env=self._child_env(state), cwd=self.data_dir)
        started.append(process)
        self._record(state, name, "worker", process, None, None)

    def _wait_healthy(self, state: StackState) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = dict(state.components)
        while waiting:
            for name, component in list(waiting.items()):
                if not pid_alive(component.pid):
                    raise RuntimeError(f"{name} exited during start-up; see {component.log}")
                if component.healthy():
                    del waiting[name]
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {READY_TIMEOUT_S:.0f} s: {sorted(waiting)}")
            if waiting:
                time.sleep(0.1)

    # ---------------------------------------------------------------- status / down

    def status(self) -> dict[str, Any]:
        state = self.state()
        if state is None:
            return {"up": False, "data_dir": str(self.data_dir), "components": {}}
        components = {
            name: {"kind": c.kind, "pid": c.pid, "port": c.port, "alive": pid_alive(c.pid), "healthy": c.healthy(),
                   "log": c.log}
            for name, c in state.components.items()
        }
        return {"up": all(c["healthy"] for c in components.values()), "data_dir": state.data_dir,
                "project": state.project, "components": components, "env": state.env}

    def down(self) -> list[str]:
        state = self.state()
        if state is None:
            return []
        stopped = []
        # Producers first (ticker, services), emulators last, so nothing publishes into a dead bus.
        order = sorted(state.components.values(), key=lambda c: {"worker": 0, "service": 1, "stand-in": 2}.get(c.kind, 3))
        for component in order:
            if stop_pid(component.pid):
                stopped.append(component.name)
            child = self._children.pop(component.pid, None)
            if child is not None:
                child.stop()  # already gone: this only reaps it
        self.state_path.unlink(missing_ok=True)
        return stopped

    def restart(self, name: str) -> Component:
        """Start one recorded component again on its port (after a crash, or in a kill test)."""
        state = self.state()
        if state is None or name not in state.components:
            raise KeyError(f"no component {name!r} in the stack")
        component = state.components[name]
        stop_pid(component.pid)
        service = next((s for s in SERVICES if s.name == name), None)
        if service is None:
            raise ValueError(f"only services can be restarted, not {component.kind} {name!r}")
        if component.port is None:
            raise ValueError(f"{name!r} has no port to restart on")
        argv, folder = service_argv(service, component.port)
        process = launch(argv, name=name, log_dir=self.data_dir / "logs",
                         env=self._child_env(state, PORT=str(component.port)), cwd=folder)
        old = self._children.pop(component.pid, None)
        if old is not None:
            old.stop()  # reap it
        component.pid = process.pid
        self._children[process.pid] = process
        state.save(self.state_path)
        process.wait_ready(component.healthy, READY_TIMEOUT_S)
        return component

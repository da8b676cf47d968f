"""The three local stand-ins for Google Cloud: Pub/Sub, BigQuery and Cloud Storage emulators.

Each emulator is one class with one shape::

    with PubSubEmulator.start(data_dir) as pubsub:      # free port picked, waits until ready
        os.environ.update(pubsub.env())                # PUBSUB_EMULATOR_HOST=127.0.0.1:P
        ...                                            # stopped (whole process group) on exit

or, to boot several at once, ``launch()`` each and then ``wait_ready()`` each
(:func:`start_emulators` does that). ``.pid`` is a process-group leader: a supervisor
may record it with ``.port`` and later stop it from another process with
:func:`mlops.stack.processes.stop_pid`, and check it with the class's ``probe(port)``.

The BigQuery emulator needs DuckDB's ``spatial`` extension at boot and would download
it; :func:`install_duckdb_spatial` installs it from the pinned PyPI wheel instead, so
the stack starts offline.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from mlops.stack.processes import (
    DEFAULT_GRACE_SECONDS,
    ManagedProcess,
    free_port,
    http_ok,
    launch,
    port_open,
)

HOST = "127.0.0.1"
DEFAULT_PROJECT = "mlops-local"
PUBSUB_OVERRIDE_ENV = "MLOPS_PUBSUB_EMULATOR"


class EmulatorNotInstalled(RuntimeError):
    """An emulator's program is missing; the message says how to install it."""


class PortInUse(RuntimeError):
    """The requested port already answers: probing it would find someone else's server."""


# --------------------------------------------------------------------------- the common shape


class Emulator(ABC):
    """One emulator process on 127.0.0.1:port, data and log under data_dir."""

    name: ClassVar[str]
    env_var: ClassVar[str]
    startup_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        project: str = DEFAULT_PROJECT,
        log_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port if port is not None else free_port(HOST)
        self.project = project
        self.log_dir = Path(log_dir) if log_dir is not None else self.data_dir
        self.process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    # -- what each emulator defines

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that starts this emulator."""

    def child_env(self) -> dict[str, str]:
        """The environment of the emulator process (default: ours)."""
        return dict(os.environ)

    def prepare(self) -> None:
        """One-off set-up before launch (folders, extensions)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    @abstractmethod
    def client_env(cls, port: int) -> dict[str, str]:
        """The variables that point the official client library at an emulator on port."""

    @classmethod
    @abstractmethod
    def probe_url(cls, port: int, project: str = DEFAULT_PROJECT) -> str:
        """A URL that answers 2xx once an emulator on port serves real requests."""

    @classmethod
    def probe(cls, port: int, project: str = DEFAULT_PROJECT) -> bool:
        """True when an emulator on port answers a real request."""
        return http_ok(cls.probe_url(port, project))

    # -- lifecycle

    @classmethod
    def start(
        cls,
        data_dir: Path,
        port: int | None = None,
        project: str = DEFAULT_PROJECT,
        log_dir: Path | None = None,
    ) -> Self:
        """Launch and wait until ready; the process is stopped if that fails."""
        emulator = cls(data_dir, port=port, project=project, log_dir=log_dir)
        emulator.launch()
        try:
            emulator.wait_ready()
        except BaseException:
            emulator.stop()
            raise
        return emulator

    def launch(self) -> Self:
        """Start the process and return without waiting for it to be ready."""
        if self.process is not None:
            raise RuntimeError(f"{self.name} emulator already launched (pid {self.pid})")
        if port_open(HOST, self.port):
            raise PortInUse(f"port {self.port} is already in use; cannot start the {self.name} emulator there")
        self.prepare()
        self.process = launch(
            self.command(), name=self.name, log_dir=self.log_dir, env=self.child_env(), cwd=self.data_dir
        )
        return self

    def wait_ready(self, timeout: float | None = None) -> Self:
        """Block until probe() passes; raises ProcessStartError with the log tail otherwise."""
        process = self._running()
        self.startup_seconds = process.wait_ready(
            lambda: self.probe(self.port, self.project), timeout or self.startup_timeout
        )
        return self

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop the emulator and everything it started. Idempotent."""
        if self.process is not None:
            self.process.stop(grace)

    def healthy(self) -> bool:
        return self.process is not None and self.process.alive() and self.probe(self.port, self.project)

    # -- facts

    @property
    def pid(self) -> int:
        """PID of the process-group leader (also the group id)."""
        return self._running().pid

    @property
    def log_path(self) -> Path:
        return self._running().log_path

    def env(self) -> dict[str, str]:
        return self.client_env(self.port)

    @property
    def endpoint(self) -> str:
        """What a client is pointed at (the value of its *_EMULATOR_HOST variable)."""
        return self.env()[self.env_var]

    def _running(self) -> ManagedProcess:
        if self.process is None:
            raise RuntimeError(f"{self.name} emulator was not launched")
        return self.process

    def __enter__(self) -> Self:
        if self.process is None:
            self.launch()
        if self.startup_seconds is None:
            self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"{type(self).__name__}(port={self.port}, pid={pid}, data_dir={str(self.data_dir)!r})"


def start_emulators(emulators: Iterable[Emulator], timeout: float | None = None) -> list[Emulator]:
    """Launch all, then wait for each: they boot in parallel. On any failure all are stopped."""
    started = list(emulators)
    try:
        for emulator in started:
            emulator.launch()
        for emulator in started:
            emulator.wait_ready(timeout)
    except BaseException:  # includes KeyboardInterrupt: never leave half a stack running
        for emulator in started:
            emulator.stop()
        raise
    return started


# --------------------------------------------------------------------------- finding programs


def venv_script(name: str) -> str | None:
    """A console script of our own environment (beside sys.executable), else from PATH.

    Looking beside the interpreter first finds the pinned versions even when the
    virtualenv is not activated.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


_PUBSUB_LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
_COMMON_SDK_ROOTS = (
    "/usr/lib/google-cloud-sdk",
    "/usr/share/google-cloud-sdk",
    "/opt/google-cloud-sdk",
    "/snap/google-cloud-sdk/current",
    "~/google-cloud-sdk",
)


def _sdk_root_from_gcloud_info() -> Path | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def _sdk_root_candidates() -> Iterable[Path]:
    # Cheap guesses first: `gcloud info` is authoritative but costs ~1 s per call.
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        yield Path(gcloud).resolve().parent.parent  # <sdk_root>/bin/gcloud
    for root in _COMMON_SDK_ROOTS:
        yield Path(root).expanduser()
    info_root = _sdk_root_from_gcloud_info()
    if info_root is not None:
        yield info_root


def _launcher_in(path: Path) -> Path | None:
    """path may be the launcher itself, the SDK root, or the pubsub-emulator folder."""
    for candidate in (path, path / _PUBSUB_LAUNCHER, path / "bin" / _PUBSUB_LAUNCHER.name):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def find_pubsub_emulator() -> Path:
    """The Cloud SDK's `cloud-pubsub-emulator` launcher script.

    $MLOPS_PUBSUB_EMULATOR (launcher, SDK root or pubsub-emulator folder) wins;
    otherwise the SDK is located from `gcloud`. We run the launcher, not
    `gcloud beta emulators pubsub start`, whose Java child outlives it.
    """
    override = os.environ.get(PUBSUB_OVERRIDE_ENV)
    if override:
        found = _launcher_in(Path(override).expanduser())
        if found is None:
            raise EmulatorNotInstalled(f"${PUBSUB_OVERRIDE_ENV}={override} holds no cloud-pubsub-emulator launcher")
        return found
    for root in _sdk_root_candidates():
        found = _launcher_in(root)
        if found is not None:
            return found
    raise EmulatorNotInstalled(
        "The Pub/Sub emulator is not installed. Install the Cloud SDK component "
        "(`gcloud components install pubsub-emulator`) or the Debian package "
        f"`google-cloud-cli-pubsub-emulator`, or point ${PUBSUB_OVERRIDE_ENV} at its launcher."
    )


def _require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return
    if shutil.which("java") is None:
        raise EmulatorNotInstalled(
            "The Pub/Sub emulator needs Java (a JRE 8+ on PATH or $JAVA_HOME), e.g. the Debian package "
            "`default-jre-headless`."
        )


def _require_script(name: str, package: str) -> str:
    found = venv_script(name)
    if found is None:
        raise EmulatorNotInstalled(f"`{name}` not found; install the PyPI package `{package}` (`pip install -e '.[cli]'`).")
    return found


# --------------------------------------------------------------------------- Pub/Sub


class PubSubEmulator(Emulator):
    """Google's Pub/Sub emulator (Java). Keeps everything in memory: data_dir holds only the log."""

    name = "pubsub"
    env_var = "PUBSUB_EMULATOR_HOST"
    startup_timeout = 60.0

    def command(self) -> list[str]:
        _require_java()
        # The launcher script `exec`s java, so the PID we hold is the JVM itself.
        return [str(find_pubsub_emulator()), f"--host={HOST}", f"--port={self.port}"]

    @classmethod
    def client_env(cls, port: int) -> dict[str, str]:
        return {cls.env_var: f"{HOST}:{port}"}  # no scheme: the client opens an insecure gRPC channel

    @classmethod
    def probe_url(cls, port: int, project: str = DEFAULT_PROJECT) -> str:
        # The emulator answers GET / with "Ok" once its gRPC+HTTP server is up; a bare TCP
        # connect can succeed a little earlier, while Netty binds but before it serves.
        return f"http://{HOST}:{port}/"


# --------------------------------------------------------------------------- BigQuery


def _bundled_extension_file(package: str, extension: str) -> Path | None:
    """The `<extension>.duckdb_extension` file shipped in a `duckdb-extension-*` wheel, if installed."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    import duckdb

    root = Path(module.__file__ or "").parent
    # The wheel lays it out as extensions/v<duckdb version>/<name>.duckdb_extension.
    preferred = root / "extensions" / f"v{duckdb.__version__}" / f"{extension}.duckdb_extension"
    if preferred.is_file():
        return preferred
    return next(iter(sorted(root.rglob(f"{extension}.duckdb_extension"))), None)


def install_duckdb_extension(home: Path, extension: str, package: str) -> bool:
    """Install a DuckDB extension from its PyPI wheel into `<home>/.duckdb/extensions`. Idempotent.

    DuckDB resolves `INSTALL x` / `LOAD x` under `$HOME/.duckdb/extensions/v<ver>/<platform>/`;
    a process started with the same HOME then finds the extension already installed and
    never reaches for the network. Returns False when the wheel is not installed.
    """
    import duckdb

    source = _bundled_extension_file(package, extension)
    if source is None:
        return False
    home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(":memory:") as con:
        # Setting home_directory on the connection is equivalent to HOME for the child,
        # without touching our own process environment.
        con.execute("SET home_directory = ?", [str(home)])
        row = con.execute(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [extension]
        ).fetchone()
        if not (row and row[0]):
            # INSTALL from a local file path copies it into the extension folder; no download.
            con.execute(f"FORCE INSTALL '{_sql_quote(str(source))}'")
    return True


def install_duckdb_spatial(home: Path) -> Path:
    """Install the pinned `spatial` extension under home (see :func:`install_duckdb_extension`).

    Returns the installed file's path. bqemulator runs `INSTALL spatial; LOAD spatial`
    at every start and refuses to start without it.
    """
    import duckdb

    if not install_duckdb_extension(home, "spatial", "duckdb_extension_spatial"):
        raise EmulatorNotInstalled(
            f"PyPI package `duckdb-extension-spatial=={duckdb.__version__}` is not installed; the BigQuery "
            "emulator needs it to start without network access."
        )
    with duckdb.connect(":memory:") as con:
        con.execute("SET home_directory = ?", [str(home)])
        row = con.execute(
            "SELECT install_path FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
    if not row or not row[0] or not Path(row[0]).is_file():
        raise RuntimeError(f"installing DuckDB spatial under {home} left no extension file")
    return Path(row[0])


def _sql_quote(text: str) -> str:
    return text.replace("'", "''")


STORAGE_API_ENV_VAR = "BIGQUERY_STORAGE_EMULATOR_HOST"


class BigQueryEmulator(Emulator):
    """`bqemulator` (DuckDB-backed), persistent under data_dir, with its gRPC port beside REST."""

    name = "bigquery"
    env_var = "BIGQUERY_EMULATOR_HOST"
    startup_timeout = 90.0

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        project: str = DEFAULT_PROJECT,
        log_dir: Path | None = None,
        grpc_port: int | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, project=project, log_dir=log_dir)
        # The gRPC port serves the Storage Read/Write APIs (e.g. to_dataframe with a bqstorage client).
        self.grpc_port = grpc_port if grpc_port is not None else free_port(HOST)
        self._with_avro = False

    @property
    def home(self) -> Path:
        """The HOME of the emulator process: DuckDB's extensions live under it."""
        return self.data_dir / "home"

    def prepare(self) -> None:
        super().prepare()
        (self.data_dir / "db").mkdir(exist_ok=True)
        (self.data_dir / "uploads").mkdir(exist_ok=True)
        install_duckdb_spatial(self.home)
        # Optional: the Avro extension too, if its wheel happens to be installed.
        self._with_avro = install_duckdb_extension(self.home, "avro", "duckdb_extension_avro")

    def command(self) -> list[str]:
        if importlib.util.find_spec("bqemulator") is None:
            raise EmulatorNotInstalled("`bqemulator` not found; install the PyPI package `bqemulator` "
                                       "(`pip install -e '.[cli]'`).")
        # bqemulator's own CLI, started through our launcher: it makes the one DuckDB connection safe
        # for the Storage API's gRPC threads (see mlops.stack.bqemulator_safe).
        return [
            sys.executable, "-m", "mlops.stack.bqemulator_safe",
            "start",
            "--rest-host", HOST, "--rest-port", str(self.port),
            "--grpc-host", HOST, "--grpc-port", str(self.grpc_port),
            "--persistent", "--data-dir", str(self.data_dir / "db"),
            "--project", self.project,
        ]  # fmt: skip

    def child_env(self) -> dict[str, str]:
        env = super().child_env()
        env["HOME"] = str(self.home)
        # bqemulator also tries `INSTALL avro` at boot (best effort); offline that is a
        # wasted network attempt, so skip it unless the Avro wheel was installed above.
        env["BQEMU_ENABLE_FORMAT_EXTENSIONS"] = "true" if self._with_avro else "false"
        # Keep upload staging inside the stack's folder rather than the shared system temp dir.
        env["BQEMU_UPLOAD_STAGING_DIR"] = str(self.data_dir / "uploads")
        return env

    @classmethod
    def client_env(cls, port: int) -> dict[str, str]:
        return {cls.env_var: f"http://{HOST}:{port}"}  # the client requires the scheme

    def env(self) -> dict[str, str]:
        # The Storage Read/Write API clients speak gRPC to the other port (host:port, no scheme).
        return {**super().env(), STORAGE_API_ENV_VAR: f"{HOST}:{self.grpc_port}"}

    @classmethod
    def probe_url(cls, port: int, project: str = DEFAULT_PROJECT) -> str:
        # A real API call: the REST app is mounted only after DuckDB and the catalog are up.
        return f"http://{HOST}:{port}/bigquery/v2/projects/{project}/datasets"


# --------------------------------------------------------------------------- Cloud Storage


class StorageEmulator(Emulator):
    """`gcp-storage-emulator`, storing buckets and objects on disk under `<data_dir>/data`."""

    name = "storage"
    env_var = "STORAGE_EMULATOR_HOST"
    startup_timeout = 30.0

    def command(self) -> list[str]:
        return [
            _require_script("gcp-storage-emulator", "gcp-storage-emulator"),
            "-d", str(self.data_dir / "data"),
            "start", "--host", HOST, "--port", str(self.port),
        ]  # fmt: skip

    @classmethod
    def client_env(cls, port: int) -> dict[str, str]:
        return {cls.env_var: f"http://{HOST}:{port}"}

    @classmethod
    def probe_url(cls, port: int, project: str = DEFAULT_PROJECT) -> str:
        return f"http://{HOST}:{port}/storage/v1/b?project={project}"


EMULATOR_CLASSES: tuple[type[Emulator], ...] = (PubSubEmulator, BigQueryEmulator, StorageEmulator)


def combined_env(emulators: Iterable[Emulator]) -> dict[str, str]:
    """The client variables of several emulators in one mapping."""
    env: dict[str, str] = {}
    for emulator in emulators:
        env.update(emulator.env())
    return env


__all__ = [
    "DEFAULT_PROJECT",
    "EMULATOR_CLASSES",
    "BigQueryEmulator",
    "Emulator",
    "EmulatorNotInstalled",
    "PortInUse",
    "PubSubEmulator",
    "StorageEmulator",
    "combined_env",
    "find_pubsub_emulator",
    "install_duckdb_extension",
    "install_duckdb_spatial",
    "start_emulators",
    "venv_script",
]

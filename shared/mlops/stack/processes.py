"""Start, probe and stop local background processes (the emulators, the local services).

Every process is started as the leader of its own session and process group
(``start_new_session=True``), so its PID is also its process-group id. Stopping
signals the whole group: wrappers that fork a child (a shell script running Java,
a server with workers) never leave that child behind. Because the PID is all that
is needed, a supervisor can record it in a state file and stop the process later
from another Python process with :func:`stop_pid`.

POSIX only (process groups); the liveness checks read ``/proc`` when it exists so
that zombies count as dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

DEFAULT_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.05
_PROC = Path("/proc")


class ProcessStartError(RuntimeError):
    """A process exited or did not become ready in time; the message carries its log tail."""


# --------------------------------------------------------------------------- ports and probes


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET on url answers 2xx. Proxies are bypassed: the targets are all local."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------- liveness by PID


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process-group id) of pid from /proc, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True while pid runs. A zombie (exited, not yet reaped) counts as dead."""
    if pid <= 0:
        return False
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group pgid."""
    if pgid <= 0:
        return []
    if not _PROC.is_dir():
        # Without /proc we can only tell whether the group has any member at all.
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """True while any process of group pgid runs (the leader may be gone, its children not)."""
    return bool(group_members(pgid))


def process_cmdline(pid: int) -> str | None:
    """The command line of pid (space-joined), or None when it cannot be read."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


# --------------------------------------------------------------------------- stopping by PID


def _reap(pid: int) -> None:
    """Collect pid's exit status if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


def stop_group(pgid: int, grace: float = DEFAULT_GRACE_SECONDS) -> bool:
    """SIGTERM every process of group pgid, then SIGKILL what is left after `grace` seconds.

    Returns True when the group is gone. Safe to call on a group that no longer exists.
    """
    if pgid <= 1:  # 0 would mean our own group, 1 is init: never signal those by mistake.
        raise ValueError(f"refusing to signal process group {pgid}")
    if not group_alive(pgid):
        _reap(pgid)
        return True
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, grace):
        return True
    _signal_group(pgid, signal.SIGKILL)
    return _wait_group_gone(pgid, max(grace, 2.0))


def kill_group(pgid: int, timeout: float = 5.0) -> bool:
    """SIGKILL whatever is left of group pgid at once (a crashed leader's children, which would
    otherwise hold its port) and wait until it is gone. Safe on a group that no longer exists."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return _wait_group_gone(pgid, timeout)


def stop_pid(pid: int, grace: float = DEFAULT_GRACE_SECONDS, expect_in_cmdline: str | None = None) -> bool:
    """Stop a process started by :func:`launch` (or any group leader) and all its group.

    With `expect_in_cmdline`, the process is signalled only if its command line
    contains that text, so a PID read from an old state file and since reused by an
    unrelated program is left alone (returns False then).
    """
    if expect_in_cmdline is not None and pid_alive(pid):
        cmdline = process_cmdline(pid)
        if cmdline is not None and expect_in_cmdline not in cmdline:
            return False
    if pid_alive(pid) and _pgid_of(pid) not in (None, pid):
        # Not a group leader: signalling its "group" would hit its parent's group.
        raise ValueError(f"pid {pid} is not a process-group leader; it was not started by launch()")
    return stop_group(pid, grace)


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


# --------------------------------------------------------------------------- launched processes


def tail(path: Path, lines: int = 40, start: int = 0) -> str:
    """The last `lines` lines of path from byte offset `start` on ('' if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A process running as the leader of its own process group, logging to one file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    # Where this run's output starts in the log (the file is appended to across restarts).
    log_offset: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The PID, which is also the process-group id: all :func:`stop_pid` needs."""
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines, self.log_offset)

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> float:
        """Poll probe until it passes; return the seconds since launch.

        Raises ProcessStartError (with the log tail) if the process exits first or the
        timeout passes; the process is stopped in both cases.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                self._fail(f"exited with code {self.popen.returncode} before it was ready")
            if probe():
                return time.monotonic() - self.started_at
            if time.monotonic() >= deadline:
                self._fail(f"was not ready after {timeout:.0f} s")
            time.sleep(_POLL_SECONDS)

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop the whole group and reap the leader. Idempotent."""
        stop_group(self.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)

    def _fail(self, what: str) -> NoReturn:
        self.stop(grace=2.0)
        raise ProcessStartError(
            f"{self.name} {what}.\ncommand: {' '.join(self.argv)}\n"
            f"log: {self.log_path}\n--- last lines of the log ---\n{self.log_tail()}"
        )


def launch(
    argv: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start argv in a new session, stdout+stderr appended to `<log_dir>/<name>.log`.

    Returns at once; call :meth:`ManagedProcess.wait_ready` to wait for it. Starting
    several processes first and waiting afterwards lets them boot in parallel.
    `env` replaces the environment when given (pass ``{**os.environ, ...}`` to extend).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        offset = log.tell()
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        # The child keeps its own copy of the file descriptor; ours can close now.
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return ManagedProcess(name=name, argv=list(argv), log_path=log_path, popen=popen, log_offset=offset)

"""The process helper: start in a new group, wait for readiness, stop the whole tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops.stack.processes import (
    ManagedProcess,
    ProcessStartError,
    free_port,
    group_alive,
    group_members,
    launch,
    pid_alive,
    stop_group,
    stop_pid,
)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """launch() bound to tmp_path; whatever a test starts is stopped afterwards."""
    processes: list[ManagedProcess] = []

    def start(*argv: str, name: str = "child") -> ManagedProcess:
        process = launch(list(argv), name=name, log_dir=tmp_path)
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            process.stop(grace=0.5)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_child_is_its_own_group_leader(started: Callable[..., ManagedProcess]) -> None:
    process = started("sleep", "100")
    assert os.getpgid(process.pid) == process.pid
    assert os.getsid(process.pid) == process.pid


def test_stop_kills_the_whole_tree(started: Callable[..., ManagedProcess]) -> None:
    process = started("sh", "-c", "sleep 100 & sleep 100")
    assert wait_until(lambda: len(group_members(process.pid)) >= 3)  # sh + two sleeps
    members = group_members(process.pid)

    process.stop(grace=2.0)

    assert not group_alive(process.pid)
    assert not any(pid_alive(pid) for pid in members)
    assert process.popen.returncode is not None  # reaped, not a zombie


def test_sigkill_after_grace_when_sigterm_is_ignored(started: Callable[..., ManagedProcess]) -> None:
    # `trap '' TERM` is inherited by the children: nobody in the group obeys SIGTERM.
    process = started("sh", "-c", "trap '' TERM; sleep 100 & sleep 100")
    assert wait_until(lambda: len(group_members(process.pid)) >= 3)

    began = time.monotonic()
    assert stop_group(process.pid, grace=0.5)
    assert time.monotonic() - began >= 0.5
    assert not group_alive(process.pid)


def test_stop_pid_from_another_process(started: Callable[..., ManagedProcess]) -> None:
    """What a supervisor does: only the PID from a state file, in a different process."""
    process = started("sh", "-c", "sleep 100 & sleep 100")
    assert wait_until(lambda: len(group_members(process.pid)) >= 3)

    code = f"from mlops.stack.processes import stop_pid; raise SystemExit(0 if stop_pid({process.pid}) else 1)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

    assert not group_alive(process.pid)
    assert not pid_alive(process.pid)  # our un-reaped zombie child counts as dead


def test_stop_pid_leaves_a_reused_pid_alone(started: Callable[..., ManagedProcess]) -> None:
    process = started("sleep", "100")
    assert not stop_pid(process.pid, expect_in_cmdline="bqemulator")
    assert pid_alive(process.pid)
    assert stop_pid(process.pid, expect_in_cmdline="sleep")
    assert not pid_alive(process.pid)


def test_stop_is_idempotent_and_safe_on_gone_groups(started: Callable[..., ManagedProcess]) -> None:
    process = started("true")
    assert wait_until(lambda: not pid_alive(process.pid))  # exited, still un-reaped: a zombie
    process.stop()
    process.stop()
    assert stop_pid(process.pid)


@pytest.mark.parametrize("pgid", [0, 1])
def test_refuses_to_signal_own_group_or_init(pgid: int) -> None:
    with pytest.raises(ValueError):
        stop_group(pgid)


def test_exit_before_ready_reports_the_log_tail(started: Callable[..., ManagedProcess]) -> None:
    process = started("sh", "-c", "echo boom-marker >&2; exit 3")
    with pytest.raises(ProcessStartError, match="(?s)code 3.*boom-marker"):
        process.wait_ready(lambda: False, timeout=10)


def test_timeout_stops_the_process_and_reports(started: Callable[..., ManagedProcess]) -> None:
    process = started("sh", "-c", "echo still-booting; sleep 100")
    with pytest.raises(ProcessStartError, match="(?s)not ready.*still-booting"):
        process.wait_ready(lambda: False, timeout=0.3)
    assert not group_alive(process.pid)


def test_wait_ready_returns_once_the_probe_passes(started: Callable[..., ManagedProcess], tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    process = started("sh", "-c", f"sleep 0.2; touch {flag}; sleep 100")
    seconds = process.wait_ready(flag.exists, timeout=10)
    assert 0.1 < seconds < 10
    assert process.alive()


def test_log_is_appended_and_tail_shows_only_this_run(started: Callable[..., ManagedProcess]) -> None:
    first = started("sh", "-c", "echo first-run", name="same")
    assert wait_until(lambda: not first.alive())
    second = started("sh", "-c", "echo second-run", name="same")
    assert wait_until(lambda: not second.alive())

    assert "first-run" in first.log_path.read_text()
    assert "second-run" in second.log_tail()
    assert "first-run" not in second.log_tail()

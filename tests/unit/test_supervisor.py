"""The supervisor's watch loop and control port, on plain processes (no emulators): a dead component
is started again on the next look, a crash loop backs off, `Stack.restart` goes through the supervisor."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.stack import supervisor as supervisor_module
from mlops.stack.processes import group_members, pid_alive
from mlops.stack.supervisor import SUPERVISOR, Component, Stack, Supervisor, UnknownComponent

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# A leader that leaves a child in its process group, as gunicorn's master leaves its worker.
WITH_CHILD = [sys.executable, "-c", "import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "stack")
    sup.data_dir.mkdir(parents=True)
    try:
        yield sup
    finally:
        sup.close()
        sup.abort()


def worker(sup: Supervisor, name: str, argv: list[str]) -> Component:
    component = Component(name, "worker", 0, None, None, "", argv=argv, cwd=str(sup.data_dir))
    sup._launch_new(component)
    return component


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_dead_component_is_started_again_and_its_group_leftovers_are_killed(supervisor):
    component = worker(supervisor, "w", WITH_CHILD)
    first = component.pid
    assert wait_until(lambda: len(group_members(first)) == 2)
    os.kill(first, signal.SIGKILL)  # the leader only: its child stays, as a gunicorn worker would
    assert wait_until(lambda: not supervisor._alive(component))
    supervisor._heal()
    assert component.pid != first and pid_alive(component.pid) and component.restarts == 1
    assert group_members(first) == [], "the dead leader's child was left running"
    saved = supervisor_module.StackState.load(supervisor.state_path)
    assert saved is not None and saved.components["w"].pid == component.pid, "the new PID is recorded at once"


def test_a_component_that_keeps_dying_young_is_retried_with_a_growing_wait(supervisor):
    component = worker(supervisor, "crashy", [sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_until(lambda: not supervisor._alive(component))
    supervisor._heal()  # dies at once again: a restart that did not stick
    assert wait_until(lambda: not supervisor._alive(component))
    supervisor._heal()
    waits = supervisor._retry_at["crashy"] - time.monotonic()
    assert waits > 0.5, "a crash loop must back off"
    restarts = component.restarts
    supervisor._heal()  # too early: not retried yet
    assert component.restarts == restarts


def test_stack_restart_asks_the_supervisor_and_refuses_an_unknown_name(supervisor):
    port = supervisor._serve_control()
    supervisor._record_self(port)
    component = worker(supervisor, "w", SLEEPER)
    first = component.pid
    stack = Stack(supervisor.data_dir)
    restarted = stack.restart("w")
    assert restarted.pid == component.pid != first and restarted.restarts == 1
    assert not pid_alive(first)
    with pytest.raises(UnknownComponent, match="no component 'nope'"):
        stack.restart("nope")
    with pytest.raises(UnknownComponent):
        stack.restart(SUPERVISOR)


def test_restart_without_a_running_supervisor_says_how_to_bring_it_back(tmp_path):
    stack = Stack(tmp_path / "none")
    with pytest.raises(supervisor_module.StackError, match="mlops up"):
        stack.restart("trainer")

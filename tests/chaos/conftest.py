"""The chaos suite's own stack (it kills components, emulators included), and the table it prints.

Run with `make chaos` (`pytest -m chaos tests/chaos`); `make test` leaves it out (pyproject's addopts).
Every fault a test injects adds a row to the table printed at the end, and written to
`<stack dir>/../chaos-table.md`: what was done, what was counted, what was lost or doubled.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.stack.processes import pid_alive
from mlops.stack.supervisor import Stack

ROWS: list[FaultRow] = []
TABLE_FILE: list[Path] = []
SEED: list[int] = []


@dataclass
class FaultRow:
    fault: str
    counted: str
    lost: int
    doubled: int
    note: str = ""


def render(rows: list[FaultRow]) -> str:
    lines = ["| fault | counted | lost | doubled | note |", "|---|---|---|---|---|"]
    lines += [f"| {r.fault} | {r.counted} | {r.lost} | {r.doubled} | {r.note} |" for r in rows]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def seed() -> int:
    """Kill points are random; CHAOS_SEED replays a run's."""
    value = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    SEED.append(value)
    return value


@pytest.fixture
def table() -> list[FaultRow]:
    return ROWS


@pytest.fixture(scope="package")
def stack_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chaos")
    TABLE_FILE.append(folder / "chaos-table.md")
    return folder / ".mlops"


@pytest.fixture(scope="package")
def stack(stack_dir):
    stack = Stack(stack_dir)
    # The ticker sends heartbeats while a deploy is open (the deployer finishes deploys on them); the
    # suite's specs have no schedule, so a round still starts only when a test lands rows.
    state = stack.up()
    pids = [c.pid for c in state.components.values()]
    try:
        yield stack
    finally:
        now = stack.state()
        pids += [c.pid for c in now.components.values()] if now else []
        stack.down()
        assert not [p for p in pids if pid_alive(p)], "mlops down left processes behind"


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    text = render(ROWS)
    terminalreporter.write_sep("=", "chaos: faults injected, and what was lost or doubled")
    if SEED:
        text += f"\n\nkill points from CHAOS_SEED={SEED[0]} (set it to replay them)"
    terminalreporter.write_line(text)
    if TABLE_FILE:
        TABLE_FILE[0].write_text(text + "\n")
        terminalreporter.write_line(f"(written to {TABLE_FILE[0]})")

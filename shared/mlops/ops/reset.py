"""`mlops reset`: stop a local stack and delete its data folder, so the next `mlops up` starts empty.

Only a folder the stack made is deleted: every entry in it must be one the stack writes, so a
mistyped `--data-dir` (a home folder, a checkout) is refused rather than emptied.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mlops.ops.errors import OperatorError
from mlops.stack.supervisor import STATE_FILE, Stack

# What a stack writes in its data folder (see mlops.stack.supervisor), and what each holds.
STACK_ENTRIES = {
    STATE_FILE: "the running stack's ports and PIDs",
    "bigquery": "the BigQuery emulator's tables (sources, snapshots, events, predictions, labels)",
    "storage": "the Cloud Storage emulator's bucket (pipeline specs, model artifacts)",
    "pubsub": "the Pub/Sub emulator's folder",
    "vertex.json": "the Vertex AI stand-in's registry and endpoints",
    "logs": "every component's log",
}
WHAT_IS_REMOVED = ("pipeline specs, source tables and snapshots, the event archive, predictions and labels, "
                   "registered model versions and endpoints, and logs")


class ResetRefused(OperatorError):
    pass


@dataclass(frozen=True)
class ResetReport:
    data_dir: Path
    stopped: list[str]
    removed: list[str]  # top-level entries deleted


def _is_stack_entry(name: str) -> bool:
    # An atomic write leaves `state.tmp` beside `state.json` while it replaces it.
    return name in STACK_ENTRIES or (name.endswith(".tmp") and name.removesuffix(".tmp") + ".json" in STACK_ENTRIES)


def check_resettable(data_dir: Path) -> list[Path]:
    """The entries of `data_dir` a reset would delete; refuses a folder the stack did not make."""
    if not data_dir.exists():
        return []
    if not data_dir.is_dir():
        raise ResetRefused(f"{data_dir} is not a folder: not a stack's data folder")
    entries = sorted(data_dir.iterdir())
    foreign = [p.name for p in entries if not _is_stack_entry(p.name)]
    if foreign:
        raise ResetRefused(f"{data_dir} holds things a stack does not write ({', '.join(foreign[:5])}"
                           f"{', ...' if len(foreign) > 5 else ''}): not deleting it; is --data-dir right?")
    return entries


def reset(data_dir: Path) -> ResetReport:
    """Stop the stack recorded under `data_dir` (if any), then delete the folder."""
    data_dir = Path(data_dir).resolve()
    entries = check_resettable(data_dir)
    stopped = Stack(data_dir).down() if entries else []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    if data_dir.exists():
        data_dir.rmdir()
    return ResetReport(data_dir, stopped, [p.name for p in entries])

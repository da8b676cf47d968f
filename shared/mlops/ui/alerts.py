"""The one place the dashboard asks for alerts: `mlops.ops.alerts.list_alerts(ctx)` when this build
has it, and a note saying why not otherwise, so a page never fails for want of alerts."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("mlops.ui")


@dataclass(frozen=True)
class Alerts:
    items: list[Any] | None  # None: unavailable (see `note`)
    note: str = ""


def open_alerts(ctx: Any) -> Alerts:
    try:
        module = importlib.import_module("mlops.ops.alerts")
    except ImportError:
        return Alerts(None, "alerts unavailable: this version has no alert evaluation (mlops.ops.alerts)")
    try:
        return Alerts(list(module.list_alerts(ctx)))
    except Exception as error:  # noqa: BLE001 - a page shows the rest and says why alerts are missing
        log.warning("alerts unavailable", error=f"{type(error).__name__}: {error}")
        return Alerts(None, f"alerts unavailable: {type(error).__name__}: {str(error)[:200]}")

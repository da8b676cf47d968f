"""The monitor's settings: the common ones, and how far back a tick looks when nothing says otherwise."""

from __future__ import annotations

from mlops.core.settings import CommonSettings


class MonitorSettings(CommonSettings):
    """Thresholds and windows are the spec's (`monitoring:`), per pipeline; nothing here overrides them."""

"""Telling the data-watcher to look now: a `watch.tick`, as the ticker (Cloud Scheduler) sends it."""

from __future__ import annotations

from mlops.core.events import TickReason, WatchTick
from mlops.ports.bus import EventBus, publish_new


def publish_tick(bus: EventBus, pipeline: str | None, reason: TickReason, source: str = "cli") -> str:
    """Publish a tick for one pipeline (every pipeline when None) and wait until the bus has it;
    returns its `ce-id`, the `causation_id` of the watcher's answer."""
    return publish_new(bus, WatchTick(pipeline=pipeline, reason=reason), source)

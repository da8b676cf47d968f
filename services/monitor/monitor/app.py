"""monitor's HTTP entry point: Pub/Sub pushes `watch.tick` here (gunicorn: `monitor.app:create_app()`).

One tick runs two judges over the same warehouse figures: the monitor's checks (drift, quality,
performance, freshness: `monitor.handler`) and the canary judgement (`monitor.canary`), each on its
own: one failing is reported as `stage.failed` and the other still runs. Heartbeat ticks (sent while
the deployer has a deploy open) are for the canary judge only; the checks ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from flask import Flask

from mlops import runtime
from mlops.core.events import Envelope, Event, WatchTick
from mlops.core.log import configure_logging
from mlops.core.settings import load_settings
from mlops.ports.metrics import MetricsSink
from mlops.runtime.push import Route
from monitor.canary import CanaryJudge
from monitor.figures import SqlServingFigures
from monitor.handler import Monitor, part_failed
from monitor.settings import MonitorSettings

SERVICE = "monitor"


class TickJudge(Protocol):
    def handle(self, tick: WatchTick, envelope: Envelope) -> Sequence[Event]: ...


def each_on_its_own(parts: Sequence[tuple[str, TickJudge]],
                    metrics: MetricsSink) -> Callable[[WatchTick, Envelope], list[Event]]:
    """One tick's handler running every part, each on its own: a part reports its own failures (per
    pipeline, as `stage.failed`: `part_failed`), and whatever escapes one is reported the same way
    here, so a failing check never stops a canary's judgement, nor the other way round. The parts'
    events keep the parts' order, so the first part's output ids (input id + position) do not move
    whatever a later one adds."""

    def on_tick(tick: WatchTick, envelope: Envelope) -> list[Event]:
        out: list[Event] = []
        for name, part in parts:
            try:
                out.extend(part.handle(tick, envelope))
            except Exception as error:  # noqa: BLE001 - see above
                out.append(part_failed(metrics, name, tick.pipeline, envelope, error))
        return out

    return on_tick


def create_app() -> Flask:
    settings = load_settings(MonitorSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    warehouse = runtime.warehouse(settings)
    specs = runtime.spec_store(settings)
    registry = runtime.model_registry(settings)
    metrics = runtime.metrics_sink(settings)
    monitor = Monitor(warehouse, SqlServingFigures(warehouse), specs, registry, metrics)
    judge: TickJudge = CanaryJudge(warehouse, specs, registry, runtime.model_endpoint(settings), metrics)

    on_tick = each_on_its_own([("monitoring checks", monitor), ("canary judgement", judge)], metrics)

    return runtime.push_app(settings, {WatchTick.EVENT_TYPE: Route(on_tick)}, metrics=metrics)

"""data-watcher's HTTP entry point: Pub/Sub pushes `watch.tick` here (gunicorn: `data_watcher.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from data_watcher.handler import DataWatcher
from mlops import runtime
from mlops.bus import PushEndpoint, Route, create_push_app
from mlops.events import WatchTick
from mlops.log import configure_logging
from mlops.settings import CommonSettings, load_settings

SERVICE = "data-watcher"


def create_app() -> Flask:
    settings = load_settings(CommonSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    from mlops.ml.drift import max_psi

    watcher = DataWatcher(runtime.warehouse(settings), runtime.spec_store(settings), drift=max_psi)
    endpoint = PushEndpoint(
        service=settings.service, project=settings.project, bus=runtime.event_bus(settings),
        routes={WatchTick.EVENT_TYPE: Route(watcher.handle, starts_run=True)},
        dead_letter_topic=settings.dead_letter_topic,
    )
    return create_push_app(endpoint)

"""data-watcher's HTTP entry point: Pub/Sub pushes `watch.tick` here (gunicorn: `data_watcher.app:create_app()`)."""

from __future__ import annotations

from flask import Flask

from data_watcher.handler import DataWatcher, max_feature_psi
from mlops import runtime
from mlops.core.events import MonitoringBreached, WatchTick
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.runtime.push import Route

SERVICE = "data-watcher"


def create_app() -> Flask:
    settings = load_settings(CommonSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    watcher = DataWatcher(runtime.warehouse(settings), runtime.spec_store(settings), drift=max_feature_psi)
    return runtime.push_app(settings, {WatchTick.EVENT_TYPE: Route(watcher.handle, starts_run=True),
                                       MonitoringBreached.EVENT_TYPE: Route(watcher.on_breach, starts_run=True)})

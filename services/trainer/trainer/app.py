"""trainer's HTTP entry point: Pub/Sub pushes `data.ready` here."""

from __future__ import annotations

from flask import Flask

from mlops import runtime
from mlops.core.events import DataReady
from mlops.core.log import configure_logging
from mlops.core.settings import TrainingSettings, load_settings
from mlops.runtime.push import Route
from trainer.handler import Trainer

SERVICE = "trainer"


def create_app() -> Flask:
    settings = load_settings(TrainingSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    backend = runtime.trainer_backend(settings)
    backend.warm_up()
    trainer = Trainer(backend, runtime.spec_store(settings), runtime.blob_store(settings))
    return runtime.push_app(settings, {DataReady.EVENT_TYPE: Route(trainer.handle)})

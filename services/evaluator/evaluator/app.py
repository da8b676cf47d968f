"""evaluator's HTTP entry point: Pub/Sub pushes `model.trained` here."""

from __future__ import annotations

from flask import Flask

from evaluator.handler import Evaluator
from mlops import runtime
from mlops.core.events import ModelTrained
from mlops.core.log import configure_logging
from mlops.core.settings import TrainingSettings, load_settings
from mlops.runtime.push import Route

SERVICE = "evaluator"


def create_app() -> Flask:
    settings = load_settings(TrainingSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    backend = runtime.trainer_backend(settings)
    backend.warm_up()
    metrics = runtime.metrics_sink(settings)
    evaluator = Evaluator(backend, runtime.spec_store(settings), runtime.model_registry(settings), metrics=metrics)
    return runtime.push_app(settings, {ModelTrained.EVENT_TYPE: Route(evaluator.handle)}, metrics=metrics)

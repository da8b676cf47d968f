"""inference-logger's HTTP entry point: Pub/Sub pushes `prediction.made` here."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from inference_logger.handler import InferenceLogger
from inference_logger.settings import InferenceLoggerSettings
from mlops import runtime
from mlops.core.events import PredictionMade
from mlops.core.log import configure_logging
from mlops.core.settings import load_settings
from mlops.runtime.push import Route

SERVICE = "inference-logger"


def create_app() -> Flask:
    settings = load_settings(InferenceLoggerSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    logger = InferenceLogger(runtime.warehouse(settings), timedelta(hours=settings.dedupe_horizon_hours))
    return runtime.push_app(settings, {PredictionMade.EVENT_TYPE: Route(logger.handle)})

"""inference-logger's HTTP entry point: Pub/Sub pushes `prediction.made` here."""

from __future__ import annotations

from flask import Flask

from inference_logger.handler import InferenceLogger
from mlops import runtime
from mlops.bus import PushEndpoint, Route, create_push_app
from mlops.events import PredictionMade
from mlops.log import configure_logging
from mlops.settings import CommonSettings, load_settings

SERVICE = "inference-logger"


def create_app() -> Flask:
    settings = load_settings(CommonSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    logger = InferenceLogger(runtime.warehouse(settings))
    endpoint = PushEndpoint(
        service=settings.service, project=settings.project, bus=runtime.event_bus(settings),
        routes={PredictionMade.EVENT_TYPE: Route(logger.handle)},
        dead_letter_topic=settings.dead_letter_topic, code_version=settings.code_version,
        metrics=runtime.metrics_sink(settings),
    )
    return create_push_app(endpoint)

"""registrar's HTTP entry point: Pub/Sub pushes `model.evaluated` here."""

from __future__ import annotations

from flask import Flask
from pydantic import Field

from mlops import runtime
from mlops.core.events import ModelEvaluated
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.ports.intents import IntentLog
from mlops.runtime.push import Route
from registrar.handler import Registrar

SERVICE = "registrar"


class RegistrarSettings(CommonSettings):
    serving_image: str = Field(
        "mlops-predictor:latest",
        description="Serving container recorded on each version: the predictor image's full path in the cloud.",
    )
    register_deadline_s: float = Field(
        300.0, gt=0, description="A model upload sent by a registrar that then crashed is waited for this long "
                                 "by the redelivery before it uploads again (longer than any upload takes).",
    )


def serving_env(settings: RegistrarSettings) -> dict[str, str]:
    """What the project tells every serving container (Vertex AI gives it nothing else): where to
    publish predictions and metrics, and how to log. The version's own variables are the handler's."""
    env = {"MLOPS_PROJECT": settings.project, "MLOPS_LOCATION": settings.location,
           "MLOPS_METRICS_SINK": settings.metrics_sink, "MLOPS_LOG_LEVEL": settings.log_level,
           "MLOPS_CODE_VERSION": settings.code_version, "MLOPS_DEAD_LETTER_TOPIC": settings.dead_letter_topic}
    return {k: str(v) for k, v in env.items() if v is not None}


def create_app() -> Flask:
    settings = load_settings(RegistrarSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    registrar = Registrar(runtime.model_registry(settings), settings.serving_image, settings.code_version,
                          bucket=settings.bucket, intents=IntentLog(runtime.blob_store(settings), SERVICE),
                          register_deadline_s=settings.register_deadline_s, serving_env=serving_env(settings))
    return runtime.push_app(settings, {ModelEvaluated.EVENT_TYPE: Route(registrar.handle)})

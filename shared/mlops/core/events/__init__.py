"""Typed events, their envelope and their wire format."""

from mlops.core.events.codec import (
    EventValidationError,
    build,
    decode,
    encode,
    event_class,
)
from mlops.core.events.envelope import Envelope, EnvelopeError
from mlops.core.events.types import (
    EVENT_CLASSES,
    EVENTS_BY_TYPE,
    DataReady,
    DeployedModel,
    Event,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
    Prediction,
    PredictionMade,
    StageFailed,
    WatchTick,
)

__all__ = [
    "EVENT_CLASSES", "EVENTS_BY_TYPE", "DataReady", "DeployedModel", "Envelope", "EnvelopeError", "Event",
    "EventValidationError", "ModelDeployed", "ModelEvaluated", "ModelRegistered", "ModelTrained",
    "Prediction", "PredictionMade", "StageFailed", "WatchTick", "build", "decode", "encode", "event_class",
]

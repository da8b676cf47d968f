"""Typed events, their envelope and their wire format."""

from mlops.core.events.codec import EventValidationError, build, decode, encode, event_class
from mlops.core.events.envelope import Continues, Envelope, EnvelopeError, new_envelope
from mlops.core.events.types import (
    EVENT_CLASSES,
    EVENTS_BY_TYPE,
    CanaryJudged,
    DataReady,
    DataSkipped,
    DeployedModel,
    DeploymentRequested,
    Event,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
    MonitoringBreached,
    Prediction,
    PredictionMade,
    StageFailed,
    WatchTick,
)
from mlops.core.events.vocabulary import (
    CanaryOutcome,
    CheckKind,
    Decision,
    DeploymentAction,
    RequestedAction,
    SkipCause,
    TickReason,
    Trigger,
)

__all__ = [
    "EVENT_CLASSES", "EVENTS_BY_TYPE", "Continues", "DataReady", "DataSkipped", "Decision", "DeployedModel", "DeploymentAction", "Envelope",
    "EnvelopeError", "Event", "SkipCause", "TickReason", "Trigger", "new_envelope",
    "EventValidationError", "ModelDeployed", "ModelEvaluated", "ModelRegistered", "ModelTrained", "MonitoringBreached", "CheckKind",
    "Prediction", "PredictionMade", "StageFailed", "WatchTick", "build", "decode", "encode", "event_class",
    "CanaryJudged", "CanaryOutcome", "DeploymentRequested", "RequestedAction",
]

"""Typed, immutable event payloads: one class per schema in `schemas/`.

The Avro files are the source of truth; `tests/contract` checks that every class here has exactly
the fields, types and defaults of its schema. Each class names its event type (which is also its
topic and its schema file) and carries an `example()` used by tests and docs.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

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


class Event(BaseModel):
    """Base of every payload: frozen, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    EVENT_TYPE: ClassVar[str]

    @classmethod
    def example(cls) -> Event:
        raise NotImplementedError


class WatchTick(Event):
    EVENT_TYPE: ClassVar[str] = "watch.tick.v1"

    pipeline: str | None = None
    reason: TickReason

    @classmethod
    def example(cls) -> WatchTick:
        return cls(pipeline="breast-cancer", reason=TickReason.MANUAL)


class DataReady(Event):
    EVENT_TYPE: ClassVar[str] = "data.ready.v1"

    pipeline: str
    source_table: str
    snapshot_table: str
    data_version: str
    total_rows: int = Field(ge=0)
    new_rows: int = Field(ge=0)
    watermark: str
    trigger: Trigger
    drift_score: float | None = None

    @classmethod
    def example(cls) -> DataReady:
        return cls(
            pipeline="breast-cancer",
            source_table="mlops-local.mlops.breast_cancer",
            snapshot_table="mlops-local.mlops_snapshots.breast_cancer__d0002",
            data_version="d0002",
            total_rows=240,
            new_rows=120,
            watermark="2026-11-22T06:30:00.000000Z",
            trigger=Trigger.NEW_ROWS,
        )


class DataSkipped(Event):
    """The data-watcher's answer to a tick when it trains nothing for a pipeline: the decision in
    the watcher's own words, so nobody restates its retrain rules to guess it."""

    EVENT_TYPE: ClassVar[str] = "data.skipped.v1"

    pipeline: str
    source_table: str
    reason: TickReason
    cause: SkipCause
    why: str
    total_rows: int = Field(ge=0)
    new_rows: int = Field(ge=0)
    last_data_version: str | None = None
    last_watermark: str | None = None
    drift_score: float | None = None

    @classmethod
    def example(cls) -> DataSkipped:
        return cls(
            pipeline="breast-cancer",
            source_table="mlops-local.mlops.breast_cancer",
            reason=TickReason.DATA_LANDED,
            cause=SkipCause.BELOW_THRESHOLDS,
            why="60 new rows in breast_cancer since snapshot d0002, below the spec's threshold "
                "(120 (50% of 240) new rows)",
            total_rows=300,
            new_rows=60,
            last_data_version="d0002",
            last_watermark="2026-11-22T06:30:00.000000Z",
        )


class ModelTrained(Event):
    EVENT_TYPE: ClassVar[str] = "model.trained.v1"

    pipeline: str
    candidate_version: str
    model_type: str
    backend: str
    artifact_uri: str
    artifact_checksum: str
    hyperparameters: dict[str, str]
    feature_columns: list[str]
    label_column: str
    snapshot_table: str
    data_version: str
    train_rows: int = Field(ge=0)
    train_seconds: float = Field(ge=0)

    @classmethod
    def example(cls) -> ModelTrained:
        return cls(
            pipeline="breast-cancer",
            candidate_version="d0002-7f3a9c1e",
            model_type="LOGISTIC_REG",
            backend="sklearn",
            artifact_uri="gs://mlops-local-artifacts/models/breast-cancer/d0002-7f3a9c1e/model.zip",
            artifact_checksum="sha256:" + "0" * 64,
            hyperparameters={"l2_reg": "1.0", "max_iterations": "200"},
            feature_columns=["mean_radius", "mean_texture"],
            label_column="malignant",
            snapshot_table="mlops-local.mlops_snapshots.breast_cancer__d0002",
            data_version="d0002",
            train_rows=192,
            train_seconds=0.05,
        )


class ModelEvaluated(Event):
    EVENT_TYPE: ClassVar[str] = "model.evaluated.v1"

    pipeline: str
    candidate_version: str
    model_type: str
    artifact_uri: str
    artifact_checksum: str
    snapshot_table: str
    data_version: str
    eval_rows: int = Field(ge=0)
    metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = {}
    gate_metric: str
    decision: Decision
    reason: str
    evaluate_seconds: float = Field(ge=0)

    @classmethod
    def example(cls) -> ModelEvaluated:
        trained = ModelTrained.example()
        return cls(
            pipeline=trained.pipeline,
            candidate_version=trained.candidate_version,
            model_type=trained.model_type,
            artifact_uri=trained.artifact_uri,
            artifact_checksum=trained.artifact_checksum,
            snapshot_table=trained.snapshot_table,
            data_version=trained.data_version,
            eval_rows=48,
            metrics={"roc_auc": 0.97, "accuracy": 0.94},
            champion_version="1",
            champion_metrics={"roc_auc": 0.95, "accuracy": 0.92},
            gate_metric="roc_auc",
            decision=Decision.PROMOTE,
            reason="roc_auc 0.9700 >= 0.9000 and gains 0.0200 >= 0.0050 over champion 1",
            evaluate_seconds=0.02,
        )


class ModelRegistered(Event):
    EVENT_TYPE: ClassVar[str] = "model.registered.v1"

    pipeline: str
    model_id: str
    version_id: str
    resource_name: str
    aliases: list[str]
    decision: Decision
    candidate_version: str
    artifact_uri: str
    metrics: dict[str, float]
    lineage: dict[str, str]

    @classmethod
    def example(cls) -> ModelRegistered:
        return cls(
            pipeline="breast-cancer",
            model_id="breast-cancer",
            version_id="2",
            resource_name="projects/mlops-local/locations/us-central1/models/breast-cancer@2",
            aliases=["champion", "default"],
            decision=Decision.PROMOTE,
            candidate_version="d0002-7f3a9c1e",
            artifact_uri="gs://mlops-local-artifacts/models/breast-cancer/d0002-7f3a9c1e/model.zip",
            metrics={"roc_auc": 0.97},
            lineage={"data_version": "d0002", "snapshot_table": "mlops-local.mlops_snapshots.breast_cancer__d0002"},
        )


class DeployedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployed_model_id: str
    version_id: str
    artifact_uri: str
    artifact_checksum: str
    traffic_percent: int = Field(ge=0, le=100)


class ModelDeployed(Event):
    EVENT_TYPE: ClassVar[str] = "model.deployed.v1"

    pipeline: str
    endpoint: str
    model_id: str
    version_id: str
    action: DeploymentAction
    previous_version: str | None = None
    deployed_models: list[DeployedModel]
    reason: str | None = None

    @classmethod
    def example(cls) -> ModelDeployed:
        return cls(
            pipeline="breast-cancer",
            endpoint="projects/mlops-local/locations/us-central1/endpoints/breast-cancer",
            model_id="breast-cancer",
            version_id="2",
            action=DeploymentAction.DEPLOY,
            previous_version="1",
            deployed_models=[
                DeployedModel(
                    deployed_model_id="2002",
                    version_id="2",
                    artifact_uri="gs://mlops-local-artifacts/models/breast-cancer/d0002-7f3a9c1e/model.zip",
                    artifact_checksum="sha256:" + "0" * 64,
                    traffic_percent=100,
                )
            ],
        )


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    model_version: str
    features: str
    predicted_label: str | None = None
    predicted_value: float | None = None
    score: float | None = None
    latency_ms: float = Field(ge=0)
    predicted_at: str
    deployed_model_id: str | None = None  # the Vertex AI deployed model (serving container) that answered


class PredictionMade(Event):
    EVENT_TYPE: ClassVar[str] = "prediction.made.v1"

    pipeline: str
    predictions: list[Prediction]

    @classmethod
    def example(cls) -> PredictionMade:
        return cls(
            pipeline="breast-cancer",
            predictions=[
                Prediction(
                    request_id="req-0001",
                    model_version="2",
                    features='{"mean_radius": 14.1, "mean_texture": 19.3}',
                    predicted_label="1",
                    score=0.93,
                    latency_ms=0.8,
                    predicted_at="2026-11-22T06:31:00.000000Z",
                )
            ],
        )


class StageFailed(Event):
    EVENT_TYPE: ClassVar[str] = "stage.failed.v1"

    stage: str
    input_event_id: str
    input_event_type: str
    error_class: str
    error_message: str
    permanent: bool
    pipeline: str | None = None
    message_id: str | None = None

    @classmethod
    def example(cls) -> StageFailed:
        return cls(
            stage="trainer",
            input_event_id="5d1c2a0e-0000-4000-8000-000000000001",
            input_event_type="data.ready.v1",
            error_class="SnapshotMissing",
            error_message="table mlops-local.mlops_snapshots.breast_cancer__d0002 not found",
            permanent=True,
            pipeline="breast-cancer",
            message_id="42",
        )


class MonitoringBreached(Event):
    """A monitoring check crossed its spec threshold: the monitor's word to the data-watcher (a retrain
    when `trigger` is set) and to operators (`mlops alerts`)."""

    EVENT_TYPE: ClassVar[str] = "monitoring.breached.v1"

    pipeline: str
    version: str | None = None
    check_kind: CheckKind
    measure: str
    feature: str | None = None
    value: float
    threshold: float
    window_start: str
    window_end: str
    rows: int = Field(ge=0)
    check_id: str
    trigger: Trigger | None = None
    why: str = ""

    @classmethod
    def example(cls) -> MonitoringBreached:
        return cls(
            pipeline="breast-cancer",
            version="2",
            check_kind=CheckKind.DRIFT,
            measure="js",
            feature="mean_radius",
            value=0.41,
            threshold=0.1,
            window_start="2026-11-22T06:00:00Z",
            window_end="2026-11-22T07:00:00Z",
            rows=480,
            check_id="chk-5b1f0c2e9a7d4c3b",
            trigger=Trigger.DRIFT,
            why="mean_radius: Jensen-Shannon 0.410 > 0.1 over 480 predictions of version 2",
        )


class CanaryJudged(Event):
    """The canary judge's verdict on a canary beside its champion: promote or roll back, and why."""

    EVENT_TYPE: ClassVar[str] = "canary.judged.v1"

    pipeline: str
    endpoint: str
    canary_version: str
    champion_version: str
    outcome: CanaryOutcome
    reason: str
    signals: dict[str, float]
    window_start: str
    window_end: str

    @classmethod
    def example(cls) -> CanaryJudged:
        return cls(
            pipeline="breast-cancer",
            endpoint="projects/mlops-local/locations/us-central1/endpoints/breast-cancer",
            canary_version="3",
            champion_version="2",
            outcome=CanaryOutcome.ROLLBACK,
            reason="roc_auc on labelled predictions fell from 0.9500 (champion 2, 80 labels) to 0.4100 (canary 3, "
                   "20 labels): a drop of 0.5400 > 0.0500",
            signals={"canary_count": 40.0, "champion_count": 160.0, "canary_roc_auc": 0.41, "champion_roc_auc": 0.95},
            window_start="2026-11-22T06:31:00.000000Z",
            window_end="2026-11-22T06:41:00.000000Z",
        )


class DeploymentRequested(Event):
    """An operator's rollback or promote (`mlops rollback`, `mlops promote`), for the deployer."""

    EVENT_TYPE: ClassVar[str] = "deployment.requested.v1"

    pipeline: str
    action: RequestedAction
    version: str | None = None
    reason: str
    requested_by: str

    @classmethod
    def example(cls) -> DeploymentRequested:
        return cls(pipeline="breast-cancer", action=RequestedAction.PROMOTE, version="3",
                   reason="the gate's eval set predates the schema fix", requested_by="alice")


EVENT_CLASSES: tuple[type[Event], ...] = (
    WatchTick,
    DataReady,
    DataSkipped,
    ModelTrained,
    ModelEvaluated,
    ModelRegistered,
    ModelDeployed,
    PredictionMade,
    StageFailed,
    MonitoringBreached,
    CanaryJudged,
    DeploymentRequested,
)
EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.EVENT_TYPE: cls for cls in EVENT_CLASSES}

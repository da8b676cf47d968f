"""The pipeline spec a user writes (YAML): what to train, when to retrain, when to promote, how to deploy.

Validated once, with every bad field named by its path (`promotion.metric: ...`). Model types and
options use BigQuery ML's words, so a spec means the same thing to the local scikit-learn backend
and to `CREATE MODEL` in the cloud.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlops.core.errors import validation_problems

MODEL_TYPES = ("LOGISTIC_REG", "LINEAR_REG", "BOOSTED_TREE_CLASSIFIER", "BOOSTED_TREE_REGRESSOR")
NAME_PATTERN = r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$"
# Columns `mlops ingest` adds to every source row: identity for the split, time for the watermark.
ROW_ID_COLUMN = "_row_id"
INGESTED_AT_COLUMN = "_ingested_at"
SYSTEM_COLUMNS = (ROW_ID_COLUMN, INGESTED_AT_COLUMN)


class SpecError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"invalid pipeline spec {source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSpec(_Strict):
    table: str = Field(description="Source table in the stack's dataset (created by `mlops ingest`).")
    label: str = Field(description="Label column.")
    features: list[str] = Field(min_length=1, description="Feature columns, in order.")

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,1023}", value):
            raise ValueError("must be a BigQuery table id: letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _label_not_a_feature(self) -> SourceSpec:
        if self.label in self.features:
            raise ValueError(f"label {self.label!r} is also listed as a feature")
        clash = sorted(set(self.features) & set(SYSTEM_COLUMNS))
        if clash:
            raise ValueError(f"features {clash} are system columns")
        return self


class ModelSpec(_Strict):
    type: Literal["LOGISTIC_REG", "LINEAR_REG", "BOOSTED_TREE_CLASSIFIER", "BOOSTED_TREE_REGRESSOR"]
    options: dict[str, Any] = Field(default_factory=dict, description="CREATE MODEL options, BigQuery ML names.")
    seed: int = 42

    @property
    def is_classifier(self) -> bool:
        return self.type in ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER")


class RetrainSpec(_Strict):
    new_rows_fraction: float | None = Field(0.1, gt=0, description="Retrain when new rows reach this share of trained rows.")
    new_rows_min: int | None = Field(None, ge=1, description="...or when at least this many new rows landed.")
    drift_psi: float | None = Field(None, gt=0, description="...or when a feature's PSI exceeds this.")
    schedule_seconds: int | None = Field(None, ge=10, description="How often the ticker looks (in the cloud: Cloud Scheduler).")
    min_rows: int = Field(50, ge=10, description="Never train on fewer rows than this.")


class PromotionSpec(_Strict):
    metric: str = Field(description="An ML.EVALUATE metric name, e.g. roc_auc or mean_absolute_error.")
    minimum: float | None = Field(None, description="The candidate must reach this (or stay below it if lower is better).")
    min_gain: float = Field(0.0, ge=0, description="Required improvement over the champion on the same rows.")


class DeploymentSpec(_Strict):
    endpoint: str | None = Field(None, description="Endpoint display name; defaults to the pipeline name.")
    canary_percent: int = Field(0, ge=0, lt=100, description="Share for a new champion first; 0 deploys it at 100%.")
    keep_previous: bool = Field(True, description="Keep the previous version deployed at 0% for instant rollback.")


CLASSIFIER_METRICS = ("precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc")
REGRESSOR_METRICS = ("mean_absolute_error", "mean_squared_error", "mean_squared_log_error",
                     "median_absolute_error", "r2_score", "explained_variance")


class PipelineSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    source: SourceSpec
    model: ModelSpec
    retrain: RetrainSpec = RetrainSpec()
    promotion: PromotionSpec
    deployment: DeploymentSpec = DeploymentSpec()

    @model_validator(mode="after")
    def _metric_fits_model(self) -> PipelineSpec:
        allowed = CLASSIFIER_METRICS if self.model.is_classifier else REGRESSOR_METRICS
        if self.promotion.metric not in allowed:
            raise ValueError(f"promotion.metric {self.promotion.metric!r} is not reported for "
                             f"{self.model.type}; choose one of {list(allowed)}")
        return self

    @property
    def endpoint_name(self) -> str:
        return self.deployment.endpoint or self.name

    @property
    def model_id(self) -> str:
        return self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False)


def parse_spec(text: str, source: str = "<string>") -> PipelineSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(source, [f"not YAML: {error}"]) from None
    if not isinstance(data, dict):
        raise SpecError(source, ["expected a mapping at the top level"])
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(source, validation_problems(error)) from None


def load_spec(path: Path) -> PipelineSpec:
    return parse_spec(path.read_text(encoding="utf-8"), str(path))

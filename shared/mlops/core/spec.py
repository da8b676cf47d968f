"""The pipeline spec a user writes (YAML): what to train, when to retrain, when to promote, how to deploy.

Validated once, with every bad field named by its path (`promotion.metric: ...`). Model types and
options use BigQuery ML's words, so a spec means the same thing to the local scikit-learn backend
and to `CREATE MODEL` in the cloud.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlops.core.errors import validation_problems
from mlops.core.sql import is_column_name

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


def _column_name(value: str) -> str:
    # Checked here, at `mlops pipeline apply`, with the same pattern the SQL quoting enforces: a name
    # that could change a statement's shape never gets as far as a warehouse.
    if not is_column_name(value):
        raise ValueError(f"{value[:80]!r} is not a column name: letters, digits and underscores, "
                         "not starting with a digit")
    return value


ColumnName = Annotated[str, AfterValidator(_column_name)]


class SourceSpec(_Strict):
    table: str = Field(description="Source table in the stack's dataset (created by `mlops ingest`).")
    label: ColumnName = Field(description="Label column.")
    features: list[ColumnName] = Field(min_length=1, description="Feature columns, in order.")

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
    tolerance: float = Field(0.0, ge=0, description="Instead of min_gain: the candidate, trained on fresher data, "
                                                    "may trail the champion by up to this much and still be promoted.")

    @model_validator(mode="after")
    def _one_rule_against_the_champion(self) -> PromotionSpec:
        # Both at once would be one rule in disguise (any gain >= -tolerance passes): make the user pick.
        if self.min_gain > 0 and self.tolerance > 0:
            raise ValueError("set min_gain (the candidate must beat the champion by it) or tolerance (it may "
                             "trail the champion by up to it), not both")
        return self


class CanaryWindowSpec(_Strict):
    """When a canary has been seen enough to judge (`monitor.canary`): all of these must hold."""

    min_predictions: int = Field(100, ge=1, description="Predictions the canary must have served.")
    min_minutes: float = Field(0.0, ge=0, description="...and minutes since its first prediction.")
    min_labels: int = Field(0, ge=0, description="...and labelled predictions of each version (0: judge without "
                                                 "waiting for labels; the metric counts only where they arrived).")


class CanaryThresholdsSpec(_Strict):
    """What rolls a canary back, each compared with the champion serving beside it in the same window."""

    max_error_rate_increase: float = Field(0.02, ge=0, le=1, description="Canary error rate minus the champion's.")
    max_latency_ratio: float = Field(2.0, ge=1, description="Canary p95 latency over the champion's...")
    min_latency_ms: float = Field(20.0, ge=0, description="...counted only when the canary's p95 is above this.")
    max_score_shift: float = Field(0.2, gt=0, le=1, description="Jensen-Shannon divergence (base 2) of the "
                                                                "canary's scores from the champion's.")
    max_metric_drop: float = Field(0.05, ge=0, description="Drop of the gate metric on labelled predictions.")
    min_labelled: int = Field(20, ge=1, description="Labelled predictions per version for the metric to count.")


class DeploymentSpec(_Strict):
    endpoint: str | None = Field(None, description="Endpoint display name; defaults to the pipeline name.")
    canary_percent: int = Field(0, ge=0, lt=100, description="Share for a new champion first; 0 deploys it at 100%.")
    keep_previous: bool = Field(True, description="Keep the previous version deployed at 0% for instant rollback.")
    canary_window: CanaryWindowSpec = CanaryWindowSpec()
    canary_thresholds: CanaryThresholdsSpec = CanaryThresholdsSpec()


class DriftMonitoring(_Strict):
    js_threshold: float | None = Field(0.1, gt=0, le=1, description="A numeric feature drifts when the Jensen-Shannon "
                                       "divergence (base 2) of its serving values from its training values exceeds this.")
    linf_threshold: float | None = Field(0.2, gt=0, le=1, description="A categorical feature drifts when the "
                                         "L-infinity distance of its category shares from training exceeds this.")
    psi_threshold: float | None = Field(None, gt=0, description="Also a drift when a feature's PSI exceeds this "
                                        "(reported either way).")
    score_js_threshold: float | None = Field(0.1, gt=0, le=1, description="The scores drift when the Jensen-Shannon "
                                             "divergence of a window's scores from the version's first window exceeds this.")
    retrain: bool = Field(True, description="A drifted feature asks the data-watcher for a retrain (trigger drift).")


class QualityMonitoring(_Strict):
    max_missing_rate: float | None = Field(0.1, ge=0, le=1, description="Most NULLs a feature may have in a window.")
    max_unseen_rate: float | None = Field(0.05, ge=0, le=1, description="Most values of a categorical feature never "
                                          "seen in training.")
    max_out_of_range_rate: float | None = Field(0.1, ge=0, le=1, description="Most values of a numeric feature "
                                                "outside the training minimum and maximum.")


class PerformanceMonitoring(_Strict):
    min_metric: float | None = Field(None, description="The realized gate metric must reach this (stay below it "
                                     "if lower is better), as promotion.minimum.")
    max_drop: float | None = Field(0.05, ge=0, description="...and lose at most this much against the version's "
                                   "own evaluation when registered.")
    min_labels: int = Field(30, ge=1, description="Fewer labelled predictions than this are not judged.")
    lookback_minutes: int = Field(1440, ge=1, description="Predictions of the last this many minutes whose labels "
                                  "have arrived are scored.")
    retrain: bool = Field(True, description="A degraded version asks for a retrain (trigger degradation).")


class FreshnessMonitoring(_Strict):
    max_hours_without_data: float | None = Field(None, gt=0, description="Alert when a deployed pipeline has served "
                                                 "no prediction for this long; off when unset.")


class MonitoringSpec(_Strict):
    enabled: bool = Field(True, description="Whether the monitor checks this pipeline at all.")
    window_minutes: int = Field(60, ge=1, le=10080, description="Checks run over tumbling windows this long, "
                                "each once, after it closes.")
    min_rows: int = Field(100, ge=1, description="A window with fewer predictions of a version is not judged.")
    drift: DriftMonitoring = DriftMonitoring()
    quality: QualityMonitoring = QualityMonitoring()
    performance: PerformanceMonitoring = PerformanceMonitoring()
    freshness: FreshnessMonitoring = FreshnessMonitoring()


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
    monitoring: MonitoringSpec = MonitoringSpec()

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

    @property
    def fingerprint(self) -> str:
        """A hash of what decides the model a snapshot yields: the source columns, the model and the
        gate (not the retrain thresholds or the deployment). The data-watcher records it with each
        snapshot and retrains the same rows when it changes. Defaults are left out, so a field added
        to the spec later does not change the fingerprint of specs that do not use it."""
        training = self.model_dump(mode="json", include={"source", "model", "promotion"}, exclude_defaults=True)
        return hashlib.sha256(json.dumps(training, sort_keys=True).encode()).hexdigest()[:16]


def table_id(pipeline: str) -> str:
    """A pipeline name as a BigQuery table id: its hyphens become underscores. Names have no
    underscores (NAME_PATTERN), so two pipelines never map to the same id."""
    if not re.fullmatch(NAME_PATTERN, pipeline):
        raise ValueError(f"not a pipeline name: {pipeline!r}")
    return pipeline.replace("-", "_")


def snapshot_table_id(pipeline: str, data_version: str) -> str:
    """The snapshot table of one data version of one pipeline (`breast_cancer__d0003`): named by the
    pipeline, not by its source table, since pipelines sharing a table snapshot it on their own."""
    if not re.fullmatch(r"d[0-9]{4,}", data_version):
        raise ValueError(f"not a data version: {data_version!r}")
    return f"{table_id(pipeline)}__{data_version}"


# What the models can take, by the table's column type (GoogleSQL names, and the legacy names the
# BigQuery API also answers). Features follow BigQuery ML's automatic transforms as the trainer
# mirrors them (`mlops.ml.features`): numbers are standardized, STRING and BOOL one-hot encoded.
NUMERIC_TYPES = frozenset({"INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "INTEGER", "FLOAT", "DECIMAL", "BIGDECIMAL"})
FEATURE_TYPES = NUMERIC_TYPES | {"STRING", "BOOL", "BOOLEAN"}
SHOWN_COLUMNS = 25


def spec_problems(spec: PipelineSpec, columns: Sequence[tuple[str, str]]) -> list[str]:
    """Why `spec` cannot train on a table of these (name, type) columns, one problem a line; empty
    when it can. The missing label, then the missing features (in one line, each with the closest
    name the table has), then the table's columns (once), then each column of a type the model
    cannot use, with its type: the first few lines say the most. Pure, so `mlops pipeline apply`
    (when the table exists) and the data-watcher (when data lands) refuse a spec for the same
    reasons in the same words."""
    types = {name: kind.upper() for name, kind in columns}
    data_columns = [name for name in types if name not in SYSTEM_COLUMNS]
    table = spec.source.table
    problems = []

    def named(column: str) -> str:
        near = [name for name in data_columns if name.lower() == column.lower()] or difflib.get_close_matches(
            column, data_columns, n=1, cutoff=0.75)
        return f"{column!r} (did you mean {near[0]!r}?)" if near else repr(column)

    if spec.source.label not in types:
        problems.append(f"label column {named(spec.source.label)} is not in table {table}")
    missing = [c for c in spec.source.features if c not in types]
    if missing:
        many = len(missing) > 1
        problems.append(f"feature column{'s' if many else ''} {', '.join(map(named, missing))} "
                        f"{'are' if many else 'is'} not in table {table}")
    if problems:
        shown = ", ".join(data_columns[:SHOWN_COLUMNS])
        more = f" and {len(data_columns) - SHOWN_COLUMNS} more" if len(data_columns) > SHOWN_COLUMNS else ""
        problems.append(f"table {table} has columns: {shown or '(none)'}{more}")
    for feature in spec.source.features:
        kind = types.get(feature)
        if kind is not None and kind not in FEATURE_TYPES:
            problems.append(f"feature {feature!r} is {kind}: features must be numeric, STRING or BOOL")
    label_kind = types.get(spec.source.label)
    if label_kind is not None:
        if spec.model.is_classifier and label_kind not in FEATURE_TYPES:
            problems.append(f"label {spec.source.label!r} is {label_kind}: a {spec.model.type} label must be "
                            "numeric, STRING or BOOL")
        elif not spec.model.is_classifier and label_kind not in NUMERIC_TYPES:
            problems.append(f"label {spec.source.label!r} is {label_kind}: a {spec.model.type} label must be "
                            "numeric")
    return problems


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

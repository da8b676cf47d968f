"""The predictor's settings: the common ones plus Vertex AI's custom-container variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from mlops.core.settings import CommonSettings


class PredictorSettings(CommonSettings):
    default_pipeline: str | None = Field(None, description="Pipeline served on the bare predict route.")
    aip_predict_route: str = Field("/predict", description="Vertex AI sets AIP_PREDICT_ROUTE.",
                                   validation_alias=AliasChoices("aip_predict_route", "AIP_PREDICT_ROUTE"))
    aip_health_route: str = Field("/healthz", description="Vertex AI sets AIP_HEALTH_ROUTE.",
                                  validation_alias=AliasChoices("aip_health_route", "AIP_HEALTH_ROUTE"))
    # 1 s, not less: each prediction.made is one push and one streaming insert downstream, and at
    # hundreds of requests a second fewer, larger batches cost the logger and the warehouse far less.
    log_interval_s: float = Field(1.0, gt=0, description="Longest a prediction waits before it is published.")
    log_batch: int = Field(500, ge=1, le=5000, description="Most predictions in one prediction.made event.")

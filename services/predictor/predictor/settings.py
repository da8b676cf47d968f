"""The predictor's settings: the common ones, Vertex AI's custom-container variables, the model
version it serves (set by the registrar on the version's container), and its limits."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from mlops.core.settings import CommonSettings


class PredictorSettings(CommonSettings):
    # The model comes from AIP_STORAGE_URI (a Vertex-managed copy in the cloud), not the project's bucket.
    bucket: str = Field("", description="Unused by the predictor: its model is read from AIP_STORAGE_URI.")
    aip_storage_uri: str = Field(description="Vertex AI sets AIP_STORAGE_URI: the gs:// folder of the model "
                                 "version's artifact.", pattern=r"^gs://[^/]+/.*",
                                 validation_alias=AliasChoices("aip_storage_uri", "AIP_STORAGE_URI"))
    aip_deployed_model_id: str = Field("", description="Vertex AI sets AIP_DEPLOYED_MODEL_ID: recorded with "
                                       "each prediction.",
                                       validation_alias=AliasChoices("aip_deployed_model_id", "AIP_DEPLOYED_MODEL_ID"))
    pipeline: str = Field(description="The pipeline whose model this container serves (set by the registrar).")
    model_version: str = Field(description="The registry version served (set by the registrar).")
    artifact_checksum: str = Field(description="sha256 of the artifact, verified before serving (set by the "
                                   "registrar).", pattern=r"^sha256:[0-9a-f]{64}$")
    aip_http_port: int = Field(8080, ge=1, le=65535, description="Vertex AI sets AIP_HTTP_PORT: the port the "
                               "container listens on.",
                               validation_alias=AliasChoices("aip_http_port", "AIP_HTTP_PORT"))
    aip_predict_route: str = Field("/predict", description="Vertex AI sets AIP_PREDICT_ROUTE.",
                                   validation_alias=AliasChoices("aip_predict_route", "AIP_PREDICT_ROUTE"))
    aip_health_route: str = Field("/healthz", description="Vertex AI sets AIP_HEALTH_ROUTE.",
                                  validation_alias=AliasChoices("aip_health_route", "AIP_HEALTH_ROUTE"))
    # 1 s, not less: each prediction.made is one push and one streaming insert downstream, and at
    # hundreds of requests a second fewer, larger batches cost the logger and the warehouse far less.
    log_interval_s: float = Field(1.0, gt=0, description="Longest a prediction waits before it is published "
                                  "(a hard crash loses at most this much of answered predictions).")
    # 5,000 rows: each event costs the inference-logger a presence read and an append and the archive a row,
    # whatever its size, so fewer larger events keep the table up with traffic; the byte cap (4 MB, batcher.py)
    # keeps any event under Pub/Sub's 10 MB, so wide rows make smaller events (~1,600 rows of 2 KB of features).
    log_batch: int = Field(5000, ge=1, le=5000, description="Most predictions in one prediction.made event (an "
                           "event also stays under 4 MB serialized: wide rows make events of fewer).")
    log_durable: bool = Field(False, description="Answer only once the prediction is published (group commit): "
                              "a crash loses no answered prediction; each answer waits for the next publish, up to "
                              "MLOPS_LOG_INTERVAL_S (use 0.2 with it).")
    log_durable_timeout_s: float = Field(10.0, gt=0, description="In durable mode, longest a request waits for "
                                         "its publish before it answers 503.")
    log_max_pending: int = Field(50_000, ge=1, description="Predictions waiting to be published above which "
                                 "requests get 503 (Pub/Sub unreachable: bounds memory and the crash loss).")
    serving_threads: int = Field(16, ge=1, le=256, description="Requests served at once (threads of the "
                                 "serving process); more wait in its queue.")
    # Limits on what one request may ask; each refusal is a JSON 4xx naming the limit.
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 above it).")
    max_instances: int = Field(1000, ge=1, description="Most instances in one predict request (413 above it).")
    max_request_id_chars: int = Field(128, ge=8, le=1024, description="Longest X-Request-Id (or parameters."
                                      "request_id) accepted: letters, digits and . _ : / + = @ - (400 otherwise).")
    null_features: Literal["impute", "refuse"] = Field("impute", description="A null feature: 'impute' scores it as "
                                      "training defined (the training mean; the NULL category) and names it in "
                                      "the answer's 'imputed'; 'refuse' answers 400.")
    unseen_categories: Literal["refuse", "ignore"] = Field("refuse", description="A category the model never saw in "
                                            "training: 'refuse' answers 400 naming it; 'ignore' scores it with "
                                            "weight 0 (BigQuery ML's rule) and names it in the answer's 'unseen'.")

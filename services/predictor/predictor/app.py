"""predictor's HTTP entry point, on Vertex AI's custom-container contract.

- `POST $AIP_PREDICT_ROUTE` (default `/predict`) and `POST /predict/<pipeline>`:
  `{"instances": [...], "parameters": {...}}` -> `{"predictions": [...], "deployedModelId", "modelVersionId"}`.
- `GET $AIP_HEALTH_ROUTE` (default `/healthz`).
- `POST /push`: `model.deployed` from Pub/Sub, to pick up a new deployment without a restart.
Listens on `$AIP_HTTP_PORT` when Vertex AI sets it (gunicorn's bind), like any Cloud Run service.
"""

from __future__ import annotations

import atexit
import json
import time
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request

from mlops import runtime
from mlops.core.events import ModelDeployed, Prediction
from mlops.core.events.envelope import now_rfc3339
from mlops.core.log import configure_logging, get_logger
from mlops.core.settings import load_settings
from mlops.ml.warmup import warm_up
from mlops.runtime.push import Route
from predictor.batcher import PredictionBatcher
from predictor.serving import ModelServer, NoModelDeployed
from predictor.settings import PredictorSettings
from predictor.startup import load_model_from_store, restore_deployments

SERVICE = "predictor"
log = get_logger(SERVICE)


def create_app() -> Flask:
    settings = load_settings(PredictorSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    blobs = runtime.blob_store(settings)
    warm_up()  # the first deployment's load and first request must not pay one-off start-up costs
    server = ModelServer(loader=lambda uri, checksum: load_model_from_store(blobs, uri, checksum))
    bus = runtime.event_bus(settings)
    batcher = PredictionBatcher(bus, settings.service, interval=settings.log_interval_s, max_batch=settings.log_batch)
    atexit.register(batcher.close)
    restore_deployments(server, blobs)
    app = runtime.push_app(
        settings, {ModelDeployed.EVENT_TYPE: Route(server.handle_deployed)}, bus=bus,
        health=lambda: {"serving": server.pipelines(), "logged": batcher.published, "pending": batcher.pending},
    )
    register_prediction_routes(app, server, batcher, settings)
    return app


def _bad_request(message: str, problems: list[str] | None = None) -> tuple[Response, int]:
    return jsonify(error=message, problems=problems or []), 400


def register_prediction_routes(app: Flask, server: ModelServer, batcher: PredictionBatcher,
                               settings: PredictorSettings) -> None:
    def predict(pipeline: str | None) -> tuple[Response, int] | Response:
        started = time.perf_counter()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
            return _bad_request('expected a JSON object {"instances": [{...}, ...]} with at least one instance')
        instances: list[Any] = body["instances"]
        if not all(isinstance(i, dict) for i in instances):
            return _bad_request("each instance must be a JSON object of feature name -> value")
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        pipeline = pipeline or parameters.get("pipeline") or settings.default_pipeline
        if not pipeline:
            return _bad_request("which pipeline? use /predict/<pipeline> or parameters.pipeline")
        request_id = request.headers.get("X-Request-Id") or parameters.get("request_id") or uuid.uuid4().hex
        try:
            served = server.routing(pipeline).pick(request_id)
        except NoModelDeployed as error:
            return jsonify(error=str(error)), 503
        problems = served.model.validate_instances(instances)
        if problems:
            return _bad_request(f"instances do not fit the features of {pipeline} version {served.version_id}", problems)
        values, scores = served.model.predict(instances)
        latency_ms = (time.perf_counter() - started) * 1000
        classifier = served.model.is_classifier
        predicted_at = now_rfc3339()
        ids = [request_id] if len(instances) == 1 else [f"{request_id}:{i}" for i in range(len(instances))]
        batcher.add(pipeline, [
            Prediction(
                request_id=rid, model_version=served.version_id, features=json.dumps(instance, sort_keys=True),
                predicted_label=str(value) if classifier else None,
                predicted_value=None if classifier else float(value),
                score=score, latency_ms=latency_ms, predicted_at=predicted_at,
            )
            for rid, instance, value, score in zip(ids, instances, values, scores, strict=True)
        ])
        predictions = [
            {"label": str(v), "score": s} if classifier else {"value": float(v)} for v, s in zip(values, scores, strict=True)
        ]
        return jsonify(predictions=predictions, deployedModelId=served.deployed_model_id,
                       modelVersionId=served.version_id, requestId=request_id)

    app.add_url_rule(settings.aip_predict_route, "predict_default", lambda: predict(None), methods=["POST"])
    app.add_url_rule("/predict/<pipeline>", "predict_pipeline", predict, methods=["POST"])
    if settings.aip_health_route != "/healthz":
        app.add_url_rule(settings.aip_health_route, "aip_health", lambda: jsonify(status="ok"))

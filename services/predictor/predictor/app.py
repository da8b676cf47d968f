"""predictor's HTTP entry point, on Vertex AI's custom-container contract.

- `POST $AIP_PREDICT_ROUTE` (default `/predict`) and `POST /predict/<pipeline>`:
  `{"instances": [...], "parameters": {...}}` -> `{"predictions": [...], "deployedModelId", "modelVersionId"}`.
- `GET $AIP_HEALTH_ROUTE` (default `/healthz`).
- `POST /push`: `model.deployed` from Pub/Sub, to pick up a new deployment without a restart.
Listens on `$AIP_HTTP_PORT` when Vertex AI sets it (gunicorn's bind), like any Cloud Run service.

Every answer is JSON. A request is refused with the one problem that stops it: 413 past the body or
instance limits, 400 for a body that is not the documented shape (naming what is wrong) or for
instances that do not fit the model (listing each problem), 404 for a pipeline that does not exist,
503 (with Retry-After) for one whose first model is not deployed yet or while predictions cannot
be logged. Limits and policies are settings (`predictor/settings.py`).
"""

from __future__ import annotations

import atexit
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mlops import runtime
from mlops.core.events import ModelDeployed, Prediction
from mlops.core.events.envelope import now_rfc3339
from mlops.core.layout import spec_path
from mlops.core.log import configure_logging, get_logger
from mlops.core.settings import load_settings
from mlops.core.spec import NAME_PATTERN
from mlops.ml.features import NullPolicy, ServingPolicy, UnseenPolicy
from mlops.ml.warmup import warm_up
from mlops.ports.blobs import BlobStore
from mlops.runtime.push import Route, json_body
from mlops.runtime.readers import readers
from predictor.batcher import LogBacklogFull, PredictionBatcher
from predictor.loading import load_model_from_store
from predictor.serving import ModelServer
from predictor.settings import PredictorSettings
from predictor.startup import restore_deployments

SERVICE = "predictor"
log = get_logger(SERVICE)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
MAX_PROBLEMS_LISTED = 50
RETRY_AFTER_S = "5"
_PIPELINE_NAME = re.compile(NAME_PATTERN)


def create_app() -> Flask:
    settings = load_settings(PredictorSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    blobs = runtime.blob_store(settings)
    warm_up()  # the first deployment's load and first request must not pay one-off start-up costs
    server = ModelServer(loader=lambda uri, checksum: load_model_from_store(blobs, uri, checksum),
                         bucket=settings.bucket)
    bus = runtime.event_bus(settings)
    batcher = PredictionBatcher(bus, settings.service, interval=settings.log_interval_s, max_batch=settings.log_batch,
                                durable=settings.log_durable, max_pending=settings.log_max_pending)
    atexit.register(batcher.close)  # gunicorn's graceful stop (SIGTERM) exits the worker through atexit
    restore_deployments(server, blobs, readers(settings).registry if settings.verify_with_registry else None)
    app = runtime.push_app(
        settings, {ModelDeployed.EVENT_TYPE: Route(server.handle_deployed)}, bus=bus,
        health=lambda: {"serving": server.pipelines(), "logged": batcher.published, "pending": batcher.pending,
                        "durable": batcher.durable},
    )
    register_prediction_routes(app, server, batcher, settings, PipelineCatalog(blobs).exists)
    return app


class PipelineCatalog:
    """Whether a pipeline exists (its spec is in the bucket), so an unknown name answers 404 and a known
    one without a deployment 503. Answers are cached a few seconds and the cache is bounded, so
    requests for made-up names cost at most one bucket read per name and period."""

    def __init__(self, blobs: BlobStore, ttl_s: float = 5.0, max_names: int = 1024):
        self._blobs = blobs
        self._ttl = ttl_s
        self._max = max_names
        self._known: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def exists(self, pipeline: str) -> bool:
        if not _PIPELINE_NAME.match(pipeline):
            return False
        now = time.monotonic()
        with self._lock:
            hit = self._known.get(pipeline)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        exists = self._blobs.exists(spec_path(pipeline))
        with self._lock:
            self._known[pipeline] = (now, exists)
            self._known.move_to_end(pipeline)
            while len(self._known) > self._max:
                self._known.popitem(last=False)
        return exists


class Refused(Exception):
    """A request the predictor will not serve: the status and the one-line reason (plus details)."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.headers = headers or {}

    def response(self) -> tuple[Response, int, dict[str, str]]:
        body: dict[str, Any] = {"error": self.message}
        if self.problems:
            shown = self.problems[:MAX_PROBLEMS_LISTED]
            if len(self.problems) > len(shown):
                shown.append(f"... and {len(self.problems) - len(shown)} more")
            body["problems"] = shown
        return jsonify(body), self.status, self.headers


def _describe(value: Any) -> str:
    """`null`, `an int`, `a list`...: what a JSON value is, for a message."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def parse_request(pipeline: str | None, settings: PredictorSettings) -> tuple[str, str, list[dict[str, Any]]]:
    """(pipeline, request id, instances) of a predict request, or Refused with the exact problem."""
    body, problem = json_body()
    shape = 'expected a JSON object {"instances": [{...}, ...], "parameters": {...}}'
    if problem is not None:
        raise Refused(400, f"{problem}; {shape}")
    if not isinstance(body, dict):
        raise Refused(400, f"the body is {_describe(body)} in JSON, not an object; {shape}")
    if "instances" not in body:
        raise Refused(400, f"the body has no 'instances' (it has {sorted(body)[:10]}); {shape}")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise Refused(400, f"'instances' is {_describe(instances)}, not a list of objects")
    if not instances:
        raise Refused(400, "'instances' is empty: send at least one instance")
    if len(instances) > settings.max_instances:
        raise Refused(413, f"{len(instances)} instances in one request; at most {settings.max_instances} "
                           f"(MLOPS_MAX_INSTANCES): split them into several requests")
    not_objects = [i for i, instance in enumerate(instances) if not isinstance(instance, dict)]
    if not_objects:
        raise Refused(400, "each instance must be a JSON object of feature name -> value", [
            f"instance {i}: {_describe(instances[i])}, not an object" for i in not_objects])
    parameters = body.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise Refused(400, f"'parameters' is {_describe(parameters)}, not an object")
    named = parameters.get("pipeline")
    if named is not None and not isinstance(named, str):
        raise Refused(400, f"parameters.pipeline is {_describe(named)}, not a string")
    pipeline = pipeline or named or settings.default_pipeline
    if not pipeline:
        raise Refused(400, "which pipeline? use /predict/<pipeline> or parameters.pipeline")
    return pipeline, request_id_of(parameters, settings), instances


def request_id_of(parameters: dict[str, Any], settings: PredictorSettings) -> str:
    """The caller's request id (X-Request-Id, else parameters.request_id), checked; a new one if none.
    It keys the prediction's log row and the sticky traffic split, so it must be short and plain."""
    header = request.headers.get("X-Request-Id")
    given = header if header is not None else parameters.get("request_id")
    where = "X-Request-Id" if header is not None else "parameters.request_id"
    if given is None:
        return uuid.uuid4().hex
    if not isinstance(given, str):
        raise Refused(400, f"{where} is {_describe(given)}, not a string")
    if len(given) > settings.max_request_id_chars:
        raise Refused(400, f"{where} has {len(given)} characters; at most {settings.max_request_id_chars} "
                           f"(MLOPS_MAX_REQUEST_ID_CHARS)")
    if not REQUEST_ID_RE.match(given):
        raise Refused(400, f"{where} {given[:40]!r} has characters outside letters, digits and . _ : / + = @ -"
                      if given else f"{where} is empty")
    return given


def register_prediction_routes(app: Flask, server: ModelServer, batcher: PredictionBatcher,
                               settings: PredictorSettings, pipeline_exists: Callable[[str], bool]) -> None:
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    policy = ServingPolicy(nulls=NullPolicy(settings.null_features), unseen=UnseenPolicy(settings.unseen_categories))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify(error=f"the body is larger than {settings.max_body_bytes} bytes (MLOPS_MAX_BODY_BYTES): "
                             f"send fewer instances per request", status=413), 413

    def predict(pipeline: str | None) -> tuple[Response, int, dict[str, str]] | Response:
        started = time.perf_counter()
        try:
            return serve(*parse_request(pipeline, settings), started)
        except Refused as refused:
            return refused.response()

    def serve(pipeline: str, request_id: str, instances: list[dict[str, Any]], started: float) -> Response:
        if not server.serves(pipeline):
            if not pipeline_exists(pipeline):
                raise Refused(404, f"no pipeline {pipeline[:60]!r}: see `mlops pipeline list`")
            raise Refused(503, f"no model is deployed for pipeline {pipeline!r} yet; retry later",
                          headers={"Retry-After": RETRY_AFTER_S})
        served = server.routing(pipeline).pick(request_id)
        problems = served.model.serving_problems(instances, policy)
        if problems:
            raise Refused(400, f"instances do not fit the features of {pipeline} version {served.version_id}",
                          problems)
        values, scores = served.model.predict(instances)
        latency_ms = (time.perf_counter() - started) * 1000
        classifier = served.model.is_classifier
        predicted_at = now_rfc3339()
        ids = [request_id] if len(instances) == 1 else [f"{request_id}:{i}" for i in range(len(instances))]
        try:
            ticket = batcher.add(pipeline, [
                Prediction(
                    request_id=rid, model_version=served.version_id, features=json.dumps(instance, sort_keys=True),
                    predicted_label=str(value) if classifier else None,
                    predicted_value=None if classifier else float(value),
                    score=score, latency_ms=latency_ms, predicted_at=predicted_at,
                )
                for rid, instance, value, score in zip(ids, instances, values, scores, strict=True)
            ])
        except LogBacklogFull as error:
            raise Refused(503, f"predictions cannot be logged right now ({error}); retry later",
                          headers={"Retry-After": RETRY_AFTER_S}) from None
        if ticket is not None and not ticket.wait(settings.log_durable_timeout_s):
            # Not answered, so it may be retried with the same request id: the logger keeps one row.
            raise Refused(503, f"the prediction could not be logged within {settings.log_durable_timeout_s:g} s "
                               f"(durable mode); retry with the same X-Request-Id",
                          headers={"Retry-After": RETRY_AFTER_S})
        predictions = []
        for instance, value, score in zip(instances, values, scores, strict=True):
            answer: dict[str, Any] = {"label": str(value), "score": score} if classifier else {"value": float(value)}
            answer.update(served.model.serving_notes(instance))
            predictions.append(answer)
        return jsonify(predictions=predictions, deployedModelId=served.deployed_model_id,
                       modelVersionId=served.version_id, requestId=request_id)

    app.add_url_rule(settings.aip_predict_route, "predict_default", lambda: predict(None), methods=["POST"])
    app.add_url_rule("/predict/<pipeline>", "predict_pipeline", predict, methods=["POST"])
    if settings.aip_health_route != "/healthz":
        app.add_url_rule(settings.aip_health_route, "aip_health", lambda: jsonify(status="ok"))

"""predictor's HTTP entry point: a Vertex AI custom serving container for ONE model version.

Vertex AI starts one container per deployed model version, with `AIP_STORAGE_URI` (the version's
artifact folder; in the cloud a Vertex-managed gs:// copy), `AIP_HTTP_PORT`, `AIP_PREDICT_ROUTE`,
`AIP_HEALTH_ROUTE`, `AIP_DEPLOYED_MODEL_ID`, and the environment the registrar put on the version
(`MLOPS_PIPELINE`, `MLOPS_MODEL_VERSION`, `MLOPS_ARTIFACT_CHECKSUM`, `MLOPS_PROJECT`, ...). At start
it loads that artifact, checksum verified, and refuses to start (one line on stderr, exit code 4)
when it cannot: a container that never answers its health route fails the DeployModel with that
line, and the endpoint keeps serving what it served. The traffic split between versions is the
endpoint's: nothing here routes, swaps or listens to events.

- `POST $AIP_PREDICT_ROUTE` (default `/predict`):
  `{"instances": [...], "parameters": {...}}` -> `{"predictions": [...], "deployedModelId", "modelVersionId"}`.
- `GET $AIP_HEALTH_ROUTE` (default `/healthz`): 200 once the model is loaded (the port opens only then).
Listens on `$AIP_HTTP_PORT`: `python -m predictor` (`predictor.__main__`, the image's entry point) serves
this app in one process; `create_app()` is the same app for any WSGI server.

Every answer is JSON. A request is refused with the one problem that stops it: 413 past the body or
instance limits or for an instance too large to log, 400 for a body that is not the documented shape
(naming what is wrong) or for instances that do not fit the model (listing each problem), 404 for
`parameters.pipeline` naming another pipeline, 503 (with Retry-After) while predictions cannot be
logged. Limits and policies are settings (`predictor/settings.py`).
"""

from __future__ import annotations

import atexit
import json
import re
import sys
import time
import uuid
from typing import Any, NoReturn

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mlops import runtime
from mlops.core.errors import PermanentError
from mlops.core.events import Prediction
from mlops.core.events.envelope import now_rfc3339
from mlops.core.log import configure_logging, get_logger
from mlops.core.settings import SettingsError, load_settings
from mlops.ml.features import NullPolicy, ServingPolicy, UnseenPolicy
from mlops.ports.blobs import BlobStore
from mlops.ports.bus import EventBus
from mlops.runtime.http import install_json_errors, json_body
from predictor.batcher import LogBacklogFull, PredictionBatcher, PredictionTooLarge
from predictor.loading import load_served_model
from predictor.serving import Served
from predictor.settings import PredictorSettings

SERVICE = "predictor"
log = get_logger(SERVICE)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
MAX_PROBLEMS_LISTED = 50
RETRY_AFTER_S = "5"
# gunicorn's code for "the application could not be loaded", kept by the image's own entry point: the
# container stops with it, once, and the DeployModel fails with its one stderr line.
EXIT_CANNOT_START = 4


def refuse_to_start(message: str) -> NoReturn:
    """One line on stderr (what Vertex AI shows as the container's error) and a non-zero exit."""
    print(message.replace("\n", " "), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CANNOT_START)


def create_app() -> Flask:
    """The app for a WSGI server (`gunicorn 'predictor.app:create_app()'`); its predictions are flushed
    at exit (a WSGI server's graceful stop exits the worker through atexit)."""
    app, batcher, _ = start()
    atexit.register(batcher.close)
    return app


def start() -> tuple[Flask, PredictionBatcher, PredictorSettings]:
    """Settings from the environment, the model loaded from AIP_STORAGE_URI, the app serving it and the
    batcher logging its predictions; or SystemExit(4) with one line on stderr when it cannot start."""
    try:
        settings = load_settings(PredictorSettings, SERVICE)
    except SettingsError as error:
        refuse_to_start(str(error))
    configure_logging(settings.service, settings.log_level)
    # The model's folder is in a bucket of Vertex AI's (its copy of the version's artifactUri), not the project's.
    storage = settings.model_copy(update={"bucket": settings.aip_storage_uri[len("gs://"):].partition("/")[0]})
    app, batcher = build_app(settings, runtime.blob_store(storage), runtime.event_bus(settings))
    return app, batcher, settings


def serving_policy(settings: PredictorSettings) -> ServingPolicy:
    return ServingPolicy(nulls=NullPolicy(settings.null_features), unseen=UnseenPolicy(settings.unseen_categories))


def build_app(settings: PredictorSettings, blobs: BlobStore, bus: EventBus) -> tuple[Flask, PredictionBatcher]:
    """The app serving the model in `AIP_STORAGE_URI`, loaded, verified and warmed up first: refuses
    to start (SystemExit, one line on stderr) when it cannot be."""
    uri = settings.aip_storage_uri
    try:
        model = load_served_model(blobs, uri, settings.artifact_checksum, serving_policy(settings))
    except PermanentError as error:
        refuse_to_start(f"predictor cannot start: the model in {uri} cannot be served: {error}")
    except Exception as error:  # noqa: BLE001 - storage unreachable: the platform starts the container again
        refuse_to_start(f"predictor cannot start: reading {uri} failed: {type(error).__name__}: {error}")
    served = Served(settings.pipeline, settings.model_version, settings.aip_deployed_model_id,
                    settings.artifact_checksum, model)
    log.info("serving", pipeline=served.pipeline, version=served.version_id,
             deployed_model_id=served.deployed_model_id, uri=uri)
    batcher = PredictionBatcher(bus, settings.service, interval=settings.log_interval_s, max_batch=settings.log_batch,
                                durable=settings.log_durable, max_pending=settings.log_max_pending)
    app = Flask(SERVICE)
    app.config["SERVED"] = served
    install_json_errors(app)

    @app.get(settings.aip_health_route)
    def health() -> Response:
        return jsonify(status="ok", pipeline=served.pipeline, version=served.version_id,
                       deployedModelId=served.deployed_model_id, logged=batcher.published,
                       pending=batcher.pending, durable=batcher.durable)

    register_prediction_routes(app, served, batcher, settings)
    return app, batcher


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


def parse_request(served: Served, settings: PredictorSettings) -> tuple[str, list[dict[str, Any]]]:
    """(request id, instances) of a predict request, or Refused with the exact problem."""
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
    if named is not None and named != served.pipeline:
        # Each endpoint serves one pipeline's versions: a caller that names another is on the wrong one.
        raise Refused(404, f"this endpoint serves pipeline {served.pipeline!r}, not {named[:60]!r}: call that "
                           f"pipeline's endpoint")
    return request_id_of(parameters, settings), instances


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


def register_prediction_routes(app: Flask, served: Served, batcher: PredictionBatcher,
                               settings: PredictorSettings) -> None:
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    policy = serving_policy(settings)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify(error=f"the body is larger than {settings.max_body_bytes} bytes (MLOPS_MAX_BODY_BYTES): "
                             f"send fewer instances per request", status=413), 413

    def predict() -> tuple[Response, int, dict[str, str]] | Response:
        started = time.perf_counter()
        try:
            return serve(*parse_request(served, settings), started)
        except Refused as refused:
            return refused.response()

    def serve(request_id: str, instances: list[dict[str, Any]], started: float) -> Response:
        problems = served.model.serving_problems(instances, policy)
        if problems:
            raise Refused(400, f"instances do not fit the features of {served.pipeline} version {served.version_id}",
                          problems)
        ids = [request_id] if len(instances) == 1 else [f"{request_id}:{i}" for i in range(len(instances))]
        try:
            values, scores = served.model.predict(instances)
        except Exception:
            log_failure(ids, instances, started)
            raise  # answered as a JSON 500 naming the exception's class (runtime.http)
        latency_ms = (time.perf_counter() - started) * 1000
        classifier = served.model.is_classifier
        predicted_at = now_rfc3339()
        try:
            ticket = batcher.add(served.pipeline, [
                Prediction(
                    request_id=rid, model_version=served.version_id,
                    deployed_model_id=served.deployed_model_id or None,
                    features=json.dumps(instance, sort_keys=True),
                    predicted_label=str(value) if classifier else None,
                    predicted_value=None if classifier else float(value),
                    score=score, latency_ms=latency_ms, predicted_at=predicted_at,
                )
                for rid, instance, value, score in zip(ids, instances, values, scores, strict=True)
            ])
        except LogBacklogFull as error:
            raise Refused(503, f"predictions cannot be logged right now ({error}); retry later",
                          headers={"Retry-After": RETRY_AFTER_S}) from None
        except PredictionTooLarge as error:
            # Every prediction is logged with its features: one this large could never be published.
            raise Refused(413, f"instance {error.index} is too large to log: {error.size} bytes as a logged "
                               f"prediction, at most {error.limit}; send smaller instances") from None
        if ticket is not None and not ticket.wait(settings.log_durable_timeout_s):
            # Not answered, so it may be retried with the same request id: the logger keeps one row.
            raise Refused(503, f"the prediction could not be logged within {settings.log_durable_timeout_s:g} s "
                               f"(durable mode); retry with the same parameters.request_id",
                          headers={"Retry-After": RETRY_AFTER_S})
        predictions = []
        for instance, value, score in zip(instances, values, scores, strict=True):
            answer: dict[str, Any] = {"label": str(value), "score": score} if classifier else {"value": float(value)}
            answer.update(served.model.serving_notes(instance))
            predictions.append(answer)
        # Vertex AI answers callers with `predictions` (and its own ids); the rest is for direct calls.
        return jsonify(predictions=predictions, deployedModelId=served.deployed_model_id,
                       modelVersionId=served.version_id, requestId=request_id)

    def log_failure(ids: list[str], instances: list[dict[str, Any]], started: float) -> None:
        """A request the model failed on is logged as rows without an answer (no label, value or score):
        that is what the canary judge's error rate counts, so a canary that fails where its champion
        answers is rolled back. Best effort: the request fails either way."""
        latency_ms = (time.perf_counter() - started) * 1000
        predicted_at = now_rfc3339()
        try:
            batcher.add(served.pipeline, [
                Prediction(request_id=rid, model_version=served.version_id,
                           deployed_model_id=served.deployed_model_id or None,
                           features=json.dumps(instance, sort_keys=True), latency_ms=latency_ms,
                           predicted_at=predicted_at)
                for rid, instance in zip(ids, instances, strict=True)])
        except Exception as error:  # noqa: BLE001 - the model's failure is what the caller hears about
            log.warning("a failed request could not be logged", error=repr(error)[:200])

    app.add_url_rule(settings.aip_predict_route, "predict", predict, methods=["POST"])

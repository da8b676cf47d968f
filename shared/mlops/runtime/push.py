"""The Pub/Sub push endpoint of a service: decode, dispatch to a pure handler, publish, answer.

The status code is how a push subscriber talks to Pub/Sub, so it is chosen with care:
- 204: handled; 200 with a JSON reason: dead-lettered by us. Either way Pub/Sub forgets the message.
- 503: a transient failure; Pub/Sub redelivers with the subscription's backoff, and after its
  `max_delivery_attempts` moves the message to the dead-letter topic itself.
- 400: the HTTP request is not a push request at all (nobody to dead-letter for).
- 401/403: push authentication is configured and the request's OIDC token is missing or invalid
  (401) or names another audience or identity (403); see `mlops.runtime.push_auth`. Not read, so
  not dead-lettered: Pub/Sub keeps the message and redelivers it.
Every answer is JSON, errors included (404, 405, 413, and a 500 for a bug: never an HTML page or a
traceback), so a caller always gets a reason it can read.
A message that can never succeed (bad envelope, unknown type, payload off-schema, or a handler's
`PermanentError`) is copied to the dead-letter topic *by us* with the reason in its attributes and
then acknowledged: returning 4xx would make Pub/Sub retry a poison message until retention runs out.
Every failure is also published as a `stage.failed` event, so operators find the reason in the archive,
and counted as the `stage_failed` metric (labels service, event_type, permanent), which alerts watch.

Output event ids are derived from the input id (uuid5), so a redelivered input republishes the same
ids and each downstream stage's idempotence check (keyed on its input id) sees a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from flask import Flask, Response, jsonify, request

from mlops.core.errors import PermanentError
from mlops.core.events import (
    Envelope,
    EnvelopeError,
    Event,
    EventValidationError,
    StageFailed,
    decode,
)
from mlops.core.events.envelope import Continues, new_envelope
from mlops.core.log import trace_from_header
from mlops.ports.bus import EventBus
from mlops.ports.metrics import MetricsSink, NullMetrics
from mlops.runtime.http import install_json_errors, json_body

if TYPE_CHECKING:  # imported when a push is checked: only services configured with MLOPS_PUSH_AUDIENCE need it
    from mlops.runtime.push_auth import PushAuthenticator

log = structlog.get_logger("push")

OUTPUT_ID_NAMESPACE = uuid.UUID("6f1b7e2a-3c84-4d1e-9a57-0b5e8a1c2d3f")
PUBLISH_TIMEOUT_S = 30.0


E = TypeVar("E", bound=Event)
# A pure handler: the typed input event and its envelope in, the events to publish out.
Handler = Callable[[E, Envelope], Sequence[Event | Continues]]


def with_pubsub_identity(attributes: dict[str, str], message_id: str, publish_time: str) -> dict[str, str]:
    """Cloud Scheduler (and other fixed-attribute publishers) cannot mint a `ce-id` per message: take
    the message's identity from Pub/Sub itself. Unique per message, and the same on redelivery."""
    if attributes.get("ce-id") or not attributes.get("ce-type") or not message_id:
        return attributes
    filled = {"ce-id": f"pubsub-{message_id}", "run_id": f"pubsub-{message_id}"}
    if publish_time:
        filled["ce-time"] = publish_time
    return {**filled, **{k: v for k, v in attributes.items() if v}}


class KeyedLock:
    """One lock per key, alive while someone holds or waits for it.

    Duplicates of one event often arrive together (a redelivery racing a slow first attempt); each
    stage's idempotence check ("did I already do this?") is only sound if they run one at a time.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


@dataclass(frozen=True)
class Route(Generic[E]):
    handler: Handler[E]
    starts_run: bool = False  # the data-watcher mints a new run id for each data.ready it emits


@dataclass
class PushEndpoint:
    """Everything a service's push endpoint needs, injected: no clients are built here."""

    service: str
    project: str
    bus: EventBus
    routes: dict[str, Route[Any]]
    dead_letter_topic: str
    code_version: str = ""
    metrics: MetricsSink = field(default_factory=NullMetrics)
    health: Callable[[], dict[str, Any]] = field(default=lambda: {})
    auth: PushAuthenticator | None = None  # None: every push is taken (the local stack has no tokens)
    _in_flight: KeyedLock = field(default_factory=KeyedLock, init=False, repr=False)

    def output_envelopes(self, incoming: Envelope, events: Sequence[Event | Continues],
                         starts_run: bool) -> list[Envelope]:
        envelopes = []
        for index, output in enumerate(events):
            if isinstance(output, Continues):
                # Finishes what an earlier event started: that event's run and cause, and an id derived
                # from it alone, so whichever delivery publishes it, it is one event.
                event = output.event
                seed = f"{output.cause_id}/{self.service}/{event.EVENT_TYPE}/continued"
                run_id, causation_id, replay_of = output.run_id, output.cause_id, output.replay_of
            else:
                event = output
                # The type is part of the seed: a redelivered tick that now snapshots instead of skipping
                # must not reuse the skip's id (the archive keeps one event per id).
                seed = f"{incoming.id}/{self.service}/{event.EVENT_TYPE}/{index}"
                run_id = str(uuid.uuid5(OUTPUT_ID_NAMESPACE, seed + "/run")) if starts_run else incoming.run_id
                causation_id, replay_of = incoming.id, incoming.replay_of
            envelopes.append(new_envelope(
                event, self.service,
                id=str(uuid.uuid5(OUTPUT_ID_NAMESPACE, seed)),
                run_id=run_id,
                causation_id=causation_id,
                replay_of=replay_of,
                pipeline=getattr(event, "pipeline", None) or incoming.pipeline,
                code_version=self.code_version,
            ))
        return envelopes

    def handle_message(self, message: dict[str, Any], subscription: str) -> tuple[int, dict[str, Any]]:
        """The whole decision for one pushed message: (HTTP status, JSON body)."""
        attributes = message.get("attributes") or {}
        data = message.get("data") or ""
        if not isinstance(data, str) or not isinstance(attributes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
            return 400, {"error": "not a Pub/Sub push message: 'data' must be a base64 string and 'attributes' "
                                  "an object of strings"}
        message_id = str(message.get("messageId") or message.get("message_id") or "")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return self.dead_letter(raw=data.encode(), attributes=attributes, message_id=message_id,
                                    subscription=subscription, error=PermanentError("message data is not base64"))
        identified = with_pubsub_identity(attributes, message_id, str(message.get("publishTime") or ""))
        try:
            envelope = Envelope.from_attributes(identified)
            route = self.routes.get(envelope.type)
            if route is None:
                raise PermanentError(f"{self.service} does not handle {envelope.type!r}; it handles {sorted(self.routes)}")
            event = decode(envelope.type, raw)
        except (EnvelopeError, EventValidationError, PermanentError) as error:
            return self.dead_letter(raw, attributes, message_id, subscription, error)
        except Exception as error:  # noqa: BLE001 - the same bytes fail the same way (nesting too deep, ...)
            return self.dead_letter(raw, attributes, message_id, subscription, PermanentError(
                f"message data cannot be decoded: {type(error).__name__}: {str(error)[:500]}"))

        structlog.contextvars.bind_contextvars(
            event_id=envelope.id, event_type=envelope.type, run_id=envelope.run_id, pipeline=envelope.pipeline
        )
        started = time.perf_counter()
        with self._in_flight.hold(envelope.id):
            status, body = self._handle(route, event, envelope, raw, attributes, message_id, subscription, started)
        outcome = {204: "ok", 200: "dead-lettered"}.get(status, "retry")
        self.metrics.record("stage_latency_ms", (time.perf_counter() - started) * 1000,
                            {"stage": self.service, "event_type": envelope.type, "outcome": outcome})
        return status, body

    def _handle(self, route: Route[Any], event: Event, envelope: Envelope, raw: bytes, attributes: dict[str, str],
                message_id: str, subscription: str, started: float) -> tuple[int, dict[str, Any]]:
        try:
            outputs = list(route.handler(event, envelope))
        except PermanentError as error:
            return self.dead_letter(raw, attributes, message_id, subscription, error)
        except Exception as error:  # noqa: BLE001 - anything else is worth a retry
            log.error("handler failed; Pub/Sub will retry", error=repr(error), message_id=message_id, exc_info=True)
            self.report_failure(envelope.id, envelope.type, error, permanent=False, pipeline=envelope.pipeline,
                                message_id=message_id, run_id=envelope.run_id)
            return 503, {"status": "retry", "error": f"{type(error).__name__}: {error}"}

        try:
            envelopes = self.output_envelopes(envelope, outputs, route.starts_run)
            events = [out.event if isinstance(out, Continues) else out for out in outputs]
            futures = [self.bus.publish(event, env) for event, env in zip(events, envelopes, strict=True)]
            for future in futures:
                future.result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - the input is nacked, so nothing is lost
            log.error("publishing outputs failed; Pub/Sub will retry", error=repr(error), exc_info=True)
            return 503, {"status": "retry", "error": f"publish failed: {error}"}
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        log.info("handled", outputs=[e.type for e in envelopes], elapsed_ms=elapsed_ms)
        return 204, {}

    def dead_letter(self, raw: bytes, attributes: dict[str, str], message_id: str, subscription: str,
                    error: Exception) -> tuple[int, dict[str, Any]]:
        reason = f"{type(error).__name__}: {error}"
        log.error("dead-lettering a message that can never succeed", reason=reason, message_id=message_id,
                  attributes=attributes)
        dead_attributes = {
            **{k: v for k, v in attributes.items() if not k.startswith("dead_letter_")},
            "dead_letter_reason": reason[:1000],
            "dead_letter_stage": self.service,
            "dead_letter_error_class": type(error).__name__,
            "dead_letter_subscription": subscription,
            "dead_letter_message_id": message_id,
        }
        try:
            self.bus.publish_raw(self.dead_letter_topic, raw, dead_attributes).result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as publish_error:  # noqa: BLE001 - keep the message: let Pub/Sub retry
            log.error("dead-letter publish failed; Pub/Sub will retry", error=repr(publish_error))
            return 503, {"status": "retry", "error": f"dead-letter publish failed: {publish_error}"}
        self.report_failure(attributes.get("ce-id", ""), attributes.get("ce-type", ""), error, permanent=True,
                            pipeline=attributes.get("pipeline"), message_id=message_id,
                            run_id=attributes.get("run_id", ""))
        return 200, {"status": "dead-lettered", "reason": reason}

    def report_failure(self, event_id: str, event_type: str, error: Exception, permanent: bool,
                       pipeline: str | None, message_id: str, run_id: str = "") -> None:
        """Best effort: a failure report that cannot be sent must not change what Pub/Sub is told."""
        self.metrics.record("stage_failed", 1, {"service": self.service, "event_type": event_type or "unknown",
                                                "permanent": "true" if permanent else "false"})
        failure = StageFailed(
            stage=self.service,
            input_event_id=event_id,
            input_event_type=event_type,
            error_class=type(error).__name__,
            error_message=str(error)[:2000],
            permanent=permanent,
            pipeline=pipeline or None,
            message_id=message_id or None,
        )
        envelope = new_envelope(failure, self.service, run_id=run_id or None, causation_id=event_id,
                                pipeline=pipeline or "")
        try:
            self.bus.publish(failure, envelope).result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as publish_error:  # noqa: BLE001
            log.warning("could not publish stage.failed", error=repr(publish_error))


def create_push_app(endpoint: PushEndpoint, project_for_trace: str | None = None) -> Flask:
    """The thin Flask app around a PushEndpoint: `/push` for Pub/Sub, `/healthz` for probes."""
    app = Flask(endpoint.service)
    install_json_errors(app)

    @app.post("/push")
    def push() -> tuple[Response, int] | tuple[str, int]:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=endpoint.service)
        trace = trace_from_header(request.headers.get("X-Cloud-Trace-Context"), project_for_trace or endpoint.project)
        if trace:
            structlog.contextvars.bind_contextvars(**{"logging.googleapis.com/trace": trace})
        if endpoint.auth is not None:
            from mlops.runtime.push_auth import PushRefused

            try:
                endpoint.auth.check(request.headers.get("Authorization"))
            except PushRefused as refused:
                log.warning("push refused", status=refused.status, reason=refused.reason)
                response = jsonify(error=refused.reason)
                if refused.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response, refused.status
        body, problem = json_body() if request.is_json else (None, "Content-Type is not application/json")
        if problem is not None or not isinstance(body, dict) or not isinstance(body.get("message"), dict):
            return jsonify(error="not a Pub/Sub push request: expected a JSON object with a 'message' object"
                                 + (f" ({problem})" if problem else "")), 400
        status, payload = endpoint.handle_message(body["message"], str(body.get("subscription", "")))
        if status == 204:
            return "", 204
        return jsonify(payload), status

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service=endpoint.service, **endpoint.health())

    return app

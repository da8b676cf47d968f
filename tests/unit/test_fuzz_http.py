"""Property-based fuzzing (Hypothesis) of the two HTTP doors that take outside input.

- The push decoder (`mlops.runtime.push`): whatever JSON (or bytes) reaches `/push`, the answer is a
  JSON 400 (not a push at all), a 200 dead-letter with its reason, or a 204; never a 5xx, never a
  traceback, and every dead-lettered message is on the dead-letter topic.
- The predict route: whatever JSON a caller sends, the answer is JSON with a 2xx or 4xx status (a 503
  only for a pipeline without a model), never a 500; a 200 has one prediction per instance.

Bounded (a fixed number of examples, no example database), so they run in a few seconds.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.core.events import WatchTick, encode
from mlops.core.events.envelope import new_envelope
from mlops.core.topology import DEAD_LETTER_TOPIC
from mlops.runtime.push import PushEndpoint, Route, create_push_app
from mlops.testing.memory import InMemoryEventBus

from .test_predictor_app import FEATURES, PIPELINE, Predictor, build_artifacts, make_predictor

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Any JSON document, with the awkward scalars: huge integers, non-finite floats, odd text.
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**1000)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# ------------------------------------------------------------------------------------ push

VALID_TICK = WatchTick(pipeline="p", reason="manual")
VALID_ATTRIBUTES = new_envelope(VALID_TICK, "cli").to_attributes()

attribute_maps = (st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=6)
                  | st.builds(lambda drop, extra: {**{k: v for k, v in VALID_ATTRIBUTES.items() if k not in drop},
                                                   **extra},
                              st.sets(st.sampled_from(sorted(VALID_ATTRIBUTES)), max_size=3),
                              st.dictionaries(st.sampled_from(["ce-type", "ce-time", "ce-id", "x"]),
                                              st.text(max_size=20), max_size=2))
                  | any_json)
payloads = (st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
            | any_json.map(lambda v: base64.b64encode(dumps(v)).decode())
            | st.just(base64.b64encode(encode(VALID_TICK)).decode())
            | st.just(base64.b64encode(b"[" * 5_000 + b"]" * 5_000).decode())
            | st.text(max_size=20) | any_json)
push_like = st.fixed_dictionaries(
    {"message": st.fixed_dictionaries({}, optional={"data": payloads, "attributes": attribute_maps,
                                                    "messageId": any_json, "publishTime": any_json})},
    optional={"subscription": any_json})


@pytest.fixture(scope="module")
def push_app() -> Iterator[tuple[Any, InMemoryEventBus]]:
    bus = InMemoryEventBus()
    endpoint = PushEndpoint(service="data-watcher", project="p", bus=bus, dead_letter_topic=DEAD_LETTER_TOPIC,
                            routes={WatchTick.EVENT_TYPE: Route(lambda event, envelope: [])})
    yield create_push_app(endpoint).test_client(), bus


@FUZZ
@given(body=any_json.map(dumps) | push_like.map(dumps) | st.binary(max_size=200))
def test_any_push_body_is_answered_400_204_or_dead_lettered_never_5xx(push_app, body: bytes):
    client, bus = push_app
    before = len(bus.on(DEAD_LETTER_TOPIC))
    response = client.post("/push", data=body, content_type="application/json")
    assert response.status_code in (200, 204, 400), (response.status_code, response.data[:300])
    if response.status_code == 204:
        return
    assert response.is_json
    if response.status_code == 200:
        assert response.json["status"] == "dead-lettered" and response.json["reason"]
        assert len(bus.on(DEAD_LETTER_TOPIC)) == before + 1
    else:
        assert response.json["error"].startswith("not a Pub/Sub push")


# ------------------------------------------------------------------------------------ predict

feature_values = scalars | st.lists(scalars, max_size=2) | st.sampled_from(["red", "blue", "purple"])
# Mostly well-formed instances (so that many requests are scored), each feature now and then wrong.
plausible = st.fixed_dictionaries({
    "size": st.floats(-1e6, 1e6) | st.integers(-1000, 1000) | st.none() | scalars,
    "colour": st.sampled_from(["red", "blue", None]) | st.sampled_from(["purple", ""]) | scalars,
    "shiny": st.booleans() | st.none() | scalars,
})


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any], percent: int = 85) -> st.SearchStrategy[Any]:
    """`usual` about `percent` % of the time (a plain `|` would pick each side half the time)."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else other)


instances = mostly(plausible, st.dictionaries(st.sampled_from([*FEATURES, "other"]), feature_values, max_size=4)
                   | any_json, percent=92)
parameters = st.fixed_dictionaries({}, optional={"pipeline": mostly(st.just(PIPELINE), st.just("nope") | any_json),
                                                 "request_id": st.text(max_size=10) | any_json})
predict_like = st.fixed_dictionaries(
    {"instances": mostly(st.lists(instances, min_size=1, max_size=5), any_json)},
    optional={"parameters": mostly(parameters, any_json)})
request_ids = mostly(st.none() | st.text(alphabet=string.ascii_letters + string.digits + "._:/-", min_size=1,
                                         max_size=40),
                     st.text(alphabet=string.ascii_letters + string.digits + " ._:/'\"-", max_size=200))


@pytest.fixture(scope="module")
def predictor(artifacts: dict[str, dict[str, bytes]]) -> Iterator[Predictor]:
    made = make_predictor(artifacts, log_interval_s="30")
    yield made
    made.batcher.close(timeout=2)


@pytest.fixture(scope="module")
def artifacts() -> dict[str, dict[str, bytes]]:
    return build_artifacts()


@FUZZ
@given(body=mostly(predict_like.map(dumps), any_json.map(dumps) | st.binary(max_size=100)), request_id=request_ids,
       path=mostly(st.just("/predict"), st.sampled_from(["/predict/nope", "/UPPER", "/" + "x" * 100])))
def test_any_predict_body_gets_a_json_answer_never_a_500(predictor: Predictor, body: bytes, request_id: str | None,
                                                          path: str):
    headers = {} if request_id is None else {"X-Request-Id": request_id}
    response = predictor.client.post(path, data=body, content_type="application/json", headers=headers)
    assert response.status_code in (200, 400, 404, 413), (response.status_code, response.data[:300])
    assert response.is_json and (response.status_code == 200 or response.json["error"])
    if response.status_code == 200:
        sent = json.loads(body)
        assert len(response.json["predictions"]) == len(sent["instances"])

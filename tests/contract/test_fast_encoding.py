"""The hand-written prediction.made encoder and decoder must agree with fastavro and the schema: the
encoder writes exactly what fastavro writes, the decoder reads exactly what fastavro reads, and any
document it does not fully recognise is left to fastavro (an older payload to upcast, an error to name)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import json_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.core.events import EventValidationError, Prediction, PredictionMade, decode, encode
from mlops.core.events.catalog import parsed_schema
from mlops.core.events.codec import _prediction_made_record, build, encode_generic

TYPE = PredictionMade.EVENT_TYPE


def batch() -> PredictionMade:
    return PredictionMade(pipeline="p", predictions=[
        Prediction(request_id="a", model_version="3", features='{"x": 1.5, "s": "M"}', predicted_label="1",
                   score=0.75, latency_ms=0.4, predicted_at="2026-11-22T07:00:00.000001Z"),
        Prediction(request_id="b", model_version="3", features="{}", predicted_value=12.25, latency_ms=1.0,
                   predicted_at="2026-11-22T07:00:00.000002Z"),
        Prediction(request_id='quote "and" unicode é', model_version="4", features="{}", latency_ms=0.0,
                   predicted_at="2026-11-22T07:00:00Z", deployed_model_id="123"),
    ])


def fastavro_decode(data: bytes) -> PredictionMade:
    """What `decode` did before it had a direct path: fastavro's reader, then the class."""
    (record,) = list(json_reader(io.StringIO(data.decode("utf-8")), parsed_schema(TYPE)))
    event = build(TYPE, record)
    assert isinstance(event, PredictionMade)
    return event


def test_the_fast_prediction_encoder_is_byte_identical_to_fastavro():
    made = batch()
    assert encode(made) == encode_generic(made)
    assert encode(PredictionMade.example()) == encode_generic(PredictionMade.example())


def test_what_it_writes_decodes_back_to_the_same_event():
    made = batch()
    assert decode(made.EVENT_TYPE, encode(made)) == made


text = st.text(max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
predictions = st.builds(
    Prediction, request_id=text, model_version=text, features=text,
    predicted_label=st.none() | text, predicted_value=st.none() | finite, score=st.none() | finite,
    latency_ms=st.floats(min_value=0, max_value=1e6), predicted_at=text, deployed_model_id=st.none() | text)


@settings(max_examples=150, deadline=None)
@given(pipeline=text, items=st.lists(predictions, max_size=5))
def test_the_direct_decoder_reads_what_fastavro_reads(pipeline: str, items: list[Prediction]):
    made = PredictionMade(pipeline=pipeline, predictions=items)
    data = encode(made)
    assert _prediction_made_record(json.loads(data)) is not None  # the direct path took it
    assert decode(TYPE, data) == fastavro_decode(data) == made


def _document() -> dict[str, Any]:
    return json.loads(encode(batch()))


def _older_payload() -> dict[str, Any]:
    document = _document()
    for item in document["predictions"]:
        del item["deployed_model_id"]  # written before the schema gained it
    return document


def _unwrapped_union() -> dict[str, Any]:
    document = _document()
    document["predictions"][0]["predicted_label"] = "1"  # Avro JSON wraps it: {"string": "1"}
    return document


def _wrong_type() -> dict[str, Any]:
    document = _document()
    document["predictions"][0]["latency_ms"] = "fast"
    return document


def _extra_field() -> dict[str, Any]:
    document = _document()
    document["predictions"][1]["surprise"] = 1
    return document


def _boolean_for_a_number() -> dict[str, Any]:
    document = _document()
    document["predictions"][0]["score"] = {"double": True}
    return document


@pytest.mark.parametrize("document", [_older_payload(), _unwrapped_union(), _wrong_type(), _extra_field(),
                                      _boolean_for_a_number(), {"pipeline": "p"}, [1, 2]],
                         ids=["older", "unwrapped-union", "wrong-type", "extra-field", "bool-for-double",
                              "missing-field", "not-an-object"])
def test_a_document_it_does_not_fully_recognise_is_left_to_fastavro(document: Any):
    assert _prediction_made_record(document) is None
    data = json.dumps(document).encode("utf-8")
    try:
        expected: Any = fastavro_decode(data)
    except (EventValidationError, ValueError, TypeError, KeyError, AttributeError):
        expected = EventValidationError
    if expected is EventValidationError:
        with pytest.raises(EventValidationError):
            decode(TYPE, data)
    else:
        assert decode(TYPE, data) == expected


def test_an_older_payload_is_upcast_with_the_schema_default():
    event = decode(TYPE, json.dumps(_older_payload()).encode("utf-8"))
    assert isinstance(event, PredictionMade)
    assert [p.deployed_model_id for p in event.predictions] == [None, None, None]

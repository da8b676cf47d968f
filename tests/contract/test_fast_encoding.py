"""The hand-written prediction.made encoder must write exactly what fastavro writes from the schema."""

from __future__ import annotations

from mlops.core.events import Prediction, PredictionMade, decode, encode
from mlops.core.events.codec import encode_generic


def batch() -> PredictionMade:
    return PredictionMade(pipeline="p", predictions=[
        Prediction(request_id="a", model_version="3", features='{"x": 1.5, "s": "M"}', predicted_label="1",
                   score=0.75, latency_ms=0.4, predicted_at="2026-11-22T07:00:00.000001Z"),
        Prediction(request_id="b", model_version="3", features="{}", predicted_value=12.25, latency_ms=1.0,
                   predicted_at="2026-11-22T07:00:00.000002Z"),
        Prediction(request_id='quote "and" unicode é', model_version="4", features="{}", latency_ms=0.0,
                   predicted_at="2026-11-22T07:00:00Z"),
    ])


def test_the_fast_prediction_encoder_is_byte_identical_to_fastavro():
    made = batch()
    assert encode(made) == encode_generic(made)
    assert encode(PredictionMade.example()) == encode_generic(PredictionMade.example())


def test_what_it_writes_decodes_back_to_the_same_event():
    made = batch()
    assert decode(made.EVENT_TYPE, encode(made)) == made

"""Typed events: examples round-trip, bad payloads are refused with every problem named, old
payloads are upcast, events are immutable, and the wire encoding is pinned by golden files.

Golden files: `tests/data/events/<event type>.json` hold the Avro-JSON bytes of each class's
`example()` (plus one final newline). A change in the encoding shows up as a diff there; after an
intended change, regenerate them with `UPDATE_GOLDEN=1 pytest tests/unit/test_events.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydantic
import pytest

from mlops.core.events import (
    EVENT_CLASSES,
    EVENTS_BY_TYPE,
    DataReady,
    DeployedModel,
    Event,
    EventValidationError,
    ModelDeployed,
    ModelEvaluated,
    ModelTrained,
    Prediction,
    PredictionMade,
    StageFailed,
    WatchTick,
    build,
    decode,
    encode,
    event_class,
)
from mlops.core.events.catalog import dataschema_uri, schema_files

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "events"
ALL = pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.EVENT_TYPE)


def payload(cls: type[Event]) -> dict:
    """The example as the plain dict a caller of `build` would pass."""
    return cls.example().model_dump(mode="json")


def wire(cls: type[Event]) -> dict:
    """The example as Avro JSON (unions wrapped), i.e. what sits in a Pub/Sub message's data."""
    return json.loads(encode(cls.example()))


# ---------------------------------------------------------------------------------------------- catalog

def test_every_event_type_is_unique_and_named_after_its_schema_file():
    assert len(EVENTS_BY_TYPE) == len(EVENT_CLASSES)
    assert set(EVENTS_BY_TYPE) == set(schema_files())
    for cls in EVENT_CLASSES:
        assert dataschema_uri(cls.EVENT_TYPE) == f"schemas/{cls.EVENT_TYPE}.avsc"
        entity, action, version = cls.EVENT_TYPE.split(".")
        assert entity and action and version.startswith("v") and version[1:].isdigit()


@ALL
def test_example_is_an_instance_of_its_class(cls):
    assert type(cls.example()) is cls


# ---------------------------------------------------------------------------------------------- round trip

@ALL
def test_example_round_trips_through_encode_and_decode(cls):
    event = cls.example()
    data = encode(event)
    assert isinstance(data, bytes)
    decoded = decode(cls.EVENT_TYPE, data)
    assert type(decoded) is cls
    assert decoded == event
    assert encode(decoded) == data  # stable: encoding a decoded event gives the same bytes


@ALL
def test_build_from_a_plain_dict_gives_the_example(cls):
    assert build(cls.EVENT_TYPE, payload(cls)) == cls.example()


def test_encoding_is_avro_json_with_wrapped_unions():
    data = json.loads(encode(WatchTick(pipeline="p", reason="manual")))
    assert data == {"pipeline": {"string": "p"}, "reason": "manual"}
    assert json.loads(encode(WatchTick(reason="schedule"))) == {"pipeline": None, "reason": "schedule"}
    nested = json.loads(encode(PredictionMade.example()))["predictions"][0]
    assert nested["predicted_label"] == {"string": "1"}
    assert nested["predicted_value"] is None
    assert nested["score"] == {"double": 0.93}


def test_non_ascii_text_survives_the_round_trip():
    event = StageFailed(stage="trainer", input_event_id="", input_event_type="", error_class="ValueError",
                        error_message="colonne « âge » absente — 年齢", permanent=True)
    assert decode(StageFailed.EVENT_TYPE, encode(event)) == event


# ---------------------------------------------------------------------------------------------- golden files

@ALL
def test_encoding_matches_the_golden_file_byte_for_byte(cls):
    path = GOLDEN / f"{cls.EVENT_TYPE}.json"
    expected = encode(cls.example()) + b"\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(expected)
    assert path.exists(), f"missing golden file {path}; create it with UPDATE_GOLDEN=1"
    assert path.read_bytes() == expected, (
        f"the wire encoding of {cls.EVENT_TYPE} changed; if intended, regenerate with UPDATE_GOLDEN=1 "
        "and check the change stays backward compatible (tests/contract)"
    )


@ALL
def test_golden_bytes_still_decode_into_todays_class(cls):
    """An archived event (the golden file stands for one) must stay replayable."""
    data = (GOLDEN / f"{cls.EVENT_TYPE}.json").read_bytes().strip()
    assert decode(cls.EVENT_TYPE, data) == cls.example()


def test_every_golden_file_belongs_to_an_event_type():
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(EVENTS_BY_TYPE)


# ---------------------------------------------------------------------------------------------- validation

def test_build_lists_every_problem_at_once():
    bad = payload(DataReady) | {"total_rows": -1, "new_rows": "many", "surprise": 1}
    del bad["pipeline"]
    del bad["trigger"]
    with pytest.raises(EventValidationError) as caught:
        build(DataReady.EVENT_TYPE, bad)
    error = caught.value
    assert error.event_type == DataReady.EVENT_TYPE
    named = {problem.split(":")[0] for problem in error.problems}
    assert named == {"pipeline", "trigger", "total_rows", "new_rows", "surprise"}
    for field in named:
        assert field in str(error)


def test_build_names_nested_fields_by_their_path():
    bad = payload(ModelDeployed)
    bad["deployed_models"][0]["traffic_percent"] = 101
    del bad["deployed_models"][0]["artifact_checksum"]
    with pytest.raises(EventValidationError) as caught:
        build(ModelDeployed.EVENT_TYPE, bad)
    named = {problem.split(":")[0] for problem in caught.value.problems}
    assert named == {"deployed_models.0.traffic_percent", "deployed_models.0.artifact_checksum"}


def test_build_refuses_wrong_container_types():
    bad = payload(ModelTrained) | {"hyperparameters": ["l2_reg"], "feature_columns": "mean_radius"}
    with pytest.raises(EventValidationError) as caught:
        build(ModelTrained.EVENT_TYPE, bad)
    named = {problem.split(":")[0] for problem in caught.value.problems}
    assert named == {"hyperparameters", "feature_columns"}


def test_build_of_a_non_dict_is_a_validation_error():
    with pytest.raises(EventValidationError) as caught:
        build(WatchTick.EVENT_TYPE, ["manual"])  # type: ignore[arg-type]
    assert caught.value.problems and caught.value.problems[0].startswith("<root>")


@pytest.mark.parametrize("event_type", ["watch.tick.v2", "nope", "", "model.trained"])
def test_unknown_event_type_is_refused(event_type):
    for call in (lambda: event_class(event_type), lambda: build(event_type, {}),
                 lambda: decode(event_type, b"{}")):
        with pytest.raises(EventValidationError) as caught:
            call()
        assert "unknown event type" in str(caught.value) or "no schema for event type" in str(caught.value)
        assert "watch.tick.v1" in str(caught.value)  # the known types are listed


@pytest.mark.parametrize("data", [b"", b"not json", b"\xff\xfe", b"[1, 2]", b"42", b'"text"'],
                         ids=["empty", "text", "not-utf8", "array", "number", "string"])
def test_decode_refuses_data_that_is_not_an_avro_json_record(data):
    with pytest.raises(EventValidationError) as caught:
        decode(WatchTick.EVENT_TYPE, data)
    assert caught.value.event_type == WatchTick.EVENT_TYPE


def test_decode_refuses_a_payload_missing_a_required_field():
    data = wire(DataReady)
    del data["snapshot_table"]
    with pytest.raises(EventValidationError):
        decode(DataReady.EVENT_TYPE, json.dumps(data).encode())


def test_decode_names_every_missing_required_field():
    data = wire(DataReady)
    del data["snapshot_table"]
    del data["watermark"]
    with pytest.raises(EventValidationError) as caught:
        decode(DataReady.EVENT_TYPE, json.dumps(data).encode())
    assert "snapshot_table" in str(caught.value) and "watermark" in str(caught.value)


def test_decode_applies_the_class_constraints_too():
    data = wire(DataReady) | {"total_rows": -3}
    with pytest.raises(EventValidationError) as caught:
        decode(DataReady.EVENT_TYPE, json.dumps(data).encode())
    assert any(p.startswith("total_rows") for p in caught.value.problems)


def test_constraints_hold_on_nested_records():
    with pytest.raises(pydantic.ValidationError):
        DeployedModel(deployed_model_id="1", version_id="1", artifact_uri="gs://b/m", artifact_checksum="x",
                      traffic_percent=-1)
    with pytest.raises(pydantic.ValidationError):
        Prediction(request_id="r", model_version="1", features="{}", latency_ms=-0.1, predicted_at="t")


# ---------------------------------------------------------------------------------------------- upcasting

@pytest.mark.parametrize(("cls", "field", "default"), [
    (WatchTick, "pipeline", None),
    (DataReady, "drift_score", None),
    (ModelEvaluated, "champion_version", None),
    (ModelEvaluated, "champion_metrics", {}),
    (ModelDeployed, "previous_version", None),
    (StageFailed, "pipeline", None),
    (StageFailed, "message_id", None),
], ids=lambda v: v.EVENT_TYPE if isinstance(v, type) else str(v))
def test_decode_fills_a_missing_optional_field_with_its_default(cls, field, default):
    """A payload written before the schema gained `field` decodes (is upcast) into today's class."""
    old = wire(cls)
    del old[field]
    event = decode(cls.EVENT_TYPE, json.dumps(old).encode())
    assert getattr(event, field) == default
    expected = cls.example().model_dump()
    expected[field] = default
    assert event.model_dump() == expected


def test_decode_upcasts_optional_fields_of_nested_records():
    old = wire(PredictionMade)
    for name in ("predicted_label", "predicted_value", "score"):
        del old["predictions"][0][name]
    event = decode(PredictionMade.EVENT_TYPE, json.dumps(old).encode())
    prediction = event.predictions[0]
    assert (prediction.predicted_label, prediction.predicted_value, prediction.score) == (None, None, None)
    assert prediction.request_id == "req-0001"


def test_decode_ignores_a_field_added_by_a_newer_writer():
    """Forward direction of Avro resolution: a field the reader's schema lacks is skipped."""
    newer = wire(WatchTick) | {"priority": 3}
    assert decode(WatchTick.EVENT_TYPE, json.dumps(newer).encode()) == WatchTick.example()


# ---------------------------------------------------------------------------------------------- immutability

@ALL
def test_events_are_frozen(cls):
    event = cls.example()
    first_field = next(iter(cls.model_fields))
    with pytest.raises(pydantic.ValidationError):
        setattr(event, first_field, getattr(event, first_field))
    with pytest.raises(pydantic.ValidationError):
        event.brand_new_attribute = 1  # type: ignore[attr-defined]


def test_nested_records_are_frozen_and_strict():
    deployed = ModelDeployed.example().deployed_models[0]
    with pytest.raises(pydantic.ValidationError):
        deployed.traffic_percent = 0  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Prediction.model_validate(PredictionMade.example().predictions[0].model_dump() | {"extra": 1})


@pytest.mark.parametrize("cls", [WatchTick, DataReady, StageFailed], ids=lambda c: c.EVENT_TYPE)
def test_scalar_only_events_are_hashable_and_compare_by_value(cls):
    # (Events holding a dict or list are frozen too, but Python cannot hash them.)
    assert hash(cls.example()) == hash(cls.example())
    assert cls.example() == cls.example()


def test_model_copy_makes_a_new_event_and_leaves_the_original():
    tick = WatchTick.example()
    changed = tick.model_copy(update={"reason": "schedule"})
    assert (tick.reason, changed.reason) == ("manual", "schedule")

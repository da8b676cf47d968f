"""The envelope: CloudEvents attributes plus run/causation/replay links, as Pub/Sub attributes."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from mlops.core.events import (
    DataReady,
    Envelope,
    EnvelopeError,
    ModelTrained,
    WatchTick,
)
from mlops.core.events.envelope import (
    REQUIRED_ATTRIBUTES,
    SPEC_VERSION,
    new_envelope,
    now_rfc3339,
    parse_time,
)


def full_envelope(**changes: object) -> Envelope:
    base = Envelope(
        id="7c0a1b52-0000-4000-8000-000000000001", type="data.ready.v1", source="//mlops/services/data-watcher",
        time="2026-11-22T06:30:00.123456Z", dataschema="schemas/data.ready.v1.avsc", run_id="run-42",
        causation_id="tick-1", replay_of="orig-9", pipeline="breast-cancer", code_version="abc123",
        extra={"trace": "abc"},
    )
    return dataclasses.replace(base, **changes)


def test_to_attributes_carries_every_cloudevents_attribute_and_the_links():
    attributes = full_envelope().to_attributes()
    assert attributes == {
        "ce-id": "7c0a1b52-0000-4000-8000-000000000001",
        "ce-type": "data.ready.v1",
        "ce-source": "//mlops/services/data-watcher",
        "ce-time": "2026-11-22T06:30:00.123456Z",
        "ce-specversion": "1.0",
        "ce-dataschema": "schemas/data.ready.v1.avsc",
        "ce-datacontenttype": "application/json",
        "run_id": "run-42",
        "causation_id": "tick-1",
        "replay_of": "orig-9",
        "pipeline": "breast-cancer",
        "code_version": "abc123",
        "trace": "abc",
    }
    assert all(isinstance(v, str) and v for v in attributes.values())


@pytest.mark.parametrize("envelope", [
    full_envelope(),
    full_envelope(causation_id="", replay_of="", pipeline="", code_version="", extra={}),
    full_envelope(time="2026-11-22T08:30:00+02:00"),
], ids=["all-links", "no-links", "offset-time"])
def test_attributes_round_trip(envelope):
    assert Envelope.from_attributes(envelope.to_attributes()) == envelope


def test_empty_links_are_left_out_of_the_attributes():
    attributes = full_envelope(causation_id="", replay_of="", pipeline="", code_version="").to_attributes()
    assert not {"causation_id", "replay_of", "pipeline", "code_version"} & set(attributes)


def test_unknown_attributes_are_kept_as_extra():
    attributes = full_envelope(extra={}).to_attributes() | {"googclient_schemaencoding": "JSON"}
    envelope = Envelope.from_attributes(attributes)
    assert envelope.extra == {"googclient_schemaencoding": "JSON"}
    assert envelope.to_attributes() == attributes


def test_every_missing_attribute_is_listed_at_once():
    with pytest.raises(EnvelopeError) as caught:
        Envelope.from_attributes({})
    assert len(caught.value.problems) == len(REQUIRED_ATTRIBUTES)
    for name in REQUIRED_ATTRIBUTES:
        assert f"missing attribute {name!r}" in caught.value.problems
        assert name in str(caught.value)


def test_missing_and_bad_attributes_are_reported_together():
    attributes = full_envelope().to_attributes()
    del attributes["ce-source"]
    attributes["run_id"] = ""  # empty counts as missing
    attributes["ce-specversion"] = "0.3"
    attributes["ce-time"] = "2026-11-22T06:30:00"
    with pytest.raises(EnvelopeError) as caught:
        Envelope.from_attributes(attributes)
    problems = caught.value.problems
    assert "missing attribute 'ce-source'" in problems
    assert "missing attribute 'run_id'" in problems
    assert any("ce-specversion" in p and "0.3" in p for p in problems)
    assert any(p.startswith("ce-time") and "no timezone" in p for p in problems)
    assert len(problems) == 4


@pytest.mark.parametrize("value", ["2026-11-22T06:30:00", "2026-11-22 06:30:00.5", "2026-11-22"])
def test_a_time_without_timezone_is_refused(value):
    with pytest.raises(ValueError, match="no timezone"):
        parse_time(value)
    with pytest.raises(EnvelopeError, match="ce-time"):
        Envelope.from_attributes(full_envelope(time=value).to_attributes())


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T00:00:00Z", "06:30"])
def test_a_time_that_is_not_rfc3339_is_refused(value):
    with pytest.raises(EnvelopeError, match="ce-time"):
        Envelope.from_attributes(full_envelope(time=value).to_attributes())


@pytest.mark.parametrize("value", ["2026-11-22T06:30:00Z", "2026-11-22T06:30:00.123456Z", "2026-11-22T08:30:00+02:00"])
def test_times_with_a_timezone_are_accepted(value):
    assert parse_time(value).utcoffset() is not None


def test_now_is_rfc3339_utc_with_microseconds():
    value = now_rfc3339()
    assert value.endswith("Z") and len(value) == len("2026-11-22T06:30:00.123456Z")
    assert parse_time(value).utcoffset().total_seconds() == 0


def test_an_effect_keeps_the_run_and_links_to_its_cause():
    cause = full_envelope()
    event = ModelTrained.example()
    effect = new_envelope(event, "trainer", run_id=cause.run_id, causation_id=cause.id, code_version="abc123")
    assert effect.run_id == cause.run_id
    assert effect.causation_id == cause.id
    assert effect.id != cause.id and uuid.UUID(effect.id)
    assert (effect.type, effect.dataschema, effect.source) == (
        "model.trained.v1", "schemas/model.trained.v1.avsc", "//mlops/services/trainer")
    assert effect.pipeline == event.pipeline  # taken from the event unless given
    assert new_envelope(event, "trainer", pipeline="other").pipeline == "other"
    assert effect.code_version == "abc123"
    parse_time(effect.time)
    assert effect.specversion == SPEC_VERSION


def test_envelopes_are_immutable():
    envelope = full_envelope()
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.run_id = "other"  # type: ignore[misc]
    changed = envelope.with_changes(run_id="other")
    assert (envelope.run_id, changed.run_id) == ("run-42", "other")


def test_new_envelope_starts_a_run_and_names_the_schema():
    event = DataReady.example()
    envelope = new_envelope(event, "cli")
    assert envelope.type == "data.ready.v1"
    assert envelope.dataschema == "schemas/data.ready.v1.avsc"
    assert envelope.source == "//mlops/services/cli"
    assert envelope.pipeline == "breast-cancer"
    assert uuid.UUID(envelope.run_id) and uuid.UUID(envelope.id)
    assert new_envelope(event, "cli", run_id="r-1").run_id == "r-1"
    assert new_envelope(WatchTick(reason="schedule"), "ticker").pipeline == ""
    assert new_envelope(event, "cli", replay_of="orig").replay_of == "orig"
    assert Envelope.from_attributes(envelope.to_attributes()) == envelope

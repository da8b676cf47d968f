"""The schemas in `schemas/` and the Python event classes describe exactly the same payloads.

`schemas/` is the single source of truth: every schema parses, documents every field, and has one
class whose fields have the same names, types, optionality and defaults (and the other way round).
"""

from __future__ import annotations

import json
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.validation import validate
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mlops.core.events import EVENT_CLASSES, EVENTS_BY_TYPE, Event
from mlops.core.events.catalog import schema_files, schema_json

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.avsc"))
ALL_CLASSES = pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.EVENT_TYPE)

PRIMITIVES: dict[str, type] = {"string": str, "long": int, "int": int, "double": float, "float": float,
                               "boolean": bool, "bytes": bytes}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- files

def test_there_are_schemas():
    assert SCHEMA_PATHS, f"no schemas under {SCHEMA_DIR}"


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.name)
def test_every_schema_parses_with_fastavro(path):
    parse_schema(load(path))


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.name)
def test_every_schema_is_a_documented_record_in_the_events_namespace(path):
    schema = load(path)
    assert schema["type"] == "record"
    assert schema.get("namespace") == "mlops.events"
    assert schema.get("doc", "").strip(), f"{path.name}: the record needs a doc"


def walk_fields(schema: Any, path: str = ""):
    """(dotted path, field) of every field of every record in a schema, nested ones included."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_fields(branch, path)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for field in schema["fields"]:
                here = f"{path}.{field['name']}" if path else field["name"]
                yield here, field
                yield from walk_fields(field["type"], here)
        elif schema.get("type") == "array":
            yield from walk_fields(schema["items"], path + "[]")
        elif schema.get("type") == "map":
            yield from walk_fields(schema["values"], path + "{}")


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.name)
def test_every_field_has_a_doc(path):
    undocumented = [name for name, field in walk_fields(load(path)) if not str(field.get("doc", "")).strip()]
    assert undocumented == [], f"{path.name}: fields without a doc: {undocumented}"


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.name)
def test_the_file_name_is_the_event_type_and_the_shipped_copy_is_the_same(path):
    event_type = path.name.removesuffix(".avsc")
    assert schema_files()[event_type] == path.name
    assert schema_json(event_type) == load(path)  # the package ships schemas/ itself, not a copy


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.name)
def test_optional_fields_put_null_first_with_a_null_default(path):
    """Avro requires a union's default to match its first branch; Pub/Sub checks it too."""
    for name, field in walk_fields(load(path)):
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert field["type"][0] == "null", f"{path.name}: {name}"
            assert "default" in field and field["default"] is None, f"{path.name}: {name}"


# ---------------------------------------------------------------------------------------------- classes

def test_every_schema_has_a_class_and_every_class_a_schema():
    assert set(schema_files()) == set(EVENTS_BY_TYPE)
    assert {p.name.removesuffix(".avsc") for p in SCHEMA_PATHS} == set(EVENTS_BY_TYPE)


def test_each_class_is_named_as_its_record():
    for cls in EVENT_CLASSES:
        assert schema_json(cls.EVENT_TYPE)["name"] == cls.__name__


def _named_types(schema: Any, found: dict[str, dict]) -> dict[str, dict]:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            found[schema["name"]] = schema
            for field in schema["fields"]:
                _named_types(field["type"], found)
        elif schema.get("type") == "array":
            _named_types(schema["items"], found)
        elif schema.get("type") == "map":
            _named_types(schema["values"], found)
    return found


def mismatches(avro: Any, annotation: Any, where: str, named: dict[str, dict]) -> list[str]:
    """Every way `annotation` differs from the Avro type. The mapping: string->str, long/int->int,
    double/float->float, boolean->bool, map->dict[str, V], array->list[I], record->a pydantic model
    with the record's name and fields, ["null", T] (default null)->`T | None = None`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(avro, str) and avro in named:
        avro = named[avro]
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if "null" not in avro or len(branches) != 1:
            return [f"{where}: only ['null', T] unions are mapped, got {avro}"]
        if origin not in (typing.Union, types.UnionType) or type(None) not in args:
            return [f"{where}: schema is nullable, annotation {annotation} is not"]
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return [f"{where}: annotation {annotation} has more than one non-null branch"]
        return mismatches(branches[0], rest[0], where, named)
    if origin in (typing.Union, types.UnionType):
        return [f"{where}: annotation {annotation} is a union, schema type {avro} is not"]
    if isinstance(avro, str):
        expected = PRIMITIVES.get(avro)
        if expected is None:
            return [f"{where}: unmapped Avro type {avro}"]
        if annotation is expected:
            return []
        if expected is str and isinstance(annotation, type) and issubclass(annotation, StrEnum):
            return []  # a closed vocabulary travels as its words; test_closed_vocabularies_... checks them
        return [f"{where}: schema {avro} wants {expected.__name__}, class has {annotation}"]
    kind = avro["type"]
    if kind in PRIMITIVES:  # {"type": "string"} and friends
        return mismatches(kind, annotation, where, named)
    if kind == "map":
        if origin is not dict or args[:1] != (str,):
            return [f"{where}: schema map wants dict[str, ...], class has {annotation}"]
        return mismatches(avro["values"], args[1], f"{where}{{}}", named)
    if kind == "array":
        if origin is not list:
            return [f"{where}: schema array wants list[...], class has {annotation}"]
        return mismatches(avro["items"], args[0], f"{where}[]", named)
    if kind == "record":
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [f"{where}: schema record {avro['name']} wants a pydantic model, class has {annotation}"]
        problems = [] if annotation.__name__ == avro["name"] else [
            f"{where}: record {avro['name']} is class {annotation.__name__}"]
        return problems + record_mismatches(avro, annotation, where, named)
    return [f"{where}: unmapped Avro type {kind}"]


def record_mismatches(record: dict, model: type[BaseModel], where: str, named: dict[str, dict]) -> list[str]:
    problems = []
    schema_fields = {f["name"]: f for f in record["fields"]}
    class_fields = model.model_fields
    prefix = f"{where}." if where else ""
    for name in sorted(set(schema_fields) - set(class_fields)):
        problems.append(f"{prefix}{name}: in the schema, not in {model.__name__}")
    for name in sorted(set(class_fields) - set(schema_fields)):
        problems.append(f"{prefix}{name}: in {model.__name__}, not in the schema")
    for name in [n for n in schema_fields if n in class_fields]:
        field, info = schema_fields[name], class_fields[name]
        problems += mismatches(field["type"], info.annotation, prefix + name, named)
        has_default = "default" in field
        if has_default == info.is_required():
            problems.append(f"{prefix}{name}: schema default {'present' if has_default else 'absent'}, "
                            f"class field {'required' if info.is_required() else 'optional'}")
        elif has_default:
            default = info.default if info.default is not PydanticUndefined else info.default_factory()
            if default != field["default"]:
                problems.append(f"{prefix}{name}: schema default {field['default']!r}, class default {default!r}")
    if list(schema_fields) != [n for n in class_fields if n in schema_fields]:
        problems.append(f"{where or model.__name__}: field order differs from the schema")
    return problems


@ALL_CLASSES
def test_each_class_has_exactly_the_fields_of_its_schema(cls):
    schema = schema_json(cls.EVENT_TYPE)
    assert record_mismatches(schema, cls, "", _named_types(schema, {})) == []


@ALL_CLASSES
def test_the_example_is_valid_avro(cls):
    assert validate(cls.example().model_dump(), parse_schema(schema_json(cls.EVENT_TYPE)), raise_errors=True)


# ---------------------------------------------------------------------------------------------- the checker itself

class Drifted(Event):
    """A class that has drifted from the WatchTick schema in every way the check must catch."""

    EVENT_TYPE: typing.ClassVar[str] = "watch.tick.v1"
    pipeline: str  # nullable in the schema
    reason: int  # a string in the schema
    priority: int = 0  # not in the schema


def test_the_class_check_catches_drift():
    schema = schema_json("watch.tick.v1")
    problems = record_mismatches(schema, Drifted, "", {})
    joined = "\n".join(problems)
    assert "pipeline: schema is nullable" in joined
    assert "pipeline: schema default present, class field required" in joined
    assert "reason: schema string wants str" in joined
    assert "priority: in Drifted, not in the schema" in joined


def test_the_class_check_catches_a_missing_field_and_a_wrong_default():
    class Short(BaseModel):
        pipeline: str | None = "all"

    problems = record_mismatches(schema_json("watch.tick.v1"), Short, "", {})
    assert "reason: in the schema, not in Short" in problems
    assert "pipeline: schema default None, class default 'all'" in problems


def test_the_class_check_looks_inside_nested_records():
    class Prediction(BaseModel):
        request_id: str
        model_version: str
        features: dict[str, float]  # a JSON string in the schema
        predicted_label: str | None = None
        predicted_value: float | None = None
        score: float | None = None
        latency_ms: float
        predicted_at: str
        deployed_model_id: str | None = None

    class PredictionMade(BaseModel):
        pipeline: str
        predictions: list[Prediction]

    schema = schema_json("prediction.made.v1")
    problems = record_mismatches(schema, PredictionMade, "", _named_types(schema, {}))
    assert problems == ["predictions[].features: schema string wants str, class has dict[str, float]"]


def _vocabulary_fields() -> list[tuple[str, str, type[StrEnum]]]:
    found = []
    for cls in EVENT_CLASSES:
        for name, info in cls.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, StrEnum):
                found.append((cls.EVENT_TYPE, name, kind))
    return found


def test_every_closed_vocabulary_in_an_event_is_an_enum():
    assert {(t, n) for t, n, _ in _vocabulary_fields()} >= {
        ("watch.tick.v1", "reason"), ("data.ready.v1", "trigger"), ("model.evaluated.v1", "decision"),
        ("model.registered.v1", "decision"), ("model.deployed.v1", "action")}


@pytest.mark.parametrize(("event_type", "field", "vocabulary"), _vocabulary_fields(),
                         ids=[f"{t}.{n}" for t, n, _ in _vocabulary_fields()])
def test_closed_vocabularies_are_documented_in_their_schema(event_type, field, vocabulary):
    """The schema is the contract readers outside Python see: its doc must name every word."""
    doc = next(f.get("doc", "") for name, f in walk_fields(load(SCHEMA_DIR / f"{event_type}.avsc")) if name == field)
    missing = [member.value for member in vocabulary if member.value not in doc]
    assert not missing, f"{event_type}.{field}: the schema doc {doc!r} does not name {missing}"

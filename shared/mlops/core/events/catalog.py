"""The schemas in `schemas/`, loaded once: the only definition of what an event may carry."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema

SCHEMA_SUFFIX = ".avsc"


def schema_files() -> dict[str, str]:
    """Event type (e.g. ``data.ready.v1``) -> schema file name, for every schema shipped."""
    root = resources.files("mlops.schemas")
    return {
        entry.name.removesuffix(SCHEMA_SUFFIX): entry.name
        for entry in root.iterdir()
        if entry.name.endswith(SCHEMA_SUFFIX)
    }


@cache
def schema_text(event_type: str) -> str:
    name = schema_files().get(event_type)
    if name is None:
        raise KeyError(f"no schema for event type {event_type!r}; known: {sorted(schema_files())}")
    return (resources.files("mlops.schemas") / name).read_text(encoding="utf-8")


@cache
def schema_json(event_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text(event_type))
    return schema


@cache
def parsed_schema(event_type: str) -> dict[str, Any]:
    """The fastavro-parsed schema, used to encode, decode and validate."""
    parsed = parse_schema(schema_json(event_type))
    assert isinstance(parsed, dict)  # a record schema parses to a dict
    return parsed


def dataschema_uri(event_type: str) -> str:
    """The CloudEvents `dataschema` of an event type: the schema file, by its path in the repo."""
    return f"schemas/{event_type}{SCHEMA_SUFFIX}"

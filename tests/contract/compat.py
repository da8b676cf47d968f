"""Can two versions of an Avro schema stand in for each other? Avro's own checker decides.

Used by `test_schema_compatibility.py`:

- `compatibility_problems(old, new)`: the `avro` package's `ReaderWriterCompatibilityChecker` (the
  Python port of Java's `SchemaCompatibility`), run both ways:
  - backward, in full: the new schema, as reader, must read anything the old one wrote. This is the
    project's rule (DESIGN.md): archived events are replayed and decoded with today's schema, and a
    redeployed consumer reads what is still in flight.
  - forward, one rule only: a field may only be removed if it had a default, or a consumer not yet
    redeployed (still on the old schema) fails on every new message. The rest of forward
    compatibility is deliberately not required: it would forbid the widenings the project accepts
    (int -> long, a required field made optional, a new union branch), which an old reader cannot
    follow: they are safe only if consumers are redeployed before producers write the wider type
    (an order nothing here enforces).
    `forward_problems(old, new)` is the full forward check, for the tests that show the difference.
- `read_old_with_new(old, new, record)`: the real thing with fastavro: encode `record` with the old
  schema, decode it with the new one as reader. It also catches what the checker does not look at:
  a default that does not fit its field's type.

`sample_records(schema)` makes data for a schema without knowing its meaning: one record with every
optional value present (one item in every array and map, an enum's first symbol), one with every
optional value null, every container empty and an enum's last symbol.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from typing import Any

import avro.schema
from avro.compatibility import (
    CompatibleResult,
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    merge,
)
from fastavro import parse_schema, schemaless_reader, schemaless_writer

Schema = dict[str, Any]  # a schema as its JSON

ADDED = "added without a default (data written before it cannot be read)"
REMOVED = "removed, and it had no default (readers on the old schema cannot read new data)"
TYPE_CHANGED = "type changed"
# Why avro flags a location, by its last step. A location ending in "fields/<i>" is a field the reader
# needs and the writer lacks; in "<type>/<i>", a branch of the writer's union that the reader's union
# cannot read; any other, a type the reader cannot read.
WHY_BY_LAST_STEP = {"name": "renamed without an alias", "size": "fixed size changed",
                    "symbols": "enum lost symbols and has no default"}


class _Checker(ReaderWriterCompatibilityChecker):
    """Avro's checker, except that each branch of a writer's union is checked where it sits: avro 1.12
    checks it from the root, so a nullable field made required was reported at "/", not at the field."""

    def calculate_compatibility(self, reader: avro.schema.Schema, writer: avro.schema.Schema,
                                location: list[str]) -> SchemaCompatibilityResult:
        if isinstance(writer, avro.schema.UnionSchema) and not isinstance(reader, avro.schema.UnionSchema):
            result = CompatibleResult
            for branch in writer.schemas:
                result = merge(result, self.get_compatibility(reader, branch, location[-1], location[:-1]))
            return result
        return super().calculate_compatibility(reader, writer, location)


def _parse(schema: Schema) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema))


@dataclass(frozen=True)
class _Break:
    path: str  # dotted, in the reader: "item.size", "tags[]"
    missing_field: bool  # the reader needs a field the writer lacks (else `why` says what)
    why: str


def _where(reader: avro.schema.Schema, location: str) -> _Break:
    """Avro's location, a JSON pointer into the reader ("/fields/4/type/fields/1"), as a field path."""
    steps = [step for step in location.split("/") if step]
    path, node = "", reader
    for i, step in enumerate(steps):
        if steps[i - 1:i] == ["fields"]:
            assert isinstance(node, avro.schema.RecordSchema)
            node = node.fields[int(step)]
            path = f"{path}.{node.name}" if path else node.name
        elif step == "type" and isinstance(node, avro.schema.Field):
            node = node.type
        elif step == "items" and isinstance(node, avro.schema.ArraySchema):
            node, path = node.items, path + "[]"
        elif step == "values" and isinstance(node, avro.schema.MapSchema):
            node, path = node.values, path + "{}"
    if steps[-2:-1] == ["fields"]:
        return _Break(path, missing_field=True, why="")
    return _Break(path or "<root>", missing_field=False, why=WHY_BY_LAST_STEP.get(steps[-1] if steps else "", TYPE_CHANGED))


def _breaks(reader: Schema, writer: Schema) -> tuple[list[_Break], list[str]]:
    """Where `reader` cannot read what `writer` wrote, and avro's messages saying why."""
    parsed_reader = _parse(reader)
    result = _Checker().get_compatibility(parsed_reader, _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return [], []
    # Merging a compatible sibling into a result adds that sibling's location, "/": noise unless alone.
    breaks = [_where(parsed_reader, location) for location in sorted(result.locations - {"/"}) or ["/"]]
    missing = {b.path.rsplit(".", 1)[-1] for b in breaks if b.missing_field}  # avro's message for those
    return breaks, sorted(result.messages - missing)


def _describe(breaks: list[_Break], details: list[str], missing_field: str) -> list[str]:
    problems = [f"{b.path}: {missing_field if b.missing_field else b.why}" for b in breaks]
    if details and len(problems) == 1:
        problems[0] += f" ({'; '.join(details)})"
    elif details:  # avro keeps locations and messages in two sets: which goes with which is lost
        problems.append(f"avro's messages, in no particular order: {'; '.join(details)}")
    return problems


def forward_problems(old: Schema, new: Schema) -> list[str]:
    """Every reason a reader on `old` cannot read data written with `new` (full forward compatibility)."""
    return _describe(*_breaks(old, new), missing_field=REMOVED)


def compatibility_problems(old: Schema, new: Schema) -> list[str]:
    """Every reason `new` cannot safely replace `old`: backward in full, forward for removed fields only.
    In avro's messages (in parentheses), "reader" is the new schema and "writer" the old one."""
    removed = [f"{b.path}: {REMOVED}" for b in _breaks(old, new)[0] if b.missing_field]
    return _describe(*_breaks(new, old), missing_field=ADDED) + removed


# ---------------------------------------------------------------------------------------------- data

SAMPLE_VALUES = {"null": None, "boolean": True, "int": 7, "long": 1234567890123, "float": 1.5, "double": 2.25,
                 "bytes": b"\x00\x01", "string": "text"}


def _sample(schema: avro.schema.Schema, full: bool, depth: int = 0) -> Any:
    if depth > 8:
        raise ValueError("schema nests too deeply to sample")
    if schema.type in SAMPLE_VALUES:  # primitives, with or without a logical type
        return SAMPLE_VALUES[schema.type]
    if isinstance(schema, avro.schema.UnionSchema):
        branches = [b for b in schema.schemas if b.type != "null"]
        if not branches or (not full and len(branches) < len(schema.schemas)):
            return None
        return _sample(branches[0], full, depth + 1)
    if isinstance(schema, avro.schema.RecordSchema):
        return {f.name: _sample(f.type, full, depth + 1) for f in schema.fields}
    if isinstance(schema, avro.schema.ArraySchema):
        return [_sample(schema.items, full, depth + 1)] if full else []
    if isinstance(schema, avro.schema.MapSchema):
        return {"key": _sample(schema.values, full, depth + 1)} if full else {}
    if isinstance(schema, avro.schema.EnumSchema):
        return schema.symbols[0 if full else -1]
    if isinstance(schema, avro.schema.FixedSchema):
        return b"\x00" * schema.size
    raise ValueError(f"cannot sample {schema.type}")


def sample_records(schema: Schema) -> list[dict[str, Any]]:
    parsed = _parse(schema)
    return [_sample(parsed, full=True), _sample(parsed, full=False)]


def read_old_with_new(old: Schema, new: Schema, record: dict[str, Any]) -> dict[str, Any]:
    """`record` written with the old schema (Avro binary), read back with the new one as reader."""
    writer = parse_schema(copy.deepcopy(old))
    reader = parse_schema(copy.deepcopy(new))
    buffer = io.BytesIO()
    schemaless_writer(buffer, writer, record)
    buffer.seek(0)
    return schemaless_reader(buffer, writer, reader)

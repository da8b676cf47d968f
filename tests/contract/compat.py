"""Backward compatibility of Avro schemas: can a reader with the new schema read the old data?

Two independent checks, both used by `test_schema_compatibility.py`:

- `compatibility_problems(old, new)`: structural, by Avro's schema-resolution rules, plus this
  project's rule that a field may only be removed if it had a default (so an old reader, e.g. a
  service not yet redeployed, can still read what the new writer sends).
- `read_old_with_new(old, new, record)`: the real thing with fastavro: encode `record` with the old
  schema, decode it with the new one as reader schema.

`sample_records(schema)` makes data for a schema without knowing its meaning: one record with every
optional value present (one item in every array and map), one with every optional value null and
every container empty.
"""

from __future__ import annotations

import copy
import io
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

PRIMITIVE_TYPES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
# Avro's promotions: a writer's type (key) may be read as any of these reader types.
PROMOTIONS: dict[str, set[str]] = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}

Schema = Any


def _fullname(schema: dict, namespace: str | None) -> str:
    name = schema["name"]
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def named_types(schema: Schema, namespace: str | None = None, found: dict[str, dict] | None = None) -> dict[str, dict]:
    """Every named type (record, enum, fixed) of a schema, by full and by short name."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _fullname(schema, namespace)
            found[full] = schema
            found.setdefault(full.rsplit(".", 1)[-1], schema)
            inner_namespace = full.rsplit(".", 1)[0] if "." in full else None
            for field in schema.get("fields", []):
                named_types(field["type"], inner_namespace, found)
        elif kind == "array":
            named_types(schema["items"], namespace, found)
        elif kind == "map":
            named_types(schema["values"], namespace, found)
        elif isinstance(kind, (dict, list)):
            named_types(kind, namespace, found)
    return found


def _resolve(schema: Schema, named: dict[str, dict]) -> Schema:
    """A reference to a named type becomes its definition; {"type": "string"} becomes "string"."""
    if isinstance(schema, str) and schema not in PRIMITIVE_TYPES:
        if schema not in named:
            raise ValueError(f"unknown named type {schema!r}")
        return named[schema]
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVE_TYPES and len(
            {k for k in schema if k not in ("doc", "logicalType")}) == 1:
        return schema["type"]
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return _resolve(schema["type"], named)
    return schema


def _kind(schema: Schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return "record" if schema["type"] == "error" else schema["type"]


def _describe(schema: Schema) -> str:
    kind = _kind(schema)
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {schema['name']}"
    if kind == "union":
        return "[" + ", ".join(_describe(b) for b in schema) + "]"
    if kind == "array":
        return f"array<{_describe(schema['items'])}>"
    if kind == "map":
        return f"map<{_describe(schema['values'])}>"
    return kind


class _Checker:
    def __init__(self, old: Schema, new: Schema) -> None:
        self.old_named = named_types(old)
        self.new_named = named_types(new)
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def matches(self, old: Schema, new: Schema, path: str) -> bool:
        """Whether old data at `path` can be read by `new`; records problems as it goes."""
        before = len(self.problems)
        self.check(old, new, path)
        return len(self.problems) == before

    def _quiet(self, old: Schema, new: Schema, path: str) -> bool:
        saved = list(self.problems)
        ok = self.matches(old, new, path)
        self.problems = saved
        return ok

    def check(self, old: Schema, new: Schema, path: str) -> None:
        old, new = _resolve(old, self.old_named), _resolve(new, self.new_named)
        old_kind, new_kind = _kind(old), _kind(new)
        where = path or "<root>"
        if old_kind == "union":
            for branch in old:  # whichever branch the old writer chose must be readable
                self.check(branch, new, path)
            return
        if new_kind == "union":
            if not any(self._quiet(old, branch, path) for branch in new):
                self.problems.append(f"{where}: type changed from {_describe(old)} to {_describe(new)} "
                                     f"(no branch of the new union reads the old value)")
            return
        if old_kind != new_kind:
            if new_kind not in PROMOTIONS.get(old_kind, set()):
                self.problems.append(f"{where}: type changed from {_describe(old)} to {_describe(new)}")
            return
        if old_kind == "array":
            self.check(old["items"], new["items"], f"{path}[]")
        elif old_kind == "map":
            self.check(old["values"], new["values"], f"{path}{{}}")
        elif old_kind == "enum":
            missing = sorted(set(old["symbols"]) - set(new["symbols"]))
            if missing and "default" not in new:
                self.problems.append(f"{where}: enum {new['name']} lost symbols {missing} and has no default")
        elif old_kind == "fixed":
            if old["size"] != new["size"]:
                self.problems.append(f"{where}: fixed {new['name']} changed size {old['size']} -> {new['size']}")
        elif old_kind == "record":
            self.check_record(old, new, path)

    def check_record(self, old: dict, new: dict, path: str) -> None:
        names = {new["name"].rsplit(".", 1)[-1], *(a.rsplit(".", 1)[-1] for a in new.get("aliases", []))}
        if old["name"].rsplit(".", 1)[-1] not in names:
            self.problems.append(f"{path or '<root>'}: record {old['name']} renamed to {new['name']} without an alias")
            return
        key = (id(old), id(new))
        if key in self._seen:  # recursive types
            return
        self._seen.add(key)
        old_fields = {f["name"]: f for f in old["fields"]}
        prefix = f"{path}." if path else ""
        matched: set[str] = set()
        for field in new["fields"]:
            candidates = [field["name"], *field.get("aliases", [])]
            source = next((old_fields[n] for n in candidates if n in old_fields), None)
            if source is None:
                if "default" not in field:
                    self.problems.append(f"{prefix}{field['name']}: added without a default "
                                         "(data written before it cannot be read)")
                continue
            matched.add(source["name"])
            self.check(source["type"], field["type"], prefix + field["name"])
        for name, field in old_fields.items():
            if name not in matched and "default" not in field:
                self.problems.append(f"{prefix}{name}: removed, and it had no default "
                                     "(readers on the old schema cannot read new data)")


def compatibility_problems(old: Schema, new: Schema) -> list[str]:
    """Every reason `new` cannot safely replace `old`; an empty list means backward compatible."""
    checker = _Checker(old, new)
    checker.check(old, new, "")
    return checker.problems


# ---------------------------------------------------------------------------------------------- data

def _sample(schema: Schema, named: dict[str, dict], full: bool, depth: int = 0) -> Any:
    schema = _resolve(schema, named)
    kind = _kind(schema)
    if depth > 8:
        raise ValueError("schema nests too deeply to sample")
    if kind == "union":
        branches = [b for b in schema if b != "null"]
        if not full and "null" in schema:
            return None
        return _sample(branches[0], named, full, depth + 1) if branches else None
    values = {"null": None, "boolean": True, "int": 7, "long": 1234567890123, "float": 1.5, "double": 2.25,
              "bytes": b"\x00\x01", "string": "text"}
    if kind in values:
        return values[kind]
    if kind == "record":
        return {f["name"]: _sample(f["type"], named, full, depth + 1) for f in schema["fields"]}
    if kind == "array":
        return [_sample(schema["items"], named, full, depth + 1)] if full else []
    if kind == "map":
        return {"key": _sample(schema["values"], named, full, depth + 1)} if full else {}
    if kind == "enum":
        return schema["symbols"][0]
    if kind == "fixed":
        return b"\x00" * schema["size"]
    raise ValueError(f"cannot sample {kind}")


def sample_records(schema: Schema) -> list[dict[str, Any]]:
    named = named_types(schema)
    return [_sample(schema, named, full=True), _sample(schema, named, full=False)]


def read_old_with_new(old: Schema, new: Schema, record: dict[str, Any]) -> dict[str, Any]:
    """`record` written with the old schema (Avro binary), read back with the new one as reader."""
    writer = parse_schema(copy.deepcopy(old))
    reader = parse_schema(copy.deepcopy(new))
    buffer = io.BytesIO()
    schemaless_writer(buffer, writer, record)
    buffer.seek(0)
    return schemaless_reader(buffer, writer, reader)

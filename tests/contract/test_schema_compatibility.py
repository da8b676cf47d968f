"""Every schema change ever committed, and the one in the working tree, is backward compatible.

A reader with the newer schema must read data written with the older one (the archive stays
replayable, a redeployed consumer reads what is still in flight). A breaking change is a new
version in the file name and a new topic, never an edit. The checker lives in `compat.py` (Avro's own,
from the `avro` package); the last tests here prove it fails on the changes it exists to catch.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from mlops.core.events import EVENTS_BY_TYPE

from .compat import ADDED, REMOVED, compatibility_problems, forward_problems, read_old_with_new, sample_records

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted(p.name for p in (ROOT / "schemas").glob("*.avsc"))


def git(*args: str, root: Path = ROOT) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def _in_git() -> bool:
    if shutil.which("git") is None:
        return False
    try:
        return git("rev-parse", "--is-inside-work-tree").strip() == "true"
    except subprocess.CalledProcessError:
        return False


IN_GIT = _in_git()


def schema_versions(name: str, root: Path = ROOT) -> list[tuple[str, dict[str, Any]]]:
    """(label, schema) of every committed version of `schemas/<name>`, oldest first, then the working tree's
    when it differs from HEAD's."""
    path = f"schemas/{name}"
    revisions = list(reversed(git("log", "--format=%H", "--", path, root=root).split()))
    versions = []
    for revision in revisions:
        try:
            text = git("show", f"{revision}:{path}", root=root)
        except subprocess.CalledProcessError:  # the commit deleted it
            continue
        versions.append((revision[:10], json.loads(text)))
    working = json.loads((root / path).read_text(encoding="utf-8"))
    if not versions or versions[-1][1] != working:
        versions.append(("working tree", working))
    return versions


def example_record(name: str, old: dict[str, Any]) -> dict[str, Any] | None:
    """Today's `example()` as a record of the old schema, when it can be one."""
    cls = EVENTS_BY_TYPE.get(name.removesuffix(".avsc"))
    if cls is None:
        return None
    record = cls.example().model_dump()
    old_fields = {f["name"] for f in old["fields"]}
    record = {k: v for k, v in record.items() if k in old_fields}
    return record if validate(record, parse_schema(copy.deepcopy(old)), raise_errors=False) else None


@pytest.mark.skipif(not IN_GIT, reason="not a git checkout: no schema history to compare")
def test_every_schema_has_history_or_is_new():
    for name in SCHEMA_FILES:
        assert schema_versions(name), name


@pytest.mark.skipif(not IN_GIT, reason="not a git checkout: no schema history to compare")
def _as_old(value: object, old: object) -> object:
    """`value` read with the new schema, without the nested fields the old record did not have (those
    must be null: an added nested field is optional with a null default)."""
    if isinstance(value, dict) and isinstance(old, dict):
        assert all(value[k] is None for k in set(value) - set(old)), (value, old)
        return {k: _as_old(v, old[k]) for k, v in value.items() if k in old}
    if isinstance(value, list) and isinstance(old, list) and len(value) == len(old):
        return [_as_old(v, o) for v, o in zip(value, old, strict=True)]
    return value


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_committed_and_pending_change_is_backward_compatible(name):
    versions = schema_versions(name)
    for (old_label, old), (new_label, new) in zip(versions, versions[1:]):
        problems = compatibility_problems(old, new)
        assert problems == [], f"schemas/{name}: {old_label} -> {new_label} breaks readers: {problems}"
        records = sample_records(old)
        example = example_record(name, old)
        if example is not None:
            records.append(example)
        for record in records:
            read = read_old_with_new(old, new, record)
            new_fields = {f["name"]: f for f in new["fields"]}
            for field_name, value in read.items():
                if field_name in record:
                    # (7 == 7.0 after a promotion; a field added to a nested record reads as its null default)
                    assert _as_old(value, record[field_name]) == record[field_name], (name, field_name)
                else:
                    assert value == new_fields[field_name]["default"], (name, field_name)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_each_schema_reads_its_own_data(name):
    """The identity change passes both checks (the checker's base case, and the samplers' sanity)."""
    schema = json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8"))
    assert compatibility_problems(schema, schema) == []
    for record in sample_records(schema):
        assert read_old_with_new(schema, schema, record) == record


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_history_walk_sees_every_commit_and_the_working_tree(tmp_path):
    """On a throw-away repository: two commits of a schema, then an uncommitted edit."""
    def run(*args: str) -> None:
        git(*args, root=tmp_path)

    run("init", "-q")
    run("config", "user.email", "test@example.com")
    run("config", "user.name", "test")
    run("config", "commit.gpgsign", "false")
    schema_file = tmp_path / "schemas" / "watch.tick.v1.avsc"
    schema_file.parent.mkdir()
    v1 = changed(lambda s: None)
    v2 = changed(lambda s: s["fields"].append({"name": "a", "type": ["null", "int"], "default": None}))
    v3 = changed(lambda s: s["fields"].append({"name": "b", "type": "int"}))  # breaking, not committed
    for version, message in ((v1, "v1"), (v2, "v2")):
        schema_file.write_text(json.dumps(version))
        run("add", "-A")
        run("commit", "-q", "--no-verify", "-m", message)
    assert [label for label, _ in schema_versions("watch.tick.v1.avsc", root=tmp_path)][-1] != "working tree"
    schema_file.write_text(json.dumps(v3))
    versions = schema_versions("watch.tick.v1.avsc", root=tmp_path)
    assert [schema for _, schema in versions] == [v1, v2, v3]
    assert versions[-1][0] == "working tree"
    assert compatibility_problems(v1, v2) == []
    assert compatibility_problems(v2, v3) == [f"b: {ADDED}"]


# ------------------------------------------------------------------------------------ the checker fails when it must

BASE: dict[str, Any] = {
    "type": "record", "name": "WatchTick", "namespace": "mlops.events", "doc": "d",
    "fields": [
        {"name": "pipeline", "type": ["null", "string"], "default": None, "doc": "d"},
        {"name": "reason", "type": "string", "doc": "d"},
        {"name": "count", "type": "int", "doc": "d"},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "doc": "d"},
        {"name": "item", "type": {"type": "record", "name": "Item", "fields": [
            {"name": "id", "type": "string", "doc": "d"}]}, "doc": "d"},
    ],
}


def changed(mutate) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    mutate(schema)
    return schema


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def fastavro_can_read(old: dict, new: dict) -> bool:
    try:
        for record in sample_records(old):
            read_old_with_new(old, new, record)
    except Exception:  # noqa: BLE001 - any failure to read is the point
        return False
    return True


def test_a_new_required_field_is_breaking():
    new = changed(lambda s: s["fields"].append({"name": "priority", "type": "int", "doc": "d"}))
    assert compatibility_problems(BASE, new) == [f"priority: {ADDED}"]
    assert not fastavro_can_read(BASE, new)


def test_a_new_required_field_in_a_nested_record_is_breaking():
    new = changed(lambda s: field(s, "item")["type"]["fields"].append({"name": "size", "type": "long"}))
    assert compatibility_problems(BASE, new) == [f"item.size: {ADDED}"]
    assert not fastavro_can_read(BASE, new)


@pytest.mark.parametrize(("name", "new_type"), [
    ("reason", "long"),
    ("count", "string"),
    ("count", "boolean"),
    ("pipeline", "string"),  # optional became required: old nulls cannot be read
    ("tags", {"type": "map", "values": "string"}),
    ("tags", {"type": "array", "items": "long"}),
], ids=["string->long", "int->string", "int->boolean", "nullable->required", "array->map", "array-items"])
def test_a_type_change_is_breaking(name, new_type):
    def mutate(schema):
        target = field(schema, name)
        target["type"] = new_type
        target.pop("default", None)

    new = changed(mutate)
    problems = compatibility_problems(BASE, new)
    assert problems and all("type changed" in p for p in problems), problems
    assert any(p.startswith(name) for p in problems)
    assert not fastavro_can_read(BASE, new)


def test_removing_a_field_without_a_default_is_breaking():
    new = changed(lambda s: s["fields"].remove(field(s, "count")))
    assert compatibility_problems(BASE, new) == [f"count: {REMOVED}"]
    # A new reader skips the old field fine; it is the old readers that break (the reverse direction).
    assert compatibility_problems(new, BASE) == [f"count: {ADDED}"]


def test_renaming_a_record_without_an_alias_is_breaking():
    new = changed(lambda s: s.update(name="Tick"))
    assert compatibility_problems(BASE, new) == [
        "<root>: renamed without an alias (expected: mlops.events.WatchTick)"]
    assert not fastavro_can_read(BASE, new)
    aliased = changed(lambda s: s.update(name="Tick", aliases=["mlops.events.WatchTick"]))
    assert compatibility_problems(BASE, aliased) == []
    assert fastavro_can_read(BASE, aliased)


def test_an_alias_must_be_the_full_name():
    """The spec reads a short alias in the record's namespace, and fastavro does; avro's checker (1.12)
    compares it with the old full name only, and so rejects it. Write aliases in full."""
    aliased = changed(lambda s: s.update(name="Tick", aliases=["WatchTick"]))
    assert fastavro_can_read(BASE, aliased)
    assert compatibility_problems(BASE, aliased) == [
        "<root>: renamed without an alias (expected: mlops.events.WatchTick)"]


WITH_ENUM = changed(lambda s: s["fields"].append(
    {"name": "level", "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH", "MID"]}, "doc": "d"}))
WITH_FIXED = changed(lambda s: s["fields"].append(
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}, "doc": "d"}))


def test_removing_an_enum_symbol_is_breaking_unless_the_enum_has_a_default():
    new = copy.deepcopy(WITH_ENUM)
    field(new, "level")["type"]["symbols"] = ["LOW", "HIGH"]
    assert compatibility_problems(WITH_ENUM, new) == ["level: enum lost symbols and has no default ({'MID'})"]
    assert not fastavro_can_read(WITH_ENUM, new)  # a sample record holds the last symbol, MID
    field(new, "level")["type"].update(symbols=["LOW", "HIGH", "UNKNOWN"], default="UNKNOWN")
    assert compatibility_problems(WITH_ENUM, new) == []
    assert fastavro_can_read(WITH_ENUM, new)


@pytest.mark.parametrize(("old", "name", "expected"), [
    (WITH_ENUM, "level", "mlops.events.Level"),
    (WITH_FIXED, "digest", "mlops.events.Digest"),
    (BASE, "item", "mlops.events.Item"),
], ids=["enum", "fixed", "record"])
def test_renaming_a_nested_named_type_is_breaking(old, name, expected):
    """Enums and fixed types are resolved by name too (the hand-written checker compared record names only)."""
    new = copy.deepcopy(old)
    field(new, name)["type"]["name"] = "Renamed"
    assert compatibility_problems(old, new) == [f"{name}: renamed without an alias (expected: {expected})"]
    assert not fastavro_can_read(old, new)


def test_a_fixed_type_that_changes_size_is_breaking():
    new = copy.deepcopy(WITH_FIXED)
    field(new, "digest")["type"]["size"] = 8
    assert compatibility_problems(WITH_FIXED, new) == ["digest: fixed size changed (expected: 4, found: 8)"]
    assert not fastavro_can_read(WITH_FIXED, new)


def test_narrowing_a_union_is_breaking():
    old = changed(lambda s: field(s, "pipeline").update(type=["null", "string", "int"]))
    assert compatibility_problems(old, BASE) == [
        "pipeline: type changed (reader union lacking writer type: INT)"]


def test_a_new_enum_field_needs_a_field_default_not_only_an_enum_default():
    """avro takes the enum's own default as no default here, and reports the field as a type mismatch
    (it compares the enum with the whole old record): the verdict is right, the wording odd."""
    new = changed(lambda s: s["fields"].append({"name": "level", "type": {
        "type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"], "default": "LOW"}, "doc": "d"}))
    problems = compatibility_problems(BASE, new)
    assert problems == ["level: type changed (reader type: enum not compatible with writer type: record)"]
    assert not fastavro_can_read(BASE, new)


def test_a_default_that_does_not_fit_its_type_is_caught_by_reading_not_by_the_checker():
    """Avro's checker looks at whether a default exists, not at its value; fastavro refuses the schema."""
    new = changed(lambda s: s["fields"].append({"name": "priority", "type": "int", "default": "high", "doc": "d"}))
    assert compatibility_problems(BASE, new) == []
    assert not fastavro_can_read(BASE, new)


def test_two_breaks_at_once_are_both_located():
    new = changed(lambda s: (field(s, "count").update(type="string"), field(s, "item")["type"]["fields"].append(
        {"name": "size", "type": "long"})))
    assert compatibility_problems(BASE, new) == [
        "count: type changed", f"item.size: {ADDED}",
        "avro's messages, in no particular order: reader type: string not compatible with writer type: int"]


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda s: field(s, "count").update(type="long"), "count"),
    (lambda s: field(s, "reason").update(type=["string", "null"], default="manual"), "reason"),
    (lambda s: field(s, "pipeline").update(type=["null", "string", "int"]), "pipeline"),
], ids=["int->long", "required->optional", "new-union-branch"])
def test_widenings_are_backward_but_not_forward_compatible(mutate, path):
    """Why only removals are checked forward: full forward compatibility would forbid these."""
    new = changed(mutate)
    assert compatibility_problems(BASE, new) == []
    problems = forward_problems(BASE, new)
    assert problems and all(p.startswith(f"{path}: type changed") for p in problems), problems


@pytest.mark.parametrize("mutate", [
    lambda s: s["fields"].append({"name": "priority", "type": ["null", "int"], "default": None, "doc": "d"}),
    lambda s: s["fields"].append({"name": "labels", "type": {"type": "map", "values": "string"}, "default": {}}),
    lambda s: field(s, "count").update(type="long"),  # promotion
    lambda s: field(s, "count").update(type="double"),
    lambda s: field(s, "reason").update(type=["string", "null"], default="manual"),  # required became optional
    lambda s: s["fields"].remove(field(s, "pipeline")),  # it had a default
    lambda s: field(s, "item")["type"]["fields"].append({"name": "note", "type": "string", "default": ""}),
    lambda s: field(s, "reason").update(doc="a better description"),
], ids=["optional-field", "map-with-default", "int->long", "int->double", "required->optional",
        "remove-defaulted", "nested-default", "doc-only"])
def test_compatible_changes_pass_both_checks(mutate):
    new = changed(mutate)
    assert compatibility_problems(BASE, new) == []
    assert fastavro_can_read(BASE, new)


def test_an_added_optional_field_reads_as_its_default():
    new = changed(lambda s: s["fields"].append({"name": "priority", "type": ["null", "int"], "default": None}))
    [full, _] = sample_records(BASE)
    assert read_old_with_new(BASE, new, full) == {**full, "priority": None}

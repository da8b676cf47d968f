"""The event bus in memory: every published message recorded, in order, with its decoded event.

It refuses what Pub/Sub (and its emulator) refuse, as `mlops.testing.contracts.bus` checks on both:
a topic that was never provisioned, a non-string attribute, a message larger than a publish request
may be, and bytes that do not fit the topic's Avro schema; and a message that fits carries Pub/Sub's schema attributes, as it does there. The schema check follows Avro's JSON decoding as Pub/Sub applies it, which is stricter
than `mlops.core.events.decode` in some ways (every field present, defaults or not; a long is a
JSON number, never a string) and looser in others (no value ranges or vocabularies: those are the
event classes' rules, checked before a typed event is ever published).
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from mlops.core.events import Envelope, Event, encode
from mlops.core.events.catalog import schema_json, schema_text
from mlops.core.topology import ALL_TOPICS, EVENT_TOPICS
from mlops.ports.bus import (
    MAX_PUBLISH_REQUEST_BYTES,
    SCHEMA_ENCODING_ATTRIBUTE,
    SCHEMA_NAME_ATTRIBUTE,
    SCHEMA_REVISION_ATTRIBUTE,
    MessageRefused,
    TopicNotFound,
)

_NUMBERS = (int, float)
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "int": _NUMBERS, "long": _NUMBERS, "float": _NUMBERS,
    "double": _NUMBERS, "string": (str,), "bytes": (str,),
}


def _full_name(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"


def _branch_name(schema: Any, namespace: str) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        return _full_name(schema, namespace)
    return str(schema["type"]) if isinstance(schema, dict) else "union"


def _problems(schema: Any, value: Any, path: str, named: dict[str, Any], namespace: str) -> list[str]:
    """What keeps `value` (parsed JSON) from being the Avro JSON encoding of `schema`."""
    where = path or "the message"
    if isinstance(schema, list):  # a union: null as null, any other branch as {"<type name>": value}
        if value is None and "null" in schema:
            return []
        if not (isinstance(value, dict) and len(value) == 1):
            return [f"{where}: a union value must be null or {{\"<type>\": value}}, got {value!r}"]
        [(branch_name, inner)] = value.items()
        for branch in schema:
            if _branch_name(branch, namespace) == branch_name:
                return _problems(branch, inner, path, named, namespace)
        return [f"{where}: {branch_name!r} is not a branch of {[_branch_name(b, namespace) for b in schema]}"]
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            kinds = _PRIMITIVES[schema]
            wrong = isinstance(value, bool) and bool not in kinds
            return [] if isinstance(value, kinds) and not wrong else [f"{where}: expected {schema}, got {value!r}"]
        return _problems(named[schema], value, path, named, namespace)
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[_full_name(schema, namespace)] = schema
        namespace = schema.get("namespace", namespace)
    if kind == "record":
        if not isinstance(value, dict):
            return [f"{where}: expected a record (JSON object), got {value!r}"]
        found: list[str] = []
        for item in schema["fields"]:
            name = item["name"]
            inner = f"{path}.{name}" if path else name
            if name not in value:  # Avro's JSON decoding wants every field, defaults or not
                found.append(f"{inner}: missing")
            else:
                found.extend(_problems(item["type"], value[name], inner, named, namespace))
        return found
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {value!r}"]
        return [p for i, v in enumerate(value) for p in _problems(schema["items"], v, f"{path}[{i}]", named, namespace)]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map (JSON object), got {value!r}"]
        return [p for k, v in value.items() for p in _problems(schema["values"], v, f"{path}[{k!r}]", named, namespace)]
    if kind == "enum":
        return [] if value in schema["symbols"] else [f"{where}: {value!r} is not one of {schema['symbols']}"]
    if kind == "fixed":
        return [] if isinstance(value, str) else [f"{where}: expected fixed bytes as a string, got {value!r}"]
    return _problems(kind, value, path, named, namespace)  # a primitive with a logicalType


def wire_problems(event_type: str, data: bytes) -> list[str]:
    """Why the topic of `event_type` would refuse `data` (empty: it fits the topic's schema)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return [f"not a JSON document: {error}"]
    return _problems(schema_json(event_type), document, "", {}, "")


def _field_size(number: int, length: int) -> int:
    """Bytes of a length-delimited protobuf field: its tag, the length as a varint, the bytes."""
    return len(_varint(number << 3 | 2)) + len(_varint(length)) + length


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def publish_request_size(topic_path: str, data: bytes, attributes: dict[str, str]) -> int:
    """Bytes of the PublishRequest that carries one message, as protobuf encodes it: what Pub/Sub's
    limit (MAX_PUBLISH_REQUEST_BYTES) counts. Request {topic = 1, messages = 2}; message {data = 1,
    attributes = 2 (map entries {key = 1, value = 2})}."""
    entries = [_field_size(1, len(k.encode())) + _field_size(2, len(v.encode())) for k, v in attributes.items()]
    message = (_field_size(1, len(data)) if data else 0) + sum(_field_size(2, entry) for entry in entries)
    return _field_size(1, len(topic_path.encode())) + _field_size(2, message)


def _settled(value: str | None = None, error: Exception | None = None) -> Future[str]:
    future: Future[str] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value or "")
    return future


@dataclass
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]
    event: Event | None = None


@dataclass
class InMemoryEventBus:
    """`topics` exist in `project` (default: every topic the topology provisions); those named after
    an event type check its schema. `fail_with` makes every publish raise it at once (a bus that is
    down)."""

    messages: list[Published] = field(default_factory=list)
    fail_with: Exception | None = None
    topics: frozenset[str] = frozenset(ALL_TOPICS)
    project: str = "test-project"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        if envelope.type != event.EVENT_TYPE:
            raise ValueError(f"envelope type {envelope.type!r} does not match event {event.EVENT_TYPE!r}")
        sent = len(self.messages)
        future = self.publish_raw(event.EVENT_TYPE, encode(event), envelope.to_attributes())
        if len(self.messages) > sent:  # recorded (not refused): keep the typed event beside its bytes
            self.messages[-1].event = event
        return future

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        if self.fail_with is not None:
            raise self.fail_with
        # What the Pub/Sub client checks before sending anything.
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        attributes = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in attributes.items()}
        if not all(isinstance(v, str) for v in attributes.values()):
            raise TypeError("all attributes published to Pub/Sub must be text strings")
        size = publish_request_size(f"projects/{self.project}/topics/{topic_id}", data, attributes)
        if size > MAX_PUBLISH_REQUEST_BYTES:  # the client library's own check, before anything is sent
            return _settled(error=MessageRefused(
                f"{topic_id} refused the message: the publish request would be {size} bytes, over the maximum "
                f"allowed size on the backend ({MAX_PUBLISH_REQUEST_BYTES} bytes)"))
        if topic_id not in self.topics:
            return _settled(error=TopicNotFound(f"topic {topic_id!r} not found"))
        if topic_id in EVENT_TOPICS:
            problems = wire_problems(topic_id, data)
            if problems:
                return _settled(error=MessageRefused(f"{topic_id} refused the message: {'; '.join(problems)}"))
            attributes.update(self.schema_attributes(topic_id))
        with self._lock:
            self.messages.append(Published(topic_id, data, dict(attributes)))
            return _settled(str(len(self.messages)))

    def schema_attributes(self, topic_id: str) -> dict[str, str]:
        """What Pub/Sub adds to a message that passed the schema of `topic_id`."""
        revision = hashlib.sha256(schema_text(topic_id).encode()).hexdigest()[:8]
        return {SCHEMA_NAME_ATTRIBUTE: f"projects/{self.project}/schemas/{topic_id}",
                SCHEMA_REVISION_ATTRIBUTE: revision, SCHEMA_ENCODING_ATTRIBUTE: "JSON"}

    def on(self, topic: str) -> list[Published]:
        return [m for m in self.messages if m.topic == topic]

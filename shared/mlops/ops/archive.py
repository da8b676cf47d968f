"""Reading the event archive (the `events` table a BigQuery subscription per topic writes).

Rows are Pub/Sub messages with their attributes as JSON; this turns them back into envelopes and
typed payloads. Delivery to the archive is at-least-once, so rows are deduplicated on `ce-id`.

An archived message's type is the topic it was published on (its archive subscription says which),
not the `ce-type` it claims: a poison message dead-lettered with its original attributes (a real
`ce-type` included) is a `mlops.dead-letter` row, listed only when dead letters are asked for
(`--type mlops.dead-letter`), never as the event it claimed to be. Rows are read tolerantly: garbage
in a column makes an event without a typed payload, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from mlops.core.events import EventValidationError, decode
from mlops.core.events.envelope import parse_time
from mlops.core.sql import quote_qualified
from mlops.core.topology import ALL_TOPICS, ARCHIVE_SUFFIX, DEAD_LETTER_TOPIC, EVENTS_TABLE, archive_subscription
from mlops.ops.errors import OperatorError
from mlops.ports.warehouse import SqlReader

# The run ids and event ids the tables print: enough to tell runs apart, short enough to type.
SHORT_ID = 8


class ArchiveQueryError(OperatorError):
    pass


def event_type_name(text: str) -> str:
    """The archived type a user means: `data.ready.v1` as it is, `data.ready` as its newest version."""
    if text in ALL_TOPICS:
        return text
    versions = sorted((t for t in ALL_TOPICS if t.rsplit(".", 1)[0] == text), key=lambda t: int(t.rsplit(".v", 1)[-1]))
    if versions:
        return versions[-1]
    raise ArchiveQueryError(f"no event type {text!r}; types: {', '.join(ALL_TOPICS)}")


@dataclass(frozen=True)
class ArchivedEvent:
    id: str
    type: str
    time: str
    run_id: str
    causation_id: str
    replay_of: str
    pipeline: str
    message_id: str
    subscription: str
    attributes: dict[str, str]
    data: str

    @cached_property
    def _decoded(self) -> dict[str, Any] | None:
        try:
            return decode(self.type, self.data.encode("utf-8")).model_dump(mode="json")
        except (EventValidationError, RecursionError, ValueError):  # a dead letter, garbage, an unknown type
            return None

    @property
    def valid(self) -> bool:
        """The payload fits its type's schema (as every message on an event topic does)."""
        return self._decoded is not None

    @property
    def is_dead_letter(self) -> bool:
        return self.type == DEAD_LETTER_TOPIC

    def payload(self) -> dict[str, Any]:
        """The payload as plain JSON values, read through today's schema (so older events are upcast);
        for a message that does not fit it, the JSON object it holds, else `{"_raw": text}`."""
        if self._decoded is not None:
            return self._decoded
        try:
            document = json.loads(self.data)
        except (ValueError, RecursionError):
            document = None
        return document if isinstance(document, dict) else {"_raw": self.data}

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "time": self.time, "run_id": self.run_id,
            "causation_id": self.causation_id, "replay_of": self.replay_of, "pipeline": self.pipeline,
            "message_id": self.message_id, "subscription": self.subscription, "attributes": self.attributes,
            "data": self.payload(),
        }


def _attributes(text: Any) -> dict[str, str]:
    try:
        parsed = json.loads(text or "{}")
    except (TypeError, ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(k, str) and isinstance(v, str)}


def archived_topic(subscription_name: str) -> str | None:
    """The topic of an archive row's subscription (`<topic>--archive`, bare or as a resource name)."""
    name = subscription_name.rsplit("/", 1)[-1]
    topic = name[:-len(ARCHIVE_SUFFIX)] if name.endswith(ARCHIVE_SUFFIX) else ""
    return topic if topic in ALL_TOPICS else None


def _from_row(row: dict[str, Any]) -> ArchivedEvent:
    attributes = _attributes(row.get("attributes"))
    subscription = str(row.get("subscription_name") or "")
    data = row.get("data")
    return ArchivedEvent(
        id=attributes.get("ce-id", ""), type=archived_topic(subscription) or attributes.get("ce-type", ""),
        time=attributes.get("ce-time", str(row.get("publish_time"))), run_id=attributes.get("run_id", ""),
        causation_id=attributes.get("causation_id", ""), replay_of=attributes.get("replay_of", ""),
        pipeline=attributes.get("pipeline", ""), message_id=str(row.get("message_id") or ""),
        subscription=subscription, attributes=attributes, data=data if isinstance(data, str) else "",
    )


def _archived_from(topic: str, param: str, params: dict[str, Any]) -> str:
    """A clause: the row came from `topic`'s archive subscription (named bare, or as a resource name)."""
    params[param], params[f"{param}_path"] = archive_subscription(topic), f"/{archive_subscription(topic)}"
    return (f"(COALESCE(subscription_name, '') = @{param} OR "
            f"ENDS_WITH(COALESCE(subscription_name, ''), @{param}_path))")


def _when(event: ArchivedEvent) -> datetime:
    try:
        return parse_time(event.time)
    except ValueError:  # a dead letter's publish time, as the warehouse printed it
        try:
            return datetime.fromisoformat(event.time).astimezone(UTC)
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)


def query_events(warehouse: SqlReader, run_id: str | None = None, event_type: str | None = None, since: str | None = None,
                 limit: int = 200, event_id: str | None = None, caused_by: str | None = None,
                 dead_letters: bool = False) -> list[ArchivedEvent]:
    """Archived events, newest first (by the event's own `ce-time`), one per ce-id (or per message for
    dead letters without one). `run_id` may be a prefix of run ids, as the tables print them.
    `event_type` is the topic the events were published on; dead letters (which keep the attributes,
    `ce-type` included, of the message they park) come only with `dead_letters` or with
    `event_type=mlops.dead-letter`."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if event_type:
        clauses.append(_archived_from(event_type, "subscription", params))
    elif not dead_letters:
        clauses.append(f"NOT {_archived_from(DEAD_LETTER_TOPIC, 'dead_letters', params)}")
    if since:
        try:
            params["since"] = parse_time(since)
        except ValueError as error:
            raise ArchiveQueryError(f"--since {since!r} is not an RFC 3339 time with a zone "
                                    f"(e.g. 2026-01-31T12:00:00Z): {error}") from None
        clauses.append("publish_time >= @since")
    # Attributes are a JSON string, as a BigQuery subscription writes them.
    if run_id:
        clauses.append("STARTS_WITH(JSON_VALUE(attributes, '$.run_id'), @run_id)")
        params["run_id"] = run_id
    for key, value in (("ce-id", event_id), ("causation_id", caused_by)):
        if value:
            clauses.append(f"JSON_VALUE(attributes, '$.\"{key}\"') = @{key.replace('-', '_')}")
            params[key.replace("-", "_")] = value
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = warehouse.query(
        f"SELECT * FROM {quote_qualified(warehouse.qualified(EVENTS_TABLE))} {where} ORDER BY publish_time DESC LIMIT {int(limit) * 2}",
        params,
    )
    return _unique_newest_first(rows, limit)


def run_and_deployments(warehouse: SqlReader, run_id: str, pipeline: str, limit: int = 1000) -> list[ArchivedEvent]:
    """In one query (lineage's): every event of a run, and every `model.deployed` of a pipeline
    (later deployments change the traffic of a version too). Newest first, one per ce-id."""
    params: dict[str, Any] = {"run_id": run_id, "deployed": "model.deployed.v1", "pipeline": pipeline}
    not_dead_letter = f"NOT {_archived_from(DEAD_LETTER_TOPIC, 'dead_letters', params)}"
    rows = warehouse.query(
        f"SELECT * FROM {quote_qualified(warehouse.qualified(EVENTS_TABLE))} "
        "WHERE (JSON_VALUE(attributes, '$.run_id') = @run_id "
        "OR (JSON_VALUE(attributes, '$.\"ce-type\"') = @deployed AND JSON_VALUE(attributes, '$.pipeline') = @pipeline)) "
        f"AND {not_dead_letter} ORDER BY publish_time DESC LIMIT {int(limit) * 2}",
        params,
    )
    return _unique_newest_first(rows, limit)


def _unique_newest_first(rows: list[dict[str, Any]], limit: int) -> list[ArchivedEvent]:
    seen, events = set(), []
    for row in rows:
        event = _from_row(row)
        key = (event.is_dead_letter, event.id or event.message_id)
        if key not in seen:
            seen.add(key)
            events.append(event)
    # The archive's publish_time is when the archive got the message; ce-time is when it happened.
    events.sort(key=_when, reverse=True)
    return events[:limit]


def runs_matching(events: list[ArchivedEvent], prefix: str) -> list[str]:
    """The distinct run ids among `events` that start with `prefix`."""
    return sorted({e.run_id for e in events if e.run_id.startswith(prefix)})

"""Reading the event archive (the `events` table a BigQuery subscription per topic writes).

Rows are Pub/Sub messages with their attributes as JSON; this turns them back into envelopes and
typed payloads. Delivery to the archive is at-least-once, so rows are deduplicated on `ce-id`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.core.events import EventValidationError, decode
from mlops.core.events.envelope import parse_time
from mlops.core.sql import quote_qualified
from mlops.core.topology import ALL_TOPICS, EVENTS_TABLE
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

    def payload(self) -> dict[str, Any]:
        """The payload as plain JSON values, read through today's schema (so older events are upcast)."""
        try:
            return decode(self.type, self.data.encode("utf-8")).model_dump(mode="json")
        except EventValidationError:  # a dead letter, or a type this version does not know
            try:
                return json.loads(self.data)
            except json.JSONDecodeError:
                return {"_raw": self.data}

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "time": self.time, "run_id": self.run_id,
            "causation_id": self.causation_id, "replay_of": self.replay_of, "pipeline": self.pipeline,
            "message_id": self.message_id, "subscription": self.subscription, "attributes": self.attributes,
            "data": self.payload(),
        }


def _from_row(row: dict[str, Any]) -> ArchivedEvent:
    attributes = json.loads(row["attributes"] or "{}")
    return ArchivedEvent(
        id=attributes.get("ce-id", ""), type=attributes.get("ce-type", ""),
        time=attributes.get("ce-time", str(row["publish_time"])), run_id=attributes.get("run_id", ""),
        causation_id=attributes.get("causation_id", ""), replay_of=attributes.get("replay_of", ""),
        pipeline=attributes.get("pipeline", ""), message_id=row["message_id"],
        subscription=row["subscription_name"], attributes=attributes, data=row["data"] or "",
    )


def _when(event: ArchivedEvent) -> datetime:
    try:
        return parse_time(event.time)
    except ValueError:  # a dead letter's publish time, as the warehouse printed it
        try:
            return datetime.fromisoformat(event.time).astimezone(UTC)
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)


def query_events(warehouse: SqlReader, run_id: str | None = None, event_type: str | None = None, since: str | None = None,
                 limit: int = 200, event_id: str | None = None, caused_by: str | None = None) -> list[ArchivedEvent]:
    """Archived events, newest first (by the event's own `ce-time`), one per ce-id (or per message for
    dead letters without one). `run_id` may be a prefix of run ids, as the tables print them."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
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
    for key, value in (("ce-type", event_type), ("ce-id", event_id), ("causation_id", caused_by)):
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
    rows = warehouse.query(
        f"SELECT * FROM {quote_qualified(warehouse.qualified(EVENTS_TABLE))} "
        "WHERE JSON_VALUE(attributes, '$.run_id') = @run_id "
        "OR (JSON_VALUE(attributes, '$.\"ce-type\"') = @deployed AND JSON_VALUE(attributes, '$.pipeline') = @pipeline) "
        f"ORDER BY publish_time DESC LIMIT {int(limit) * 2}",
        {"run_id": run_id, "deployed": "model.deployed.v1", "pipeline": pipeline},
    )
    return _unique_newest_first(rows, limit)


def _unique_newest_first(rows: list[dict[str, Any]], limit: int) -> list[ArchivedEvent]:
    seen, events = set(), []
    for row in rows:
        event = _from_row(row)
        key = event.id or event.message_id
        if key not in seen:
            seen.add(key)
            events.append(event)
    # The archive's publish_time is when the archive got the message; ce-time is when it happened.
    events.sort(key=_when, reverse=True)
    return events[:limit]


def runs_matching(events: list[ArchivedEvent], prefix: str) -> list[str]:
    """The distinct run ids among `events` that start with `prefix`."""
    return sorted({e.run_id for e in events if e.run_id.startswith(prefix)})

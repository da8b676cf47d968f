"""Reading the event archive (the `events` table a BigQuery subscription per topic writes).

Rows are Pub/Sub messages with their attributes as JSON; this turns them back into envelopes and
typed payloads. Delivery to the archive is at-least-once, so rows are deduplicated on `ce-id`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlops.core.events import EventValidationError, decode
from mlops.core.events.envelope import parse_time
from mlops.core.topology import EVENTS_TABLE


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


def query_events(warehouse, run_id: str | None = None, event_type: str | None = None, since: str | None = None,
                 limit: int = 200, event_id: str | None = None) -> list[ArchivedEvent]:
    """Archived events, newest first, one per ce-id (or per message for dead letters without one)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if since:

        clauses.append("publish_time >= @since")
        params["since"] = parse_time(since)
    for key, value in (("run_id", run_id), ("ce-type", event_type), ("ce-id", event_id)):
        if value:
            # Attributes are a JSON string, as a BigQuery subscription writes them.
            clauses.append(f"JSON_VALUE(attributes, '$.\"{key}\"') = @{key.replace('-', '_')}")
            params[key.replace("-", "_")] = value
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = warehouse.query(
        f"SELECT * FROM `{warehouse.qualified(EVENTS_TABLE)}` {where} ORDER BY publish_time DESC LIMIT {int(limit) * 2}",
        params,
    )
    seen, events = set(), []
    for row in rows:
        event = _from_row(row)
        key = event.id or event.message_id
        if key not in seen:
            seen.add(key)
            events.append(event)
    return events[:limit]

"""Re-running stages from the archive.

A replay is a *new* event: new `ce-id`, a new run, and `replay_of` naming the archived original.
Its payload is the original's, read through today's schema (an event archived before the schema
gained an optional field is upcast with the field's default). Because every stage's idempotence is
keyed on its input event id, a replay produces new outputs (a new candidate, a new registry version)
linked to the old ones, while a mere redelivery of the original produces nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.core.events import Envelope, Event, decode, encode
from mlops.core.events.envelope import REPLAY_SOURCE, new_envelope
from mlops.core.topology import SERVICES_BY_NAME
from mlops.ops.archive import ArchivedEvent, query_events
from mlops.ops.errors import OperatorError
from mlops.ports.bus import EventBus
from mlops.ports.warehouse import SqlReader


class ReplayError(OperatorError, LookupError):
    pass


@dataclass(frozen=True)
class PlannedReplay:
    original: ArchivedEvent
    event: Event
    envelope: Envelope

    def describe(self) -> dict[str, Any]:
        return {
            "replay_of": self.original.id, "type": self.envelope.type, "new_id": self.envelope.id,
            "run_id": self.envelope.run_id, "attributes": self.envelope.to_attributes(),
            "data": self.event.model_dump(mode="json"),
        }


# A forced replay (`--force`) may redeploy a version that was rolled back (deployer/traffic.py).
REPLAY_FORCE_ATTRIBUTE = "replay_force"


def plan_replay(original: ArchivedEvent, force: bool = False) -> PlannedReplay:
    if not original.type:
        raise ReplayError(f"archived message {original.message_id} has no event type (a dead letter?)")
    event = decode(original.type, original.data.encode("utf-8"))  # upcast through today's schema
    envelope = new_envelope(event, REPLAY_SOURCE, replay_of=original.id)
    if force:
        envelope = envelope.with_changes(extra={REPLAY_FORCE_ATTRIBUTE: "true"})
    return PlannedReplay(original, event, envelope)


def find_event(warehouse: SqlReader, event_id: str) -> ArchivedEvent:
    found = [e for e in query_events(warehouse, event_id=event_id, limit=5) if e.type]
    if not found:
        raise ReplayError(f"no archived event with id {event_id!r}")
    return found[0]


def stage_input(warehouse: SqlReader, run_id: str, stage: str) -> ArchivedEvent:
    """The event that started `stage` in a run (e.g. the run's data.ready for the trainer)."""
    service = SERVICES_BY_NAME.get(stage)
    if service is None:
        raise ReplayError(f"unknown stage {stage!r}; stages: {sorted(SERVICES_BY_NAME)}")
    events = query_events(warehouse, run_id=run_id, limit=1000)
    if not events:
        raise ReplayError(f"no archived events for run {run_id!r}")
    for event in reversed(events):  # oldest first: the stage's first input in the run
        if event.type in service.consumes:
            return event
    raise ReplayError(f"run {run_id} has no {' or '.join(service.consumes)} event for stage {stage}")


def publish(bus: EventBus, planned: PlannedReplay) -> str:
    bus.publish_raw(planned.envelope.type, encode(planned.event), planned.envelope.to_attributes()).result(timeout=30)
    return planned.envelope.id

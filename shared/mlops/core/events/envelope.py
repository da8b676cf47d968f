"""The envelope: CloudEvents attributes plus the loop's own links, carried as Pub/Sub attributes.

Following the CloudEvents Pub/Sub binding, context attributes ride as message attributes with the
`ce-` prefix and the payload is the message data. `run_id` ties one loop iteration together,
`causation_id` names the event that caused this one, `replay_of` marks a deliberate re-run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.core.events.catalog import dataschema_uri

if TYPE_CHECKING:
    from mlops.core.events.types import Event

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "//mlops/services/"
# The `service` of the events `mlops replay` re-publishes (their ce-source is source_of(REPLAY_SOURCE)).
REPLAY_SOURCE = "replay"


class EnvelopeError(ValueError):
    """Every problem with a message's attributes, reported at once."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("bad event envelope: " + "; ".join(problems))


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def parse_time(value: str) -> datetime:
    """An RFC 3339 time; one without a timezone is refused (it would be read in local time)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone")
    return parsed


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    time: str
    dataschema: str
    run_id: str
    causation_id: str = ""
    replay_of: str = ""
    pipeline: str = ""
    code_version: str = ""  # git commit or image tag of the stage that produced the event (lineage)
    specversion: str = SPEC_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def to_attributes(self) -> dict[str, str]:
        attributes = {
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.source,
            "ce-time": self.time,
            "ce-specversion": self.specversion,
            "ce-dataschema": self.dataschema,
            "ce-datacontenttype": "application/json",
            "run_id": self.run_id,
        }
        # Pub/Sub attributes cannot be empty-valued in every client; absent means "none".
        optional = (("causation_id", self.causation_id), ("replay_of", self.replay_of), ("pipeline", self.pipeline),
                    ("code_version", self.code_version))
        for key, value in optional:
            if value:
                attributes[key] = value
        attributes.update(self.extra)
        return attributes

    @classmethod
    def from_attributes(cls, attributes: dict[str, str]) -> Envelope:
        problems = [f"missing attribute {name!r}" for name in REQUIRED_ATTRIBUTES if not attributes.get(name)]
        if attributes.get("ce-specversion") and attributes["ce-specversion"] != SPEC_VERSION:
            problems.append(f"ce-specversion {attributes['ce-specversion']!r} is not {SPEC_VERSION!r}")
        if attributes.get("ce-time"):
            try:
                parse_time(attributes["ce-time"])
            except ValueError as error:
                problems.append(f"ce-time: {error}")
        if problems:
            raise EnvelopeError(problems)
        known = set(REQUIRED_ATTRIBUTES) | {"ce-datacontenttype", "causation_id", "replay_of", "pipeline", "code_version"}
        return cls(
            id=attributes["ce-id"],
            type=attributes["ce-type"],
            source=attributes["ce-source"],
            time=attributes["ce-time"],
            dataschema=attributes["ce-dataschema"],
            run_id=attributes["run_id"],
            causation_id=attributes.get("causation_id", ""),
            replay_of=attributes.get("replay_of", ""),
            pipeline=attributes.get("pipeline", ""),
            code_version=attributes.get("code_version", ""),
            specversion=attributes["ce-specversion"],
            extra={k: v for k, v in attributes.items() if k not in known},
        )

    def with_changes(self, **changes: Any) -> Envelope:
        return replace(self, **changes)

    @property
    def is_replay(self) -> bool:
        """This very event re-publishes an archived one (`mlops replay`). The events a replay causes
        downstream carry `replay_of` too, but come from their stage, so they are not replays."""
        return bool(self.replay_of) and self.source == source_of(REPLAY_SOURCE)


REQUIRED_ATTRIBUTES = ("ce-id", "ce-type", "ce-source", "ce-time", "ce-specversion", "ce-dataschema", "run_id")


def source_of(service: str) -> str:
    return SOURCE_PREFIX + service


def new_envelope(event: Event, service: str, *, id: str | None = None, run_id: str | None = None,
                 causation_id: str = "", replay_of: str = "", pipeline: str | None = None,
                 code_version: str = "") -> Envelope:
    """The envelope of `event` as published by `service`: the one place an envelope is made.

    An event that starts from nothing (a tick, a CLI command, a replay) gets a new id and a new run;
    a stage's output passes the id derived from its input, the input's run and `causation_id`.
    """
    return Envelope(
        id=id or new_id(),
        type=event.EVENT_TYPE,
        source=source_of(service),
        time=now_rfc3339(),
        dataschema=dataschema_uri(event.EVENT_TYPE),
        run_id=run_id or new_id(),
        causation_id=causation_id,
        replay_of=replay_of,
        pipeline=(getattr(event, "pipeline", None) or "") if pipeline is None else pipeline,
        code_version=code_version,
    )


@dataclass(frozen=True)
class Continues:
    """An output that finishes the work an earlier event started, published later by another delivery
    (a deploy started by `model.registered` and finished by a tick): it takes that event's run and is
    caused by it, so a run's chain and lineage show it, whichever delivery happened to publish it."""

    event: Event
    cause_id: str
    run_id: str
    replay_of: str = ""

"""Slow external calls made exactly once across crashes: the intent is recorded before the call.

A registrar or deployer killed while its Vertex AI call is in flight does not stop that call: the
version (or the deployed model) appears a little later. Looking for the effect first, as every stage
does, misses a call still in flight, so the redelivered input would start a second one. Hence, before
calling, the stage writes an *intent* keyed on its input event id (a small JSON object at
`operations/<stage>/<event id>.json` in the bucket, `mlops.core.layout.intent_path`). A delivery that
finds an intent in flight but no effect yet waits for the effect until the intent's deadline, and only
a call that has not landed by then is made again. The intent also keeps what the stage saw before
calling (the deployer: which model served before), so a resumed delivery announces what the first
one would have.

What this assumes, stated: a call that has not landed by its deadline never will. A call that fails
with an answer (it raised) did not happen, so the intent is closed at once and the next delivery
calls again without waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TypeVar

import structlog

from mlops.core.layout import intent_path, open_intent_marker, open_intent_prefix
from mlops.ports.blobs import BlobNotFound, BlobStore

log = structlog.get_logger("intents")

T = TypeVar("T")

IN_FLIGHT, DONE, FAILED = "in_flight", "done", "failed"


@dataclass(frozen=True)
class Intent:
    stage: str
    event_id: str
    call: str  # what was called, e.g. "register_version", "deploy"
    started_at: float  # epoch seconds
    deadline_at: float  # the call is taken as lost if nothing has landed by then
    context: dict[str, str] = field(default_factory=dict)  # what the stage saw before calling
    state: str = IN_FLIGHT
    result: str = ""  # the effect's id once known (a version id, a deployed model id)
    error: str = ""

    def in_flight(self, now: float) -> bool:
        return self.state == IN_FLIGHT and now < self.deadline_at


class IntentLog:
    """The intents of one stage, on the blob store. `clock`, `sleep` are injectable for tests."""

    def __init__(self, blobs: BlobStore, stage: str, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 1.0):
        self._blobs = blobs
        self.stage = stage
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s

    def get(self, event_id: str) -> Intent | None:
        path = intent_path(self.stage, event_id)
        if not self._blobs.exists(path):
            return None
        return Intent(**json.loads(self._blobs.get(path)))

    def _put(self, intent: Intent) -> Intent:
        # The open marker exists before the intent is in flight and goes after it is closed, so a
        # call in flight is always listed by `open()` (a crash between the two writes leaves at
        # worst a marker of a closed intent: `open()` skips it, the intent's next write removes it).
        marker = open_intent_marker(self.stage, intent.event_id)
        if intent.state == IN_FLIGHT:
            self._blobs.put(marker, b"", "text/plain")
        self._blobs.put(intent_path(self.stage, intent.event_id), json.dumps(asdict(intent)).encode(),
                        "application/json")
        if intent.state != IN_FLIGHT:
            self._blobs.delete(marker)
        return intent

    def begin(self, event_id: str, call: str, deadline_s: float, context: Mapping[str, str] | None = None) -> Intent:
        now = self._clock()
        return self._put(Intent(self.stage, event_id, call, now, now + deadline_s, dict(context or {})))

    def once(self, event_id: str, call: str, *, effect: Callable[[], str | None], make: Callable[[], str],
             deadline_s: float, context: Mapping[str, str] | None = None) -> tuple[str, Intent | None]:
        """The id of the effect of `call` for this input event, calling `make` only if no earlier
        attempt's call has landed or is still in flight. `effect` looks for what the call makes (its
        id, or None). Returns the id and the intent (None if the effect predates any intent: a plain
        duplicate); the intent's context is the first attempt's."""
        found = effect()
        intent = self.get(event_id)
        if found is not None:
            return found, self._close(intent, found) if intent is not None else None
        if intent is not None and intent.in_flight(self._clock()):
            log.info("an earlier attempt's call is in flight; waiting for it to land", stage=self.stage,
                     event_id=event_id, call=intent.call, deadline_in_s=round(intent.deadline_at - self._clock(), 1))
            found = self._await(intent, effect)
            if found is not None:
                return found, self._close(intent, found)
            log.warning("the earlier call did not land by its deadline; calling again", stage=self.stage,
                        event_id=event_id, call=intent.call)
        context = intent.context if intent is not None and intent.context else context
        intent = self.begin(event_id, call, deadline_s, context)
        try:
            made = make()
        except Exception as error:
            # An answered failure: nothing was made. Close the intent so the redelivery calls again
            # at once instead of waiting out the deadline for an effect that will not come.
            self._put(replace(intent, state=FAILED, error=f"{type(error).__name__}: {error}"[:1000]))
            raise
        return made, self._close(intent, made)

    def record(self, intent: Intent) -> Intent:
        """Write an intent as it is now (a step of a call that outlives the request: the operation's
        name once started, its outcome once known)."""
        return self._put(intent)

    def all(self) -> list[Intent]:
        """Every intent this stage ever recorded (one read each: for inspection, not for every tick)."""
        prefix = intent_path(self.stage, "x").rsplit("/", 1)[0] + "/"
        return [intent for path in self._blobs.list(prefix) if (intent := self._read(path)) is not None]

    def open(self) -> list[Intent]:
        """The intents whose call is in flight (for a follow-up that finishes them on every tick): one
        listing of the open markers and one read per open call, however long the stage's history."""
        prefix = open_intent_prefix(self.stage)
        found = []
        for marker in self._blobs.list(prefix):
            path = intent_path(self.stage, "x").rsplit("/", 1)[0] + "/" + marker.removeprefix(prefix) + ".json"
            intent = self._read(path)
            # No intent yet: a begin() between its two writes (its delivery writes the intent or is
            # redelivered). Closed: a crash between closing and unmarking. Neither is open.
            if intent is not None and intent.state == IN_FLIGHT:
                found.append(intent)
        return found

    def _read(self, path: str) -> Intent | None:
        try:
            return Intent(**json.loads(self._blobs.get(path)))
        except BlobNotFound:
            return None
        except (ValueError, TypeError) as error:
            log.warning("unreadable intent; skipped", path=path, error=str(error)[:200])
            return None

    def _await(self, intent: Intent, effect: Callable[[], str | None]) -> str | None:
        while True:
            found = effect()
            if found is not None:
                return found
            if self._clock() >= intent.deadline_at:
                return None
            self._sleep(min(self._poll_s, max(0.0, intent.deadline_at - self._clock())))

    def _close(self, intent: Intent, result: str) -> Intent:
        if intent.state == DONE and intent.result == result:
            return intent
        return self._put(replace(intent, state=DONE, result=result, error=""))

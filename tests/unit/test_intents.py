"""Slow calls made once across crashes (`mlops.ports.intents`), and the registrar and deployer built on it.

A "crash" here is a BaseException raised inside the slow call: like a SIGKILL, it skips every
`except Exception` and leaves the intent as it was written before the call. The call itself lands
later (the fake sleep lands it), as a Vertex AI call in flight does when its caller dies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from deployer.handler import Deployer
from mlops.core.events import ModelRegistered
from mlops.core.layout import intent_path, open_intent_marker
from mlops.ports.intents import DONE, FAILED, IN_FLIGHT, IntentLog
from mlops.testing.memory import InMemoryBlobStore, InMemoryModelEndpoint, InMemoryModelRegistry
from registrar.handler import Registrar

from .conftest import envelope_for, make_spec
from .test_handlers_registrar_deployer import MODEL, envelope, evaluated


class Crash(BaseException):
    """The process died here."""


class Clock:
    """A fake clock whose sleep may land a call that was in flight."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept = 0.0
        self.on_sleep: list[Callable[[], None]] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        while self.on_sleep:
            self.on_sleep.pop()()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def log_of(blobs: InMemoryBlobStore, clock: Clock, stage: str = "stage") -> IntentLog:
    return IntentLog(blobs, stage, clock=clock.time, sleep=clock.sleep)


# ------------------------------------------------------------------------------------------- IntentLog

def test_the_first_call_records_its_intent_and_its_outcome(blobs, clock):
    effects: dict[str, str] = {}
    made, intent = log_of(blobs, clock).once("ev-1", "make", effect=lambda: effects.get("x"),
                                              make=lambda: effects.setdefault("x", "id-1"), deadline_s=60,
                                              context={"seen": "before"})
    assert made == "id-1" and intent is not None
    assert (intent.state, intent.result, intent.context) == (DONE, "id-1", {"seen": "before"})
    assert blobs.exists(intent_path("stage", "ev-1"))


def test_an_effect_already_there_is_not_made_again(blobs, clock):
    calls = []
    made, intent = log_of(blobs, clock).once("ev-1", "make", effect=lambda: "id-0", make=lambda: calls.append(1) or "x",
                                              deadline_s=60)
    assert (made, intent, calls) == ("id-0", None, [])


def test_a_call_in_flight_is_waited_for_not_made_again(blobs, clock):
    effects: dict[str, str] = {}
    intents = log_of(blobs, clock)

    def crash_in_flight() -> str:
        clock.on_sleep.append(lambda: effects.setdefault("x", "id-1"))  # the call lands while we wait
        raise Crash

    with pytest.raises(Crash):
        intents.once("ev-1", "make", effect=lambda: effects.get("x"), make=crash_in_flight, deadline_s=60,
                     context={"previous": "7"})
    assert intents.get("ev-1").state == IN_FLIGHT
    calls = []
    made, intent = intents.once("ev-1", "make", effect=lambda: effects.get("x"),
                                make=lambda: calls.append(1) or "id-2", deadline_s=60, context={"previous": "8"})
    assert (made, calls) == ("id-1", [])
    assert intent.state == DONE and intent.context == {"previous": "7"}, "the first attempt's view is kept"
    assert 0 < clock.slept < 60


def test_a_call_that_never_lands_is_made_again_after_its_deadline(blobs, clock):
    intents = log_of(blobs, clock)
    with pytest.raises(Crash):
        intents.once("ev-1", "make", effect=lambda: None, make=lambda: (_ for _ in ()).throw(Crash()), deadline_s=30)
    made, intent = intents.once("ev-1", "make", effect=lambda: None, make=lambda: "id-2", deadline_s=30)
    assert made == "id-2" and intent.state == DONE
    assert clock.slept == pytest.approx(30)


def test_a_call_that_failed_with_an_answer_is_made_again_at_once(blobs, clock):
    intents = log_of(blobs, clock)

    def refused() -> str:
        raise RuntimeError("503 from the registry")

    with pytest.raises(RuntimeError):
        intents.once("ev-1", "make", effect=lambda: None, make=refused, deadline_s=300)
    assert intents.get("ev-1").state == FAILED and "503" in intents.get("ev-1").error
    made, _ = intents.once("ev-1", "make", effect=lambda: None, make=lambda: "id-2", deadline_s=300)
    assert made == "id-2" and clock.slept == 0


def test_open_lists_the_calls_in_flight_without_reading_the_closed_ones(blobs, clock):
    """A tick looks for open calls every few seconds: it must not read the stage's whole history."""
    log = log_of(blobs, clock)
    for number in range(5):
        log.once(f"done-{number}", "make", effect=lambda: None, make=lambda: "id", deadline_s=60)
    log.record(log.begin("open-1", "deploy", deadline_s=600))
    opened = log.begin("open-2", "deploy", deadline_s=600)
    reads: list[str] = []
    get = blobs.get
    blobs.get = lambda path: reads.append(path) or get(path)
    assert sorted(i.event_id for i in log.open()) == ["open-1", "open-2"]
    assert len(reads) == 2  # the open ones only
    log.record(replace(opened, state=DONE, result="deployed-2"))
    assert [i.event_id for i in log.open()] == ["open-1"]
    assert len(log.all()) == 7  # the history is all still there
    # A crash between closing an intent and removing its marker: listed no more, removed by its next write.
    blobs.put(open_intent_marker("stage", "done-0"), b"")
    assert [i.event_id for i in log.open()] == ["open-1"]


def test_an_event_id_that_is_not_a_plain_name_is_stored_under_its_hash():
    assert intent_path("registrar", "abc-1") == "operations/registrar/abc-1.json"
    hashed = intent_path("registrar", "../../specs/x")
    assert hashed.startswith("operations/registrar/sha256-") and ".." not in hashed


# ------------------------------------------------------------------------------------------- registrar

class SlowRegistry(InMemoryModelRegistry):
    """The first upload is in flight when the registrar dies; it lands during the next one's wait."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.crash_next = True

    def register_version(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        if self.crash_next:
            self.crash_next = False
            self.clock.on_sleep.append(lambda: InMemoryModelRegistry.register_version(self, *args, **kwargs))
            raise Crash
        return super().register_version(*args, **kwargs)


def test_a_registrar_killed_during_a_slow_upload_makes_one_version(blobs, clock):
    registry = SlowRegistry(clock)

    def registrar() -> Registrar:  # a fresh process each time
        return Registrar(registry, "predictor:test", "abc123", intents=log_of(blobs, clock, "registrar"),
                         register_deadline_s=60)

    with pytest.raises(Crash):
        registrar().handle(evaluated(1), envelope(1))
    assert registry.list_versions(MODEL) == [], "the upload is still in flight"
    [registered] = registrar().handle(evaluated(1), envelope(1))
    assert [v.version_id for v in registry.list_versions(MODEL)] == ["1"] == [registered.version_id]
    assert len(registry.register_calls) == 1
    assert registry.get_version(MODEL, "champion").version_id == "1"


# ------------------------------------------------------------------------------------------- deployer

class SlowEndpoint(InMemoryModelEndpoint):
    def __init__(self, registry: InMemoryModelRegistry, clock: Clock) -> None:
        super().__init__(registry)
        self.clock = clock
        self.crash_next = False

    def start_deploy(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        name = super().start_deploy(*args, **kwargs)
        if self.crash_next:
            # The DeployModel went out, then the deployer died before it recorded the operation's name.
            self.crash_next = False
            self.deploy_operation(name)  # Vertex carries on without it
            raise Crash
        return name


def test_a_deployer_killed_during_a_slow_deploy_deploys_once_and_announces_the_previous(blobs, specs, clock):
    registry = InMemoryModelRegistry()
    endpoints = SlowEndpoint(registry, clock)
    specs.put(make_spec())
    registrar = Registrar(registry, "predictor:test", "abc123")

    def deployer() -> Deployer:
        return Deployer(registry, endpoints, specs, blobs, intents=log_of(blobs, clock, "deployer"),
                        deploy_deadline_s=60)

    def registered(n: int) -> tuple[ModelRegistered, Any]:
        [event] = registrar.handle(evaluated(n), envelope(n))
        return event, envelope_for(event, event_id=f"registered-event-{n}")

    deployer().handle(*registered(1))
    deployer().finish_deploys()
    second = registered(2)
    endpoints.crash_next = True
    with pytest.raises(Crash):
        deployer().handle(*second)
    assert deployer().handle(*second) == []  # the redelivery finds the intent in flight: starts nothing
    [deployed] = deployer().finish_deploys()  # the tick finds the deploy landed on the endpoint
    endpoint = deployed.endpoint
    assert sorted(d.version_id for d in endpoints.deployments(endpoint)) == ["1", "2"]
    assert len(endpoints.start_deploy_calls) == 2, "version 2 was deployed once"
    assert deployed.previous_version == "1" and deployed.version_id == "2"
    assert {d.version_id: d.traffic_percent for d in deployed.deployed_models} == {"1": 0, "2": 100}
    # A plain redelivery afterwards announces the same deployment and deploys nothing.
    assert deployer().handle(*second) == [deployed]
    assert deployer().finish_deploys() == []
    assert len(endpoints.start_deploy_calls) == 2

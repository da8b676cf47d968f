"""Predictor: traffic routing, hot model swaps, and prediction logging off the request path."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlops.core.events import (
    DeployedModel,
    Envelope,
    Event,
    ModelDeployed,
    Prediction,
    PredictionMade,
    decode,
)
from mlops.testing.memory import InMemoryEventBus
from predictor.batcher import PredictionBatcher
from predictor.serving import ModelServer, NoModelDeployed, Routing, Served

KEYS = [f"request-{i}" for i in range(20_000)]


@dataclass
class StubModel:
    name: str
    is_classifier: bool = True

    def validate_instances(self, instances: list[dict[str, Any]]) -> list[str]:
        return []

    def predict(self, instances: list[dict[str, Any]]) -> tuple[list[Any], list[float | None]]:
        return [self.name] * len(instances), [None] * len(instances)


def served(version: str, percent: int) -> Served:
    return Served(version, f"dm-{version}", f"sha256:{version}", StubModel(f"v{version}"), percent)


# ---------------------------------------------------------------------------------------------- routing

@pytest.mark.parametrize("shares", [(90, 10), (50, 50), (70, 20, 10), (99, 1)], ids=str)
def test_pick_respects_the_traffic_split(shares):
    routing = Routing("endpoint", tuple(served(str(i + 1), p) for i, p in enumerate(shares)))
    counts = Counter(routing.pick(key).version_id for key in KEYS)
    for i, percent in enumerate(shares):
        observed = counts[str(i + 1)] / len(KEYS) * 100
        assert abs(observed - percent) < 1.5, (shares, counts)


def test_pick_is_sticky_per_request_key():
    routing = Routing("endpoint", (served("1", 50), served("2", 50)))
    first = [routing.pick(key).version_id for key in KEYS[:500]]
    assert first == [routing.pick(key).version_id for key in KEYS[:500]]
    # ...and across routing tables with the same split (a restarted predictor agrees)
    again = Routing("endpoint", (served("1", 50), served("2", 50)))
    assert first == [again.pick(key).version_id for key in KEYS[:500]]


def test_a_model_at_zero_percent_gets_no_traffic():
    routing = Routing("endpoint", (served("1", 0), served("2", 100)))
    assert {routing.pick(key).version_id for key in KEYS[:2000]} == {"2"}
    routing = Routing("endpoint", (served("1", 100), served("2", 0)))
    assert {routing.pick(key).version_id for key in KEYS[:2000]} == {"1"}


def test_with_no_traffic_anywhere_something_still_answers():
    routing = Routing("endpoint", (served("1", 0), served("2", 0)))
    assert routing.pick("any").version_id in {"1", "2"}


# ---------------------------------------------------------------------------------------------- model server

def deployed_event(*models: tuple[str, int], pipeline: str = "breast-cancer") -> ModelDeployed:
    return ModelDeployed(
        pipeline=pipeline, endpoint=f"endpoints/{pipeline}", model_id=pipeline, version_id=models[-1][0],
        action="deploy", previous_version=None,
        deployed_models=[DeployedModel(deployed_model_id=f"dm-{v}", version_id=v,
                                       artifact_uri=f"gs://b/models/{pipeline}/{v}/model.zip",
                                       artifact_checksum=f"sha256:{pipeline}-{v}", traffic_percent=p)
                         for v, p in models],
    )


class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, uri: str, checksum: str) -> StubModel:
        self.calls.append((uri, checksum))
        return StubModel(checksum)


def test_before_any_deployment_there_is_no_model():
    with pytest.raises(NoModelDeployed, match="breast-cancer"):
        ModelServer(CountingLoader(), bucket="b").routing("breast-cancer")


def test_apply_loads_the_models_and_serves_the_split():
    loader = CountingLoader()
    server = ModelServer(loader, bucket="b")
    server.apply(deployed_event(("1", 100)))
    routing = server.routing("breast-cancer")
    assert routing.endpoint == "endpoints/breast-cancer"
    assert [(s.version_id, s.deployed_model_id, s.traffic_percent) for s in routing.served] == [("1", "dm-1", 100)]
    assert loader.calls == [("gs://b/models/breast-cancer/1/model.zip", "sha256:breast-cancer-1")]
    assert server.pipelines() == {"breast-cancer": {"1": 100}}


def test_apply_swaps_routing_and_reuses_loaded_models_by_checksum():
    loader = CountingLoader()
    server = ModelServer(loader, bucket="b")
    server.apply(deployed_event(("1", 100)))
    old_routing = server.routing("breast-cancer")
    old_model = old_routing.served[0].model
    server.apply(deployed_event(("1", 0), ("2", 100)))
    assert [c for _, c in loader.calls] == ["sha256:breast-cancer-1", "sha256:breast-cancer-2"]  # v1 not reloaded
    routing = server.routing("breast-cancer")
    assert routing is not old_routing
    assert routing.served[0].model is old_model
    assert {routing.pick(k).version_id for k in KEYS[:200]} == {"2"}
    # A request that picked its routing before the swap finishes on the old table.
    assert old_routing.pick("in-flight").version_id == "1"
    server.apply(deployed_event(("1", 0), ("2", 100)))  # a redelivered model.deployed
    assert len(loader.calls) == 2


def test_models_no_pipeline_serves_are_forgotten():
    loader = CountingLoader()
    server = ModelServer(loader, bucket="b")
    server.apply(deployed_event(("1", 100)))
    server.apply(deployed_event(("2", 100)))
    server.apply(deployed_event(("1", 100)))  # v1 was dropped from the cache: loaded again
    assert [c for _, c in loader.calls] == ["sha256:breast-cancer-1", "sha256:breast-cancer-2",
                                            "sha256:breast-cancer-1"]


def test_pipelines_are_served_side_by_side():
    loader = CountingLoader()
    server = ModelServer(loader, bucket="b")
    server.apply(deployed_event(("1", 100)))
    server.apply(deployed_event(("7", 100), pipeline="iris"))
    server.apply(deployed_event(("2", 100)))  # a new breast-cancer version leaves iris alone
    assert server.pipelines() == {"breast-cancer": {"2": 100}, "iris": {"7": 100}}
    assert server.routing("iris").served[0].version_id == "7"


def test_a_failing_load_keeps_the_previous_routing():
    def loader(uri: str, checksum: str) -> StubModel:
        if checksum.endswith("-2"):
            raise OSError("artifact unreadable")
        return StubModel(checksum)

    server = ModelServer(loader, bucket="b")
    server.apply(deployed_event(("1", 100)))
    with pytest.raises(OSError):
        server.apply(deployed_event(("1", 0), ("2", 100)))
    assert server.pipelines() == {"breast-cancer": {"1": 100}}


def test_handle_deployed_applies_and_publishes_nothing():
    server = ModelServer(CountingLoader(), bucket="b")
    event = deployed_event(("1", 100))
    assert server.handle_deployed(event, Envelope("i", event.EVENT_TYPE, "s", "2026-11-22T06:00:00Z", "d", "r")) == []
    assert server.pipelines() == {"breast-cancer": {"1": 100}}


# ---------------------------------------------------------------------------------------------- batcher

def prediction(i: int) -> Prediction:
    return Prediction(request_id=f"req-{i}", model_version="1", features="{}", predicted_label="1", score=0.9,
                      latency_ms=0.5, predicted_at="2026-11-22T06:31:00.000000Z")


@dataclass
class FailingFirstBus(InMemoryEventBus):
    """Fails its first `failures` publishes (alternately raising and returning a failed future)."""

    failures: int = 0
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event: Event, envelope: Envelope) -> Future[str]:
        with self.lock:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                if self.failures % 2:
                    raise ConnectionError("pubsub unavailable")
                future: Future[str] = Future()
                future.set_exception(ConnectionError("pubsub unavailable"))
                return future
            return super().publish(event, envelope)


def logged(bus: InMemoryEventBus) -> list[tuple[str, list[str]]]:
    out = []
    for message in bus.on(PredictionMade.EVENT_TYPE):
        event = decode(PredictionMade.EVENT_TYPE, message.data)
        out.append((event.pipeline, [p.request_id for p in event.predictions]))
    return out


def wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def test_predictions_are_published_in_batches_per_pipeline(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=0.02, max_batch=100)
    try:
        batcher.add("breast-cancer", [prediction(1), prediction(2)])
        batcher.add("iris", [prediction(3)])
        batcher.add("breast-cancer", [prediction(4)])
        wait_until(lambda: batcher.published == 4)
    finally:
        batcher.close(timeout=2)
    assert sorted(logged(bus)) == [("breast-cancer", ["req-1", "req-2", "req-4"]), ("iris", ["req-3"])]
    for message in bus.messages:
        assert message.attributes["ce-source"] == "//mlops/services/predictor"
        assert message.attributes["pipeline"] in {"breast-cancer", "iris"}


def test_a_full_batch_is_published_without_waiting_for_the_interval(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=3)
    try:
        batcher.add("p1", [prediction(i) for i in range(3)])
        wait_until(lambda: batcher.published == 3, timeout=1.0)
    finally:
        batcher.close(timeout=2)


def test_batches_never_exceed_max_batch(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=4)
    batcher.close(timeout=2)  # the thread is gone: flush by hand from here on
    batcher.add("p1", [prediction(i) for i in range(10)])
    batcher.flush()
    assert [ids for _, ids in logged(bus)] == [[f"req-{i}" for i in range(0, 4)], [f"req-{i}" for i in range(4, 8)],
                                                ["req-8", "req-9"]]


def test_a_failed_publish_is_retried_without_losing_or_reordering_predictions():
    bus = FailingFirstBus(failures=3)
    batcher = PredictionBatcher(bus, "predictor", interval=0.01, max_batch=100)
    try:
        batcher.add("p1", [prediction(i) for i in range(5)])
        wait_until(lambda: batcher.published == 5)
        batcher.add("p1", [prediction(5)])
        wait_until(lambda: batcher.published == 6)
    finally:
        batcher.close(timeout=2)
    assert batcher.failed_publishes == 3
    ids = [i for _, batch in logged(bus) for i in batch]
    assert ids == [f"req-{i}" for i in range(6)]  # each exactly once, in order
    assert batcher.pending == 0


def test_close_drains_what_is_waiting(bus):
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.add("p1", [prediction(i) for i in range(7)])
    assert batcher.pending == 7
    started = time.monotonic()
    batcher.close(timeout=2)
    assert time.monotonic() - started < 1.0  # woken, not waiting out the interval
    assert batcher.pending == 0 and batcher.published == 7
    assert [ids for _, ids in logged(bus)] == [[f"req-{i}" for i in range(7)]]


def test_close_keeps_predictions_it_could_not_publish():
    bus = FailingFirstBus(failures=100)
    batcher = PredictionBatcher(bus, "predictor", interval=30, max_batch=500)
    batcher.add("p1", [prediction(i) for i in range(4)])
    batcher.close(timeout=2)
    assert batcher.pending == 4 and batcher.published == 0

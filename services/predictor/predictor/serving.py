"""What the predictor serves: per pipeline, the deployed model versions and their traffic split.

Pure logic: given a `model.deployed` event it loads (through an injected loader) every artifact it
does not already hold, then swaps the pipeline's routing table in one assignment, so requests in
flight finish on the old models and the next ones see the new split. No restart, no lock on the
request path.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from mlops.core.events import Envelope, ModelDeployed

log = structlog.get_logger("predictor")


class ServableModel(Protocol):
    def validate_instances(self, instances: list[dict[str, Any]]) -> list[str]: ...

    def predict(self, instances: list[dict[str, Any]]) -> tuple[list[Any], list[float | None]]: ...

    @property
    def is_classifier(self) -> bool: ...


ModelLoader = Callable[[str, str], ServableModel]  # (artifact_uri, checksum) -> model


@dataclass(frozen=True)
class Served:
    version_id: str
    deployed_model_id: str
    checksum: str
    model: ServableModel
    traffic_percent: int


@dataclass(frozen=True)
class Routing:
    endpoint: str
    served: tuple[Served, ...]

    def pick(self, request_key: str) -> Served:
        """A deployed model by traffic share; the same request key always lands on the same one."""
        live = [s for s in self.served if s.traffic_percent > 0] or list(self.served)
        bucket = int.from_bytes(hashlib.blake2b(request_key.encode(), digest_size=4).digest(), "big") % 100
        cumulative = 0
        for served in live:
            cumulative += served.traffic_percent
            if bucket < cumulative:
                return served
        return live[-1]


class NoModelDeployed(LookupError):
    pass


class ModelServer:
    def __init__(self, loader: ModelLoader):
        self._loader = loader
        self._routing: dict[str, Routing] = {}
        self._cache: dict[str, ServableModel] = {}  # checksum -> loaded model
        self._load_lock = threading.Lock()

    def routing(self, pipeline: str) -> Routing:
        routing = self._routing.get(pipeline)
        if routing is None:
            raise NoModelDeployed(f"no model is deployed for pipeline {pipeline!r} yet")
        return routing

    def pipelines(self) -> dict[str, dict[str, int]]:
        return {p: {s.version_id: s.traffic_percent for s in r.served} for p, r in self._routing.items()}

    def apply(self, deployed: ModelDeployed) -> None:
        with self._load_lock:
            served = []
            for model in deployed.deployed_models:
                loaded = self._cache.get(model.artifact_checksum)
                if loaded is None:
                    loaded = self._loader(model.artifact_uri, model.artifact_checksum)
                    self._cache[model.artifact_checksum] = loaded
                served.append(Served(model.version_id, model.deployed_model_id, model.artifact_checksum, loaded,
                                     model.traffic_percent))
            self._routing[deployed.pipeline] = Routing(deployed.endpoint, tuple(served))
            # Forget models no pipeline serves any more (in-flight requests hold their own reference).
            live = {s.checksum for routing in self._routing.values() for s in routing.served}
            self._cache = {c: m for c, m in self._cache.items() if c in live}
        log.info("serving", pipeline=deployed.pipeline, split={s.version_id: s.traffic_percent for s in served})

    def handle_deployed(self, deployed: ModelDeployed, envelope: Envelope) -> list:
        self.apply(deployed)
        return []

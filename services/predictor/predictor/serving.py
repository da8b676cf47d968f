"""What the predictor serves: per pipeline, the deployed model versions and their traffic split.

Pure logic: given a `model.deployed` event it loads (through an injected loader) every artifact it
does not already hold, then swaps the pipeline's routing table in one assignment, so requests in
flight finish on the old models and the next ones see the new split. No restart, no lock on the
request path.

Only artifacts of the project's layout are loaded (`gs://<bucket>/models/<pipeline>/...`), with the
checksum the event carries. One artifact that can never load (outside the layout, checksum
mismatch, not a model, missing: the loader raises `PermanentError`) must not take the pipeline
dark: the others of the event are served (a model at 0% takes all the traffic when it is the only
one left), or, when none loads, the previous routing stays; then `PermanentError` names each
refused version, so the event is dead-lettered with the reason. Any other failure (storage
unreachable) changes nothing and is raised as it is, for Pub/Sub to redeliver.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from mlops.core.errors import PermanentError
from mlops.core.events import Envelope, ModelDeployed
from mlops.core.layout import require_project_artifact
from mlops.ml.features import ServingPolicy

log = structlog.get_logger("predictor")


class ServableModel(Protocol):
    def serving_problems(self, instances: list[dict[str, Any]], policy: ServingPolicy) -> list[str]: ...

    def serving_notes(self, instance: dict[str, Any]) -> dict[str, list[str]]: ...

    def predict(self, instances: list[dict[str, Any]]) -> tuple[list[Any], list[float | None]]: ...

    @property
    def is_classifier(self) -> bool: ...


# (artifact_uri, checksum) -> model; raises PermanentError for an artifact that can never load.
ModelLoader = Callable[[str, str], ServableModel]


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
    def __init__(self, loader: ModelLoader, bucket: str):
        self._loader = loader
        self._bucket = bucket
        self._routing: dict[str, Routing] = {}
        self._cache: dict[str, ServableModel] = {}  # checksum -> loaded model
        self._load_lock = threading.Lock()

    def routing(self, pipeline: str) -> Routing:
        routing = self._routing.get(pipeline)
        if routing is None:
            raise NoModelDeployed(f"no model is deployed for pipeline {pipeline!r} yet")
        return routing

    def serves(self, pipeline: str) -> bool:
        return pipeline in self._routing

    def pipelines(self) -> dict[str, dict[str, int]]:
        return {p: {s.version_id: s.traffic_percent for s in r.served} for p, r in self._routing.items()}

    def _load(self, pipeline: str, uri: str, checksum: str) -> ServableModel:
        require_project_artifact(uri, bucket=self._bucket, pipeline=pipeline)
        loaded = self._cache.get(checksum)
        if loaded is None:
            loaded = self._loader(uri, checksum)
            self._cache[checksum] = loaded
        return loaded

    def apply(self, deployed: ModelDeployed) -> None:
        refused: list[str] = []
        with self._load_lock:
            served = []
            for model in deployed.deployed_models:
                try:
                    loaded = self._load(deployed.pipeline, model.artifact_uri, model.artifact_checksum)
                except PermanentError as error:
                    refused.append(f"version {model.version_id}: {error}")
                    log.error("artifact refused; serving the others", pipeline=deployed.pipeline,
                              version=model.version_id, uri=model.artifact_uri, error=str(error))
                    continue
                served.append(Served(model.version_id, model.deployed_model_id, model.artifact_checksum, loaded,
                                     model.traffic_percent))
            if served:
                self._routing[deployed.pipeline] = Routing(deployed.endpoint, tuple(served))
            # Forget models no pipeline serves any more (in-flight requests hold their own reference).
            live = {s.checksum for routing in self._routing.values() for s in routing.served}
            self._cache = {c: m for c, m in self._cache.items() if c in live}
        if served:
            log.info("serving", pipeline=deployed.pipeline, split={s.version_id: s.traffic_percent for s in served})
        if refused:
            kept = "serving the others" if served else (
                "keeping the previous routing" if deployed.pipeline in self._routing else "nothing to serve")
            raise PermanentError(f"model.deployed for {deployed.pipeline}: {len(refused)} of "
                                 f"{len(deployed.deployed_models)} artifacts refused ({kept}): " + "; ".join(refused))

    def handle_deployed(self, deployed: ModelDeployed, envelope: Envelope) -> list:
        self.apply(deployed)
        return []

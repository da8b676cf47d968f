"""Unit-test fixtures: an isolated environment and the in-memory ports.

Everything here is in-process and instant: no emulator, no network, no sleeping. The in-memory
ports (`mlops.testing.memory`) pass the same contract suites as the real adapters (tests/contract),
so a handler cannot pass here by relying on something the real adapters do not do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.events import Envelope, Event
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import PipelineSpec
from mlops.core.topology import SERVICES
from mlops.ports.specs import SpecStore
from mlops.testing.memory import (
    InMemoryBlobStore,
    InMemoryEventBus,
    InMemoryModelEndpoint,
    InMemoryModelRegistry,
    InMemoryWarehouse,
    Published,
    ScriptedTrainerBackend,
)

# --------------------------------------------------------------------------------------------------
# Environment isolation
# --------------------------------------------------------------------------------------------------

_SERVICE_PREFIXES = tuple(s.name.upper().replace("-", "_") + "_" for s in SERVICES)
_ISOLATED_PREFIXES = ("MLOPS_", "AIP_", *_SERVICE_PREFIXES)
_ISOLATED_NAMES = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees (or leaks) MLOPS_*, <SERVICE>_*, AIP_*, Cloud Run or emulator variables."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name.endswith("_EMULATOR_HOST") or name in _ISOLATED_NAMES:
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------
# In-memory ports
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def bus() -> InMemoryEventBus:
    return InMemoryEventBus()


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore("test-bucket")


@pytest.fixture
def warehouse() -> InMemoryWarehouse:
    return InMemoryWarehouse(project="test-project")


@pytest.fixture
def specs(blobs: InMemoryBlobStore) -> SpecStore:
    return SpecStore(blobs, cache_seconds=0)


SPEC_DEFAULTS: dict[str, Any] = {
    "name": "breast-cancer",
    "source": {"table": "breast_cancer", "label": "malignant", "features": ["mean_radius", "mean_texture"]},
    "model": {"type": "LOGISTIC_REG", "options": {"l2_reg": 1.0}},
    "retrain": {"new_rows_fraction": 0.5, "min_rows": 10},
    "promotion": {"metric": "roc_auc", "minimum": 0.8, "min_gain": 0.01},
    "deployment": {"canary_percent": 0, "keep_previous": True},
}


def spec_data(**sections: Any) -> dict[str, Any]:
    """A valid spec as plain data; each keyword replaces (dict: updates) one top-level section."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SPEC_DEFAULTS.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_spec(**sections: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(spec_data(**sections))


def envelope_for(event: Event, event_id: str | None = None, run_id: str = "run-1", causation_id: str = "",
                 service: str = "test") -> Envelope:
    envelope = new_envelope(event, service, run_id=run_id)
    changes: dict[str, str] = {"causation_id": causation_id}
    if event_id is not None:
        changes["id"] = event_id
    return envelope.with_changes(**changes)


# --------------------------------------------------------------------------------------------------
# A bus that fails on chosen topics, synchronously or through its future
# --------------------------------------------------------------------------------------------------

@dataclass
class FlakyBus(InMemoryEventBus):
    """InMemoryEventBus whose publishes to `failing_topics` fail (raise now, or return a failed future)."""

    failing_topics: set[str] = field(default_factory=set)
    fail_in_future: bool = False
    failures: int = 0

    def publish_raw(self, topic_id: str, data: bytes, attributes: dict[str, str]) -> Future[str]:
        if topic_id in self.failing_topics:
            self.failures += 1
            error = ConnectionError(f"publish to {topic_id} failed")
            if not self.fail_in_future:
                raise error
            future: Future[str] = Future()
            future.set_exception(error)
            # publish() sets .event on the last message: give it one to set, outside the record.
            self.messages.append(_Discarded(topic_id, data, dict(attributes)))
            return future
        return super().publish_raw(topic_id, data, attributes)

    def on(self, topic: str) -> list:
        return [m for m in self.messages if m.topic == topic and not isinstance(m, _Discarded)]

    @property
    def delivered(self) -> list:
        return [m for m in self.messages if not isinstance(m, _Discarded)]


class _Discarded(Published):
    """A message whose publish failed: kept only so `publish()` can annotate it."""


# --------------------------------------------------------------------------------------------------
# Model registry, endpoint and trainer backend (in mlops.testing.memory, checked by tests/contract)
# --------------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def registry() -> InMemoryModelRegistry:
    return InMemoryModelRegistry()


@pytest.fixture
def endpoints(registry: InMemoryModelRegistry) -> InMemoryModelEndpoint:
    """Deploys only versions `registry` has, as Vertex AI does."""
    return InMemoryModelEndpoint(registry)


@pytest.fixture
def backend(warehouse: InMemoryWarehouse, blobs: InMemoryBlobStore) -> ScriptedTrainerBackend:
    """Trains on snapshots of `warehouse` (seed one with `load_snapshot`), stores artifacts in `blobs`."""
    return ScriptedTrainerBackend(warehouse, blobs)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """A clock that advances one second per call, so snapshot records are strictly ordered."""
    ticks = iter(range(10**6))
    return lambda: T0 + timedelta(seconds=next(ticks))

"""What the predictor serves: one model version, loaded once at start.

On Vertex AI each deployed model version runs in its own container, and the endpoint's traffic
split picks the container: so a predictor holds exactly one model, never swaps it, and routes
nothing. A new version is a new container (the deployer's DeployModel), not a message to this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mlops.ml.features import ServingPolicy


class ServableModel(Protocol):
    def serving_problems(self, instances: list[dict[str, Any]], policy: ServingPolicy) -> list[str]: ...

    def serving_notes(self, instance: dict[str, Any]) -> dict[str, list[str]]: ...

    def predict(self, instances: list[dict[str, Any]]) -> tuple[list[Any], list[float | None]]: ...

    @property
    def is_classifier(self) -> bool: ...


@dataclass(frozen=True)
class Served:
    """The model this container serves and who it is on the endpoint (recorded with each prediction)."""

    pipeline: str
    version_id: str
    deployed_model_id: str
    checksum: str
    model: ServableModel

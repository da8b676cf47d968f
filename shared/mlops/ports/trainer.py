"""The trainer-backend port: train a spec's model on a snapshot, and score a model on held-out rows.

Two adapters, picked by the `MLOPS_TRAINER_BACKEND` setting and never by an `if local:` in a service:
`sklearn` (the default; runs anywhere, artifacts in Cloud Storage) and `bqml` (BigQuery ML's
`CREATE MODEL` / `ML.EVALUATE` in the cloud). Both speak BigQuery ML's model types, option names and
metric names, so a spec and the events it produces mean the same thing whichever trained it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mlops.core.spec import PipelineSpec


@dataclass(frozen=True)
class TrainedArtifact:
    artifact_uri: str
    checksum: str
    train_rows: int
    train_seconds: float
    hyperparameters: dict[str, str]  # BigQuery ML option names -> JSON-encoded values, as resolved


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    eval_rows: int


class TrainerBackend(Protocol):
    name: str

    def warm_up(self) -> None:
        """Pay one-off start-up costs before the service reports healthy (may do nothing)."""

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        """Fit on the training side of the snapshot's split; store the artifact under `artifact_dir`.

        `train_rows` counts the training side only; `hyperparameters` are the spec's options as
        validated, by BigQuery ML option name, each value JSON-encoded."""

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum: str, snapshot_table: str) -> Evaluation:
        """ML.EVALUATE-style metrics of a model on the eval side of the snapshot's split, under
        BigQuery ML's metric names for the model type. Deterministic: the same model on the same
        snapshot scores the same. A model whose checksum is not `checksum` is refused."""

    def is_permanent(self, error: Exception) -> bool:
        """Whether `error`, raised by `train` or `evaluate`, would recur on every retry of the same
        input (bad options or rows, a missing column or snapshot, an artifact that fails its
        checksum): the service then dead-letters the event at once instead of letting Pub/Sub retry.
        Anything else (a network error, a quota) is worth a retry and answers False."""

"""trainer: on `data.ready`, train the pipeline's model on that snapshot and announce the candidate.

Idempotent on the input event: the candidate id and artifact folder derive from the event id, and a
record written after the artifact short-cuts a redelivery to the same announcement. The record sits
beside the folder (`models/<pipeline>/<candidate>.trained.json`), not in it: every file in the folder
is part of the artifact's checksum and is downloaded by the serving container.
"""

from __future__ import annotations

import structlog

from mlops.core import layout
from mlops.core.errors import PermanentError
from mlops.core.events import DataReady, Envelope, ModelTrained
from mlops.ports.blobs import BlobStore
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.ports.trainer import TrainerBackend

log = structlog.get_logger("trainer")

RECORD_SUFFIX = ".trained.json"


def candidate_id(data_version: str, event_id: str) -> str:
    return f"{data_version}-{event_id.replace('-', '')[:8]}"


class Trainer:
    def __init__(self, backend: TrainerBackend, specs: SpecStore, blobs: BlobStore):
        self._backend = backend
        self._specs = specs
        self._blobs = blobs

    def handle(self, ready: DataReady, envelope: Envelope) -> list[ModelTrained]:
        candidate = candidate_id(ready.data_version, envelope.id)
        artifact_dir = layout.artifact_dir(ready.pipeline, candidate)
        record = f"{artifact_dir}{RECORD_SUFFIX}"
        if self._blobs.exists(record):
            log.info("already trained for this event; announcing it again", candidate=candidate)
            return [ModelTrained.model_validate_json(self._blobs.get(record))]
        try:
            spec = self._specs.get(ready.pipeline)
        except UnknownPipeline as error:
            raise PermanentError(f"cannot train {ready.pipeline}: {error}") from error
        try:
            artifact = self._backend.train(spec, ready.snapshot_table, artifact_dir)
        except Exception as error:
            if self._backend.is_permanent(error):
                raise PermanentError(f"cannot train {ready.pipeline} on {ready.snapshot_table}: {error}") from error
            raise
        trained = ModelTrained(
            pipeline=ready.pipeline, candidate_version=candidate, model_type=spec.model.type,
            backend=self._backend.name, artifact_uri=artifact.artifact_uri, artifact_checksum=artifact.checksum,
            hyperparameters=artifact.hyperparameters, feature_columns=spec.source.features,
            label_column=spec.source.label, snapshot_table=ready.snapshot_table, data_version=ready.data_version,
            train_rows=artifact.train_rows, train_seconds=round(artifact.train_seconds, 6),
        )
        self._blobs.put(record, trained.model_dump_json().encode(), "application/json")
        log.info("trained", candidate=candidate, rows=artifact.train_rows, seconds=round(artifact.train_seconds, 3))
        return [trained]

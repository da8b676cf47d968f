"""A trainer backend for unit tests: the real split and real artifact checks, scripted metrics.

`ScriptedTrainerBackend` does what the trainer and evaluator rely on a backend for, except fitting a
model: it reads the snapshot through the warehouse port (so a missing snapshot or column fails as it
does on the real backends), splits it with the loop's own split (`mlops.ml.training.split_for`), so
row counts are the real ones, stores a small artifact through the blob port and checks its checksum
on evaluate. Only the metrics are scripted: `scores[artifact_uri]`, else `default_metrics`, else a
fixed set under BigQuery ML's metric names for the spec's model family. It passes the trainer-backend
contract suite beside the scikit-learn backend.

Test controls: `train_error` (raised by the next trains), `fail_on[artifact_uri]` (raised by evaluate
for that artifact), `train_seconds`; inspection: `train_calls`, `evaluate_calls`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mlops.core.errors import PermanentError
from mlops.core.spec import ROW_ID_COLUMN, PipelineSpec
from mlops.ml.artifact import folder_checksum, read_folder, verify_checksum, write_folder
from mlops.ml.errors import InputError, TrainingDataError, require_columns
from mlops.ml.options import ModelOptions, parse_model_options
from mlops.ml.split import SPLIT_BUCKET_COLUMN, Split
from mlops.ml.training import resolve_split, split_for
from mlops.ports.blobs import BlobNotFound, BlobStore
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.ports.warehouse import Row, Warehouse

ARTIFACT_FILE = "model.json"  # in an artifact folder, as the real backends write one
CLASSIFIER_SCORES = {"precision": 0.8, "recall": 0.75, "accuracy": 0.85, "f1_score": 0.77, "log_loss": 0.4,
                     "roc_auc": 0.9}
REGRESSOR_SCORES = {"mean_absolute_error": 2.0, "mean_squared_error": 6.5, "mean_squared_log_error": 0.05,
                    "median_absolute_error": 1.5, "r2_score": 0.7, "explained_variance": 0.71}


class ScriptedTrainerBackend:
    name = "scripted"

    def __init__(self, warehouse: Warehouse, blobs: BlobStore,
                 default_metrics: Mapping[str, float] | None = None) -> None:
        self._warehouse = warehouse
        self._blobs = blobs
        self.default_metrics = dict(default_metrics) if default_metrics is not None else None
        self.scores: dict[str, dict[str, float]] = {}
        self.fail_on: dict[str, Exception] = {}
        self.train_error: Exception | None = None
        self.train_seconds = 0.0123456789
        self.train_calls: list[tuple[str, str, str]] = []
        self.evaluate_calls: list[tuple[str, str]] = []

    # -- the port ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Nothing to load: no model is ever fitted here."""

    def is_permanent(self, error: Exception) -> bool:
        # The scikit-learn backend's rule, so a handler test sees the classification it will get.
        return isinstance(error, (InputError, BlobNotFound, PermanentError))

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        self.train_calls.append((spec.name, snapshot_table, artifact_dir))
        if self.train_error is not None:
            raise self.train_error
        options = parse_model_options(spec.model.type, spec.model.options)
        split = self._split(spec, options, snapshot_table)
        if not any(row.get(spec.source.label) is not None for row in split.train_rows):
            raise TrainingDataError(f"no training rows with a non-NULL label {spec.source.label!r}")
        hyperparameters = {k: json.dumps(v) for k, v in options.explicit().items()}
        # What a model of this spec, on this snapshot, for this candidate would be: the same bytes
        # for the same inputs, like a deterministic fit.
        data = json.dumps({
            "scripted_model": spec.name, "model_type": spec.model.type, "options": hyperparameters,
            "features": list(spec.source.features), "label": spec.source.label, "snapshot_table": snapshot_table,
            "artifact_dir": artifact_dir, "train_rows": len(split.train_rows),
        }, sort_keys=True).encode()
        uri = write_folder(self._blobs, artifact_dir, {ARTIFACT_FILE: data})
        return TrainedArtifact(artifact_uri=uri, checksum=folder_checksum({ARTIFACT_FILE: data}),
                               train_rows=len(split.train_rows),
                               train_seconds=self.train_seconds, hyperparameters=hyperparameters)

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum: str, snapshot_table: str) -> Evaluation:
        self.evaluate_calls.append((artifact_uri, snapshot_table))
        if artifact_uri in self.fail_on:
            raise self.fail_on[artifact_uri]
        verify_checksum(read_folder(self._blobs, artifact_uri), checksum)
        split = self._split(spec, parse_model_options(spec.model.type, spec.model.options), snapshot_table)
        return Evaluation(metrics=dict(self._metrics(spec, artifact_uri)), eval_rows=len(split.eval_rows))

    # -- helpers -------------------------------------------------------------------------------
    def _metrics(self, spec: PipelineSpec, artifact_uri: str) -> Mapping[str, float]:
        if artifact_uri in self.scores:
            return self.scores[artifact_uri]
        if self.default_metrics is not None:
            return self.default_metrics
        return CLASSIFIER_SCORES if spec.model.is_classifier else REGRESSOR_SCORES

    def _split(self, spec: PipelineSpec, options: ModelOptions, snapshot_table: str) -> Split:
        # The scikit-learn backend's split of the whole snapshot: by the bucket the warehouse stored
        # when the snapshot has one (AUTO_SPLIT counting every row), else as before that column.
        rows = self._rows(spec, options, snapshot_table)
        stored = bool(rows) and SPLIT_BUCKET_COLUMN in rows[0]
        plan = resolve_split(spec.model.type, options, len(rows), bucket_column=SPLIT_BUCKET_COLUMN) if stored else None
        return split_for(spec.model.type, options, rows, plan=plan)

    def _rows(self, spec: PipelineSpec, options: ModelOptions, snapshot_table: str) -> list[Row]:
        extra = [options.data_split_col] if options.data_split_col else []
        columns = list(dict.fromkeys([ROW_ID_COLUMN, *spec.source.features, spec.source.label, *extra]))
        declared = self._warehouse.table_columns(snapshot_table)
        require_columns(snapshot_table, declared, columns)
        bucket = [SPLIT_BUCKET_COLUMN] if SPLIT_BUCKET_COLUMN in dict(declared or []) else []
        return self._warehouse.read_rows(snapshot_table, [*columns, *bucket])

"""TrainerBackend trained where the service runs: BigQuery ML's model family, BigQuery ML's formats.

Reads the snapshot from the warehouse, trains with `mlops.ml.training` (same model types, option and
metric names as BigQuery ML: linear models with scikit-learn, trees with XGBoost) and writes the
artifact folder in Cloud Storage: the portable linear artifact or BigQuery ML's XGBoost export layout
(`mlops.ml.artifact`). Evaluation loads that folder with the predictor's own loader, verified against
its checksum, so the metrics that gate a model come from the bytes that will serve it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from mlops.core.errors import PermanentError
from mlops.core.layout import require_project_artifact
from mlops.core.spec import ROW_ID_COLUMN, PipelineSpec
from mlops.ml.artifact import folder_checksum, load_artifact, read_folder, write_folder
from mlops.ml.errors import InputError, require_columns
from mlops.ml.metrics import evaluate
from mlops.ml.options import parse_model_options
from mlops.ml.training import split_for, train
from mlops.ports.blobs import BlobNotFound, BlobStore
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.ports.warehouse import Warehouse

CACHED_SNAPSHOTS = 4


class SklearnBackend:
    name = "sklearn"

    def __init__(self, warehouse: Warehouse, blobs: BlobStore):
        self._warehouse = warehouse
        self._blobs = blobs
        # Snapshots are immutable, so their rows can be kept: the evaluator scores the candidate and
        # the champion on the same snapshot, and reading it once halves its warehouse time.
        self._snapshots: OrderedDict[tuple[str, tuple[str, ...]], list[dict]] = OrderedDict()
        self._lock = threading.Lock()

    def _rows(self, spec: PipelineSpec, snapshot_table: str) -> list[dict]:
        split_column = parse_model_options(spec.model.type, spec.model.options).data_split_col
        columns = tuple(dict.fromkeys((ROW_ID_COLUMN, *spec.source.features, spec.source.label,
                                       *([split_column] if split_column else []))))
        key = (snapshot_table, columns)
        with self._lock:
            if key in self._snapshots:
                self._snapshots.move_to_end(key)
                return self._snapshots[key]
        require_columns(snapshot_table, self._warehouse.table_columns(snapshot_table), list(columns))
        rows = self._warehouse.read_rows(snapshot_table, list(columns))
        with self._lock:
            self._snapshots[key] = rows
            while len(self._snapshots) > CACHED_SNAPSHOTS:
                self._snapshots.popitem(last=False)
        return rows

    def is_permanent(self, error: Exception) -> bool:
        # Options, rows, split or artifact at fault (mlops.ml's InputError family, checksum mismatch
        # included: the same bytes fail the same check), an artifact that is not there at all, or
        # one outside the project's layout (ArtifactOutsideLayout, a PermanentError).
        return isinstance(error, (InputError, BlobNotFound, PermanentError))

    def warm_up(self) -> None:
        from mlops.ml.warmup import warm_up

        warm_up()

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        model = train(spec.model.type, spec.model.options, self._rows(spec, snapshot_table),
                      spec.source.features, spec.source.label, seed=spec.model.seed)
        uri = write_folder(self._blobs, artifact_dir, model.files)
        return TrainedArtifact(
            artifact_uri=uri, checksum=folder_checksum(model.files), train_rows=model.training.rows_train,
            train_seconds=model.training.train_seconds or 0.0,
            hyperparameters={k: json.dumps(v) for k, v in model.options.explicit().items()},
        )

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum_: str, snapshot_table: str) -> Evaluation:
        # Only the project's own artifacts are read (a forged event could name any bucket): raises
        # ArtifactOutsideLayout, a PermanentError, before a byte is fetched.
        require_project_artifact(artifact_uri, bucket=self._blobs.bucket, pipeline=spec.name)
        model = load_artifact(read_folder(self._blobs, artifact_uri), expected_checksum=checksum_)
        rows = self._rows(spec, snapshot_table)
        # The split the current spec makes of this snapshot: the same rows for candidate and champion.
        held_out = split_for(spec.model.type, parse_model_options(spec.model.type, spec.model.options), rows).eval_rows
        return Evaluation(metrics=evaluate(model, held_out), eval_rows=len(held_out))

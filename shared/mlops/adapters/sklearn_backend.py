"""TrainerBackend trained where the service runs: BigQuery ML's model family, BigQuery ML's formats.

Reads the snapshot from the warehouse, trains with `mlops.ml.training` (same model types, option and
metric names as BigQuery ML: linear models with scikit-learn, trees with XGBoost) and writes the
artifact folder in Cloud Storage: the portable linear artifact or BigQuery ML's XGBoost export layout
(`mlops.ml.artifact`). Evaluation loads that folder with the predictor's own loader, verified against
its checksum, so the metrics that gate a model come from the bytes that will serve it.

Reads. Training reads the whole snapshot (it needs both sides). Evaluation reads only the held-out
rows where a row restriction can select them (`mlops.ml.split.eval_restriction`): a RANDOM/AUTO_SPLIT
split by the bucket the warehouse stored with the snapshot (`_split_bucket < threshold`), a CUSTOM one
by its column, so its read grows with the rows it scores, not with the snapshot; AUTO_SPLIT's
fraction needs the snapshot's row count first (one COUNT). A snapshot taken before the bucket column
existed is split by the blake2b rule it was trained with, over a read of every row, so replaying an
old training event reproduces its split and metrics. The candidate and the champion are scored from
one read: rows are cached per snapshot, columns and restriction.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

from mlops.core.errors import PermanentError
from mlops.core.layout import require_project_artifact
from mlops.core.spec import ROW_ID_COLUMN, PipelineSpec
from mlops.ml.artifact import folder_checksum, load_artifact, read_folder, write_folder
from mlops.ml.errors import InputError, require_columns
from mlops.ml.metrics import evaluate
from mlops.ml.options import ModelOptions, option_value, parse_model_options, parse_model_type
from mlops.ml.split import SPLIT_BUCKET_COLUMN, DataSplitMethod, SplitError, eval_restriction, split_rows
from mlops.ml.training import resolve_split, split_for, train
from mlops.ports.blobs import BlobNotFound, BlobStore
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.ports.warehouse import Condition, Operator, Warehouse

CACHED_SNAPSHOTS = 4


class SklearnBackend:
    name = "sklearn"

    def __init__(self, warehouse: Warehouse, blobs: BlobStore):
        self._warehouse = warehouse
        self._blobs = blobs
        # Snapshots are immutable, so their rows can be kept: the evaluator scores the candidate and
        # the champion on the same snapshot, and reading it once halves its warehouse time.
        self._snapshots: OrderedDict[tuple[str, tuple[str, ...], tuple[Condition, ...]], list[dict]] = OrderedDict()
        self._lock = threading.Lock()

    def _columns(self, spec: PipelineSpec, options: ModelOptions, snapshot_table: str) -> tuple[list[str], dict[str, str]]:
        """The columns to read of a snapshot (row key, features, label, split column, the stored bucket
        when the snapshot has one) and the snapshot's declared (name -> type) columns."""
        declared = self._warehouse.table_columns(snapshot_table)
        wanted = [ROW_ID_COLUMN, *spec.source.features, spec.source.label,
                  *([options.data_split_col] if options.data_split_col else [])]
        require_columns(snapshot_table, declared, wanted)
        assert declared is not None
        types = dict(declared)
        bucket = [SPLIT_BUCKET_COLUMN] if SPLIT_BUCKET_COLUMN in types else []
        return list(dict.fromkeys((*wanted, *bucket))), types

    def _read(self, snapshot_table: str, columns: list[str], where: tuple[Condition, ...] = ()) -> list[dict]:
        key = (snapshot_table, tuple(columns), where)
        with self._lock:
            if key in self._snapshots:
                self._snapshots.move_to_end(key)
                return self._snapshots[key]
        rows = self._warehouse.read_rows(snapshot_table, columns, where=list(where))
        with self._lock:
            self._snapshots[key] = rows
            while len(self._snapshots) > CACHED_SNAPSHOTS:
                self._snapshots.popitem(last=False)
        return rows

    def training_rows(self, spec: PipelineSpec, snapshot_table: str) -> list[dict]:
        """Every row of the snapshot, with the columns training reads (what `train` reads first)."""
        columns, _ = self._columns(spec, parse_model_options(spec.model.type, spec.model.options), snapshot_table)
        return self._read(snapshot_table, columns)

    def held_out_rows(self, spec: PipelineSpec, snapshot_table: str) -> list[Mapping[str, Any]]:
        """The eval side of the split the current spec makes of the snapshot: the same rows for a
        candidate and its champion. Read alone when a row restriction selects them."""
        kind = spec.model.type
        options = parse_model_options(kind, spec.model.options)
        columns, types = self._columns(spec, options, snapshot_table)
        bucket = SPLIT_BUCKET_COLUMN if SPLIT_BUCKET_COLUMN in types else None
        method = DataSplitMethod(option_value(parse_model_type(kind), options, "data_split_method"))
        if bucket is None and method in (DataSplitMethod.RANDOM, DataSplitMethod.AUTO_SPLIT):
            # Taken before snapshots stored a bucket: split by the key's blake2b hash, as it was trained
            # (no row restriction computes it), AUTO_SPLIT's fraction from the rows read.
            return split_for(kind, options, self._read(snapshot_table, columns)).eval_rows
        # Only AUTO_SPLIT's fraction depends on the row count: the snapshot's, as the trainer counts it.
        row_count = (self._warehouse.source_status(snapshot_table, None).total_rows
                     if method is DataSplitMethod.AUTO_SPLIT else 0)
        plan = resolve_split(kind, options, row_count, bucket_column=bucket)
        if plan.split_column is not None and plan.method is DataSplitMethod.CUSTOM \
                and types.get(plan.split_column) != "BOOL":
            # Said before the read: a row restriction on a column of another type fails in the warehouse.
            raise SplitError(f"CUSTOM split column {plan.split_column!r} must be BOOL, the snapshot's is "
                             f"{types.get(plan.split_column)}")
        where: tuple[Condition, ...] = ()
        if (restriction := eval_restriction(plan)) is not None:
            column, op, value = restriction
            where = (Condition(column, cast("Operator", op), value),)
        return split_rows(self._read(snapshot_table, columns, where), plan).eval_rows

    def is_permanent(self, error: Exception) -> bool:
        # Options, rows, split or artifact at fault (mlops.ml's InputError family, checksum mismatch
        # included: the same bytes fail the same check), an artifact that is not there at all, or
        # one outside the project's layout (ArtifactOutsideLayout, a PermanentError).
        return isinstance(error, (InputError, BlobNotFound, PermanentError))

    def warm_up(self) -> None:
        from mlops.ml.warmup import warm_up

        warm_up()

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        options = parse_model_options(spec.model.type, spec.model.options)
        rows = self.training_rows(spec, snapshot_table)
        # With a stored bucket, the split is resolved over the whole snapshot (every row counts toward
        # AUTO_SPLIT's fraction, as the evaluator and BigQuery ML count); without, as it always was.
        plan = (resolve_split(spec.model.type, options, len(rows), bucket_column=SPLIT_BUCKET_COLUMN)
                if rows and SPLIT_BUCKET_COLUMN in rows[0] else None)
        model = train(spec.model.type, options, rows, spec.source.features, spec.source.label,
                      seed=spec.model.seed, split_plan=plan)
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
        held_out = self.held_out_rows(spec, snapshot_table)
        return Evaluation(metrics=evaluate(model, held_out), eval_rows=len(held_out))

"""TrainerBackend on BigQuery ML: `CREATE MODEL` where the data lives, a servable folder out of it,
`ML.EVALUATE` on held-out rows.

Selected with `MLOPS_TRAINER_BACKEND=bqml` (the cloud); the local stack cannot run it because
bqemulator accepts CREATE MODEL but trains nothing. The SQL comes from `mlops.adapters.bqml`, which
renders the same options and the same row-key split as the local backend.

Training writes the same artifact folder as the local backend (`mlops.ml.artifact`), at
`gs://<bucket>/models/<pipeline>/<candidate>`, so registrar, deployer and predictor never see a
`bq://` model:
- LINEAR_REG / LOGISTIC_REG: `ML.WEIGHTS(..., STRUCT(FALSE AS standardize))` (weights on the raw
  features) and `ML.FEATURE_INFO` (the means NULLs are imputed with) become the portable linear
  artifact `model.json`;
- trees: `EXPORT MODEL` writes BigQuery ML's XGBoost layout into the folder; the backend adds the
  model card `mlops_model.json` (and re-saves a legacy binary booster as UBJ where the installed
  xgboost can, see `mlops.ml.trees`).
The checksum is the folder's (`folder_checksum`), taken after the last write.

The BigQuery ML model stays for `ML.EVALUATE` (the candidate's now, the champion's on later runs)
and is named after the folder, so an artifact URI finds its model. Each time a model is trained or
evaluated its expiration is pushed `expire_days` ahead (`ALTER MODEL ... expiration_timestamp`): a
rejected candidate disappears on its own, a champion in use never does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from google.api_core import exceptions as gexc

from mlops.adapters.bqml import (
    create_model_sql,
    distinct_labels_sql,
    eval_rows_sql,
    evaluate_sql,
    expire_model_sql,
    export_model_sql,
    feature_info_sql,
    weights_sql,
)
from mlops.core.errors import PermanentError
from mlops.core.layout import require_project_artifact
from mlops.core.spec import PipelineSpec
from mlops.core.sql import quote_qualified
from mlops.ml.artifact import folder_checksum, read_folder, verify_checksum, write_folder
from mlops.ml.errors import InputError
from mlops.ml.linear import LINEAR_FILE, feature_specs_of, from_ml_weights
from mlops.ml.options import ModelType, parse_model_options
from mlops.ml.served import ModelCard
from mlops.ml.trees import BOOSTER_FILE, CARD_FILE, TREE_METADATA_FILE, card_file, is_tree_model, port_legacy_booster
from mlops.ports.blobs import BlobNotFound, BlobStore
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.ports.warehouse import SqlReader

# BigQuery job error reasons (google.cloud.bigquery.job.base._ERROR_REASON_TO_EXCEPTION) that a 400
# carries for a statement BigQuery will never run: bad SQL, a column or option it rejects. Other 400
# reasons (resourceInUse, tableUnavailable, resourcesExceeded, billingTierLimitExceeded) can pass.
PERMANENT_BAD_REQUEST_REASONS = frozenset({"invalid", "invalidQuery"})
DEFAULT_EXPIRE_DAYS = 30


class NotAnArtifactFolder(InputError):
    """An artifact URI that names no artifact folder of this pipeline: the same URI never will."""


class BigQueryMLBackend:
    name = "bqml"

    def __init__(self, warehouse: SqlReader, models_dataset: str, blobs: BlobStore, *,
                 expire_days: int = DEFAULT_EXPIRE_DAYS):
        self._warehouse = warehouse
        self._models_dataset = models_dataset
        self._blobs = blobs
        self._expire_days = expire_days

    def warm_up(self) -> None:
        """Nothing to warm: BigQuery does the work."""

    def is_permanent(self, error: Exception) -> bool:
        """Bad options, rows or artifact (mlops.ml's input errors, a checksum mismatch among them, and
        a folder outside the layout); a statement BigQuery rejects as invalid (a 400 for bad SQL, or a
        column the snapshot lacks); or a snapshot, dataset, model or folder that does not exist (404:
        none is recreated under the same name). The client's error may arrive wrapped by the warehouse
        adapter: its causes are looked at too."""
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, InputError | gexc.NotFound | BlobNotFound | PermanentError):
                return True
            if isinstance(cause, gexc.BadRequest):
                reasons = {e.get("reason") for e in cause.errors if isinstance(e, dict)} - {None}
                return not reasons or bool(reasons & PERMANENT_BAD_REQUEST_REASONS)
            cause = cause.__cause__
        return False

    # -- naming --------------------------------------------------------------------------------
    def model_fqn(self, spec: PipelineSpec, artifact_uri: str) -> str:
        """The BigQuery ML model behind an artifact folder of this pipeline (named after its candidate)."""
        path = require_project_artifact(artifact_uri, bucket=self._blobs.bucket, pipeline=spec.name)
        segments = path.removesuffix("/").split("/")
        if len(segments) != 3:
            raise NotAnArtifactFolder(f"{artifact_uri!r} is not an artifact folder gs://<bucket>/models/"
                                      f"{spec.name}/<candidate>")
        candidate = segments[2].replace("-", "_").replace(".", "_")
        return self._warehouse.qualified(f"{spec.name.replace('-', '_')}__{candidate}", self._models_dataset)

    def _row_count(self, table: str) -> int:
        return int(self._warehouse.query(f"SELECT COUNT(*) AS n FROM {quote_qualified(table)}")[0]["n"])

    def _expire(self, model_fqn: str) -> None:
        self._warehouse.query(expire_model_sql(model_fqn), {"expire_days": int(self._expire_days)})

    # -- the port ------------------------------------------------------------------------------
    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        folder_uri = f"gs://{self._blobs.bucket}/{artifact_dir.strip('/')}"
        model_fqn = self.model_fqn(spec, folder_uri)
        kind = ModelType(spec.model.type)
        columns = self._warehouse.table_columns(snapshot_table)
        if columns is None:
            raise InputError(f"snapshot {snapshot_table} does not exist")
        features = feature_specs_of(columns, spec.source.features)
        rows = self._row_count(snapshot_table)
        options = parse_model_options(kind, spec.model.options)
        sql = create_model_sql(model_fqn, kind, options, spec.source.features, spec.source.label,
                               snapshot_table, row_count=rows)
        started = time.perf_counter()
        self._warehouse.query(sql)
        self._expire(model_fqn)
        eval_rows = self._eval_count(spec, snapshot_table, rows)
        card = ModelCard(
            kind, features, spec.source.label, None, trained_by="bigquery-ml",
            options=options.model_dump(mode="json", exclude_none=True), seed=spec.model.seed,
            training={"rows_total": rows, "rows_train": rows - eval_rows, "rows_eval": eval_rows,
                      "model": model_fqn})
        label_type = dict(columns).get(spec.source.label, "STRING")
        if is_tree_model(kind):
            files = self._export(model_fqn, folder_uri, artifact_dir, card, label_type)
        else:
            files = self._linear(model_fqn, artifact_dir, card, snapshot_table, label_type)
        seconds = time.perf_counter() - started
        return TrainedArtifact(
            artifact_uri=folder_uri, checksum=folder_checksum(files), train_rows=rows - eval_rows,
            train_seconds=seconds, hyperparameters={k: json.dumps(v) for k, v in options.explicit().items()},
        )

    def _linear(self, model_fqn: str, artifact_dir: str, card: ModelCard, snapshot_table: str,
                label_type: str) -> dict[str, bytes]:
        weights = self._warehouse.query(weights_sql(model_fqn))
        info = self._warehouse.query(feature_info_sql(model_fqn))
        if card.is_classifier:
            labels = {str(r["class_label"]) for r in weights if r.get("class_label") is not None}
            if not labels:  # binary: ML.WEIGHTS does not name the classes
                labels = {_text(r["label"]) for r in self._warehouse.query(
                    distinct_labels_sql(snapshot_table, card.label_column))}
            card = _with_classes(card, labels, label_type)
        files = {LINEAR_FILE: from_ml_weights(card, weights, info).dumps()}
        write_folder(self._blobs, artifact_dir, files)
        return files

    def _export(self, model_fqn: str, folder_uri: str, artifact_dir: str, card: ModelCard,
                label_type: str) -> dict[str, bytes]:
        self._warehouse.query(export_model_sql(model_fqn, folder_uri))
        files = read_folder(self._blobs, folder_uri)
        if BOOSTER_FILE not in files or TREE_METADATA_FILE not in files:
            raise InputError(f"EXPORT MODEL wrote {sorted(files)} to {folder_uri}, without {BOOSTER_FILE} "
                             f"and {TREE_METADATA_FILE}")
        metadata = json.loads(files[TREE_METADATA_FILE])
        if card.is_classifier:
            card = _with_classes(card, {str(c) for c in metadata.get("class_names") or ()}, label_type)
        added = {CARD_FILE: card_file(card)}
        ported = port_legacy_booster(files[BOOSTER_FILE])
        if ported != files[BOOSTER_FILE]:
            added[BOOSTER_FILE] = ported
        write_folder(self._blobs, artifact_dir, added)
        return {**files, **added}

    def _eval_sql(self, spec: PipelineSpec, snapshot_table: str, rows: int) -> str:
        return eval_rows_sql(snapshot_table, spec.model.type, parse_model_options(spec.model.type, spec.model.options),
                             spec.source.features, spec.source.label, row_count=rows)

    def _eval_count(self, spec: PipelineSpec, snapshot_table: str, rows: int) -> int:
        sql = self._eval_sql(spec, snapshot_table, rows)
        return int(self._warehouse.query(f"SELECT COUNT(*) AS n FROM ({sql})")[0]["n"])

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum: str, snapshot_table: str) -> Evaluation:
        """ML.EVALUATE of the model behind the folder on the snapshot's held-out rows, once the
        folder's bytes have matched `checksum` (what is gated is what will serve)."""
        model_fqn = self.model_fqn(spec, artifact_uri)
        verify_checksum(read_folder(self._blobs, artifact_uri), checksum)
        self._expire(model_fqn)
        rows = self._row_count(snapshot_table)
        eval_sql = self._eval_sql(spec, snapshot_table, rows)
        result = self._warehouse.query(evaluate_sql(model_fqn, eval_sql))
        metrics = {k: float(v) for k, v in (result[0] if result else {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return Evaluation(metrics=metrics, eval_rows=self._eval_count(spec, snapshot_table, rows))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _with_classes(card: ModelCard, labels: set[str], label_type: str) -> ModelCard:
    """The classes as the label column's type (BigQuery names them as text), sorted."""
    kind = label_type.upper()

    def native(text: str) -> Any:
        if kind in ("INT64", "INTEGER"):
            return int(text)
        if kind in ("FLOAT64", "FLOAT", "NUMERIC", "BIGNUMERIC"):
            return float(text)
        if kind in ("BOOL", "BOOLEAN"):
            return text.lower() == "true"
        return text

    from dataclasses import replace

    try:
        classes = tuple(sorted(native(label) for label in labels))
    except ValueError as error:
        raise InputError(f"class labels {sorted(labels)} do not read as {label_type}: {error}") from None
    if len(classes) < 2:
        raise InputError(f"a classifier needs two classes or more, BigQuery ML reports {sorted(labels)}")
    return replace(card, classes=classes)

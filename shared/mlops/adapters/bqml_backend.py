"""TrainerBackend on BigQuery ML: `CREATE MODEL` where the data lives, `ML.EVALUATE` on held-out rows.

Selected with `MLOPS_TRAINER_BACKEND=bqml` (the cloud); the local stack cannot run it because
bqemulator accepts CREATE MODEL but trains nothing. The SQL comes from `mlops.adapters.bqml`, which
renders the same options and the same row-key split as the scikit-learn backend.

The artifact is the BigQuery ML model itself, named `bq://project.dataset.model`, and its checksum is
that of the statement that created it (the model has no bytes of its own to hash). Serving such a
model means exporting it (`EXPORT MODEL`) to a Vertex AI prebuilt container; the predictor in this
repository serves scikit-learn artifacts, so a bqml pipeline's deployer target is Vertex AI itself.
"""

from __future__ import annotations

import hashlib
import json
import time

from google.api_core import exceptions as gexc

from mlops.adapters.bqml import create_model_sql, eval_rows_sql, evaluate_sql
from mlops.core.spec import PipelineSpec
from mlops.core.sql import quote_qualified
from mlops.ml.errors import InputError
from mlops.ml.options import parse_model_options
from mlops.ports.trainer import Evaluation, TrainedArtifact
from mlops.ports.warehouse import SqlReader

BQ_SCHEME = "bq://"
# BigQuery job error reasons (google.cloud.bigquery.job.base._ERROR_REASON_TO_EXCEPTION) that a 400
# carries for a statement BigQuery will never run: bad SQL, a column or option it rejects. Other 400
# reasons (resourceInUse, tableUnavailable, resourcesExceeded, billingTierLimitExceeded) can pass.
PERMANENT_BAD_REQUEST_REASONS = frozenset({"invalid", "invalidQuery"})


class NotABigQueryMLModel(InputError):
    """An artifact URI that names no BigQuery ML model: the same URI never will."""


def model_fqn_of(artifact_uri: str) -> str:
    if not artifact_uri.startswith(BQ_SCHEME):
        raise NotABigQueryMLModel(f"{artifact_uri!r} is not a BigQuery ML model (bq://project.dataset.model)")
    return artifact_uri[len(BQ_SCHEME):]


class BigQueryMLBackend:
    name = "bqml"

    def __init__(self, warehouse: SqlReader, models_dataset: str):
        self._warehouse = warehouse
        self._models_dataset = models_dataset

    def warm_up(self) -> None:
        """Nothing to warm: BigQuery does the work."""

    def is_permanent(self, error: Exception) -> bool:
        """Bad options or an artifact URI that names no BigQuery ML model (mlops.ml's input errors);
        a statement BigQuery rejects as invalid (a 400 for bad SQL, or a column the snapshot lacks);
        or a snapshot, dataset or model that does not exist (404: snapshots and models are never
        recreated under the same name, so a retry finds nothing either). The client's error may
        arrive wrapped by the warehouse adapter: its causes are looked at too."""
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, InputError | gexc.NotFound):
                return True
            if isinstance(cause, gexc.BadRequest):
                reasons = {e.get("reason") for e in cause.errors if isinstance(e, dict)} - {None}
                return not reasons or bool(reasons & PERMANENT_BAD_REQUEST_REASONS)
            cause = cause.__cause__
        return False

    def _row_count(self, table: str) -> int:
        return int(self._warehouse.query(f"SELECT COUNT(*) AS n FROM {quote_qualified(table)}")[0]["n"])

    def train(self, spec: PipelineSpec, snapshot_table: str, artifact_dir: str) -> TrainedArtifact:
        candidate = artifact_dir.rstrip("/").rsplit("/", 1)[-1].replace("-", "_")
        model_fqn = self._warehouse.qualified(f"{spec.name.replace('-', '_')}__{candidate}", self._models_dataset)
        rows = self._row_count(snapshot_table)
        options = parse_model_options(spec.model.type, spec.model.options)
        sql = create_model_sql(model_fqn, spec.model.type, options, spec.source.features, spec.source.label,
                               snapshot_table, row_count=rows)
        started = time.perf_counter()
        self._warehouse.query(sql)
        seconds = time.perf_counter() - started
        eval_rows = self._eval_count(spec, snapshot_table, rows)
        return TrainedArtifact(
            artifact_uri=BQ_SCHEME + model_fqn,
            checksum="sha256:" + hashlib.sha256(sql.encode()).hexdigest(),
            train_rows=rows - eval_rows, train_seconds=seconds,
            hyperparameters={k: json.dumps(v) for k, v in options.explicit().items()},
        )

    def _eval_sql(self, spec: PipelineSpec, snapshot_table: str, rows: int) -> str:
        return eval_rows_sql(snapshot_table, spec.model.type, parse_model_options(spec.model.type, spec.model.options),
                             spec.source.features, spec.source.label, row_count=rows)

    def _eval_count(self, spec: PipelineSpec, snapshot_table: str, rows: int) -> int:
        sql = self._eval_sql(spec, snapshot_table, rows)
        return int(self._warehouse.query(f"SELECT COUNT(*) AS n FROM ({sql})")[0]["n"])

    def evaluate(self, spec: PipelineSpec, artifact_uri: str, checksum: str, snapshot_table: str) -> Evaluation:
        rows = self._row_count(snapshot_table)
        eval_sql = self._eval_sql(spec, snapshot_table, rows)
        result = self._warehouse.query(evaluate_sql(model_fqn_of(artifact_uri), eval_sql))
        metrics = {k: float(v) for k, v in (result[0] if result else {}).items() if isinstance(v, (int, float))}
        return Evaluation(metrics=metrics, eval_rows=self._eval_count(spec, snapshot_table, rows))

"""The BigQuery ML backend sends the statements BigQuery ML runs, and reads ML.EVALUATE's row back."""

from __future__ import annotations

import pytest

from mlops.adapters.bqml_backend import BigQueryMLBackend, model_fqn_of
from mlops.core.spec import parse_spec

SPEC = parse_spec("""
name: abalone
source: {table: abalone, label: rings_above_9, features: [sex, length]}
model: {type: LOGISTIC_REG, options: {l2_reg: 0.5, data_split_method: RANDOM, data_split_eval_fraction: 0.2}}
promotion: {metric: roc_auc}
""")


class RecordingWarehouse:
    """Answers COUNTs and ML.EVALUATE with fixed rows, and keeps every statement it was sent."""

    def __init__(self):
        self.statements: list[str] = []

    def qualified(self, table, dataset=None):
        return f"proj.{dataset or 'mlops'}.{table}"

    def query(self, sql, params=None):
        self.statements.append(sql)
        if "ML.EVALUATE" in sql:
            return [{"precision": 0.8, "recall": 0.7, "roc_auc": 0.9, "log_loss": 0.4}]
        if "COUNT(*)" in sql:
            return [{"n": 200 if "_mlops_is_eval" in sql else 1000}]
        return []


def test_training_runs_create_model_with_the_specs_options_and_a_stable_split():
    warehouse = RecordingWarehouse()
    trained = BigQueryMLBackend(warehouse, "mlops_models").train(SPEC, "proj.snap.abalone__d0001",
                                                                 "models/abalone/d0001-1234abcd")
    create = next(s for s in warehouse.statements if s.startswith("CREATE OR REPLACE MODEL"))
    assert "`proj.mlops_models.abalone__d0001_1234abcd`" in create
    assert "model_type = 'LOGISTIC_REG'" in create and "l2_reg = 0.5" in create
    assert "data_split_method = 'CUSTOM'" in create and "FARM_FINGERPRINT" in create
    assert trained.artifact_uri == "bq://proj.mlops_models.abalone__d0001_1234abcd"
    assert trained.train_rows == 800 and trained.checksum.startswith("sha256:")


def test_evaluation_reads_ml_evaluate_on_the_held_out_rows():
    warehouse = RecordingWarehouse()
    scored = BigQueryMLBackend(warehouse, "mlops_models").evaluate(
        SPEC, "bq://proj.mlops_models.m1", "sha256:x", "proj.snap.abalone__d0001")
    evaluate = next(s for s in warehouse.statements if "ML.EVALUATE" in s)
    assert "MODEL `proj.mlops_models.m1`" in evaluate and "WHERE `_mlops_is_eval`" in evaluate
    assert scored.metrics["roc_auc"] == 0.9 and scored.eval_rows == 200
    assert model_fqn_of("bq://a.b.c") == "a.b.c"


# ---------------------------------------------------------------------------------------------- permanent

def _job_error(status: int, reason: str, message: str) -> Exception:
    """An error as google-cloud-bigquery raises it for a failed job (reasons as bqemulator sends them)."""
    from google.api_core import exceptions as gexc

    return gexc.from_http_status(status, message, errors=[{"reason": reason, "message": message}])


def test_bad_sql_a_missing_column_or_a_missing_table_is_permanent():
    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models")
    assert backend.is_permanent(_job_error(400, "invalidQuery", 'Referenced column "rings" not found'))
    assert backend.is_permanent(_job_error(400, "invalid", "Invalid value for OPTIONS"))
    assert backend.is_permanent(_job_error(404, "notFound", "Not found: Table proj.snap.abalone__d0001"))
    wrapped = RuntimeError("warehouse refused the statement")
    wrapped.__cause__ = _job_error(400, "invalidQuery", "Syntax error")
    assert backend.is_permanent(wrapped)  # as an adapter re-raises it `from` the client's error


def test_bad_options_and_an_artifact_that_is_no_bigquery_ml_model_are_permanent():
    from mlops.ml.errors import ModelOptionsError

    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models")
    assert backend.is_permanent(ModelOptionsError(["l2_reg: must be >= 0"]))
    with pytest.raises(ValueError) as refused:
        backend.evaluate(SPEC, "gs://bucket/models/abalone/model.zip", "sha256:x", "proj.snap.abalone__d0001")
    assert backend.is_permanent(refused.value)


def test_load_rate_limits_and_server_errors_are_retried():
    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models")
    for reason in ("resourcesExceeded", "resourceInUse", "tableUnavailable"):  # 400s that can pass
        assert not backend.is_permanent(_job_error(400, reason, reason))
    assert not backend.is_permanent(_job_error(403, "quotaExceeded", "Quota exceeded"))
    assert not backend.is_permanent(_job_error(429, "rateLimitExceeded", "Exceeded rate limits"))
    assert not backend.is_permanent(_job_error(500, "backendError", "Backend error"))
    assert not backend.is_permanent(ConnectionError("reset by peer"))

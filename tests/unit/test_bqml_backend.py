"""The BigQuery ML backend sends the statements BigQuery ML runs, and reads ML.EVALUATE's row back."""

from __future__ import annotations

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

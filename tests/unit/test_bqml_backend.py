"""The BigQuery ML backend end to end on BigQuery's documented responses (tests/data/bqml/README.md).

A recording warehouse answers each statement with the rows BigQuery ML documents for it and keeps
the exact SQL sent; EXPORT MODEL writes, into the blob store, what BigQuery writes: an XGBoost
booster (made by xgboost) with its assets. The trainer, evaluator and registrar handlers and the
predictor's loader then take a bqml candidate from CREATE MODEL to served predictions, which must
equal the arithmetic of ML.WEIGHTS.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from evaluator.handler import Evaluator
from mlops.adapters.bqml_backend import BigQueryMLBackend
from mlops.core.events import DataReady
from mlops.core.spec import parse_spec
from mlops.ml.artifact import folder_checksum, read_folder
from mlops.ml.features import ServingPolicy, UnseenPolicy
from mlops.ports.specs import SpecStore
from mlops.testing.memory import InMemoryBlobStore, InMemoryModelRegistry
from predictor.loading import load_served_model
from registrar.handler import Registrar
from trainer.handler import Trainer

from .conftest import envelope_for

DATA = Path(__file__).resolve().parents[1] / "data" / "bqml"
SNAPSHOT = "proj.snap.abalone__d0001"
COLUMNS = [("_mlops_row_id", "STRING"), ("sex", "STRING"), ("length", "FLOAT64"), ("rings_above_9", "INT64"),
           ("size", "STRING"), ("rings", "FLOAT64")]


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def spec_for(model_type: str, label: str = "rings_above_9", options: str = "{l2_reg: 0.5}"):
    return parse_spec(f"""
name: abalone
source: {{table: abalone, label: {label}, features: [sex, length]}}
model: {{type: {model_type}, options: {options}}}
promotion: {{metric: {"roc_auc" if label != "rings" else "mean_absolute_error"}}}
""")


SPEC = parse_spec("""
name: abalone
source: {table: abalone, label: rings_above_9, features: [sex, length]}
model: {type: LOGISTIC_REG, options: {l2_reg: 0.5, data_split_method: RANDOM, data_split_eval_fraction: 0.2}}
promotion: {metric: roc_auc}
""")


def exported_booster_files(classifier: bool) -> dict[str, bytes]:
    """What EXPORT MODEL writes for a BOOSTED_TREE_* model on (sex STRING, length FLOAT64): a booster
    trained by xgboost on label-encoded rows, its metadata and the vocabulary of `sex`."""
    import numpy as np
    import xgboost

    x = np.array([[s, length] for s in (0.0, 1.0, 2.0) for length in np.linspace(0.1, 0.8, 30)], dtype=np.float32)
    if classifier:
        y = ((x[:, 1] > 0.45) | (x[:, 0] == 2.0)).astype(float)
        params = {"objective": "multi:softprob", "num_class": 2}
    else:
        y = x[:, 1] * 20 + x[:, 0]
        params = {"objective": "reg:squarederror"}
    booster = xgboost.train({**params, "max_depth": 3, "nthread": 1, "seed": 0}, xgboost.DMatrix(x, label=y),
                            num_boost_round=5)
    metadata = {"model_type": "boosted_tree_classifier" if classifier else "boosted_tree_regressor",
                "label_col": "rings_above_9" if classifier else "rings", "feature_names": ["sex", "length"],
                "features": {"sex": {"encode_type": "categorical_label"}, "length": {"encode_type": "numerical_identity"}}}
    if classifier:
        metadata["class_names"] = ["0", "1"]
    return {"model.bst": bytes(booster.save_raw("ubj")), "assets/model_metadata.json": json.dumps(metadata).encode(),
            "assets/0_categorical_label.txt": b"F\nI\nM\n", "main.py": b"# BigQuery's local runner\n",
            "xgboost_predictor-0.1.tar.gz": b"\x1f\x8b BigQuery's predictor package"}


class RecordingWarehouse:
    """Plays BigQuery: documented result shapes for each statement, every statement and its
    parameters kept; EXPORT MODEL writes the export into `blobs`."""

    def __init__(self, blobs: InMemoryBlobStore | None = None, weights: str = "ml_weights_binary.json",
                 evaluate: str = "ml_evaluate_classifier.json", labels: tuple = (0, 1)):
        self.blobs = blobs
        self.weights = weights
        self.evaluate = evaluate
        self.labels = labels
        self.statements: list[str] = []
        self.params: list[dict | None] = []

    def qualified(self, table, dataset=None):
        return f"proj.{dataset or 'mlops'}.{table}"

    def table_columns(self, table):
        return COLUMNS if table.startswith("proj.snap.") else None

    def query(self, sql, params=None):
        self.statements.append(sql)
        self.params.append(params)
        if "ML.EVALUATE" in sql:
            return recorded(self.evaluate)
        if "ML.WEIGHTS" in sql:
            return recorded(self.weights)
        if "ML.FEATURE_INFO" in sql:
            return recorded("ml_feature_info.json")
        if sql.startswith("SELECT DISTINCT"):
            return [{"label": label} for label in self.labels]
        if sql.startswith("EXPORT MODEL"):
            uri = sql.split("URI = '", 1)[1].split("'", 1)[0]
            classifier = "rings_above_9" in json.dumps(self.weights) or self.evaluate.endswith("classifier.json")
            for name, data in exported_booster_files(classifier).items():
                self.blobs.put(f"{uri}/{name}", data)
            return []
        if "COUNT(*)" in sql:
            return [{"n": 200 if "_mlops_is_eval" in sql else 1000}]
        return []


def statement(warehouse: RecordingWarehouse, start: str) -> str:
    return next(s for s in warehouse.statements if s.startswith(start))


def logistic(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# ---------------------------------------------------------------------------------------------- train

def test_training_runs_create_model_with_the_specs_options_and_a_stable_split():
    blobs = InMemoryBlobStore("bucket")
    warehouse = RecordingWarehouse(blobs)
    trained = BigQueryMLBackend(warehouse, "mlops_models", blobs).train(SPEC, SNAPSHOT,
                                                                        "models/abalone/d0001-1234abcd")
    create = statement(warehouse, "CREATE OR REPLACE MODEL")
    assert "`proj.mlops_models.abalone__d0001_1234abcd`" in create
    assert "model_type = 'LOGISTIC_REG'" in create and "l2_reg = 0.5" in create
    assert "data_split_method = 'CUSTOM'" in create and "FARM_FINGERPRINT" in create
    # The candidate is a servable folder, never bq://; the BigQuery ML model expires unless used again.
    assert trained.artifact_uri == "gs://bucket/models/abalone/d0001-1234abcd"
    assert trained.train_rows == 800
    assert trained.checksum == folder_checksum(read_folder(blobs, trained.artifact_uri))
    expire = statement(warehouse, "ALTER MODEL")
    assert expire == ("ALTER MODEL IF EXISTS `proj.mlops_models.abalone__d0001_1234abcd`\n"
                      "SET OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @expire_days DAY))")
    assert warehouse.params[warehouse.statements.index(expire)] == {"expire_days": 30}


def test_a_linear_model_is_written_from_ml_weights_on_raw_features():
    blobs = InMemoryBlobStore("bucket")
    warehouse = RecordingWarehouse(blobs)
    trained = BigQueryMLBackend(warehouse, "mlops_models", blobs).train(SPEC, SNAPSHOT, "models/abalone/c1")
    assert statement(warehouse, "SELECT *\nFROM ML.WEIGHTS") == (
        "SELECT *\nFROM ML.WEIGHTS(MODEL `proj.mlops_models.abalone__c1`, STRUCT(FALSE AS standardize))")
    assert statement(warehouse, "SELECT *\nFROM ML.FEATURE_INFO") == (
        "SELECT *\nFROM ML.FEATURE_INFO(MODEL `proj.mlops_models.abalone__c1`)")
    assert statement(warehouse, "SELECT DISTINCT") == (
        "SELECT DISTINCT `rings_above_9` AS label\nFROM `proj.snap.abalone__d0001`\n"
        "WHERE `rings_above_9` IS NOT NULL\nORDER BY label")
    files = read_folder(blobs, trained.artifact_uri)
    assert sorted(files) == ["model.json"]
    model = load_served_model(blobs, trained.artifact_uri, trained.checksum)
    labels, scores = model.predict([{"sex": "M", "length": 0.6}, {"sex": "F", "length": None}])
    # ML.WEIGHTS' arithmetic: intercept + weight * length + the category's weight; NULL -> the mean.
    assert scores[0] == pytest.approx(logistic(-3.4 + 6.25 * 0.6 + 0.42))
    assert scores[1] == pytest.approx(logistic(-3.4 + 6.25 * 0.524 - 0.17))
    assert labels == [1 if scores[0] > 0.5 else 0, 1 if scores[1] > 0.5 else 0]
    assert model.serving_problems([{"sex": "X", "length": 0.5}], ServingPolicy()) == [
        "instance 0: feature 'sex' has the category 'X', which the model never saw in training (it knows 'F', "
        "'I', 'M')"]
    unseen = model.predict_proba([{"sex": "X", "length": 0.5}])[0][1]  # BigQuery ML's rule: weight 0
    assert unseen == pytest.approx(logistic(-3.4 + 6.25 * 0.5))
    assert model.serving_problems([{"sex": "X", "length": 0.5}], ServingPolicy(unseen=UnseenPolicy.IGNORE)) == []


def test_a_multiclass_model_has_one_output_per_class_label():
    blobs = InMemoryBlobStore("bucket")
    spec = spec_for("LOGISTIC_REG", label="size")
    warehouse = RecordingWarehouse(blobs, weights="ml_weights_multiclass.json")
    trained = BigQueryMLBackend(warehouse, "mlops_models", blobs).train(spec, SNAPSHOT, "models/abalone/c2")
    assert not any(s.startswith("SELECT DISTINCT") for s in warehouse.statements)  # class_label names them
    model = load_served_model(blobs, trained.artifact_uri, trained.checksum)
    assert model.classes == ("large", "medium", "small")
    z = {"large": -2.0 + 4.0 * 0.3 - 0.6, "medium": -0.4 + 1.5 * 0.3 + 0.1, "small": 2.4 - 5.5 * 0.3 + 0.5}
    total = sum(math.exp(v) for v in z.values())
    probabilities = model.predict_proba([{"sex": "I", "length": 0.3}])[0]
    assert list(probabilities) == pytest.approx([math.exp(z[c]) / total for c in ("large", "medium", "small")])


@pytest.mark.parametrize("model_type", ["BOOSTED_TREE_CLASSIFIER", "BOOSTED_TREE_REGRESSOR"])
def test_boosted_trees_are_exported_and_served_with_the_metadatas_encoding(model_type):
    import numpy as np
    import xgboost

    classifier = model_type.endswith("CLASSIFIER")
    blobs = InMemoryBlobStore("bucket")
    spec = spec_for(model_type, label="rings_above_9" if classifier else "rings", options="{max_iterations: 5}")
    warehouse = RecordingWarehouse(blobs, evaluate="ml_evaluate_classifier.json" if classifier
                                   else "ml_evaluate_regressor.json")
    trained = BigQueryMLBackend(warehouse, "mlops_models", blobs).train(spec, SNAPSHOT, "models/abalone/c3")
    assert statement(warehouse, "EXPORT MODEL") == ("EXPORT MODEL `proj.mlops_models.abalone__c3`\n"
                                                   "OPTIONS (URI = 'gs://bucket/models/abalone/c3')")
    files = read_folder(blobs, trained.artifact_uri)
    assert sorted(files) == ["assets/0_categorical_label.txt", "assets/model_metadata.json", "main.py",
                             "mlops_model.json", "model.bst", "xgboost_predictor-0.1.tar.gz"]
    assert trained.checksum == folder_checksum(files)  # every file BigQuery wrote, and the card
    model = load_served_model(blobs, trained.artifact_uri, trained.checksum)
    rows = [{"sex": "I", "length": 0.3}, {"sex": "M", "length": 0.7}, {"sex": None, "length": None}]
    booster = xgboost.Booster()
    booster.load_model(bytearray(files["model.bst"]))
    # The metadata's encoding: sex is its line in 0_categorical_label.txt (F, I, M), NULL is missing.
    expected = booster.inplace_predict(np.array([[1, 0.3], [2, 0.7], [np.nan, np.nan]], dtype=np.float32))
    if classifier:
        assert model.classes == (0, 1)
        assert model.predict_proba(rows) == pytest.approx(np.asarray(expected, dtype=float))
    else:
        assert model.predict(rows)[0] == pytest.approx([float(v) for v in expected])


def test_a_legacy_binary_booster_is_refused_with_the_reason():
    from mlops.ml.artifact import load_artifact
    from mlops.ml.errors import InputError

    files = {**exported_booster_files(True), "model.bst": b"\x00\x00\x00?binary booster of XGBoost 0.82"}
    with pytest.raises(InputError, match="legacy binary format"):
        load_artifact(files, expected_checksum=folder_checksum(files))


# ---------------------------------------------------------------------------------------------- evaluate

def test_evaluation_verifies_the_folder_then_reads_ml_evaluate_on_the_held_out_rows():
    blobs = InMemoryBlobStore("bucket")
    warehouse = RecordingWarehouse(blobs)
    backend = BigQueryMLBackend(warehouse, "mlops_models", blobs)
    trained = backend.train(SPEC, SNAPSHOT, "models/abalone/m1")
    warehouse.statements.clear()
    scored = backend.evaluate(SPEC, trained.artifact_uri, trained.checksum, SNAPSHOT)
    evaluate = statement(warehouse, "SELECT *\nFROM ML.EVALUATE")
    assert "MODEL `proj.mlops_models.abalone__m1`" in evaluate and "WHERE `_mlops_is_eval`" in evaluate
    assert scored.metrics == recorded("ml_evaluate_classifier.json")[0] and scored.eval_rows == 200
    assert statement(warehouse, "ALTER MODEL")  # evaluating a model (a champion, later) keeps it alive
    with pytest.raises(Exception) as refused:
        backend.evaluate(SPEC, trained.artifact_uri, "sha256:" + "0" * 64, SNAPSHOT)
    assert backend.is_permanent(refused.value) and "checksum mismatch" in str(refused.value)


# ---------------------------------------------------------------------------------------------- the loop

def test_a_bqml_candidate_goes_from_create_model_to_served_predictions():
    blobs = InMemoryBlobStore("test-bucket")
    warehouse = RecordingWarehouse(blobs)
    backend = BigQueryMLBackend(warehouse, "mlops_models", blobs)
    specs = SpecStore(blobs, cache_seconds=0)
    spec = parse_spec("""
name: abalone
source: {table: abalone, label: rings_above_9, features: [sex, length]}
model: {type: LOGISTIC_REG, options: {l2_reg: 0.5}}
promotion: {metric: roc_auc, min_gain: 0.0}
""")
    specs.put(spec)
    ready = DataReady.example().model_copy(update={"pipeline": "abalone", "snapshot_table": SNAPSHOT})
    [trained] = Trainer(backend, specs, blobs).handle(ready, envelope_for(ready))
    assert trained.backend == "bqml" and trained.artifact_uri.startswith("gs://test-bucket/models/abalone/")
    registry = InMemoryModelRegistry()
    [evaluated] = Evaluator(backend, specs, registry).handle(trained, envelope_for(trained))
    assert evaluated.decision == "promote" and evaluated.metrics["roc_auc"] == 0.91
    [registered] = Registrar(registry, "predictor:test", "test", bucket="test-bucket").handle(
        evaluated, envelope_for(evaluated))
    version = registry.get_version("abalone", registered.version_id)
    assert version.artifact_uri.rstrip("/") == trained.artifact_uri  # Vertex's artifactUri: the folder
    served = load_served_model(blobs, version.artifact_uri, evaluated.artifact_checksum)
    _, [score] = served.predict([{"sex": "I", "length": 0.55}])
    assert score == pytest.approx(logistic(-3.4 + 6.25 * 0.55 - 0.95))


# ---------------------------------------------------------------------------------------------- permanent

def _job_error(status: int, reason: str, message: str) -> Exception:
    """An error as google-cloud-bigquery raises it for a failed job (reasons as bqemulator sends them)."""
    from google.api_core import exceptions as gexc

    return gexc.from_http_status(status, message, errors=[{"reason": reason, "message": message}])


def test_bad_sql_a_missing_column_or_a_missing_table_is_permanent():
    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models", InMemoryBlobStore("bucket"))
    assert backend.is_permanent(_job_error(400, "invalidQuery", 'Referenced column "rings" not found'))
    assert backend.is_permanent(_job_error(400, "invalid", "Invalid value for OPTIONS"))
    assert backend.is_permanent(_job_error(404, "notFound", "Not found: Table proj.snap.abalone__d0001"))
    wrapped = RuntimeError("warehouse refused the statement")
    wrapped.__cause__ = _job_error(400, "invalidQuery", "Syntax error")
    assert backend.is_permanent(wrapped)  # as an adapter re-raises it `from` the client's error


def test_bad_options_and_an_artifact_that_is_no_artifact_folder_are_permanent():
    from mlops.ml.errors import ModelOptionsError

    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models", InMemoryBlobStore("bucket"))
    assert backend.is_permanent(ModelOptionsError(["l2_reg: must be >= 0"]))
    with pytest.raises(ValueError) as refused:
        backend.evaluate(SPEC, "gs://bucket/models/abalone/c1/model.zip", "sha256:x", "proj.snap.abalone__d0001")
    assert backend.is_permanent(refused.value)


def test_load_rate_limits_and_server_errors_are_retried():
    backend = BigQueryMLBackend(RecordingWarehouse(), "mlops_models", InMemoryBlobStore("bucket"))
    for reason in ("resourcesExceeded", "resourceInUse", "tableUnavailable"):  # 400s that can pass
        assert not backend.is_permanent(_job_error(400, reason, reason))
    assert not backend.is_permanent(_job_error(403, "quotaExceeded", "Quota exceeded"))
    assert not backend.is_permanent(_job_error(429, "rateLimitExceeded", "Exceeded rate limits"))
    assert not backend.is_permanent(_job_error(500, "backendError", "Backend error"))
    assert not backend.is_permanent(ConnectionError("reset by peer"))

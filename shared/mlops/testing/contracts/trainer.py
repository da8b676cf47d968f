"""The contract of the trainer-backend port (`mlops.ports.trainer`), written once.

A concrete subclass provides `backend` and the `warehouse` and `blobs` it works on; the suite loads
its own snapshot tables (uniquely named) through the warehouse port and reads and tampers with
artifacts through the blob port. What is pinned: where the artifact goes and that its bytes match
its checksum, row counts that are the two sides of a real split, BigQuery ML's option and metric
names, deterministic scoring, and which failures a backend calls permanent (the trainer and the
evaluator dead-letter those at once instead of letting Pub/Sub retry them).

`snapshot_rows` and `load_snapshot` are also what unit tests seed the in-memory warehouse with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from mlops.core.spec import INGESTED_AT_COLUMN, ROW_ID_COLUMN, PipelineSpec
from mlops.ml.artifact import folder_checksum, read_folder
from mlops.ml.metrics import CLASSIFIER_METRICS, REGRESSOR_METRICS
from mlops.ml.options import OPTION_NAMES
from mlops.ml.split import SPLIT_BUCKET_COLUMN
from mlops.ports.blobs import BlobStore
from mlops.ports.trainer import TrainerBackend
from mlops.ports.warehouse import Row, Warehouse

FEATURES = ("mean_radius", "mean_texture")
LABEL = "malignant"
TARGET = "size"  # a numeric label, for the regressor
SPLIT_COLUMN = "is_eval"  # a CUSTOM split: every fourth row
SNAPSHOT_COLUMNS = [
    (ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED"),
    ("mean_radius", "FLOAT64", "NULLABLE"), ("mean_texture", "FLOAT64", "NULLABLE"),
    (LABEL, "INT64", "NULLABLE"), (TARGET, "FLOAT64", "NULLABLE"), (SPLIT_COLUMN, "BOOL", "NULLABLE"),
]
SNAPSHOT_ROWS = 200


def snapshot_rows(count: int = SNAPSHOT_ROWS) -> list[Row]:
    """A small, deterministic, learnable table: both classes on both sides of any split, a label
    that follows the features (with some noise), and a numeric target for regressors."""
    rows = []
    for i in range(count):
        radius = 10.0 + (i * 7 % 23) * 0.5
        texture = 15.0 + (i * 11 % 19) * 0.7
        noise = ((i * 13) % 7 - 3) * 0.6
        rows.append({
            ROW_ID_COLUMN: f"row-{i:05d}", INGESTED_AT_COLUMN: f"2026-11-22T06:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "mean_radius": radius, "mean_texture": texture,
            LABEL: int(radius + 0.3 * texture + noise > 22.0), TARGET: round(2.0 * radius + 0.5 * texture + noise, 3),
            SPLIT_COLUMN: i % 4 == 0,
        })
    return rows


def load_snapshot(warehouse: Warehouse, table: str, rows: Sequence[Row] | None = None) -> str:
    """Create `table` with the snapshot's columns and stream `rows` (default: `snapshot_rows()`) in."""
    warehouse.ensure_table(table, SNAPSHOT_COLUMNS)
    batch = list(rows) if rows is not None else snapshot_rows()
    for start in range(0, len(batch), 500):
        warehouse.insert_rows(table, batch[start:start + 500])
    return table


def contract_spec(**model: Any) -> PipelineSpec:
    """A classifier with an explicit RANDOM split (BigQuery ML's AUTO_SPLIT would not split 200 rows);
    keywords replace the `model` section."""
    classifier = {"type": "LOGISTIC_REG",
                  "options": {"l2_reg": 0.5, "data_split_method": "RANDOM", "data_split_eval_fraction": 0.25}}
    section = {**classifier, **model}
    regressor = section["type"] in ("LINEAR_REG", "BOOSTED_TREE_REGRESSOR")
    return PipelineSpec.model_validate({
        "name": "contract-model",
        "source": {"table": "contract_source", "label": TARGET if regressor else LABEL, "features": list(FEATURES)},
        "model": section,
        "promotion": {"metric": "mean_absolute_error" if regressor else "roc_auc"},
    })


class TrainerBackendContract:
    """Every TrainerBackend that trains where the tests run (the BigQuery ML one cannot on bqemulator)."""

    @pytest.fixture
    def warehouse(self) -> Warehouse:
        raise NotImplementedError("a concrete contract test class provides the `warehouse` fixture")

    @pytest.fixture
    def blobs(self) -> BlobStore:
        raise NotImplementedError("a concrete contract test class provides the `blobs` fixture")

    @pytest.fixture
    def backend(self, warehouse: Warehouse, blobs: BlobStore) -> TrainerBackend:
        raise NotImplementedError("a concrete contract test class provides the `backend` fixture")

    @pytest.fixture
    def snapshot(self, warehouse: Warehouse) -> str:
        return load_snapshot(warehouse, f"snapshot_{uuid.uuid4().hex[:10]}")

    @pytest.fixture
    def artifact_dir(self) -> str:
        return f"models/contract-model/c-{uuid.uuid4().hex[:8]}"

    # -- train -------------------------------------------------------------------------------
    def test_warm_up_does_not_fail(self, backend: TrainerBackend) -> None:
        backend.warm_up()
        assert backend.name

    def test_train_stores_the_artifact_under_the_dir_with_its_checksum(
            self, backend: TrainerBackend, blobs: BlobStore, snapshot: str, artifact_dir: str) -> None:
        artifact = backend.train(contract_spec(), snapshot, artifact_dir)
        # The artifact is the folder itself; its checksum covers every file in it (mlops.ml.artifact).
        assert artifact.artifact_uri == f"gs://{blobs.bucket}/{artifact_dir}"
        assert artifact.checksum.startswith("sha256:") and len(artifact.checksum) == len("sha256:") + 64
        assert folder_checksum(read_folder(blobs, artifact.artifact_uri)) == artifact.checksum
        assert artifact.train_seconds >= 0

    def test_train_rows_are_the_training_side_of_the_split(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        evaluation = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert 0 < artifact.train_rows < SNAPSHOT_ROWS
        assert evaluation.eval_rows > 0
        assert artifact.train_rows + evaluation.eval_rows == SNAPSHOT_ROWS  # a split: each row on one side

    def test_a_snapshot_the_warehouse_took_is_split_by_the_buckets_it_stored(
            self, backend: TrainerBackend, warehouse: Warehouse, artifact_dir: str) -> None:
        # The data-watcher's snapshots: `create_snapshot` stores each row's bucket, and a RANDOM split
        # puts a row in eval iff its bucket < round(fraction * 10,000), on both sides of the port.
        source = load_snapshot(warehouse, f"source_{uuid.uuid4().hex[:10]}")
        warehouse.create_snapshot(source, f"{source}__d0001", datetime(2026, 11, 22, 7, tzinfo=UTC))
        snapshot = warehouse.qualified(f"{source}__d0001", warehouse.snapshot_dataset)
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        evaluation = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        buckets = [row[SPLIT_BUCKET_COLUMN] for row in warehouse.read_rows(snapshot, [SPLIT_BUCKET_COLUMN])]
        assert evaluation.eval_rows == sum(1 for bucket in buckets if bucket < 2500)  # fraction 0.25
        assert artifact.train_rows == SNAPSHOT_ROWS - evaluation.eval_rows

    def test_a_custom_split_column_decides_each_rows_side(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec(options={"data_split_method": "CUSTOM", "data_split_col": SPLIT_COLUMN})
        artifact = backend.train(spec, snapshot, artifact_dir)
        evaluation = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert (artifact.train_rows, evaluation.eval_rows) == (SNAPSHOT_ROWS * 3 // 4, SNAPSHOT_ROWS // 4)

    def test_hyperparameters_are_bigquery_ml_options_with_json_values(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        artifact = backend.train(contract_spec(), snapshot, artifact_dir)
        assert set(artifact.hyperparameters) <= set(OPTION_NAMES)
        decoded = {name: json.loads(value) for name, value in artifact.hyperparameters.items()}
        assert decoded["l2_reg"] == 0.5
        assert decoded["data_split_method"] == "RANDOM" and decoded["data_split_eval_fraction"] == 0.25

    # -- evaluate ----------------------------------------------------------------------------
    def test_a_classifier_is_scored_with_bigquery_ml_classifier_metrics(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        evaluation = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert "roc_auc" in evaluation.metrics and set(evaluation.metrics) <= set(CLASSIFIER_METRICS)
        assert all(isinstance(v, float) for v in evaluation.metrics.values())
        assert 0.0 <= evaluation.metrics["roc_auc"] <= 1.0

    def test_a_regressor_is_scored_with_bigquery_ml_regressor_metrics(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec(type="LINEAR_REG")
        artifact = backend.train(spec, snapshot, artifact_dir)
        evaluation = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert "mean_absolute_error" in evaluation.metrics
        assert set(evaluation.metrics) <= set(REGRESSOR_METRICS)

    def test_the_same_model_on_the_same_snapshot_scores_the_same(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        first = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        second = backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert first == second

    # -- refusals and what is permanent --------------------------------------------------------
    def test_a_checksum_that_does_not_match_is_refused_as_permanent(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        with pytest.raises(Exception) as refused:
            backend.evaluate(spec, artifact.artifact_uri, "sha256:" + "0" * 64, snapshot)
        # The bytes at that URI are not the model the event names: a retry reads the same bytes.
        assert backend.is_permanent(refused.value)

    def test_an_artifact_changed_after_training_is_refused_as_permanent(
            self, backend: TrainerBackend, blobs: BlobStore, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        artifact = backend.train(spec, snapshot, artifact_dir)
        name = sorted(read_folder(blobs, artifact.artifact_uri))[0]
        blobs.put(f"{artifact.artifact_uri}/{name}", b"not the model that was trained")
        with pytest.raises(Exception) as refused:
            backend.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
        assert backend.is_permanent(refused.value)

    def test_an_artifact_that_is_not_there_is_permanent(self, backend: TrainerBackend, blobs: BlobStore,
                                                         snapshot: str) -> None:
        with pytest.raises(Exception) as refused:
            backend.evaluate(contract_spec(), f"gs://{blobs.bucket}/models/{contract_spec().name}/nowhere",
                             "sha256:" + "0" * 64, snapshot)
        assert backend.is_permanent(refused.value)

    def test_a_label_column_the_snapshot_lacks_is_permanent(
            self, backend: TrainerBackend, snapshot: str, artifact_dir: str) -> None:
        spec = contract_spec()
        spec = spec.model_copy(update={"source": spec.source.model_copy(update={"label": "no_such_column"})})
        with pytest.raises(Exception) as refused:
            backend.train(spec, snapshot, artifact_dir)
        assert backend.is_permanent(refused.value)
        assert "no_such_column" in str(refused.value)

    def test_a_snapshot_that_does_not_exist_is_permanent(self, backend: TrainerBackend, artifact_dir: str) -> None:
        with pytest.raises(Exception) as refused:
            backend.train(contract_spec(), f"no_such_snapshot_{uuid.uuid4().hex[:8]}", artifact_dir)
        assert backend.is_permanent(refused.value)

    def test_a_training_set_without_labels_is_permanent(
            self, backend: TrainerBackend, warehouse: Warehouse, artifact_dir: str) -> None:
        unlabelled = [{**row, LABEL: None} for row in snapshot_rows()]
        table = load_snapshot(warehouse, f"unlabelled_{uuid.uuid4().hex[:10]}", unlabelled)
        with pytest.raises(Exception) as refused:
            backend.train(contract_spec(), table, artifact_dir)
        assert backend.is_permanent(refused.value)

    def test_failures_of_the_machine_are_worth_a_retry(self, backend: TrainerBackend) -> None:
        for error in (ConnectionError("reset by peer"), TimeoutError("deadline"), RuntimeError("quota")):
            assert not backend.is_permanent(error)

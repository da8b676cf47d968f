"""What the scikit-learn backend reads of a snapshot: everything to train, only the held-out rows to evaluate.

A snapshot taken by the warehouse stores each row's split bucket (`_split_bucket`, FARM_FINGERPRINT of
the row id), so the evaluator's read is a row restriction on it; a snapshot from before that column is
split as it was trained (a blake2b hash of the row id over every row), so a replay scores the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from mlops.adapters.sklearn_backend import SklearnBackend
from mlops.core.spec import PipelineSpec
from mlops.ml.artifact import load_artifact, read_folder
from mlops.ml.metrics import evaluate
from mlops.ml.options import parse_model_options
from mlops.ml.split import SPLIT_BUCKET_COLUMN, SplitError
from mlops.ml.training import split_for
from mlops.ports.warehouse import Condition, Row
from mlops.testing.contracts.trainer import LABEL, contract_spec, load_snapshot, snapshot_rows
from mlops.testing.memory import InMemoryBlobStore, InMemoryWarehouse

WATERMARK = datetime.fromisoformat("2026-11-22T07:00:00+00:00")


class RecordingWarehouse(InMemoryWarehouse):
    """The in-memory warehouse, noting each read: (table, columns, conditions, rows returned)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, list[str], list[Condition], int]] = []

    def read_rows(self, table: str, columns: Sequence[str], where_after: datetime | None = None,
                  dataset: str | None = None, where: Sequence[Condition] = ()) -> list[Row]:
        rows = super().read_rows(table, columns, where_after, dataset, where)
        self.reads.append((table, list(columns), list(where), len(rows)))
        return rows


@pytest.fixture
def warehouse() -> RecordingWarehouse:
    return RecordingWarehouse()


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore("backend-bucket")


def taken_snapshot(warehouse: InMemoryWarehouse, rows: list[Row] | None = None) -> str:
    """A snapshot as the data-watcher takes one: `create_snapshot` of a source table (buckets stored)."""
    source = f"source_{uuid.uuid4().hex[:8]}"
    load_snapshot(warehouse, source, rows)
    warehouse.create_snapshot(source, f"{source}__d0001", WATERMARK)
    return warehouse.qualified(f"{source}__d0001", warehouse.snapshot_dataset)


def train_and_evaluate(warehouse: RecordingWarehouse, blobs: InMemoryBlobStore, spec: PipelineSpec,
                       snapshot: str) -> tuple[Any, Any]:
    artifact = SklearnBackend(warehouse, blobs).train(spec, snapshot, f"models/{spec.name}/c-{uuid.uuid4().hex[:6]}")
    warehouse.reads.clear()
    evaluation = SklearnBackend(warehouse, blobs).evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
    return artifact, evaluation


def test_the_evaluator_reads_only_the_held_out_rows_of_a_snapshot_with_buckets(warehouse, blobs):
    snapshot = taken_snapshot(warehouse)
    artifact, evaluation = train_and_evaluate(warehouse, blobs, contract_spec(), snapshot)
    [(table, columns, where, returned)] = warehouse.reads
    assert where == [Condition(SPLIT_BUCKET_COLUMN, "<", 2500)]  # RANDOM, data_split_eval_fraction 0.25
    assert returned == evaluation.eval_rows
    assert artifact.train_rows + evaluation.eval_rows == len(snapshot_rows())
    buckets = {r["_row_id"]: r[SPLIT_BUCKET_COLUMN] for r in warehouse.read_rows(snapshot, ["_row_id", SPLIT_BUCKET_COLUMN])}
    assert evaluation.eval_rows == sum(1 for bucket in buckets.values() if bucket < 2500)


def test_the_candidate_and_the_champion_are_scored_from_one_read(warehouse, blobs):
    snapshot, spec = taken_snapshot(warehouse), contract_spec()
    backend = SklearnBackend(warehouse, blobs)
    artifact = backend.train(spec, snapshot, "models/contract-model/c-one")
    warehouse.reads.clear()
    evaluator = SklearnBackend(warehouse, blobs)
    first = evaluator.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
    second = evaluator.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
    assert first == second
    assert len(warehouse.reads) == 1


def test_auto_split_counts_every_row_of_the_snapshot_in_the_trainer_and_the_evaluator(warehouse, blobs):
    # 600 rows, 150 without a label: AUTO_SPLIT splits 20% (>= 500 rows). Counting only labelled rows
    # (450) would train on every row, and the evaluator would then score rows the model trained on.
    rows = snapshot_rows(600)
    for row in rows[::4]:
        row[LABEL] = None
    spec = contract_spec(options={"l2_reg": 0.5})
    snapshot = taken_snapshot(warehouse, rows)
    artifact, evaluation = train_and_evaluate(warehouse, blobs, spec, snapshot)
    assert warehouse.reads[0][2] == [Condition(SPLIT_BUCKET_COLUMN, "<", 2000)]
    stored = warehouse.read_rows(snapshot, ["_row_id", LABEL, SPLIT_BUCKET_COLUMN])
    assert artifact.train_rows == sum(1 for r in stored if r[LABEL] is not None and r[SPLIT_BUCKET_COLUMN] >= 2000)
    assert evaluation.eval_rows == sum(1 for r in stored if r[SPLIT_BUCKET_COLUMN] < 2000)


def test_a_snapshot_without_buckets_is_split_and_scored_as_it_was_trained(warehouse, blobs):
    # Snapshots taken before the bucket column: the blake2b split over every row, as then, so a
    # replayed training event reproduces its metrics exactly.
    snapshot = load_snapshot(warehouse, f"old_snapshot_{uuid.uuid4().hex[:8]}")
    assert SPLIT_BUCKET_COLUMN not in dict(warehouse.table_columns(snapshot) or [])
    spec = contract_spec()
    artifact, evaluation = train_and_evaluate(warehouse, blobs, spec, snapshot)
    [(_, _, where, returned)] = warehouse.reads
    assert (where, returned) == ([], len(snapshot_rows()))
    options = parse_model_options(spec.model.type, spec.model.options)
    everything = warehouse.read_rows(snapshot, ["_row_id", "mean_radius", "mean_texture", LABEL])
    held_out = split_for(spec.model.type, options, everything).eval_rows  # the rule before buckets
    model = load_artifact(read_folder(blobs, artifact.artifact_uri), expected_checksum=artifact.checksum)
    assert evaluation.eval_rows == len(held_out)
    assert evaluation.metrics == evaluate(model, held_out)
    assert artifact.train_rows + evaluation.eval_rows == len(snapshot_rows())


def test_a_custom_split_is_read_by_its_column(warehouse, blobs):
    snapshot = taken_snapshot(warehouse)
    _, evaluation = train_and_evaluate(
        warehouse, blobs, contract_spec(options={"data_split_method": "CUSTOM", "data_split_col": "is_eval"}), snapshot)
    [(_, _, where, returned)] = warehouse.reads
    assert where == [Condition("is_eval", "is not false")]
    assert returned == evaluation.eval_rows == len(snapshot_rows()) // 4


def test_a_custom_split_column_that_is_not_bool_is_refused_before_reading(warehouse, blobs):
    snapshot = taken_snapshot(warehouse)
    spec = contract_spec(options={"data_split_method": "CUSTOM", "data_split_col": "size"})
    backend = SklearnBackend(warehouse, blobs)
    with pytest.raises(SplitError, match="must be BOOL, the snapshot's is FLOAT64"):
        backend.held_out_rows(spec, snapshot)
    assert warehouse.reads == []
    assert backend.is_permanent(SplitError("x"))


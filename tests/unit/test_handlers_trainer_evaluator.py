"""trainer and evaluator handlers over in-memory ports and the scripted trainer backend.

The backend reads the snapshot and checks artifacts for real (only its metrics are scripted), so
each test has the example events' snapshot in the warehouse and the artifacts they name in the blob
store; a snapshot of 200 rows is below BigQuery ML's AUTO_SPLIT threshold, so it is not split.
"""

from __future__ import annotations

import json

import pytest

from evaluator.handler import Evaluator
from mlops.core.errors import PermanentError
from mlops.core.events import DataReady, ModelEvaluated, ModelTrained
from mlops.ml.artifact import folder_checksum, read_folder
from mlops.ml.errors import InvalidInstancesError
from mlops.ports.registry import VersionMeta
from mlops.testing.contracts.trainer import SNAPSHOT_ROWS, load_snapshot
from trainer.handler import RECORD_SUFFIX, Trainer, candidate_id

from .conftest import envelope_for, make_spec

EVENT_ID = "5d1c2a0e-aaaa-4000-8000-000000000001"
CANDIDATE_URI = "gs://test-bucket/models/breast-cancer/d0002-7f3a9c1e"  # artifacts are folders
CANDIDATE_BYTES = b"the candidate model"
CHAMPION_URI = "gs://test-bucket/models/breast-cancer/d0001-11111111"
CHAMPION_BYTES = b"the champion model"


def checksum(data: bytes) -> str:
    """The checksum of a folder holding `data` as its one file (what the fixture below stores)."""
    return folder_checksum({"model.json": data})


@pytest.fixture(autouse=True)
def snapshot_and_artifacts(warehouse, blobs) -> None:
    """The snapshot the example events name, and the artifacts of the candidate and the champion."""
    load_snapshot(warehouse, DataReady.example().snapshot_table)
    blobs.put(f"{CANDIDATE_URI}/model.json", CANDIDATE_BYTES)
    blobs.put(f"{CHAMPION_URI}/model.json", CHAMPION_BYTES)


# ---------------------------------------------------------------------------------------------- trainer

@pytest.fixture
def trainer(backend, specs, blobs) -> Trainer:
    specs.put(make_spec())
    return Trainer(backend, specs, blobs)


def ready() -> DataReady:
    return DataReady.example()


def test_candidate_ids_come_from_the_data_version_and_the_event():
    assert candidate_id("d0002", "5d1c2a0e-aaaa-4000-8000-000000000001") == "d0002-5d1c2a0e"


def test_the_trainer_trains_the_spec_on_the_snapshot_and_announces_the_candidate(trainer, backend, blobs):
    [trained] = trainer.handle(ready(), envelope_for(ready(), event_id=EVENT_ID))
    candidate = "d0002-5d1c2a0e"
    assert backend.train_calls == [("breast-cancer", ready().snapshot_table, f"models/breast-cancer/{candidate}")]
    assert trained.pipeline == "breast-cancer"
    assert trained.candidate_version == candidate
    assert trained.model_type == "LOGISTIC_REG"
    assert trained.backend == "scripted"
    assert trained.artifact_uri == f"gs://test-bucket/models/breast-cancer/{candidate}"
    assert trained.artifact_checksum.startswith("sha256:") and len(trained.artifact_checksum) == 71
    assert trained.hyperparameters == {"l2_reg": "1.0"}
    assert (trained.feature_columns, trained.label_column) == (["mean_radius", "mean_texture"], "malignant")
    assert (trained.snapshot_table, trained.data_version) == (ready().snapshot_table, "d0002")
    assert (trained.train_rows, trained.train_seconds) == (SNAPSHOT_ROWS, 0.012346)  # AUTO_SPLIT: no split
    assert folder_checksum(read_folder(blobs, trained.artifact_uri)) == trained.artifact_checksum
    # The redelivery record sits beside the folder: the folder holds the artifact's files only.
    assert read_folder(blobs, trained.artifact_uri).keys() == {"model.json"}
    record = blobs.get(f"models/breast-cancer/{candidate}{RECORD_SUFFIX}")
    assert ModelTrained.model_validate_json(record) == trained


def test_the_same_event_twice_trains_once_and_announces_the_same_candidate(trainer, backend):
    envelope = envelope_for(ready(), event_id=EVENT_ID)
    first = trainer.handle(ready(), envelope)
    second = trainer.handle(ready(), envelope)
    assert len(backend.train_calls) == 1
    assert second == first


def test_another_event_for_the_same_data_trains_a_new_candidate(trainer, backend):
    first = trainer.handle(ready(), envelope_for(ready(), event_id=EVENT_ID))
    replay = trainer.handle(ready(), envelope_for(ready(), event_id="9e8d7c6b-0000-4000-8000-000000000002"))
    assert len(backend.train_calls) == 2
    assert first[0].candidate_version != replay[0].candidate_version


def test_an_unknown_pipeline_is_a_permanent_error(trainer, backend):
    event = ready().model_copy(update={"pipeline": "no-such-pipeline"})
    with pytest.raises(PermanentError, match="no-such-pipeline"):
        trainer.handle(event, envelope_for(event))
    assert backend.train_calls == []


def test_an_error_the_backend_calls_permanent_becomes_a_permanent_error(trainer, backend, blobs):
    gone = ready().model_copy(update={"snapshot_table": "test-project.mlops_snapshots.breast_cancer__d0009"})
    with pytest.raises(PermanentError, match="does not exist"):
        trainer.handle(gone, envelope_for(gone))
    assert not any(path.endswith(RECORD_SUFFIX) for path in blobs.list("models/"))


def test_a_spec_naming_a_column_the_snapshot_lacks_is_a_permanent_error(backend, specs, blobs):
    specs.put(make_spec(source={"label": "diagnosis"}))
    with pytest.raises(PermanentError, match="diagnosis"):
        Trainer(backend, specs, blobs).handle(ready(), envelope_for(ready()))


def test_any_other_backend_error_is_left_for_a_retry_and_leaves_no_record(trainer, backend, blobs):
    backend.train_error = ConnectionError("warehouse unreachable")
    envelope = envelope_for(ready(), event_id=EVENT_ID)
    with pytest.raises(ConnectionError):
        trainer.handle(ready(), envelope)
    assert not any(path.endswith(RECORD_SUFFIX) for path in blobs.list("models/"))
    backend.train_error = None
    [trained] = trainer.handle(ready(), envelope)  # the retry trains
    assert len(backend.train_calls) == 2 and trained.candidate_version == "d0002-5d1c2a0e"


# ---------------------------------------------------------------------------------------------- evaluator

def add_champion(registry) -> str:
    meta = VersionMeta(artifact_uri=CHAMPION_URI, artifact_checksum=checksum(CHAMPION_BYTES), metrics={"roc_auc": 0.0})
    version = registry.register_version("breast-cancer", "breast-cancer", CHAMPION_URI + "/",
                                        "img", {"source_event": "e0"}, [], json.dumps(meta.to_json()))
    registry.move_alias("breast-cancer", version.version_id, "champion")
    return version.version_id


def trained_event(**changes) -> ModelTrained:
    """The example `model.trained`, naming the candidate artifact this module stores."""
    stored = {"artifact_uri": CANDIDATE_URI, "artifact_checksum": checksum(CANDIDATE_BYTES)}
    return ModelTrained.example().model_copy(update={**stored, **changes})


def evaluate(evaluator: Evaluator, trained: ModelTrained | None = None) -> ModelEvaluated:
    trained = trained or trained_event()
    [evaluated] = evaluator.handle(trained, envelope_for(trained))
    return evaluated


@pytest.fixture
def evaluator(backend, specs, registry) -> Evaluator:
    specs.put(make_spec())  # roc_auc, minimum 0.8, min_gain 0.01
    return Evaluator(backend, specs, registry)


def test_with_no_champion_a_candidate_above_the_minimum_is_promoted(evaluator, backend):
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.91, "accuracy": 0.88}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "promote"
    assert "no champion" in evaluated.reason
    assert evaluated.champion_version is None and evaluated.champion_metrics == {}
    assert evaluated.metrics == {"roc_auc": 0.91, "accuracy": 0.88}
    assert evaluated.gate_metric == "roc_auc" and evaluated.eval_rows == SNAPSHOT_ROWS  # unsplit: all rows
    trained = trained_event()
    for name in ("pipeline", "candidate_version", "model_type", "artifact_uri", "artifact_checksum",
                 "snapshot_table", "data_version"):
        assert getattr(evaluated, name) == getattr(trained, name)
    assert backend.evaluate_calls == [(trained.artifact_uri, trained.snapshot_table)]


def test_with_no_champion_a_candidate_below_the_minimum_is_rejected(evaluator, backend):
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.75}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "reject"
    assert "misses the bar" in evaluated.reason and "0.8" in evaluated.reason


def test_a_better_champion_rejects_the_candidate_with_the_reason(evaluator, backend, registry):
    version = add_champion(registry)
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.90}
    backend.scores[CHAMPION_URI] = {"roc_auc": 0.93}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "reject"
    assert evaluated.champion_version == version
    assert evaluated.champion_metrics == {"roc_auc": 0.93}
    assert f"champion v{version}" in evaluated.reason and "gain -0.0300" in evaluated.reason
    # Both were scored on the candidate's snapshot: the same held-out rows.
    assert {table for _, table in backend.evaluate_calls} == {trained_event().snapshot_table}


def test_a_candidate_gaining_too_little_is_rejected(evaluator, backend, registry):
    add_champion(registry)
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.935}
    backend.scores[CHAMPION_URI] = {"roc_auc": 0.93}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "reject" and "required 0.01" in evaluated.reason


def test_a_candidate_beating_the_champion_by_enough_is_promoted(evaluator, backend, registry):
    version = add_champion(registry)
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.96}
    backend.scores[CHAMPION_URI] = {"roc_auc": 0.93}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "promote"
    assert f"beats champion v{version}" in evaluated.reason


def test_lower_is_better_metrics_are_compared_the_right_way(backend, specs, registry):
    specs.put(make_spec(model={"type": "LINEAR_REG", "options": {}},
                        promotion={"metric": "mean_absolute_error", "minimum": 2.8, "min_gain": 0.1}))
    evaluator = Evaluator(backend, specs, registry)
    candidate = trained_event(model_type="LINEAR_REG").artifact_uri
    assert candidate == CANDIDATE_URI

    backend.scores[candidate] = {"mean_absolute_error": 2.0}
    assert evaluate(evaluator).decision == "promote"  # no champion, under the 2.8 ceiling

    backend.scores[candidate] = {"mean_absolute_error": 3.0}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "reject" and "<= 2.8" in evaluated.reason

    add_champion(registry)
    backend.scores[CHAMPION_URI] = {"mean_absolute_error": 2.5}
    backend.scores[candidate] = {"mean_absolute_error": 2.3}  # better, by 0.2 >= 0.1
    assert evaluate(evaluator).decision == "promote"
    backend.scores[candidate] = {"mean_absolute_error": 2.45}  # better, by 0.05 < 0.1
    assert evaluate(evaluator).decision == "reject"
    backend.scores[candidate] = {"mean_absolute_error": 2.7}  # worse
    assert evaluate(evaluator).decision == "reject"


def test_a_champion_that_cannot_be_scored_is_no_bar(evaluator, backend, registry):
    version = add_champion(registry)
    backend.fail_on[CHAMPION_URI] = InvalidInstancesError(["mean_area: the champion's feature is not in the rows"])
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.85}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "promote"
    assert evaluated.champion_version == version and evaluated.champion_metrics == {}


def test_a_transient_failure_scoring_the_champion_is_retried_not_ignored(evaluator, backend, registry):
    add_champion(registry)
    backend.fail_on[CHAMPION_URI] = ConnectionError("timeout")
    with pytest.raises(ConnectionError):
        evaluate(evaluator)


def test_the_same_event_twice_gives_the_same_decision(evaluator, backend, registry):
    add_champion(registry)
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.96}
    backend.scores[CHAMPION_URI] = {"roc_auc": 0.93}
    trained = trained_event()
    envelope = envelope_for(trained, event_id=EVENT_ID)
    [first] = evaluator.handle(trained, envelope)
    [second] = evaluator.handle(trained, envelope)
    timing = {"evaluate_seconds"}
    assert first.model_dump(exclude=timing) == second.model_dump(exclude=timing)


def test_a_metric_the_candidate_lacks_rejects_it(evaluator, backend):
    backend.scores[trained_event().artifact_uri] = {"accuracy": 0.99}  # roc_auc undefined on these rows
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "reject" and "roc_auc was not computed" in evaluated.reason


def test_evaluating_an_unknown_pipeline_is_permanent(evaluator):
    with pytest.raises(PermanentError, match="cannot evaluate"):
        evaluate(evaluator, trained_event(pipeline="no-such-pipeline"))


def test_a_champion_whose_artifact_fails_its_checksum_is_no_bar(evaluator, backend, registry, blobs):
    version = add_champion(registry)
    blobs.put(f"{CHAMPION_URI}/model.json", b"overwritten since it was registered")
    backend.scores[trained_event().artifact_uri] = {"roc_auc": 0.85}
    evaluated = evaluate(evaluator)
    assert evaluated.decision == "promote"
    assert evaluated.champion_version == version and evaluated.champion_metrics == {}


def test_a_permanent_backend_error_on_the_candidate_is_permanent(evaluator):
    with pytest.raises(PermanentError, match="checksum mismatch"):
        evaluate(evaluator, trained_event(artifact_checksum="sha256:" + "0" * 64))

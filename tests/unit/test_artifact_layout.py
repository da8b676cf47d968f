"""Artifacts are read and registered only from the project's bucket under models/<pipeline>/: a forged
`model.evaluated` (or a trained event) naming another bucket is refused as permanent by the registrar
and the evaluator's backend, and the checksum registered is the one the events carried."""

from __future__ import annotations

import base64

import pytest

from evaluator.handler import Evaluator
from mlops.adapters.sklearn_backend import SklearnBackend
from mlops.core.errors import PermanentError
from mlops.core.events import ModelEvaluated, ModelTrained, encode
from mlops.core.layout import ArtifactOutsideLayout, require_project_artifact
from mlops.ports.registry import VersionMeta
from mlops.runtime.push import PushEndpoint, Route
from mlops.testing.memory import InMemoryBlobStore, InMemoryEventBus, InMemoryModelRegistry, InMemoryWarehouse
from registrar.handler import Registrar

from .conftest import envelope_for, make_spec

BUCKET = "test-bucket"


@pytest.mark.parametrize("uri", [
    "gs://test-bucket/models/breast-cancer/d0002-7f3a9c1e",  # an artifact is a folder
    "gs://test-bucket/models/breast-cancer/d0002-7f3a9c1e/",
    "gs://test-bucket/models/breast-cancer/d0002-7f3a9c1e/model.json",  # or a file in it
    "gs://test-bucket/models/breast-cancer/d0002-rerun/sub/model.zip",
])
def test_the_projects_own_artifacts_pass(uri: str):
    assert require_project_artifact(uri, bucket=BUCKET, pipeline="breast-cancer") == uri[len("gs://test-bucket/"):]


@pytest.mark.parametrize(("uri", "reason"), [
    ("gs://another-bucket/models/breast-cancer/c1/model.zip", "is in bucket 'another-bucket'"),
    ("gs://test-bucket.evil.com/models/breast-cancer/c1/model.zip", "is in bucket 'test-bucket.evil.com'"),
    ("gs://test-bucket/models/iris/c1/model.zip", "is not under gs://test-bucket/models/breast-cancer/"),
    ("gs://test-bucket/models/breast-cancer-2/c1/model.zip", "is not under gs://test-bucket/models/breast-cancer/"),
    ("gs://test-bucket/specs/breast-cancer.yaml", "is not under"),
    ("gs://test-bucket/models/breast-cancer/../../deployments/x.json", "no '..' or empty ones"),
    ("gs://test-bucket/models/breast-cancer/c1//model.zip", "no '..' or empty ones"),
    ("gs://test-bucket/models/breast-cancer/", "<candidate>[/<file>]"),
    ("gs://test-bucket/models/breast-cancer/c1/model.zip?alt=media", "<candidate>[/<file>]"),
    ("https://storage.googleapis.com/test-bucket/models/breast-cancer/c1/model.zip", "is not a gs:// URI"),
    ("/models/breast-cancer/c1/model.zip", "is not a gs:// URI"),
    ("bq://proj.dataset.model", "is not a gs:// URI"),
])
def test_anything_else_is_refused_as_permanent_with_the_reason(uri: str, reason: str):
    with pytest.raises(ArtifactOutsideLayout) as refused:
        require_project_artifact(uri, bucket=BUCKET, pipeline="breast-cancer")
    assert isinstance(refused.value, PermanentError) and reason in str(refused.value)


# ------------------------------------------------------------------------------------ registrar

def evaluated(uri: str, checksum: str = "sha256:" + "ab" * 32) -> ModelEvaluated:
    return ModelEvaluated.example().model_copy(update={"artifact_uri": uri, "artifact_checksum": checksum,
                                                        "pipeline": "breast-cancer"})


def test_the_registrar_dead_letters_a_forged_model_evaluated(registry: InMemoryModelRegistry):
    bus = InMemoryEventBus()
    registrar = Registrar(registry, "predictor:test", "abc", bucket=BUCKET)
    endpoint = PushEndpoint(service="registrar", project="p", bus=bus, dead_letter_topic="mlops.dead-letter",
                            routes={ModelEvaluated.EVENT_TYPE: Route(registrar.handle)})
    forged = evaluated("gs://another-bucket/models/breast-cancer/c1/model.zip")
    envelope = envelope_for(forged)
    status, body = endpoint.handle_message({"data": base64.b64encode(encode(forged)).decode(), "messageId": "m1",
                                            "attributes": envelope.to_attributes()}, "s")
    assert (status, body["status"]) == (200, "dead-lettered")
    assert "ArtifactOutsideLayout" in body["reason"] and "another-bucket" in body["reason"]
    assert registry.list_versions("breast-cancer") == []  # no version, no champion


@pytest.mark.parametrize("checksum", ["", "md5:abc", "sha256:" + "z" * 64, "sha256:" + "0" * 63])
def test_the_registrar_refuses_a_checksum_that_is_not_sha256(registry: InMemoryModelRegistry, checksum: str):
    registrar = Registrar(registry, "predictor:test", "abc", bucket=BUCKET)
    event = evaluated(f"gs://{BUCKET}/models/breast-cancer/c1/model.zip", checksum)
    with pytest.raises(PermanentError, match="is not 'sha256:<64 hex digits>'"):
        registrar.handle(event, envelope_for(event))
    assert registry.list_versions("breast-cancer") == []


def test_the_registered_checksum_is_the_one_the_event_carried(registry: InMemoryModelRegistry):
    registrar = Registrar(registry, "predictor:test", "abc", bucket=BUCKET)
    event = evaluated(f"gs://{BUCKET}/models/breast-cancer/c1/model.zip", "sha256:" + "cd" * 32)
    [registered] = registrar.handle(event, envelope_for(event))
    meta = VersionMeta.of(registry.get_version("breast-cancer", registered.version_id))
    assert (meta.artifact_uri, meta.artifact_checksum) == (event.artifact_uri, event.artifact_checksum)


# ------------------------------------------------------------------------------------ evaluator

def test_the_evaluators_backend_refuses_a_foreign_artifact_before_reading_it():
    blobs = InMemoryBlobStore(BUCKET)
    backend = SklearnBackend(InMemoryWarehouse(project="test-project"), blobs)
    spec = make_spec()
    with pytest.raises(ArtifactOutsideLayout) as refused:
        backend.evaluate(spec, "gs://another-bucket/models/breast-cancer/c1/model.zip", "sha256:" + "0" * 64,
                         "snapshot")
    assert backend.is_permanent(refused.value)


def test_the_evaluator_dead_letters_a_trained_event_naming_another_bucket(specs, registry):
    blobs = InMemoryBlobStore(BUCKET)
    specs.put(make_spec())
    evaluator = Evaluator(SklearnBackend(InMemoryWarehouse(project="test-project"), blobs), specs, registry)
    trained = ModelTrained.example().model_copy(update={
        "pipeline": "breast-cancer", "artifact_uri": "gs://another-bucket/models/breast-cancer/c1/model.zip"})
    with pytest.raises(PermanentError, match="another-bucket"):
        evaluator.handle(trained, envelope_for(trained))

"""Artifact folders: one format per model family, one checksum, the same predictions when served.

The parity tests compare, for every model type, what training computed (scikit-learn's fitted
pipeline for linear models; the booster xgboost trained, before it was saved, for trees) with what
the predictor's loader serves from the folder's bytes.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mlops.core.errors import PermanentError
from mlops.ml.artifact import (
    ArtifactError,
    ChecksumMismatchError,
    folder_checksum,
    load_artifact,
    read_folder,
    write_folder,
)
from mlops.ml.features import feature_matrix
from mlops.ml.linear import LinearModel
from mlops.ml.options import ModelType, parse_model_options
from mlops.ml.training import _pipeline, build_estimator, split_for, train
from mlops.ml.trees import TreeModel, booster_params, vocabularies_of
from mlops.testing.memory import InMemoryBlobStore
from predictor.loading import load_served_model

FEATURES = ["x", "z", "colour", "fresh"]
MODEL_TYPES = [("LOGISTIC_REG", "label"), ("LOGISTIC_REG", "size"), ("LINEAR_REG", "amount"),
               ("BOOSTED_TREE_CLASSIFIER", "label"), ("BOOSTED_TREE_CLASSIFIER", "size"),
               ("BOOSTED_TREE_REGRESSOR", "amount"), ("RANDOM_FOREST_CLASSIFIER", "label")]


def rows(n: int = 300) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        x, colour = rng.gauss(5, 3), rng.choice(["red", "green", "blue"])
        z = None if i % 13 == 0 else rng.random()
        fresh = None if i % 17 == 0 else rng.random() < 0.5
        out.append({"_mlops_row_id": f"r{i}", "x": x, "z": z, "colour": colour, "fresh": fresh,
                    "label": int(x + (colour == "red") * 2 + rng.gauss(0, 1) > 6),
                    "size": ["small", "medium", "large"][min(2, int(x // 4))] if x > 0 else "small",
                    "amount": 2.0 * x + (3.0 if colour == "blue" else 0.0) + rng.gauss(0, 0.2)})
    return out


PROBES = [{"x": 4.0, "z": 0.3, "colour": "red", "fresh": True}, {"x": 9.5, "z": None, "colour": "blue", "fresh": None},
          {"x": -1.0, "z": 0.9, "colour": "green", "fresh": False}]


@pytest.mark.parametrize(("model_type", "label"), MODEL_TYPES)
def test_a_trained_model_serves_from_its_folder_with_the_same_predictions(model_type, label):
    data = rows()
    model = train(model_type, {}, data, FEATURES, label, seed=3)
    blobs = InMemoryBlobStore("b")
    uri = write_folder(blobs, "models/p/c1", model.files)
    assert uri == "gs://b/models/p/c1"
    served = load_served_model(blobs, uri, folder_checksum(model.files))
    assert isinstance(served, LinearModel if model_type.endswith("_REG") else TreeModel)
    assert served.predict(PROBES) == model.predict(PROBES)
    assert served.is_classifier == model.is_classifier and served.classes == model.classes


@pytest.mark.parametrize(("model_type", "label"), [t for t in MODEL_TYPES if t[0].endswith("_REG")])
def test_linear_parity_the_folded_weights_predict_what_scikit_learn_fitted(model_type, label):
    data = rows()
    kind = ModelType(model_type)
    options = parse_model_options(kind, {})
    model = train(kind, options, data, FEATURES, label, seed=3)
    train_rows = split_for(kind, options, [r for r in data if r[label] is not None]).train_rows
    labels = np.array([r[label] for r in train_rows])
    estimator, _ = build_estimator(kind, options, seed=3, labels=labels)
    pipeline = _pipeline(model.features, estimator).fit(feature_matrix(train_rows, model.features), labels)
    probes = data[:50] + [{**p, "colour": "purple"} for p in PROBES]  # unseen: weight 0 / all-zero one-hot
    matrix = feature_matrix(probes, model.features)
    expected = pipeline.predict_proba(matrix) if model.is_classifier else pipeline.predict(matrix)
    served = load_artifact(model.files, expected_checksum=folder_checksum(model.files))
    actual = served.predict_proba(probes) if model.is_classifier else served.predict(probes, extra_columns_ok=True)[0]
    assert np.asarray(actual) == pytest.approx(np.asarray(expected), abs=1e-9)


@pytest.mark.parametrize(("model_type", "label"), [t for t in MODEL_TYPES if not t[0].endswith("_REG")])
def test_tree_parity_the_saved_booster_predicts_what_xgboost_trained(model_type, label):
    import xgboost

    data = rows()
    kind = ModelType(model_type)
    options = parse_model_options(kind, {"data_split_method": "NO_SPLIT", "early_stop": False}
                                  if kind is not ModelType.RANDOM_FOREST_CLASSIFIER else {"data_split_method": "NO_SPLIT"})
    model = train(kind, options, data, FEATURES, label, seed=3)
    served = model.served
    assert isinstance(served, TreeModel)
    classes = model.classes
    target = [classes.index(r[label]) if classes else r[label] for r in data]
    params, rounds = booster_params(kind, options, seed=3, num_class=len(classes) if classes else None)
    assert vocabularies_of(data, model.features)["colour"] == ["blue", "green", "red"]
    in_memory = xgboost.train(params, xgboost.DMatrix(served.encode(data), label=np.array(target, dtype=float)),
                              num_boost_round=rounds)
    expected = in_memory.inplace_predict(served.encode(PROBES))
    actual = served.predict_proba(PROBES) if model.is_classifier else served.predict(PROBES)[0]
    assert np.asarray(actual) == pytest.approx(np.asarray(expected, dtype=float), abs=1e-6)


@pytest.mark.parametrize("model_type", ["LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER", "RANDOM_FOREST_CLASSIFIER"])
def test_a_replay_writes_the_same_bytes(model_type):
    first = train(model_type, {}, rows(), FEATURES, "label", seed=11)
    again = train(model_type, {}, rows(), FEATURES, "label", seed=11)
    assert first.files == again.files and folder_checksum(first.files) == folder_checksum(again.files)


def test_the_tree_folder_is_bigquery_mls_export_layout():
    model = train("BOOSTED_TREE_CLASSIFIER", {}, rows(), FEATURES, "label", seed=1)
    assert sorted(model.files) == ["assets/2_categorical_label.txt", "assets/3_categorical_label.txt",
                                   "assets/model_metadata.json", "mlops_model.json", "model.bst"]
    metadata = json.loads(model.files["assets/model_metadata.json"])
    assert metadata == {
        "model_type": "boosted_tree_classifier", "label_col": "label", "feature_names": FEATURES, "class_names": ["0", "1"],
        "features": {"x": {"encode_type": "numerical_identity"}, "z": {"encode_type": "numerical_identity"},
                     "colour": {"encode_type": "categorical_label"}, "fresh": {"encode_type": "categorical_label"}}}
    assert model.files["assets/2_categorical_label.txt"] == b"blue\ngreen\nred\n"
    assert model.files["assets/3_categorical_label.txt"] == b"false\ntrue\n"
    assert model.files["model.bst"][:1] == b"{"  # UBJ, written by xgboost's save_model


def test_the_linear_artifact_holds_raw_feature_weights_and_the_card():
    model = train("LOGISTIC_REG", {}, rows(), FEATURES, "label", seed=1)
    doc = json.loads(model.files["model.json"])
    assert doc["format"] == "mlops-linear-model" and doc["link"] == "logistic"
    assert set(doc["numeric"]) == {"x", "z"} and set(doc["categorical"]["colour"]["weights"]) == {"blue", "green", "red"}
    assert "__NULL__" in doc["categorical"]["fresh"]["weights"]  # training saw NULLs there
    assert doc["card"]["classes"] == [0, 1] and doc["card"]["training"]["rows_train"] == model.training.rows_train
    assert doc["card"]["drift_reference"] is not None
    # A numeric NULL is scored as the training mean: the same as sending that mean.
    mean = doc["numeric"]["z"]["null_value"]
    served = model.served
    assert served.predict_proba([{**PROBES[0], "z": None}]) == pytest.approx(
        served.predict_proba([{**PROBES[0], "z": mean}]))


def test_checksum_covers_names_and_bytes_of_every_file():
    files = {"model.json": b"a", "assets/x.txt": b"b"}
    assert folder_checksum(files) == folder_checksum(dict(reversed(list(files.items()))))
    assert folder_checksum(files) != folder_checksum({"model.json": b"a", "assets/y.txt": b"b"})
    assert folder_checksum(files) != folder_checksum({**files, "extra": b""})
    assert folder_checksum(files) != folder_checksum({"model.json": b"a"})


def test_anything_but_the_trained_folder_is_refused():
    model = train("LOGISTIC_REG", {}, rows(), FEATURES, "label", seed=1)
    good = folder_checksum(model.files)
    with pytest.raises(ChecksumMismatchError):
        load_artifact({**model.files, "model.json": model.files["model.json"] + b" "}, expected_checksum=good)
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(model.files, expected_checksum="md5:abc")
    junk = {"weights.pkl": b"\x80\x04"}
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_artifact(junk, expected_checksum=folder_checksum(junk))
    wrong = {"model.json": b'{"format": "something-else"}'}
    with pytest.raises(ArtifactError, match="mlops-linear-model"):
        load_artifact(wrong, expected_checksum=folder_checksum(wrong))


def test_the_loader_turns_an_artifact_that_can_never_load_into_a_permanent_error():
    blobs = InMemoryBlobStore("b")
    with pytest.raises(PermanentError, match="empty or missing"):
        load_served_model(blobs, "gs://b/models/p/nothing", "sha256:" + "0" * 64)
    model = train("LINEAR_REG", {}, rows(), FEATURES, "amount", seed=1)
    uri = write_folder(blobs, "models/p/c2", model.files)
    with pytest.raises(PermanentError, match="checksum mismatch"):
        load_served_model(blobs, uri, "sha256:" + "0" * 64)
    assert read_folder(blobs, uri + "/") == dict(model.files)

import io
import json
import pickle
import zipfile

import pytest
import skops.io

from mlops.ml.artifact import (
    ArtifactError,
    ChecksumMismatchError,
    UntrustedTypesError,
    checksum,
    dumps_model,
    loads_model,
    read_metadata,
)
from mlops.ml.training import train

CONSTRUCTED: list[str] = []


class Payload:
    """Stands for a hostile object in the bucket: loading it would run its __setstate__."""

    def __setstate__(self, state):
        CONSTRUCTED.append("payload ran")


def rows(count: int = 120) -> list[dict]:
    return [{"_row_id": f"r{i}", "x": float(i % 13), "kind": "ab"[i % 2], "label": int(i % 13 > 6),
             "amount": float(i % 13) * 2.0} for i in range(count)]


def load(data: bytes):
    return loads_model(data, expected_checksum=checksum(data))


def rezip(original: bytes, **replacements: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            target.writestr(name, replacements.pop(name, source.read(name)))
        for name, content in replacements.items():
            target.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(("model_type", "label", "options"), [
    ("LOGISTIC_REG", "label", {"l2_reg": 0.1}),
    ("BOOSTED_TREE_CLASSIFIER", "label", {"class_weights": {"1": 2.0}}),
    ("RANDOM_FOREST_CLASSIFIER", "label", {"num_parallel_tree": 3}),
    ("LINEAR_REG", "amount", {"l1_reg": 0.1}),
    ("BOOSTED_TREE_REGRESSOR", "amount", {}),
])
def test_round_trip_keeps_predictions_and_metadata(model_type, label, options):
    model = train(model_type, options, rows(), ["x", "kind"], label, seed=9)
    loaded = load(dumps_model(model))
    sample = [{"x": 3.0, "kind": "a"}, {"x": 11.0, "kind": "b"}]
    assert loaded.predict(sample) == model.predict(sample)
    assert (loaded.model_type, loaded.options, loaded.features, loaded.label_column, loaded.classes, loaded.seed) == \
        (model.model_type, model.options, model.features, model.label_column, model.classes, model.seed)
    assert loaded.drift_reference == model.drift_reference
    assert loaded.training.rows_train == model.training.rows_train


def test_metadata_is_readable_without_loading_the_model():
    data = dumps_model(train("LOGISTIC_REG", {}, rows(), ["x"], "label", seed=4))
    metadata = read_metadata(data)
    assert metadata["model_type"] == "LOGISTIC_REG" and metadata["seed"] == 4 and metadata["classes"] == [0, 1]
    assert {"scikit-learn", "numpy", "skops", "python"} <= set(metadata["libraries"])


def test_checksum_mismatch_is_refused():
    data = dumps_model(train("LOGISTIC_REG", {}, rows(), ["x"], "label"))
    assert checksum(data).startswith("sha256:") and len(checksum(data)) == 7 + 64
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(ChecksumMismatchError):
        loads_model(tampered, expected_checksum=checksum(data))
    with pytest.raises(ArtifactError, match="sha256:<hex>"):
        loads_model(data, expected_checksum="md5:abc")


def test_a_bare_pickle_is_refused_even_with_a_matching_checksum():
    data = pickle.dumps(Payload())
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load(data)
    assert not CONSTRUCTED


def test_a_pipeline_with_untrusted_types_is_refused_before_anything_is_built():
    good = dumps_model(train("LOGISTIC_REG", {}, rows(), ["x"], "label"))
    hostile = rezip(good, **{"model.skops": skops.io.dumps(Payload())})
    with pytest.raises(UntrustedTypesError) as error:
        load(hostile)
    assert any(name.endswith("Payload") for name in error.value.types)
    assert not CONSTRUCTED


def test_unexpected_members_or_metadata_are_refused():
    good = dumps_model(train("LOGISTIC_REG", {}, rows(), ["x"], "label"))
    with pytest.raises(ArtifactError, match="members"):
        load(rezip(good, **{"run.py": b"print('hi')"}))
    with pytest.raises(ArtifactError, match="format"):
        load(rezip(good, **{"metadata.json": json.dumps({"format": "other"}).encode()}))

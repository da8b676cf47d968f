"""A trained model as bytes for the artifact store, loadable without running code from the bucket.

The artifact is a zip of two members:
- `metadata.json`: format version, model type, options, features, label, classes, seed, training summary,
  drift reference and the library versions it was written with;
- `model.skops`: the fitted scikit-learn pipeline in skops' format, which rebuilds objects from a JSON
  schema instead of unpickling, and names every type it would construct.

Loading refuses, with a clear error, anything but that: bytes whose sha256 differs from the checksum the
`model.trained` event carried, a file that isn't this zip, or a pipeline that needs a type outside
`TRUSTED_TYPES` (skops already trusts scikit-learn's estimators and plain containers; the few types it
reports as untrusted for our pipelines are listed explicitly, and nothing else is ever trusted).

Artifacts of the same model are not byte-identical (skops names arrays after object ids), so a checksum
identifies an artifact, not a model.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import warnings
import zipfile
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mlops.ml.drift import DriftReference
from mlops.ml.errors import InputError
from mlops.ml.features import FeatureKind, FeatureSpec
from mlops.ml.model import TrainedModel, TrainingSummary
from mlops.ml.options import ModelType, parse_model_options

ARTIFACT_FORMAT = "mlops-model"
ARTIFACT_FORMAT_VERSION = 1
METADATA_MEMBER = "metadata.json"
MODEL_MEMBER = "model.skops"
CHECKSUM_PREFIX = "sha256:"
# A zip bomb guard: far above any model this project trains (a 100-tree forest on 50k rows is ~100 MB).
MAX_UNCOMPRESSED_BYTES = 1 << 30

# Types skops does not trust by default but our pipelines contain: numpy dtypes, and the tree structures
# of HistGradientBoosting and RandomForest. Exact names only; a new one fails loudly (see the tests).
TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "skops")
# Fixed member timestamps: the zip's own bytes then depend only on its contents.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


class ArtifactError(InputError):
    """The bytes are not a loadable model artifact."""


class ChecksumMismatchError(ArtifactError):
    pass


class UntrustedTypesError(ArtifactError):
    def __init__(self, types: list[str]):
        self.types = types
        super().__init__(f"model artifact refused: it would construct types outside the allow-list: {types}")


class ArtifactVersionWarning(UserWarning):
    """The artifact was written with other library versions than the loading process has."""


def checksum(data: bytes) -> str:
    return CHECKSUM_PREFIX + hashlib.sha256(data).hexdigest()


def verify_checksum(data: bytes, expected: str) -> None:
    if not expected.startswith(CHECKSUM_PREFIX):
        raise ArtifactError(f"checksum {expected!r} is not of the form 'sha256:<hex>'")
    actual = checksum(data)
    if actual != expected:
        raise ChecksumMismatchError(f"model artifact checksum mismatch: expected {expected}, got {actual}")


def dumps_model(model: TrainedModel) -> bytes:
    import skops.io

    pipeline_bytes = skops.io.dumps(model.pipeline, compression=zipfile.ZIP_DEFLATED)
    metadata = json.dumps(_metadata(model), sort_keys=True, indent=1).encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # model.skops is already compressed inside; storing it again avoids a second, useless deflate.
        archive.writestr(zipfile.ZipInfo(METADATA_MEMBER, _ZIP_TIMESTAMP), metadata, zipfile.ZIP_DEFLATED)
        archive.writestr(zipfile.ZipInfo(MODEL_MEMBER, _ZIP_TIMESTAMP), pipeline_bytes, zipfile.ZIP_STORED)
    return buffer.getvalue()


def loads_model(data: bytes, *, expected_checksum: str) -> TrainedModel:
    """Verify the checksum, then rebuild the model; raises ArtifactError (or a subclass) on any doubt."""
    verify_checksum(data, expected_checksum)
    metadata, pipeline_bytes = _members(data)
    pipeline = _load_pipeline(pipeline_bytes)
    _warn_on_version_drift(metadata.get("libraries", {}))
    return _model_from(metadata, pipeline)


def read_metadata(data: bytes) -> dict[str, Any]:
    """The metadata alone (no model loaded), e.g. for the data-watcher's drift reference."""
    return _members(data)[0]


def _metadata(model: TrainedModel) -> dict[str, Any]:
    training = asdict(model.training)
    training.pop("train_seconds")  # timing isn't part of the model; the event reports it
    training["ignored_options"] = list(training["ignored_options"])
    return {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "model_type": model.model_type.value,
        "options": model.options.model_dump(mode="json", exclude_none=True),
        "features": [{"name": spec.name, "kind": spec.kind.value} for spec in model.features],
        "label_column": model.label_column,
        "classes": list(model.classes) if model.classes is not None else None,
        "seed": model.seed,
        "training": training,
        "drift_reference": model.drift_reference.to_dict() if model.drift_reference else None,
        "libraries": _library_versions(),
    }


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _members(data: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArtifactError("not a model artifact: expected a zip of metadata.json and model.skops") from None
    with archive:
        names = sorted(info.filename for info in archive.infolist())
        if names != sorted((METADATA_MEMBER, MODEL_MEMBER)):
            raise ArtifactError(f"not a model artifact: members {names}, expected {[METADATA_MEMBER, MODEL_MEMBER]}")
        if sum(info.file_size for info in archive.infolist()) > MAX_UNCOMPRESSED_BYTES:
            raise ArtifactError("model artifact refused: it unpacks to more than 1 GiB")
        try:
            metadata = json.loads(archive.read(METADATA_MEMBER))
        except (ValueError, zipfile.BadZipFile) as error:
            raise ArtifactError(f"model artifact metadata unreadable: {error}") from None
        pipeline_bytes = archive.read(MODEL_MEMBER)
    if not isinstance(metadata, dict) or metadata.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError("not a model artifact: metadata.json lacks format 'mlops-model'")
    if metadata.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(f"model artifact format version {metadata.get('format_version')} is not supported "
                            f"(this code reads version {ARTIFACT_FORMAT_VERSION})")
    return metadata, pipeline_bytes


def _load_pipeline(pipeline_bytes: bytes) -> Any:
    import skops.io
    from sklearn.pipeline import Pipeline

    try:
        untrusted = skops.io.get_untrusted_types(data=pipeline_bytes)
    except Exception as error:  # skops raises a variety of errors on malformed input
        raise ArtifactError(f"model.skops unreadable: {type(error).__name__}: {error}") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise UntrustedTypesError(refused)
    try:
        pipeline = skops.io.loads(pipeline_bytes, trusted=list(untrusted))
    except Exception as error:
        raise ArtifactError(f"model.skops failed to load: {type(error).__name__}: {error}") from None
    if not isinstance(pipeline, Pipeline):
        raise ArtifactError(f"model.skops holds a {type(pipeline).__name__}, not a scikit-learn Pipeline")
    return pipeline


def _warn_on_version_drift(written_with: dict[str, str]) -> None:
    here = _library_versions()
    drifted = {name: (written_with.get(name), here[name]) for name in ("scikit-learn", "numpy")
               if written_with.get(name) != here[name]}
    if drifted:
        warnings.warn(ArtifactVersionWarning(
            "model artifact written with other library versions (written, loading): "
            + ", ".join(f"{name} {old} vs {new}" for name, (old, new) in drifted.items())), stacklevel=3)


def _model_from(metadata: dict[str, Any], pipeline: Any) -> TrainedModel:
    try:
        kind = ModelType(metadata["model_type"])
        training = dict(metadata["training"])
        training["ignored_options"] = tuple(training.get("ignored_options", ()))
        reference = metadata.get("drift_reference")
        return TrainedModel(
            model_type=kind,
            options=parse_model_options(kind, metadata["options"]),
            features=tuple(FeatureSpec(f["name"], FeatureKind(f["kind"])) for f in metadata["features"]),
            label_column=metadata["label_column"],
            classes=tuple(metadata["classes"]) if metadata["classes"] is not None else None,
            seed=int(metadata["seed"]),
            pipeline=pipeline,
            training=TrainingSummary(**training),
            drift_reference=DriftReference.from_dict(reference) if reference else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"model artifact metadata invalid: {type(error).__name__}: {error}") from None

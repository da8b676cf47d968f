"""A model version's artifact: a folder of files, its checksum, and loading it for serving.

The folder is `gs://<bucket>/models/<pipeline>/<candidate>/`; one format per model family:
- LINEAR_REG / LOGISTIC_REG: `model.json`, the portable linear artifact (`mlops.ml.linear`);
- BOOSTED_TREE_* / RANDOM_FOREST_CLASSIFIER: BigQuery ML's EXPORT MODEL layout, `model.bst` +
  `assets/model_metadata.json` + vocabularies, with this project's card `mlops_model.json` beside
  it (`mlops.ml.trees`).
Nothing in it is pickled or runs code when loaded: JSON, text and an XGBoost booster (UBJ/JSON).

The checksum (the one definition; the `model.trained` event carries it down to the predictor):
`sha256:` + the sha256 of the folder's manifest, one line per file in byte order of the relative
name: `<sha256 hex of the file>  <relative name>\\n` (what `sha256sum` prints, sorted). So every
file counts, a renamed, added or removed file changes it, and a user can recompute it with
`cd FOLDER && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from mlops.ml.errors import ArtifactError
from mlops.ml.linear import LINEAR_FILE, LinearModel
from mlops.ml.served import ServedModel
from mlops.ml.trees import BOOSTER_FILE, CARD_FILE, TREE_METADATA_FILE, tree_model_from_files

CHECKSUM_PREFIX = "sha256:"
# Far above any model this loop trains (a 100-tree forest is a few MB), below what a predictor holds.
MAX_FOLDER_BYTES = 512 << 20
MAX_FOLDER_FILES = 1000

__all__ = ["BOOSTER_FILE", "CARD_FILE", "LINEAR_FILE", "TREE_METADATA_FILE", "ArtifactError",
           "ChecksumMismatchError", "checksum", "folder_checksum", "load_artifact", "read_folder",
           "verify_checksum", "write_folder"]


class ChecksumMismatchError(ArtifactError):
    pass


class FolderReader(Protocol):
    """What reading a folder needs of a blob store (`mlops.ports.blobs.BlobStore` has it)."""

    bucket: str

    def get(self, uri_or_path: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...


class FolderWriter(Protocol):
    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str: ...


def folder_checksum(files: Mapping[str, bytes]) -> str:
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                       for name, data in sorted(files.items(), key=lambda item: item[0].encode()))
    return CHECKSUM_PREFIX + hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def checksum(data: bytes) -> str:
    """The sha256 of one blob, in the checksum's notation (for records that are a single object)."""
    return CHECKSUM_PREFIX + hashlib.sha256(data).hexdigest()


def verify_checksum(files: Mapping[str, bytes] | bytes, expected: str) -> None:
    if not isinstance(expected, str) or not expected.startswith(CHECKSUM_PREFIX):
        raise ArtifactError(f"checksum {str(expected)[:80]!r} is not of the form 'sha256:<hex>'")
    actual = checksum(files) if isinstance(files, bytes) else folder_checksum(files)
    if actual != expected:
        raise ChecksumMismatchError(f"model artifact checksum mismatch: expected {expected}, got {actual}")


def load_artifact(files: Mapping[str, bytes], *, expected_checksum: str) -> ServedModel:
    """Verify the folder's checksum, then build the servable model its format describes; raises
    ArtifactError (or a subclass) on any doubt."""
    verify_checksum(files, expected_checksum)
    if not files:
        raise ArtifactError("the artifact folder is empty")
    if LINEAR_FILE in files and BOOSTER_FILE in files:
        raise ArtifactError(f"the folder holds both {LINEAR_FILE} and {BOOSTER_FILE}: which model is it?")
    if LINEAR_FILE in files:
        return LinearModel.loads(files[LINEAR_FILE])
    if BOOSTER_FILE in files:
        return tree_model_from_files(files)
    raise ArtifactError(f"not a model artifact: no {LINEAR_FILE} (linear model) or {BOOSTER_FILE} "
                        f"(XGBoost export) among {sorted(files)[:10]}")


def _folder_path(folder_uri: str, bucket: str) -> str:
    if folder_uri.startswith("gs://"):
        named, _, path = folder_uri[len("gs://"):].partition("/")
        if named != bucket:
            raise ArtifactError(f"artifact folder {folder_uri[:200]!r} is not in bucket {bucket!r}")
    else:
        path = folder_uri.lstrip("/")
    return path.rstrip("/") + "/"


def read_folder(store: FolderReader, folder_uri: str) -> dict[str, bytes]:
    """Every object under the folder, by name relative to it. Raises ArtifactError for an empty or
    oversized folder; a storage failure is raised as it is."""
    prefix = _folder_path(folder_uri, store.bucket)
    paths = store.list(prefix)
    if not paths:
        raise ArtifactError(f"no artifact at gs://{store.bucket}/{prefix} (the folder is empty or missing)")
    if len(paths) > MAX_FOLDER_FILES:
        raise ArtifactError(f"the artifact folder holds {len(paths)} files (at most {MAX_FOLDER_FILES})")
    files: dict[str, bytes] = {}
    total = 0
    for path in paths:
        data = store.get(path)
        total += len(data)
        if total > MAX_FOLDER_BYTES:
            raise ArtifactError(f"the artifact folder holds more than {MAX_FOLDER_BYTES >> 20} MiB")
        files[path[len(prefix):]] = data
    return files


def write_folder(store: FolderWriter, folder: str, files: Mapping[str, bytes]) -> str:
    """Store the files under `folder` (a path in the bucket); returns the folder's gs:// URI."""
    uri = ""
    for name, data in sorted(files.items()):
        content_type = "application/json" if name.endswith(".json") else (
            "text/plain" if name.endswith(".txt") else "application/octet-stream")
        uri = store.put(f"{folder.rstrip('/')}/{name}", data, content_type)
    return uri[: -len(sorted(files)[-1]) - 1] if uri else uri

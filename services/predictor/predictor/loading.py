"""Loading the model a predictor serves: the artifact's bytes, verified, in a servable form."""

from __future__ import annotations

from mlops.core.errors import PermanentError
from mlops.core.log import get_logger
from mlops.ml.artifact import loads_model
from mlops.ml.errors import InputError
from mlops.ml.fastpath import compile_model
from mlops.ports.blobs import BlobNotFound, BlobStore
from predictor.serving import ServableModel

log = get_logger("predictor")


def load_model_from_store(blobs: BlobStore, uri: str, checksum: str) -> ServableModel:
    """The verified artifact, compiled for serving when possible (same outputs, ~50x less CPU a row).

    An artifact that can never load is a `PermanentError` (a checksum mismatch, bytes that are not a
    model, types outside the allow-list, no object at the URI): redelivering the event reads the same
    bytes. A storage failure is raised as it is (transient)."""
    try:
        model = loads_model(blobs.get(uri), expected_checksum=checksum)
    except (InputError, BlobNotFound) as error:
        raise PermanentError(f"{uri}: {error}") from error
    compiled = compile_model(model)
    log.info("model loaded", uri=uri, serving="compiled" if compiled else "scikit-learn")
    return compiled or model

"""Loading the model a predictor serves: the artifact folder's files, verified, in a servable form.

One serving path for every model family and both trainer backends (`mlops.ml.artifact`): a dot
product over the portable linear artifact (`model.json`), or XGBoost's in-place prediction over
BigQuery ML's export layout (`model.bst` + `assets/`). No pickled or skops-serialized estimator, and
no scikit-learn, is needed to serve.
"""

from __future__ import annotations

from mlops.core.errors import PermanentError
from mlops.core.log import get_logger
from mlops.ml.artifact import load_artifact, read_folder
from mlops.ml.errors import InputError
from mlops.ml.features import ServingPolicy
from mlops.ml.warmup import warm_up_serving
from mlops.ports.blobs import BlobNotFound, BlobStore
from predictor.serving import ServableModel

log = get_logger("predictor")


def load_served_model(blobs: BlobStore, folder_uri: str, checksum: str,
                      policy: ServingPolicy | None = None) -> ServableModel:
    """The model version in the artifact folder `folder_uri` (`gs://<bucket>/models/<pipeline>/<candidate>`),
    verified against `checksum` (`mlops.ml.artifact.folder_checksum`), and warmed up: it has served
    made-up instances under `policy` once, so the first request pays no one-off start-up cost.

    An artifact that can never load is a `PermanentError` (a checksum mismatch, files that are not a
    model, an empty or missing folder, a booster format xgboost cannot read): loading again reads the
    same bytes. A storage failure is raised as it is (transient)."""
    try:
        model = load_artifact(read_folder(blobs, folder_uri), expected_checksum=checksum)
    except (InputError, BlobNotFound) as error:
        raise PermanentError(f"{folder_uri}: {error}") from error
    try:
        warm_up_serving(model, policy)
    except Exception as error:  # noqa: BLE001 - the same bytes fail the same way on every start
        raise PermanentError(f"{folder_uri}: the model loaded but cannot score: {type(error).__name__}: "
                             f"{error}") from error
    log.info("model loaded", uri=folder_uri, model_type=model.model_type.value, family=type(model).__name__)
    return model

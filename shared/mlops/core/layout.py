"""The bucket layout: where the loop keeps pipeline specs, model artifacts and deployment manifests.

One place names every path, so a reader (and a check on what may be loaded) sees the whole layout.
"""

SPEC_PREFIX = "specs/"
DEPLOYMENTS_PREFIX = "deployments/"
MODELS_PREFIX = "models/"


def spec_path(pipeline: str) -> str:
    return f"{SPEC_PREFIX}{pipeline}.yaml"


def manifest_path(pipeline: str) -> str:
    """The deployer's last `model.deployed` for a pipeline: a restarted predictor serves it at once."""
    return f"{DEPLOYMENTS_PREFIX}{pipeline}.json"


def artifact_dir(pipeline: str, candidate: str) -> str:
    return f"{MODELS_PREFIX}{pipeline}/{candidate}"

"""The deployment manifest: the deployer's last `model.deployed` per pipeline, kept in the bucket.

A predictor that starts (or restarts) reads these to serve what is deployed right away; from then
on `model.deployed` pushes keep it current. In Vertex AI the endpoint itself plays this role.
"""

DEPLOYMENTS_PREFIX = "deployments/"


def manifest_path(pipeline: str) -> str:
    return f"{DEPLOYMENTS_PREFIX}{pipeline}.json"

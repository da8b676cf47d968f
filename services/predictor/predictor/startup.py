"""At start, the deployments the deployer left in the bucket."""

from __future__ import annotations

import json
from typing import Protocol

from mlops.core.events import ModelDeployed
from mlops.core.layout import DEPLOYMENTS_PREFIX
from mlops.core.log import get_logger
from mlops.ports.blobs import BlobStore
from mlops.ports.registry import ModelVersion, NotFoundError, VersionMeta
from predictor.serving import ModelServer

log = get_logger("predictor")


class VersionReader(Protocol):
    """The one registry read a restarting predictor needs (the REST reader or the full adapter)."""

    def get_version(self, model_id: str, version: str) -> ModelVersion: ...


def verified_by_registry(deployed: ModelDeployed, registry: VersionReader) -> ModelDeployed:
    """The manifest with each model's artifact URI and checksum taken from the registry (the registrar
    wrote them from the event chain), not from the bucket, which whoever writes artifacts could also
    have written. A version the registry lacks is dropped."""
    models = []
    for model in deployed.deployed_models:
        try:
            meta = VersionMeta.of(registry.get_version(deployed.model_id, model.version_id))
        except NotFoundError:
            log.error("a restored deployment names a version the registry lacks; not serving it",
                      pipeline=deployed.pipeline, version=model.version_id)
            continue
        if (meta.artifact_uri, meta.artifact_checksum) != (model.artifact_uri, model.artifact_checksum):
            log.error("the manifest disagrees with the registry; using the registry's artifact and checksum",
                      pipeline=deployed.pipeline, version=model.version_id, manifest_uri=model.artifact_uri,
                      registry_uri=meta.artifact_uri)
        models.append(model.model_copy(update={"artifact_uri": meta.artifact_uri,
                                               "artifact_checksum": meta.artifact_checksum}))
    return deployed.model_copy(update={"deployed_models": models})


def restore_deployments(server: ModelServer, blobs: BlobStore, registry: VersionReader | None = None) -> None:
    """Serve what is deployed now, before the next `model.deployed` arrives. With `registry`, each
    model's artifact and checksum come from it; a manifest it cannot vouch for is not served."""
    for path in blobs.list(DEPLOYMENTS_PREFIX):
        try:
            deployed = ModelDeployed.model_validate(json.loads(blobs.get(path)))
            if registry is not None:
                deployed = verified_by_registry(deployed, registry)
            if deployed.deployed_models:
                server.apply(deployed)
        except Exception as error:  # noqa: BLE001 - one bad manifest must not stop serving the others
            log.error("could not restore a deployment", path=path, error=repr(error)[:2000])

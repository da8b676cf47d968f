"""The bucket layout: where the loop keeps pipeline specs, model artifacts, deployment manifests and
the intents of slow registry calls.

One place names every path, so a reader (and a check on what may be loaded) sees the whole layout.
"""

from __future__ import annotations

import hashlib
import re

from mlops.core.errors import PermanentError

SPEC_PREFIX = "specs/"
DEPLOYMENTS_PREFIX = "deployments/"
MODELS_PREFIX = "models/"
INTENTS_PREFIX = "operations/"
OPEN_INTENTS_PREFIX = "operations/open/"

# One path segment of an artifact's object name: what the trainer writes (candidate ids, `model.zip`).
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class ArtifactOutsideLayout(PermanentError):
    """An artifact URI that does not name an object of this project's bucket under
    `models/<pipeline>/`: a forged or misrouted event. The same URI never will, so it is permanent."""


def spec_path(pipeline: str) -> str:
    return f"{SPEC_PREFIX}{pipeline}.yaml"


def manifest_path(pipeline: str) -> str:
    """The deployer's last `model.deployed` for a pipeline: a restarted predictor serves it at once."""
    return f"{DEPLOYMENTS_PREFIX}{pipeline}.json"


def artifact_dir(pipeline: str, candidate: str) -> str:
    return f"{MODELS_PREFIX}{pipeline}/{candidate}"


def _intent_name(event_id: str) -> str:
    # An id that is not a plain name (event ids come from message attributes) is named by its hash.
    return event_id if _SEGMENT.match(event_id) else "sha256-" + hashlib.sha256(event_id.encode()).hexdigest()


def intent_path(stage: str, event_id: str) -> str:
    """What a stage recorded before a slow call made for input event `event_id` (`mlops.ports.intents`)."""
    return f"{INTENTS_PREFIX}{stage}/{_intent_name(event_id)}.json"


def open_intent_marker(stage: str, event_id: str) -> str:
    """An empty object that exists while that intent's call is in flight: listing these finds the open
    calls without reading every intent a stage ever recorded."""
    return f"{OPEN_INTENTS_PREFIX}{stage}/{_intent_name(event_id)}"


def open_intent_prefix(stage: str) -> str:
    return f"{OPEN_INTENTS_PREFIX}{stage}/"


def require_project_artifact(uri: str, *, bucket: str, pipeline: str) -> str:
    """The object path of `uri` if it is the artifact folder `gs://<bucket>/models/<pipeline>/<candidate>`
    (a trailing slash allowed) or a file in it, with plain segments; raises `ArtifactOutsideLayout`
    naming what is wrong otherwise.

    Every stage that loads or registers an artifact asks this first (predictor, evaluator,
    registrar), so an event naming `gs://another-bucket/...`, another pipeline's folder, or a path
    that climbs out of `models/` (`..`, empty segments) is refused before any byte is read.
    """
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise ArtifactOutsideLayout(f"artifact {str(uri)[:200]!r} is not a gs:// URI of the project's bucket "
                                    f"gs://{bucket}/{MODELS_PREFIX}{pipeline}/")
    named_bucket, _, path = uri[len("gs://"):].partition("/")
    if named_bucket != bucket:
        raise ArtifactOutsideLayout(f"artifact {uri[:200]!r} is in bucket {named_bucket[:100]!r}, not the project's "
                                    f"bucket {bucket!r}; artifacts are read only from gs://{bucket}/{MODELS_PREFIX}")
    folder = f"{MODELS_PREFIX}{pipeline}/"
    if not path.startswith(folder):
        raise ArtifactOutsideLayout(f"artifact {uri[:200]!r} is not under gs://{bucket}/{folder}, where the "
                                    f"trainer writes the artifacts of pipeline {pipeline!r}")
    rest = path[len(folder):].removesuffix("/").split("/")
    if len(rest) < 1 or not all(_SEGMENT.match(segment) and segment not in (".", "..") for segment in rest):
        raise ArtifactOutsideLayout(f"artifact {uri[:200]!r} is not a plain gs://{bucket}/{folder}<candidate>[/<file>] "
                                    f"path (segments of letters, digits, '.', '_', '-'; no '..' or empty ones)")
    return path

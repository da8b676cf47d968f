"""registrar: every evaluated candidate becomes a registry version with its lineage.

Promoted ones take the `champion` alias (the previous champion is labelled retired); rejected ones
stay registered, labelled rejected, so the history of decisions is visible in the registry itself.
Idempotent on the input event: the version carries `source_event=<ce-id>`, looked up first, and the
alias/label steps are re-applied, so a crash between any two calls completes on redelivery. A crash
*during* the upload, which goes on and lands later, is covered by the intent recorded before it
(`mlops.ports.intents`): the redelivery waits for that upload instead of making a second version.

Only artifacts of the project's own layout are registered: a `model.evaluated` naming an artifact
outside `gs://<bucket>/models/<pipeline>/`, or without a sha256 checksum, is refused (dead-lettered
with the reason). The checksum registered here (in the version's `VersionMeta`) is the one the
trainer computed and the evaluator verified, carried by the events; it is what the deployer
announces and the predictor checks, never a file beside the artifact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import structlog

from mlops.core.errors import PermanentError
from mlops.core.events import Decision, Envelope, ModelEvaluated, ModelRegistered
from mlops.core.layout import require_project_artifact
from mlops.ports.intents import IntentLog
from mlops.ports.registry import ModelRegistry, ModelVersion, NotFoundError, VersionMeta

log = structlog.get_logger("registrar")

CHAMPION = "champion"
CHECKSUM_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


# The routes the predictor image answers (Vertex AI passes them to it as AIP_PREDICT_ROUTE / AIP_HEALTH_ROUTE).
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/healthz"


def artifact_folder(artifact_uri: str) -> str:
    """The version's artifact folder, which Vertex AI's `artifactUri` must name (never a file): the
    event's URI when it names the folder, else the folder of the file it names (a `.zip`)."""
    uri = artifact_uri.rstrip("/")
    return (uri.rsplit("/", 1)[0] if uri.rsplit("/", 1)[-1].endswith(".zip") else uri) + "/"


class Registrar:
    def __init__(self, registry: ModelRegistry, serving_image: str, code_version: str, bucket: str | None = None,
                 *, intents: IntentLog | None = None, register_deadline_s: float = 300.0,
                 serving_env: Mapping[str, str] | None = None):
        """`bucket` is the project's artifact bucket (the service passes its settings'); None skips
        the bucket check, for unit tests that are not about it (the path layout is checked anyway).
        `intents` records each upload before it is sent (the service always passes one): a registrar
        killed during an upload then waits for that upload on redelivery, for up to
        `register_deadline_s` after it was sent, instead of uploading a second version."""
        self._registry = registry
        self._serving_image = serving_image
        self._code_version = code_version
        self._bucket = bucket
        self._intents = intents
        self._register_deadline_s = register_deadline_s
        # What every serving container needs from the project (MLOPS_PROJECT, the metrics sink...);
        # each version adds its own (pipeline, version, checksum) in `_serving_env`.
        self._serving_env = dict(serving_env or {})

    def check_artifact(self, evaluated: ModelEvaluated) -> None:
        """Refuse what may never serve: an artifact outside the project's layout, a malformed checksum."""
        bucket = self._bucket
        if bucket is None:  # the layout below the bucket still applies
            bucket = evaluated.artifact_uri[len("gs://"):].partition("/")[0]
        require_project_artifact(evaluated.artifact_uri, bucket=bucket, pipeline=evaluated.pipeline)
        if not CHECKSUM_RE.match(evaluated.artifact_checksum):
            raise PermanentError(f"artifact checksum {evaluated.artifact_checksum[:100]!r} of "
                                 f"{evaluated.candidate_version} is not 'sha256:<64 hex digits>'")

    def handle(self, evaluated: ModelEvaluated, envelope: Envelope) -> list[ModelRegistered]:
        self.check_artifact(evaluated)
        model_id = evaluated.pipeline
        promote = evaluated.decision == Decision.PROMOTE
        version = self._version_for(model_id, evaluated, envelope, promote)
        if promote:
            self._crown(model_id, version)
        version = self._registry.get_version(model_id, version.version_id)
        return [ModelRegistered(
            pipeline=evaluated.pipeline, model_id=model_id, version_id=version.version_id,
            resource_name=version.resource_name, aliases=sorted(version.aliases), decision=evaluated.decision,
            candidate_version=evaluated.candidate_version, artifact_uri=evaluated.artifact_uri,
            metrics=evaluated.metrics, lineage=self._lineage(evaluated, envelope),
        )]

    def _version_for(self, model_id: str, evaluated: ModelEvaluated, envelope: Envelope, promote: bool) -> ModelVersion:
        """The version registered for this event: found (a redelivery), the one an earlier attempt's
        upload is still making (waited for), or registered now."""
        def registered() -> str | None:
            found = self._registry.find_version(model_id, "source_event", envelope.id)
            return found.version_id if found is not None else None

        if self._intents is None:
            version_id = registered() or self._register(model_id, evaluated, envelope, promote).version_id
        else:
            version_id, _ = self._intents.once(
                envelope.id, "register_version", effect=registered, deadline_s=self._register_deadline_s,
                make=lambda: self._register(model_id, evaluated, envelope, promote).version_id)
        return self._registry.get_version(model_id, version_id)

    def _lineage(self, evaluated: ModelEvaluated, envelope: Envelope) -> dict[str, str]:
        return {
            "run_id": envelope.run_id, "evaluated_event": envelope.id, "trained_event": envelope.causation_id,
            "data_version": evaluated.data_version, "snapshot_table": evaluated.snapshot_table,
            "replay_of": envelope.replay_of, "registrar_code_version": self._code_version,
        }

    def _register(self, model_id: str, evaluated: ModelEvaluated, envelope: Envelope, promote: bool) -> ModelVersion:
        meta = VersionMeta(
            artifact_uri=evaluated.artifact_uri, artifact_checksum=evaluated.artifact_checksum,
            metrics=evaluated.metrics, champion_metrics=evaluated.champion_metrics,
            decision=evaluated.decision, reason=evaluated.reason, lineage=self._lineage(evaluated, envelope),
        )
        labels = {
            "pipeline": evaluated.pipeline, "source_event": envelope.id, "run_id": envelope.run_id,
            "data_version": evaluated.data_version, "candidate": evaluated.candidate_version,
            "decision": evaluated.decision, "status": CHAMPION if promote else "rejected",
            "model_type": evaluated.model_type,
        }
        # Vertex AI numbers versions 1, 2, ... and fixes the container's env at upload, so the version
        # id the container reports is the one this upload will get: checked below.
        expected = str(1 + max((int(v.version_id) for v in self._registry.list_versions(model_id)), default=0))
        version = self._registry.register_version(
            model_id=model_id,
            display_name=model_id,
            artifact_uri=artifact_folder(evaluated.artifact_uri),
            serving_image=self._serving_image,
            labels=labels,  # the adapter makes values registry-safe
            aliases=[],
            description=json.dumps(meta.to_json(), sort_keys=True),
            make_default=promote,
            serving_env=self._serving_env_of(evaluated, expected),
            predict_route=PREDICT_ROUTE,
            health_route=HEALTH_ROUTE,
        )
        if version.version_id != expected:
            # Another upload for this model landed in between: this version's container would report
            # the wrong version. Refused with the reason (a replay of the event registers it again).
            self._registry.set_labels(model_id, version.version_id, {"status": "misregistered"})
            raise PermanentError(f"version {version.version_id} of {model_id} was registered while another upload "
                                 f"took version {expected}: its serving container names the wrong version; replay "
                                 f"the model.evaluated to register it again")
        log.info("registered", model_id=model_id, version=version.version_id, decision=evaluated.decision,
                 reason=evaluated.reason)
        return version

    def _serving_env_of(self, evaluated: ModelEvaluated, version_id: str) -> dict[str, str]:
        """The serving container's environment: the project's, then this version's (the predictor's settings)."""
        return {**self._serving_env, "MLOPS_PIPELINE": evaluated.pipeline, "MLOPS_MODEL_VERSION": version_id,
                "MLOPS_ARTIFACT_CHECKSUM": evaluated.artifact_checksum}

    def _crown(self, model_id: str, version: ModelVersion) -> None:
        try:
            previous = self._registry.get_version(model_id, CHAMPION)
        except NotFoundError:
            previous = None
        if previous is not None and previous.version_id == version.version_id:
            return
        if previous is not None and int(previous.version_id) > int(version.version_id):
            # A late redelivery of an older promotion (its ack deadline passed under load) must not take
            # the alias back from the newer champion that serves now; a replay registers a new version.
            log.info("a newer champion exists; not crowning an older version again", model_id=model_id,
                     version=version.version_id, champion=previous.version_id)
            return
        self._registry.move_alias(model_id, version.version_id, CHAMPION)
        if previous is not None:
            self._registry.set_labels(model_id, previous.version_id, {"status": "retired"})
        log.info("new champion", model_id=model_id, version=version.version_id,
                 previous=previous.version_id if previous else None)

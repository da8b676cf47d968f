"""registrar: every evaluated candidate becomes a registry version with its lineage.

Promoted ones take the `champion` alias (the previous champion is labelled retired); rejected ones
stay registered, labelled rejected, so the history of decisions is visible in the registry itself.
Idempotent on the input event: the version carries `source_event=<ce-id>`, looked up first, and the
alias/label steps are re-applied, so a crash between any two calls completes on redelivery.
"""

from __future__ import annotations

import json

import structlog

from mlops.core.events import Decision, Envelope, ModelEvaluated, ModelRegistered
from mlops.ports.registry import ModelRegistry, ModelVersion, NotFoundError, VersionMeta

log = structlog.get_logger("registrar")

CHAMPION = "champion"


class Registrar:
    def __init__(self, registry: ModelRegistry, serving_image: str, code_version: str):
        self._registry = registry
        self._serving_image = serving_image
        self._code_version = code_version

    def handle(self, evaluated: ModelEvaluated, envelope: Envelope) -> list[ModelRegistered]:
        model_id = evaluated.pipeline
        promote = evaluated.decision == Decision.PROMOTE
        version = self._registry.find_version(model_id, "source_event", envelope.id)
        if version is None:
            version = self._register(model_id, evaluated, envelope, promote)
        else:
            log.info("already registered for this event; finishing its steps", version=version.version_id)
        if promote:
            self._crown(model_id, version)
        version = self._registry.get_version(model_id, version.version_id)
        return [ModelRegistered(
            pipeline=evaluated.pipeline, model_id=model_id, version_id=version.version_id,
            resource_name=version.resource_name, aliases=sorted(version.aliases), decision=evaluated.decision,
            candidate_version=evaluated.candidate_version, artifact_uri=evaluated.artifact_uri,
            metrics=evaluated.metrics, lineage=self._lineage(evaluated, envelope),
        )]

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
        version = self._registry.register_version(
            model_id=model_id,
            display_name=model_id,
            artifact_uri=evaluated.artifact_uri.rsplit("/", 1)[0] + "/",
            serving_image=self._serving_image,
            labels=labels,  # the adapter makes values registry-safe
            aliases=[],
            description=json.dumps(meta.to_json(), sort_keys=True),
            make_default=promote,
        )
        log.info("registered", model_id=model_id, version=version.version_id, decision=evaluated.decision,
                 reason=evaluated.reason)
        return version

    def _crown(self, model_id: str, version: ModelVersion) -> None:
        try:
            previous = self._registry.get_version(model_id, CHAMPION)
        except NotFoundError:
            previous = None
        if previous is not None and previous.version_id == version.version_id:
            return
        self._registry.move_alias(model_id, version.version_id, CHAMPION)
        if previous is not None:
            self._registry.set_labels(model_id, previous.version_id, {"status": "retired"})
        log.info("new champion", model_id=model_id, version=version.version_id,
                 previous=previous.version_id if previous else None)

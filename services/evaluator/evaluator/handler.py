"""evaluator: score the candidate and the current champion on the same held-out rows, then decide.

Pure computation over its inputs (the snapshot and two artifacts), so a redelivered event yields
the same decision and no side effect: nothing needs recording for idempotence.
"""

from __future__ import annotations

import time

import structlog

from evaluator.gate import judge
from mlops.core.errors import PermanentError
from mlops.core.events import Envelope, ModelEvaluated, ModelTrained
from mlops.ports.metrics import MetricsSink, NullMetrics
from mlops.ports.registry import ModelRegistry, NotFoundError, VersionMeta
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.ports.trainer import TrainerBackend

log = structlog.get_logger("evaluator")


class Evaluator:
    def __init__(self, backend: TrainerBackend, specs: SpecStore, registry: ModelRegistry,
                 metrics: MetricsSink | None = None):
        self._backend = backend
        self._specs = specs
        self._registry = registry
        self._metrics = metrics or NullMetrics()

    def handle(self, trained: ModelTrained, envelope: Envelope) -> list[ModelEvaluated]:
        started = time.perf_counter()
        try:
            spec = self._specs.get(trained.pipeline)
        except UnknownPipeline as error:
            raise PermanentError(f"cannot evaluate {trained.candidate_version}: {error}") from error
        try:
            candidate = self._backend.evaluate(spec, trained.artifact_uri, trained.artifact_checksum,
                                               trained.snapshot_table)
        except Exception as error:
            if self._backend.is_permanent(error):
                raise PermanentError(f"cannot evaluate {trained.candidate_version}: {error}") from error
            raise
        champion_version, champion_metrics = self._champion(spec, trained)
        verdict = judge(spec.promotion, candidate.metrics, champion_metrics, champion_version)
        log.info("evaluated", candidate=trained.candidate_version, decision=verdict.decision, reason=verdict.reason)
        # Model quality over time, per pipeline: the series an alert on decaying models watches.
        for name, value in candidate.metrics.items():
            self._metrics.record("candidate_metric", value, {"pipeline": trained.pipeline, "metric": name,
                                                             "decision": verdict.decision})
        return [ModelEvaluated(
            pipeline=trained.pipeline, candidate_version=trained.candidate_version, model_type=trained.model_type,
            artifact_uri=trained.artifact_uri, artifact_checksum=trained.artifact_checksum,
            snapshot_table=trained.snapshot_table, data_version=trained.data_version,
            eval_rows=candidate.eval_rows, metrics=candidate.metrics, champion_version=champion_version,
            champion_metrics=champion_metrics or {}, gate_metric=spec.promotion.metric,
            decision=verdict.decision, reason=verdict.reason,
            evaluate_seconds=round(time.perf_counter() - started, 6),
        )]

    def _champion(self, spec, trained: ModelTrained) -> tuple[str | None, dict[str, float] | None]:
        try:
            champion = self._registry.get_version(spec.model_id, "champion")
        except NotFoundError:
            return None, None
        meta = VersionMeta.of(champion)
        try:
            scored = self._backend.evaluate(spec, meta.artifact_uri, meta.artifact_checksum, trained.snapshot_table)
        except Exception as error:
            if not self._backend.is_permanent(error):
                raise
            # A champion that cannot score these rows (say the spec's features changed) is no bar.
            log.warning("champion cannot be scored on this snapshot", champion=champion.version_id, error=str(error))
            return champion.version_id, None
        return champion.version_id, scored.metrics

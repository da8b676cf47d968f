"""Read-side views over the registry for the CLI and the demo summary."""

from __future__ import annotations

from typing import Any

from mlops.ports.registry import VersionMeta


def model_versions(registry: Any, pipeline: str, gate_metric: str | None = None) -> list[dict[str, Any]]:
    """Each version of a pipeline's model, newest first, flattened for a table or JSON; `gate` holds
    the promotion metric (the spec's `promotion.metric`) for the candidate and the champion it met."""
    rows = []
    for version in registry.list_versions(pipeline):
        meta = VersionMeta.of(version)
        rows.append({
            "pipeline": pipeline,
            "version": version.version_id,
            "aliases": sorted(a for a in version.aliases if a != "default"),
            "status": version.labels.get("status", ""),
            "decision": meta.decision,
            "reason": meta.reason,
            "gate": {"metric": gate_metric, "value": meta.metrics.get(gate_metric),
                     "champion_value": meta.champion_metrics.get(gate_metric)} if gate_metric else None,
            "metrics": meta.metrics,
            "champion_metrics": meta.champion_metrics,
            "data_version": version.labels.get("data_version", ""),
            "snapshot_table": meta.lineage.get("snapshot_table", ""),
            "run_id": meta.lineage.get("run_id", ""),
            "artifact_uri": meta.artifact_uri,
            "created": version.create_time.isoformat(),
        })
    return rows

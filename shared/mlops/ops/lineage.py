"""`mlops lineage`: from a registered model version back to the data it came from, and forward to
where it was deployed, with the code version of every stage that touched it.

Sources: the registry version (its labels and the JSON description the registrar wrote), the event
archive (the run's events, linked by `causation_id`), and the `snapshots` table.
"""

from __future__ import annotations

from typing import Any

from mlops.core.topology import SNAPSHOTS_TABLE
from mlops.ops.archive import ArchivedEvent, query_events
from mlops.ports.registry import VersionMeta


def _stage(event: ArchivedEvent) -> dict[str, Any]:
    return {
        "type": event.type, "id": event.id, "time": event.time, "causation_id": event.causation_id,
        "stage": event.attributes.get("ce-source", "").rsplit("/", 1)[-1],
        "code_version": event.attributes.get("code_version", ""), "replay_of": event.replay_of,
    }


def lineage(registry, warehouse, pipeline: str, version_id: str) -> dict[str, Any]:
    version = registry.get_version(pipeline, version_id)
    meta = VersionMeta.of(version)
    run_id = meta.lineage.get("run_id") or version.labels.get("run_id", "")
    events = query_events(warehouse, run_id=run_id, limit=500) if run_id else []
    by_type: dict[str, ArchivedEvent] = {}
    for event in reversed(events):  # oldest first; the first of each type in the run
        by_type.setdefault(event.type.rsplit(".", 1)[0], event)
    ready = by_type.get("data.ready")
    trained = by_type.get("model.trained")
    evaluated = by_type.get("model.evaluated")
    snapshot_table = meta.lineage.get("snapshot_table") or (ready.payload()["snapshot_table"] if ready else "")
    snapshot = warehouse.query(
        f"SELECT * FROM `{warehouse.qualified(SNAPSHOTS_TABLE)}` WHERE snapshot_table = @table LIMIT 1",
        {"table": snapshot_table},
    ) if snapshot_table else []
    deployments = []
    for event in query_events(warehouse, event_type="model.deployed.v1", limit=1000):
        payload = event.payload()  # decoded once per event
        shares = {m["version_id"]: m["traffic_percent"] for m in payload["deployed_models"]}
        if event.pipeline == pipeline and version_id in shares:
            deployments.append({"time": event.time, "event_id": event.id, "action": payload["action"],
                                "endpoint": payload["endpoint"], "version_id": payload["version_id"],
                                "traffic_percent": shares[version_id],
                                "code_version": event.attributes.get("code_version", "")})
    return {
        "pipeline": pipeline, "version": version_id, "resource_name": version.resource_name,
        "aliases": sorted(version.aliases), "status": version.labels.get("status", ""),
        "created": version.create_time.isoformat(), "run_id": run_id,
        "replay_of": meta.lineage.get("replay_of", ""),
        "data": {
            "snapshot_table": snapshot_table, "data_version": meta.lineage.get("data_version", ""),
            "total_rows": int(snapshot[0]["total_rows"]) if snapshot else (ready.payload()["total_rows"] if ready else None),
            "new_rows": int(snapshot[0]["new_rows"]) if snapshot else None,
            "watermark": str(snapshot[0]["watermark"]) if snapshot else (ready.payload()["watermark"] if ready else None),
            "trigger": ready.payload()["trigger"] if ready else None,
            "source_table": ready.payload()["source_table"] if ready else None,
        },
        "training": {k: trained.payload()[k] for k in ("candidate_version", "model_type", "backend", "hyperparameters",
                                                        "train_rows", "train_seconds", "artifact_uri",
                                                        "artifact_checksum")} if trained else None,
        "evaluation": {"metrics": meta.metrics, "champion_metrics": meta.champion_metrics, "decision": meta.decision,
                       "reason": meta.reason,
                       "champion_version": evaluated.payload().get("champion_version") if evaluated else None,
                       "eval_rows": evaluated.payload().get("eval_rows") if evaluated else None},
        "deployments": sorted(deployments, key=lambda d: d["time"]),
        "stages": [_stage(e) for e in reversed(events)],
    }

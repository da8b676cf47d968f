"""`mlops lineage`: from a registered model version back to the data it came from, and forward to
where it was deployed, with the code version of every stage that touched it.

Sources: the registry version (its labels and the JSON description the registrar wrote), the event
archive (the run's events, linked by `causation_id`), and the `snapshots` table.
"""

from __future__ import annotations

import json
from typing import Any

from mlops.core.sql import quote_qualified
from mlops.core.topology import SNAPSHOTS_TABLE
from mlops.ops.archive import ArchivedEvent, query_events, run_and_deployments
from mlops.ports.registry import VersionMeta
from mlops.ports.warehouse import SqlReader


def _training(trained: ArchivedEvent) -> dict[str, Any]:
    payload = trained.payload()
    fields = ("candidate_version", "model_type", "backend", "hyperparameters", "train_rows", "train_seconds",
              "artifact_uri", "artifact_checksum")
    return {**{k: payload[k] for k in fields}, "hyperparameters": plain_values(payload["hyperparameters"])}


def _drift_score(snapshot: dict[str, Any] | None, ready: ArchivedEvent | None) -> float | None:
    """The PSI the data-watcher measured for this snapshot (None when it measured none)."""
    if snapshot is not None and snapshot.get("drift_score") is not None:
        return float(snapshot["drift_score"])
    score = ready.payload().get("drift_score") if ready else None
    return float(score) if score is not None else None


def _stage(event: ArchivedEvent) -> dict[str, Any]:
    return {
        "type": event.type, "id": event.id, "time": event.time, "causation_id": event.causation_id,
        "stage": event.attributes.get("ce-source", "").rsplit("/", 1)[-1],
        "code_version": event.attributes.get("code_version", ""), "replay_of": event.replay_of,
    }


def plain_values(hyperparameters: dict[str, str]) -> dict[str, Any]:
    """`model.trained` carries each hyper-parameter JSON-encoded in a string map (`"\\"RANDOM\\""`);
    a person wants the value (`RANDOM`)."""
    values: dict[str, Any] = {}
    for name, text in hyperparameters.items():
        try:
            values[name] = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            values[name] = text
    return values


def lineage(registry, warehouse: SqlReader, pipeline: str, version_id: str) -> dict[str, Any]:
    version = registry.get_version(pipeline, version_id)
    meta = VersionMeta.of(version)
    run_id = meta.lineage.get("run_id") or version.labels.get("run_id", "")
    # One query for the run's events and the pipeline's deployments; the snapshot's numbers travel in
    # the run's data.ready, so the snapshots table is read only when that event is not archived.
    events = run_and_deployments(warehouse, run_id, pipeline) if run_id else \
        query_events(warehouse, event_type="model.deployed.v1", limit=1000)
    run_events = [e for e in events if run_id and e.run_id == run_id]
    by_type: dict[str, ArchivedEvent] = {}
    for event in reversed(run_events):  # oldest first; the first of each type in the run
        if event.valid:  # archived garbage (a row that fits no schema) says nothing about the run
            by_type.setdefault(event.type.rsplit(".", 1)[0], event)
    ready = by_type.get("data.ready")
    trained = by_type.get("model.trained")
    evaluated = by_type.get("model.evaluated")
    snapshot_table = meta.lineage.get("snapshot_table") or (ready.payload()["snapshot_table"] if ready else "")
    snapshot = warehouse.query(
        f"SELECT * FROM {quote_qualified(warehouse.qualified(SNAPSHOTS_TABLE))} WHERE snapshot_table = @table "
        f"AND pipeline = @pipeline LIMIT 1",
        {"table": snapshot_table, "pipeline": pipeline},
    ) if snapshot_table and ready is None else []
    deployments = []
    for event in (e for e in events if e.type == "model.deployed.v1" and e.valid):
        payload = event.payload()  # decoded once per event
        shares = {m["version_id"]: m["traffic_percent"] for m in payload["deployed_models"]}
        if event.pipeline == pipeline and version_id in shares:
            deployments.append({"time": event.time, "event_id": event.id, "action": payload["action"],
                                "endpoint": payload["endpoint"], "version_id": payload["version_id"],
                                "traffic_percent": shares[version_id], "reason": payload.get("reason") or "",
                                "code_version": event.attributes.get("code_version", "")})
    return {
        "pipeline": pipeline, "version": version_id, "resource_name": version.resource_name,
        "aliases": sorted(version.aliases), "status": version.labels.get("status", ""),
        "created": version.create_time.isoformat(), "run_id": run_id,
        "replay_of": meta.lineage.get("replay_of", ""),
        "data": {
            "snapshot_table": snapshot_table, "data_version": meta.lineage.get("data_version", ""),
            "total_rows": int(snapshot[0]["total_rows"]) if snapshot else (ready.payload()["total_rows"] if ready else None),
            "new_rows": int(snapshot[0]["new_rows"]) if snapshot else (ready.payload()["new_rows"] if ready else None),
            "watermark": str(snapshot[0]["watermark"]) if snapshot else (ready.payload()["watermark"] if ready else None),
            "trigger": ready.payload()["trigger"] if ready else None,
            "drift_score": _drift_score(snapshot[0] if snapshot else None, ready),
            "spec_hash": snapshot[0].get("spec_hash") if snapshot else None,
            "source_table": ready.payload()["source_table"] if ready else None,
        },
        "training": _training(trained) if trained else None,
        "evaluation": {"metrics": meta.metrics, "champion_metrics": meta.champion_metrics, "decision": meta.decision,
                       "reason": meta.reason,
                       "champion_version": evaluated.payload().get("champion_version") if evaluated else None,
                       "eval_rows": evaluated.payload().get("eval_rows") if evaluated else None},
        "deployments": sorted(deployments, key=lambda d: d["time"]),
        "stages": [_stage(e) for e in reversed(run_events)],
    }

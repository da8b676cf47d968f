"""What the dashboard's pages read, each page in a fixed number of reads.

Sources: the event archive (`events`, what every stage published), the `monitoring_checks` table
(one row per check the monitor ran), the registry (through its port) and the specs. Every query is
bounded (LIMIT and OFFSET are query parameters) and answers a whole page part at once, never one
row of a table at a time: a page costs the same few reads with 1 pipeline or 50, 10 versions or
10,000 (tests/unit/test_ui.py counts them).

Values travel as query parameters; the only names in the SQL are the tables, quoted by
`mlops.core.sql`. Lists of values are expanded into numbered scalar parameters (`@type_0,
@type_1`), which both the BigQuery client and the REST reader send.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mlops.core.sql import quote_qualified
from mlops.core.topology import DEAD_LETTER_TOPIC, EVENTS_TABLE, MONITORING_CHECKS_TABLE, archive_subscription
from mlops.ops.archive import ArchivedEvent, _from_row, _when
from mlops.ports.registry import NotFoundError
from mlops.ports.warehouse import SqlReader, TableNotFound, WarehouseError

READY, SKIPPED, TRAINED = "data.ready.v1", "data.skipped.v1", "model.trained.v1"
EVALUATED, REGISTERED, DEPLOYED, FAILED = "model.evaluated.v1", "model.registered.v1", "model.deployed.v1", "stage.failed.v1"
# Published by the monitoring engineer's canary judge and by `mlops rollback` / `promote`: shown in a
# pipeline's traffic history when they are there, harmless when no such event exists yet.
CANARY_JUDGED, DEPLOYMENT_REQUESTED = "canary.judged.v1", "deployment.requested.v1"

# What a pipeline's last run can end in, newest wins (the overview's "last run").
RUN_ENDINGS = (SKIPPED, READY, TRAINED, EVALUATED, REGISTERED, DEPLOYED, FAILED)
EVENT_COLUMNS = "subscription_name, message_id, publish_time, data, attributes"
_CE_TYPE = "JSON_VALUE(attributes, '$.\"ce-type\"')"
_PIPELINE = "JSON_VALUE(attributes, '$.pipeline')"

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MONITORING_ROWS = 2000


class Registry(Protocol):
    def get_version(self, model_id: str, version: str) -> Any: ...


def _values(name: str, values: list[str], params: dict[str, Any]) -> str:
    """`(@name_0, @name_1, ...)` with each value as a parameter."""
    for index, value in enumerate(values):
        params[f"{name}_{index}"] = value
    return "(" + ", ".join(f"@{name}_{index}" for index in range(len(values))) + ")"


def _dead_letter(params: dict[str, Any]) -> str:
    params["dead_letters"] = archive_subscription(DEAD_LETTER_TOPIC)
    params["dead_letters_path"] = f"/{params['dead_letters']}"
    return ("(COALESCE(subscription_name, '') = @dead_letters OR "
            "ENDS_WITH(COALESCE(subscription_name, ''), @dead_letters_path))")


def event_query(reader: SqlReader, *, types: list[str] | None = None, pipelines: list[str] | None = None,
                run_id: str | None = None, ids: list[str] | None = None, with_dead_letters: bool = False,
                latest_per_type: int | None = None, limit: int = PAGE_SIZE, offset: int = 0) -> list[ArchivedEvent]:
    """Archived events, newest first by publish time, one per ce-id.

    `types` are ce-types (dead letters, which keep the ce-type of the message they park, are left out
    unless `with_dead_letters`, which adds every dead letter to what `types` selects);
    `latest_per_type` keeps only the newest N of each (pipeline, type). Parameter names are the
    contract of this query: the unit tests' stand-in filters on them (tests/unit/test_ui.py)."""
    params: dict[str, Any] = {"limit": int(limit), "offset": int(offset)}
    clauses = []
    typed = f"{_CE_TYPE} IN {_values('type', types, params)}" if types else "TRUE"
    clauses.append(f"({_dead_letter(params)} OR {typed})" if with_dead_letters else f"NOT {_dead_letter(params)} AND {typed}")
    if pipelines is not None:
        clauses.append(f"{_PIPELINE} IN {_values('pipeline', pipelines, params)}")
    if run_id:
        params["run_id"] = run_id
        clauses.append("JSON_VALUE(attributes, '$.run_id') = @run_id")
    if ids is not None:
        clauses.append(f"JSON_VALUE(attributes, '$.\"ce-id\"') IN {_values('id', ids, params)}")
    table = quote_qualified(reader.qualified(EVENTS_TABLE))
    where = " AND ".join(clauses)
    if latest_per_type:
        params["per_type"] = int(latest_per_type)
        sql = (f"SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, ROW_NUMBER() OVER ("
               f"PARTITION BY {_PIPELINE}, {_CE_TYPE} ORDER BY publish_time DESC) AS event_rank "
               f"FROM {table} WHERE {where}) AS ranked WHERE event_rank <= @per_type "
               "ORDER BY publish_time DESC LIMIT @limit OFFSET @offset")
    else:
        sql = f"SELECT {EVENT_COLUMNS} FROM {table} WHERE {where} ORDER BY publish_time DESC LIMIT @limit OFFSET @offset"
    seen, events = set(), []
    for row in reader.query(sql, params):
        event = _from_row(row)
        key = (event.is_dead_letter, event.id or event.message_id)
        if key not in seen:  # the archive is at-least-once
            seen.add(key)
            events.append(event)
    events.sort(key=_when, reverse=True)
    return events


# ------------------------------------------------------------------------------------- overview

@dataclass
class PipelineRow:
    name: str
    champion: str | None = None
    canary: str | None = None
    canary_percent: int = 0
    serving: dict[str, int] = field(default_factory=dict)
    deployed_at: str = ""
    last_run: str = ""
    last_run_time: str = ""
    outcome: str = "no run yet"
    outcome_class: str = "none"
    alerts: list[Any] = field(default_factory=list)


def serving_split(deployed: ArchivedEvent) -> dict[str, int]:
    """version -> traffic percent on the endpoint after a `model.deployed` (versions with 0% left out)."""
    shares: dict[str, int] = {}
    for model in deployed.payload().get("deployed_models", []):
        if model.get("traffic_percent", 0) > 0:
            shares[str(model["version_id"])] = shares.get(str(model["version_id"]), 0) + int(model["traffic_percent"])
    return shares


def champion_and_canary(shares: dict[str, int]) -> tuple[str | None, str | None, int]:
    """The version with the largest share is the champion; a second one serving is the canary."""
    if not shares:
        return None, None, 0
    ordered = sorted(shares.items(), key=lambda item: (-item[1], -_number(item[0])))
    champion = ordered[0][0]
    if len(ordered) == 1:
        return champion, None, 0
    return champion, ordered[1][0], ordered[1][1]


def _number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return 0


def outcome_of(event: ArchivedEvent) -> tuple[str, str]:
    """A run's last event in words, and a css class (ok / rejected / skipped / failed / running)."""
    payload = event.payload() if event.valid else {}
    if event.type == DEPLOYED:
        return f"{payload.get('action', 'deploy')} v{payload.get('version_id', '?')}", "ok"
    if event.type == REGISTERED:
        if payload.get("decision") == "reject":
            return f"rejected, registered as v{payload.get('version_id', '?')}", "rejected"
        return f"registered v{payload.get('version_id', '?')}, deploying", "running"
    if event.type == EVALUATED:
        return f"gate: {payload.get('decision', '?')}", "running"
    if event.type == SKIPPED:
        return f"nothing to train ({payload.get('cause', '?')})", "skipped"
    if event.type == FAILED:
        return f"failed in {payload.get('stage', '?')}: {payload.get('error_class', '')}", "failed"
    if event.type in (READY, TRAINED):
        return f"{event.type.split('.v')[0]}: in progress", "running"
    return event.type, "none"


def overview(reader: SqlReader, names: list[str], alerts: list[Any] | None) -> list[PipelineRow]:
    """One row per pipeline of `names` (a page of them): one query for all of them."""
    rows = {name: PipelineRow(name) for name in names}
    if not names:
        return []
    events = event_query(reader, types=list(RUN_ENDINGS), pipelines=names, latest_per_type=1,
                         limit=len(names) * len(RUN_ENDINGS))
    for event in events:  # newest first
        row = rows.get(event.pipeline)
        if row is None:
            continue
        if event.type == DEPLOYED and not row.deployed_at and event.valid:
            row.serving = serving_split(event)
            row.champion, row.canary, row.canary_percent = champion_and_canary(row.serving)
            row.deployed_at = event.time
        if not row.last_run_time:
            row.last_run, row.last_run_time = event.run_id, event.time
            row.outcome, row.outcome_class = outcome_of(event)
    for alert in alerts or []:
        if getattr(alert, "pipeline", None) in rows:
            rows[alert.pipeline].alerts.append(alert)
    return [rows[name] for name in names]


# ------------------------------------------------------------------------------------- pipeline

@dataclass
class VersionRow:
    version: str
    time: str
    decision: str
    reason: str
    metric: float | None
    champion_metric: float | None
    champion_version: str | None
    data_version: str
    run_id: str
    event_id: str
    is_champion: bool = False
    serving_percent: int = 0


def versions_page(reader: SqlReader, registry: Registry, pipeline: str, gate_metric: str, serving: dict[str, int],
                  page: int, page_size: int = PAGE_SIZE) -> tuple[list[VersionRow], bool]:
    """A page of a pipeline's registered versions, newest first, with the gate's metric and reason:
    two queries (the registrations, then their evaluations by id) and one registry read (who holds
    the champion alias). Returns the rows and whether an older page exists."""
    registered = event_query(reader, types=[REGISTERED], pipelines=[pipeline], limit=page_size + 1,
                             offset=page * page_size)
    more = len(registered) > page_size
    registered = [e for e in registered[:page_size] if e.valid]
    evaluation_ids = [e.causation_id for e in registered if e.causation_id]
    evaluations = {e.id: e.payload() for e in event_query(reader, types=[EVALUATED], ids=evaluation_ids,
                                                            limit=len(evaluation_ids))} if evaluation_ids else {}
    try:
        champion = registry.get_version(pipeline, "champion").version_id
    except (NotFoundError, ValueError):
        champion = None
    rows = []
    for event in registered:
        payload = event.payload()
        evaluated = evaluations.get(event.causation_id, {})
        champion_metrics = evaluated.get("champion_metrics") or {}
        version = str(payload["version_id"])
        rows.append(VersionRow(
            version=version, time=event.time, decision=payload.get("decision", ""),
            reason=evaluated.get("reason", ""), metric=_finite(payload.get("metrics", {}).get(gate_metric)),
            champion_metric=_finite(champion_metrics.get(gate_metric)),
            champion_version=evaluated.get("champion_version"), data_version=payload.get("lineage", {}).get("data_version", ""),
            run_id=event.run_id, event_id=event.id, is_champion=version == champion,
            serving_percent=serving.get(version, 0),
        ))
    return rows, more


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass
class TrafficChange:
    time: str
    type: str
    action: str
    version: str
    split: dict[str, int]
    detail: str
    run_id: str
    event_id: str


def traffic_history(reader: SqlReader, pipeline: str, limit: int = PAGE_SIZE) -> list[TrafficChange]:
    """The endpoint's splits over time (each `model.deployed`), with the canary judgements and the
    manual requests that caused some of them: one query."""
    changes = []
    for event in event_query(reader, types=[DEPLOYED, CANARY_JUDGED, DEPLOYMENT_REQUESTED], pipelines=[pipeline],
                             limit=limit):
        payload = event.payload()
        if event.type == DEPLOYED:
            changes.append(TrafficChange(event.time, event.type, str(payload.get("action", "")),
                                         str(payload.get("version_id", "")), serving_split(event) if event.valid else {},
                                         f"previous v{payload['previous_version']}" if payload.get("previous_version") else "",
                                         event.run_id, event.id))
        else:
            version = payload.get("canary_version") or payload.get("version_id") or payload.get("version") or ""
            action = payload.get("outcome") or payload.get("action") or ""
            changes.append(TrafficChange(event.time, event.type, str(action), str(version), {},
                                         str(payload.get("reason", "")), event.run_id, event.id))
    return changes


@dataclass
class Monitoring:
    available: bool
    note: str = ""
    # (feature, measure) -> [(checked_at, value, threshold, breached)], oldest first
    drift: dict[tuple[str, str], list[tuple[datetime, float, float | None, bool]]] = field(default_factory=dict)
    # version -> measure -> [(checked_at, value, threshold, breached)], oldest first
    performance: dict[str, dict[str, list[tuple[datetime, float, float | None, bool]]]] = field(default_factory=dict)
    other: list[dict[str, Any]] = field(default_factory=list)  # the newest quality/canary/freshness checks


DRIFT_KINDS = ("drift", "score_drift")


def monitoring(reader: SqlReader, pipeline: str, limit: int = MONITORING_ROWS) -> Monitoring:
    """The pipeline's newest checks (one query), grouped for the charts; `available=False` with a note
    when the table does not exist yet or holds nothing for the pipeline."""
    table = quote_qualified(reader.qualified(MONITORING_CHECKS_TABLE))
    try:
        rows = reader.query(
            "SELECT checked_at, version, check_kind, feature, measure, value, threshold, breached "
            f"FROM {table} WHERE pipeline = @pipeline ORDER BY checked_at DESC LIMIT @limit",
            {"pipeline": pipeline, "limit": int(limit)})
    except TableNotFound:
        return Monitoring(False, "no monitoring data yet (the monitor has not written its checks table)")
    except WarehouseError as error:
        return Monitoring(False, f"monitoring data unavailable: {str(error)[:200]}")
    if not rows:
        return Monitoring(False, "no monitoring data yet for this pipeline")
    result = Monitoring(True)
    drift: dict[tuple[str, str], list[Any]] = defaultdict(list)
    performance: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in reversed(rows):  # oldest first
        value = _finite(row.get("value"))
        if value is None:
            continue
        point = (row["checked_at"], value, _finite(row.get("threshold")), bool(row.get("breached")))
        if row["check_kind"] in DRIFT_KINDS:
            feature = row.get("feature") or ("prediction score" if row["check_kind"] == "score_drift" else "-")
            drift[(feature, str(row["measure"]))].append(point)
        elif row["check_kind"] == "performance":
            performance[str(row.get("version") or "-")][str(row["measure"])].append(point)
    result.drift = dict(sorted(drift.items()))
    result.performance = {v: dict(m) for v, m in sorted(performance.items(), key=lambda item: -_number(item[0]))}
    result.other = [r for r in rows if r["check_kind"] not in (*DRIFT_KINDS, "performance")][:20]
    return result


# ------------------------------------------------------------------------------------- failures

@dataclass
class Failure:
    time: str
    kind: str  # "stage failed" | "dead letter"
    pipeline: str
    stage: str
    reason: str
    permanent: bool | None
    replay_id: str  # the event a replay re-publishes ('' when none can be)
    run_id: str
    event_id: str


def failures(reader: SqlReader, page: int, page_size: int = PAGE_SIZE) -> tuple[list[Failure], bool]:
    """Stage failures and dead letters, newest first, a page at a time: one query."""
    events = event_query(reader, types=[FAILED], with_dead_letters=True, limit=page_size + 1, offset=page * page_size)
    rows = []
    for event in events[:page_size]:
        if event.is_dead_letter:
            a = event.attributes
            rows.append(Failure(event.time, "dead letter", event.pipeline, a.get("dead_letter_stage", ""),
                                f"{a.get('dead_letter_error_class', '')}: {a.get('dead_letter_reason', '')}".strip(": "),
                                True, "", event.run_id, event.id or event.message_id))
        else:
            p = event.payload()
            rows.append(Failure(event.time, "stage failed", event.pipeline or str(p.get("pipeline") or ""),
                                str(p.get("stage", "")), f"{p.get('error_class', '')}: {p.get('error_message', '')}",
                                p.get("permanent"), str(p.get("input_event_id") or ""), event.run_id, event.id))
    return rows, len(events) > page_size


def run_events(reader: SqlReader, run_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """A run's events oldest first, each with the time since the one before (the hop): one query."""
    events = list(reversed(event_query(reader, run_id=run_id, with_dead_letters=True, limit=limit)))
    chain = []
    previous: datetime | None = None
    for event in events:
        when = _when(event)
        hop = (when - previous).total_seconds() if previous is not None else None
        previous = when
        chain.append({"event": event, "hop_s": hop, "stage": event.attributes.get("ce-source", "").rsplit("/", 1)[-1],
                      "summary": outcome_of(event)[0] if event.valid else event.attributes.get("dead_letter_reason", "")})
    return chain

"""Open alerts, locally: the conditions Cloud Monitoring alert policies watch in the cloud, evaluated on
the same figures (the `monitoring_checks` table, the predictions, the event archive).

Conditions: a monitoring check breached in its pipeline's latest window (drift above, metric below,
quality, score drift), a pipeline that served nothing for longer than its spec's
`monitoring.freshness.max_hours_without_data`, a canary rolled back, dead-lettered messages and
permanent stage failures in the last `lookback_hours`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops.core.sql import quote_qualified
from mlops.core.topology import DEAD_LETTER_TOPIC, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE
from mlops.ops.archive import query_events
from mlops.ports.specs import UnknownPipeline

if TYPE_CHECKING:
    from mlops.ops.context import CliContext
    from mlops.ports.specs import SpecStore
    from mlops.ports.warehouse import SqlReader

LOOKBACK_HOURS = 24.0
CANARY_JUDGED = "canary.judged.v1"
STAGE_FAILED = "stage.failed.v1"
_CONDITION = {"drift": "drift_above", "score_drift": "score_drift_above", "quality": "quality_above",
              "performance": "metric_below", "canary": "canary_signal", "freshness": "no_data"}


@dataclass(frozen=True)
class Alert:
    pipeline: str
    condition: str   # drift_above | score_drift_above | quality_above | metric_below | no_data |
    #                  canary_rolled_back | dead_letters | stage_failed
    severity: str    # warning | critical
    value: float | None
    threshold: float | None
    since: str       # RFC 3339: when the condition was first seen in what was looked at
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_alerts(ctx: CliContext, lookback_hours: float = LOOKBACK_HOURS,
                now: datetime | None = None) -> list[Alert]:
    """Every open alert, most severe first, then by pipeline. Through the BigQuery client, not the
    REST reader: five queries over the archive outlast the reader's 30 s timeout on a busy emulator."""
    return evaluate_alerts(ctx.warehouse, ctx.specs, lookback_hours, now)


def evaluate_alerts(warehouse: SqlReader, specs: SpecStore, lookback_hours: float = LOOKBACK_HOURS,
                    now: datetime | None = None) -> list[Alert]:
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=lookback_hours)
    alerts = [*breached_checks(warehouse), *silent_pipelines(warehouse, specs, now),
              *archived_alerts(warehouse, since)]
    return sorted(alerts, key=lambda a: (a.severity != "critical", a.pipeline, a.condition, a.detail))


def breached_checks(warehouse: SqlReader) -> list[Alert]:
    """Breached rows of each pipeline's (and version's) latest window of each check kind."""
    if warehouse.table_columns(MONITORING_CHECKS_TABLE) is None:
        return []
    table = quote_qualified(warehouse.qualified(MONITORING_CHECKS_TABLE))
    rows = warehouse.query(
        f"SELECT c.pipeline AS pipeline, c.version AS version, c.check_kind AS check_kind, c.feature AS feature, "
        f"c.measure AS measure, c.value AS value, c.threshold AS threshold, c.window_start AS window_start, "
        f"c.window_end AS window_end, c.rows AS n FROM {table} AS c JOIN ("
        f"SELECT pipeline, check_kind, MAX(window_end) AS latest FROM {table} GROUP BY pipeline, check_kind) AS l "
        f"ON l.pipeline = c.pipeline AND l.check_kind = c.check_kind AND l.latest = c.window_end "
        f"WHERE c.breached ORDER BY c.pipeline, c.check_kind, c.feature", {})
    alerts = []
    for row in rows:
        kind = str(row["check_kind"])
        subject = f"{row['feature']} " if row["feature"] else ""
        version = f" (version {row['version']})" if row["version"] else ""
        alerts.append(Alert(
            pipeline=row["pipeline"], condition=_CONDITION.get(kind, kind),
            severity="critical" if kind in ("performance", "freshness") else "warning",
            value=row["value"], threshold=row["threshold"], since=_rfc3339(row["window_start"]),
            detail=f"{kind}: {subject}{row['measure']} {row['value']:.3f} vs threshold {row['threshold']} over "
                   f"{row['n']} predictions{version}, window ending {_rfc3339(row['window_end'])}"))
    return alerts


def silent_pipelines(warehouse: SqlReader, specs: SpecStore, now: datetime) -> list[Alert]:
    """Pipelines that served before but nothing for longer than their spec allows."""
    limits = {}
    for name in specs.names():
        try:
            hours = specs.get(name).monitoring.freshness.max_hours_without_data
        except UnknownPipeline:
            continue
        if hours is not None:
            limits[name] = hours
    if not limits:
        return []
    rows = warehouse.query(
        f"SELECT pipeline, MAX(predicted_at) AS last FROM {quote_qualified(warehouse.qualified(PREDICTIONS_TABLE))} "
        f"WHERE pipeline IN UNNEST(@pipelines) GROUP BY pipeline", {"pipelines": sorted(limits)})
    alerts = []
    for row in rows:
        hours = (now - row["last"]).total_seconds() / 3600
        if hours > limits[row["pipeline"]]:
            alerts.append(Alert(row["pipeline"], "no_data", "critical", round(hours, 2), limits[row["pipeline"]],
                                _rfc3339(row["last"]), f"no prediction for {hours:.1f} h (last at "
                                                       f"{_rfc3339(row['last'])})"))
    return alerts


def archived_alerts(warehouse: SqlReader, since: datetime) -> list[Alert]:
    """Canary rollbacks, dead letters and permanent stage failures archived since `since`."""
    after = _rfc3339(since)
    alerts = []
    for event in query_events(warehouse, event_type=CANARY_JUDGED, since=after, limit=500):
        data = event.payload()
        if data.get("outcome") == "rollback":
            alerts.append(Alert(str(data.get("pipeline") or event.pipeline), "canary_rolled_back", "warning", None, None,
                                event.time, f"canary version {data.get('canary_version', '?')} rolled back: "
                                            f"{data.get('reason', '')}"))
    grouped: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for event in query_events(warehouse, event_type=DEAD_LETTER_TOPIC, since=after, limit=500):
        grouped[(event.pipeline or event.attributes.get("pipeline", ""), "dead_letters")].append(event)
    for event in query_events(warehouse, event_type=STAGE_FAILED, since=after, limit=500):
        data = event.payload()
        if data.get("permanent"):
            grouped[(str(data.get("pipeline") or event.pipeline or ""), "stage_failed")].append(event)
    for (pipeline, condition), events in sorted(grouped.items()):
        first = min(events, key=lambda e: e.time)
        last = max(events, key=lambda e: e.time)
        data = last.payload()
        reason = (last.attributes.get("dead_letter_reason", "") if condition == "dead_letters"
                  else f"{data.get('stage', '?')}: {data.get('error_class', '')}: {data.get('error_message', '')}")
        alerts.append(Alert(pipeline, condition, "critical", float(len(events)), 0.0, first.time,
                            f"{len(events)} since {after}; latest: {reason[:300]}"))
    return alerts


def _rfc3339(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(moment)

"""The dashboard (`mlops ui`) on in-memory data: what each page shows, the replay action, and what a
page costs in reads with 50 pipelines and 10,000 versions (counted, not timed).

The archive is a list of rows as the `events` table holds them, answered by `Archive`, a stand-in
that filters on the query's parameters (their names are `mlops.ui.reads.event_query`'s contract);
the SQL itself runs on bqemulator in tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.events import (
    DataReady,
    Decision,
    DeploymentAction,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    StageFailed,
    encode,
    new_envelope,
)
from mlops.core.events.types import DeployedModel
from mlops.core.topology import DEAD_LETTER_TOPIC, archive_subscription
from mlops.ports.registry import VersionMeta
from mlops.ports.specs import SpecStore
from mlops.ports.warehouse import TableNotFound
from mlops.testing.memory import InMemoryBlobStore, InMemoryEventBus, InMemoryModelRegistry
from mlops.ui import charts, create_app
from tests.unit.conftest import make_spec

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Archive:
    """A SqlReader over in-memory rows of the `events` and `monitoring_checks` tables; counts queries."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] | None = None  # None: the table does not exist
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def qualified(self, table: str, dataset: str | None = None) -> str:
        return f"p.{dataset or 'mlops'}.{table}"

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        return None

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        params = dict(params or {})
        self.queries.append((sql, params))
        if "monitoring_checks" in sql:
            if self.checks is None:
                raise TableNotFound("Not found: Table p:mlops.monitoring_checks")
            rows = sorted((r for r in self.checks if r["pipeline"] == params["pipeline"]),
                          key=lambda r: r["checked_at"], reverse=True)
            return rows[:params["limit"]]
        if "limit" not in params:  # the operator tools' own queries (lineage): by topic and run
            return self._archive_query(params)
        listed = lambda name: {v for k, v in params.items() if re.fullmatch(rf"{name}_\d+", k)}  # noqa: E731
        types_, pipelines, ids = listed("type"), listed("pipeline"), listed("id")
        without_dead_letters = "NOT (COALESCE(subscription_name" in sql
        picked = []
        for row in sorted(self.events, key=lambda r: r["publish_time"], reverse=True):
            attributes = json.loads(row["attributes"])
            dead = row["subscription_name"] == params["dead_letters"]
            typed = not types_ or attributes.get("ce-type") in types_
            if (dead and without_dead_letters) or not (typed or (dead and not without_dead_letters)):
                continue
            if ("pipeline_0" in params or pipelines) and attributes.get("pipeline") not in pipelines:
                continue
            if "run_id" in params and attributes.get("run_id") != params["run_id"]:
                continue
            if ("id_0" in params or ids) and attributes.get("ce-id") not in ids:
                continue
            picked.append((attributes, row))
        if "per_type" in params:
            seen: dict[tuple[str, str], int] = {}
            kept = []
            for attributes, row in picked:
                key = (attributes.get("pipeline", ""), attributes.get("ce-type", ""))
                seen[key] = seen.get(key, 0) + 1
                if seen[key] <= params["per_type"]:
                    kept.append((attributes, row))
            picked = kept
        return [row for _, row in picked][params["offset"]:params["offset"] + params["limit"]]

    def _archive_query(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for row in sorted(self.events, key=lambda r: r["publish_time"], reverse=True):
            attributes = json.loads(row["attributes"])
            by_run = attributes.get("run_id", "").startswith(params.get("run_id") or "\0")
            deployed = attributes.get("ce-type") == params.get("deployed") and attributes.get("pipeline") == params.get("pipeline")
            topic = row["subscription_name"] == params.get("subscription")
            by_id = attributes.get("ce-id") == params.get("ce_id")
            if by_run or deployed or topic or by_id:
                rows.append(row)
        return rows

    def add(self, event: Any, *, run_id: str, causation_id: str = "", minutes: float = 0, event_id: str | None = None,
            service: str = "test") -> str:
        envelope = new_envelope(event, service, run_id=run_id, id=event_id).with_changes(causation_id=causation_id)
        when = T0 + timedelta(minutes=minutes)
        attributes = {**envelope.to_attributes(), "ce-time": when.isoformat().replace("+00:00", "Z")}
        self.events.append({"subscription_name": archive_subscription(event.EVENT_TYPE), "message_id": envelope.id,
                            "publish_time": when, "data": encode(event).decode(), "attributes": json.dumps(attributes)})
        return envelope.id

    def dead_letter(self, reason: str, *, pipeline: str, minutes: float) -> None:
        when = T0 + timedelta(minutes=minutes)
        attributes = {"ce-id": "poison-1", "ce-type": "model.trained.v1", "pipeline": pipeline, "run_id": "run-poison",
                      "ce-time": when.isoformat(), "dead_letter_reason": reason, "dead_letter_stage": "evaluator",
                      "dead_letter_error_class": "EventValidationError"}
        self.events.append({"subscription_name": archive_subscription(DEAD_LETTER_TOPIC), "message_id": "m-poison",
                            "publish_time": when, "data": "{not json", "attributes": json.dumps(attributes)})


class CountingRegistry:
    def __init__(self, registry: InMemoryModelRegistry) -> None:
        self.inner, self.reads = registry, 0

    def get_version(self, model_id: str, version: str) -> Any:
        self.reads += 1
        return self.inner.get_version(model_id, version)

    def list_versions(self, model_id: str) -> Any:
        self.reads += 1
        return self.inner.list_versions(model_id)


@dataclass
class Readers:
    warehouse: Archive
    registry: CountingRegistry
    specs: SpecStore


@dataclass
class Context:
    readers: Readers
    bus: InMemoryEventBus


def deployed(pipeline: str, version: str, split: dict[str, int],
             action: DeploymentAction = DeploymentAction.DEPLOY) -> ModelDeployed:
    return ModelDeployed(
        pipeline=pipeline, endpoint=f"projects/p/locations/l/endpoints/{pipeline}", model_id=pipeline,
        version_id=version, action=action, previous_version=None,
        deployed_models=[DeployedModel(deployed_model_id=f"d{v}", version_id=v, artifact_uri="gs://b/m/",
                                       artifact_checksum="sha256:" + "0" * 64, traffic_percent=share)
                         for v, share in split.items()])


def decision(promote: bool) -> Decision:
    return Decision.PROMOTE if promote else Decision.REJECT


def play_round(archive: Archive, registry: InMemoryModelRegistry, pipeline: str, number: int, auc: float,
               champion: tuple[str, float] | None, minutes: float) -> tuple[str, bool]:
    """One run as the services archive it: data.ready -> model.evaluated -> model.registered (-> deployed)."""
    run = f"run-{pipeline}-{number}"
    promote = champion is None or auc > champion[1]
    ready = archive.add(DataReady.example().model_copy(update={"pipeline": pipeline}), run_id=run, minutes=minutes,
                        service="data-watcher")
    reason = (f"roc_auc {auc:.4f} beats the champion's {champion[1]:.4f}" if champion and promote else
              f"roc_auc {auc:.4f} does not beat the champion's {champion[1]:.4f}" if champion else
              "no champion yet; roc_auc above the minimum")
    evaluated = archive.add(ModelEvaluated.example().model_copy(update={
        "pipeline": pipeline, "metrics": {"roc_auc": auc}, "champion_metrics": {"roc_auc": champion[1]} if champion else {},
        "champion_version": champion[0] if champion else None, "decision": decision(promote), "reason": reason}), run_id=run, causation_id=ready, minutes=minutes + 0.5, service="evaluator")
    meta = VersionMeta(artifact_uri="gs://b/m/model.zip", artifact_checksum="", metrics={"roc_auc": auc},
                       decision=decision(promote), reason=reason, lineage={"run_id": run, "data_version": f"d{number:04d}"})
    version = registry.register_version(pipeline, pipeline, "gs://b/m/", "image", {"status": "x"},
                                        ["champion"] if promote else [], json.dumps(meta.to_json()))
    registered = archive.add(ModelRegistered.example().model_copy(update={
        "pipeline": pipeline, "model_id": pipeline, "version_id": version.version_id,
        "decision": decision(promote), "metrics": {"roc_auc": auc},
        "lineage": {"data_version": f"d{number:04d}", "run_id": run}}),
        run_id=run, causation_id=evaluated, minutes=minutes + 0.6, service="registrar")
    if promote:
        archive.add(deployed(pipeline, version.version_id, {version.version_id: 100}), run_id=run,
                    causation_id=registered, minutes=minutes + 0.8, service="deployer")
    return version.version_id, promote


@pytest.fixture
def world():
    archive, registry, blobs, bus = Archive(), InMemoryModelRegistry(), InMemoryBlobStore("b"), InMemoryEventBus()
    specs = SpecStore(blobs, cache_seconds=0)
    specs.put(make_spec(name="abalone"))
    champion = None
    for number, auc in enumerate((0.85, 0.88, 0.87, 0.91), 1):
        version, promoted = play_round(archive, registry, "abalone", number, auc, champion, minutes=number * 10)
        if promoted:
            champion = (version, auc)
    # a canary: v5 takes 20% beside the champion v4
    archive.add(deployed("abalone", "5", {"4": 80, "5": 20}, action=DeploymentAction.CANARY), run_id="run-canary", minutes=60)
    failed = StageFailed.example().model_copy(update={"pipeline": "abalone", "error_message": "snapshot table gone"})
    archive.add(failed, run_id="run-abalone-4", minutes=70, service="trainer")
    archive.dead_letter("payload does not fit model.trained.v1: missing field artifact_uri", pipeline="abalone", minutes=71)
    ctx = Context(Readers(archive, CountingRegistry(registry), specs), bus)
    return ctx


@pytest.fixture
def no_alerts_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlops.ops.alerts", None)  # import raises ImportError


@pytest.fixture
def client(world, no_alerts_module):
    app = create_app(world, secret_key="test")
    return app.test_client()


def points(html: str, chart_id: str) -> int:
    match = re.search(rf'<svg class="chart" id="{chart_id}"[^>]*data-points="(\d+)"', html)
    assert match, f"no chart {chart_id}"
    return int(match.group(1))


def test_the_overview_shows_champion_canary_last_run_and_says_alerts_are_unavailable(client):
    html = client.get("/").get_data(as_text=True)
    row = re.search(r'<tr data-pipeline="abalone">(.*?)</tr>', html, re.S).group(1)
    assert "v4 <small>80%</small>" in row and "v5 <small>20%</small>" in row
    assert "failed in trainer: SnapshotMissing" in row, "the newest event of the pipeline is its last outcome"
    assert "alerts unavailable" in html


def test_the_overview_lists_open_alerts_when_the_monitor_provides_them(world, monkeypatch):
    @dataclass
    class Alert:
        pipeline: str
        condition: str
        severity: str = "warning"
        value: float = 0.4
        threshold: float = 0.1
        since: str = ""
        detail: str = "mean_radius drifted"

    module = types.ModuleType("mlops.ops.alerts")
    module.list_alerts = lambda ctx: [Alert("abalone", "drift_above"), Alert("other", "dead_letters")]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlops.ops.alerts", module)
    html = create_app(world, secret_key="t").test_client().get("/").get_data(as_text=True)
    assert "drift_above" in html and "dead_letters" not in html and "alerts unavailable" not in html


def test_the_pipeline_page_charts_one_point_per_version_with_each_decisions_reason(client):
    html = client.get("/pipelines/abalone").get_data(as_text=True)
    assert points(html, "gate-chart") == 4
    assert len(re.findall(r'<circle class="point reject"', html)) == 1
    assert "roc_auc 0.8700 does not beat the champion&#39;s 0.8800" in html
    assert re.search(r'<tr data-version="4">.*?champion</span> 80%', html, re.S)
    assert "canary" in html and "v4 80% v5 20%" in html, "the traffic history shows the canary split"
    assert "no monitoring data yet" in html


def test_the_pipeline_page_shows_drift_per_feature_and_realized_performance(world, no_alerts_module):
    world.readers.warehouse.checks = [
        {"checked_at": T0 + timedelta(hours=h), "pipeline": "abalone", "version": "4", "check_kind": kind,
         "feature": feature, "measure": measure, "value": value, "threshold": threshold, "breached": value > threshold}
        for h in range(3)
        for kind, feature, measure, value, threshold in (
            ("drift", "length", "js", 0.05 * (h + 1), 0.1), ("drift", "sex", "linf", 0.02, 0.2),
            ("performance", None, "roc_auc", 0.9 - h / 100, 0.8), ("quality", "length", "missing_rate", 0.0, 0.05))]
    html = create_app(world, secret_key="t").test_client().get("/pipelines/abalone").get_data(as_text=True)
    assert "no monitoring data yet" not in html
    assert 'aria-label="js drift of length"' in html and 'aria-label="linf drift of sex"' in html
    assert len(re.findall(r'class="point breached"', html)) == 1, "0.15 > 0.1 in the third window"
    assert points(html, "performance-chart") == 3
    assert "missing_rate" in html


def test_a_run_shows_its_chain_with_hops_and_lineage_and_a_replay_needs_the_forms_token(client, world):
    html = client.get("/runs/run-abalone-2").get_data(as_text=True)
    assert [t for t in re.findall(r'<tr data-type="([^"]+)"', html)] == [
        "data.ready.v1", "model.evaluated.v1", "model.registered.v1", "model.deployed.v1"]
    assert "+30.00 s" in html and "+6.00 s" in html
    assert 'id="lineage"' in html and "v2" in html
    event_id = re.search(r'name="event_id" value="([^"]+)"', html).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    assert client.post("/replay", data={"event_id": event_id, "next": "/runs/run-abalone-2"}).status_code == 403
    forged = client.post("/replay", data={"event_id": event_id, "csrf_token": token},
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and not world.bus.on("data.ready.v1")

    answer = client.post("/replay", data={"event_id": event_id, "csrf_token": token, "next": "/runs/run-abalone-2"},
                         headers={"Origin": "http://localhost"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/runs/run-abalone-2")
    [published] = world.bus.on("data.ready.v1")
    assert published.attributes["replay_of"] == event_id
    assert f"as new event {published.attributes['ce-id']}" in client.get("/runs/run-abalone-2").get_data(as_text=True)


def test_replaying_an_unknown_event_says_so_and_sends_nothing(client, world):
    html = client.get("/failures").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    client.post("/replay", data={"event_id": "no-such-event", "csrf_token": token})
    assert "nothing replayed: no archived event with id" in client.get("/failures").get_data(as_text=True)
    assert not any(world.bus.on(t) for t in ("data.ready.v1", "model.trained.v1"))


def test_failures_show_stage_failures_and_dead_letters_with_their_reasons(client):
    html = client.get("/failures").get_data(as_text=True)
    assert "SnapshotMissing: snapshot table gone" in html
    assert "EventValidationError: payload does not fit model.trained.v1: missing field artifact_uri" in html
    assert html.count("Replay input") == 1, "the stage failure's input can be replayed; a dead letter cannot"


def test_bad_requests_are_4xx_pages_that_say_what_is_wrong(client):
    unknown = client.get("/pipelines/nope")
    assert unknown.status_code == 404 and "no pipeline &#39;nope&#39;" in unknown.get_data(as_text=True)
    assert client.get("/?page=-1").status_code == 400
    assert client.get("/runs/no-such-run").status_code == 404
    assert client.get("/replay").status_code == 405


def test_the_chart_escapes_its_text_and_leaves_out_values_that_are_not_numbers():
    svg = charts.line_chart([charts.Series("<b>", [charts.Point("a&b", 1.0), charts.Point("x", float("nan"))])], "t<")
    assert 'data-points="1"' in svg and "<b>" not in svg and "a&amp;b" in svg and "t&lt;" in svg
    assert 'data-points="0"' in charts.line_chart([], "empty")


def test_pages_cost_the_same_few_reads_with_50_pipelines_and_10000_versions(no_alerts_module):
    archive, registry, blobs = Archive(), InMemoryModelRegistry(), InMemoryBlobStore("b")
    specs = SpecStore(blobs, cache_seconds=0)
    names = [f"p{n:02d}" for n in range(50)]
    minutes = 0.0
    for name in names:
        specs.put(make_spec(name=name))
        champion = None
        for number in range(1, 201):  # 200 versions each: 10,000 in all
            minutes += 1
            auc = 0.8 + (number % 17) / 100
            version, promoted = play_round(archive, registry, name, number, auc, champion, minutes)
            if promoted:
                champion = (version, auc)
    assert sum(len(registry.list_versions(n)) for n in names) == 10_000
    ctx = Context(Readers(archive, CountingRegistry(registry), specs), InMemoryEventBus())
    client = create_app(ctx, secret_key="t").test_client()

    def cost(path: str) -> tuple[int, int, str]:
        archive.queries.clear()
        ctx.readers.registry.reads = 0
        html = client.get(path).get_data(as_text=True)
        return len(archive.queries), ctx.readers.registry.reads, html

    queries, registry_reads, html = cost("/")
    assert (queries, registry_reads) == (1, 0)
    assert html.count("<tr data-pipeline=") == 50
    queries, registry_reads, html = cost("/pipelines/p07")
    # traffic history, a page of registrations, their evaluations, the monitoring checks; the champion alias
    assert (queries, registry_reads) == (4, 1)
    assert points(html, "gate-chart") == 50 and html.count("<tr data-version=") == 50
    queries, registry_reads, older = cost("/pipelines/p07?page=3")
    assert (queries, registry_reads) == (4, 1) and older.count("<tr data-version=") == 50
    assert '<tr data-version="50">' in older and "older &rarr;" not in older, "page 4 of 200 versions is the last"
    assert all("@limit" in sql and params["limit"] <= 51 for sql, params in archive.queries if "events" in sql)
    queries, _, _ = cost("/failures")
    assert queries == 1

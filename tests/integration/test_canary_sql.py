"""The canary judge's SQL on bqemulator: the signals of a canary and its champion from `predictions`
and `labels`, and its record in `monitoring_checks`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlops.core.events import CanaryOutcome, WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import parse_spec
from mlops.core.sql import quote_qualified
from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE
from mlops.ports.specs import SpecStore
from mlops.stack.emulators import BigQueryEmulator
from mlops.testing.memory import InMemoryBlobStore, InMemoryMetrics, InMemoryModelEndpoint, InMemoryModelRegistry
from monitor.canary import CanaryJudge, SqlSignals
from tests.integration.harness import unique_project

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
SPEC = parse_spec(
    "name: sql-canary\n"
    "source: {table: sql_canary, label: y, features: [x]}\n"
    "model: {type: LOGISTIC_REG}\n"
    "promotion: {metric: roc_auc}\n"
    "deployment: {canary_percent: 20, canary_window: {min_predictions: 40}}\n"
)


@pytest.fixture
def warehouse(bigquery_emulator: BigQueryEmulator):
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client
    from mlops.stack.provision import provision_bigquery

    project = unique_project()
    warehouse = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops",
                                  "mlops_snapshots")
    provision_bigquery(warehouse)
    return warehouse


def serve(warehouse, version: str, n: int, *, start: int, inverted: bool, latency: float) -> None:
    """n predictions of `version`, true label alternating, scored well (or inverted), and their labels."""
    rows, labels = [], []
    for i in range(n):
        truth = i % 2
        good = 0.8 if truth else 0.3
        score = 1 - good if inverted else good
        rid = f"r{start + i}"
        rows.append({"event_id": f"e{start}", "pipeline": SPEC.name, "request_id": rid, "model_version": version,
                     "features": "{}", "predicted_label": str(int(score > 0.5)), "predicted_value": None,
                     "score": score + (i % 5) * 0.01, "latency_ms": latency + i % 3,
                     "predicted_at": T0 + timedelta(seconds=start + i)})
        labels.append({"pipeline": SPEC.name, "request_id": rid, "label": str(truth),
                       "labeled_at": T0 + timedelta(hours=1)})
    warehouse.insert_rows(PREDICTIONS_TABLE, rows)
    warehouse.insert_rows(LABELS_TABLE, labels)


def test_the_signals_of_an_inverted_canary(warehouse):
    serve(warehouse, "1", 160, start=510, inverted=False, latency=2.0)
    serve(warehouse, "1", 10, start=-1000, inverted=False, latency=2.0)  # before the canary: not in the window
    serve(warehouse, "2", 40, start=500, inverted=True, latency=2.0)

    signals = SqlSignals(warehouse)(SPEC, "2", "1", T0 + timedelta(hours=2))

    assert signals.window_start == T0 + timedelta(seconds=500)
    assert (signals.canary.count, signals.champion.count) == (40, 160)
    assert (signals.canary.errors, signals.champion.errors) == (0, 0)
    assert signals.canary.latency_p95_ms == pytest.approx(4.0) and signals.champion.latency_p95_ms == pytest.approx(4.0)
    assert (signals.canary.labelled, signals.champion.labelled) == (40, 160)
    assert signals.champion.metric == pytest.approx(1.0) and signals.canary.metric == pytest.approx(0.0)
    # Scores 0.3/0.8 against 0.2/0.7 (plus up to 0.04) share no bin of the ten between 0.2 and 0.84.
    assert signals.score_js == pytest.approx(1.0)


def test_the_judgement_is_recorded_in_monitoring_checks_and_rebuilt_from_them(warehouse):
    serve(warehouse, "1", 160, start=510, inverted=False, latency=2.0)
    serve(warehouse, "2", 40, start=500, inverted=True, latency=2.0)
    blobs = InMemoryBlobStore()
    specs = SpecStore(blobs, cache_seconds=0)
    specs.put(SPEC)
    registry = InMemoryModelRegistry()
    endpoints = InMemoryModelEndpoint(registry)
    endpoint = endpoints.ensure_endpoint(SPEC.endpoint_name)
    for n, share in ((1, 100), (2, 20)):
        version = registry.register_version(SPEC.model_id, f"v{n}", f"gs://b/models/{SPEC.name}/c{n}", "img", {},
                                            ["champion"])
        endpoints.deploy(endpoint, version, share)
    judge = CanaryJudge(warehouse, specs, registry, endpoints, InMemoryMetrics())
    tick = WatchTick(pipeline=SPEC.name, reason="schedule")
    envelope = new_envelope(tick, "ticker").with_changes(time="2026-11-22T08:00:00Z")

    [judged] = judge.handle(tick, envelope)
    assert judged.outcome == CanaryOutcome.ROLLBACK
    assert judged.reason.startswith("score distribution shifted: Jensen-Shannon 1.000 between canary 2 and champion 1")
    assert "roc_auc on labelled predictions fell: 0.0000 (canary 2, 40 labels) vs 1.0000" in judged.reason

    judge._signals = lambda *args: pytest.fail("a redelivery must rebuild the verdict from its record")  # type: ignore[assignment]
    [again] = judge.handle(tick, envelope)
    assert again == judged
    rows = warehouse.query(f"SELECT measure, breached FROM {quote_qualified(warehouse.qualified(MONITORING_CHECKS_TABLE))} "
                           "WHERE check_kind = @kind", {"kind": "canary"})
    assert {r["measure"] for r in rows if r["breached"]} == {"score_js", "metric_drop"}

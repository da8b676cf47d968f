"""The monitor's SQL (`monitor.figures.SqlServingFigures`) on bqemulator answers what its in-memory
twin (tests/unit/monitor_figures.py, which the monitor's unit tests run on) answers, on the same rows;
and the local alerts read the checks it writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE, TABLES
from mlops.ml.drift import SCORE_EDGES
from mlops.stack.emulators import BigQueryEmulator
from mlops.testing.memory import InMemoryWarehouse
from monitor.figures import CategoricalValues, NumericBins, SqlServingFigures
from tests.integration.harness import unique_project
from tests.unit.monitor_figures import MemoryServingFigures

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def _rows():
    predictions, labels = [], []
    for i in range(60):
        features = {"x": None if i % 10 == 0 else float(i % 7), "colour": None if i % 13 == 0 else "red" if i % 3 else "blue",
                    "flag": i % 2 == 0}
        version = "1" if i < 40 else "2"
        score = (i % 11) / 10
        predictions.append({"event_id": "e", "pipeline": "p-one", "request_id": f"r{i:03d}", "model_version": version,
                            "features": json.dumps(features), "predicted_label": "1" if score > 0.5 else "0",
                            "predicted_value": None, "score": None if i % 17 == 0 else score, "latency_ms": 2.0,
                            "predicted_at": T0 + timedelta(seconds=i)})
        if i % 20 == 8:  # a request the model failed on: logged without an answer
            predictions[-1].update(predicted_label=None, score=None)
        if i % 4 == 0:
            labels.append({"pipeline": "p-one", "request_id": f"r{i:03d}", "label": str(i % 2), "labeled_at": T0})
    predictions.append({**predictions[0], "pipeline": "p-two", "predicted_at": T0})  # another pipeline: never counted
    return predictions, labels


@pytest.fixture
def both(bigquery_emulator: BigQueryEmulator):
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client, storage_clients
    from mlops.stack.emulators import STORAGE_API_ENV_VAR
    from mlops.stack.provision import provision_bigquery

    project = unique_project()
    # Reads through the Storage Read API on the emulator's gRPC port, as in the stack.
    real = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops", "mlops_snapshots",
                             storage=storage_clients(bigquery_emulator.env()[STORAGE_API_ENV_VAR]))
    provision_bigquery(real)
    memory = InMemoryWarehouse(project=project)
    for table, columns in TABLES.items():
        memory.ensure_table(table, columns)
    predictions, labels = _rows()
    for warehouse in (real, memory):
        warehouse.insert_rows(PREDICTIONS_TABLE, predictions)
        warehouse.insert_rows(LABELS_TABLE, labels)
        warehouse.insert_rows(MONITORING_CHECKS_TABLE, [{
            "checked_at": T0, "pipeline": "p-one", "version": "1", "check_kind": "drift", "feature": "x", "measure": "js",
            "value": 0.5, "threshold": 0.1, "breached": True, "window_start": T0, "window_end": T0 + timedelta(minutes=1),
            "rows": 40, "check_id": "chk-1"}])
    return SqlServingFigures(real), MemoryServingFigures(memory), real


def _key(rows):
    return sorted((json.dumps(r, sort_keys=True, default=str) for r in rows))


def test_feature_counts_agree(both):
    sql, memory, _ = both
    queries = [NumericBins("x", (1.0, 3.0, 5.0), 0.0, 4.0), NumericBins("x", (), None, None),
               CategoricalValues("colour"), CategoricalValues("flag")]
    for version in ("1", "2"):
        expected = memory.feature_counts("p-one", T0, T0 + timedelta(minutes=1), queries[:1], version)
        assert _key(sql.feature_counts("p-one", T0, T0 + timedelta(minutes=1), queries[:1], version)) == _key(expected)
    got = sql.feature_counts("p-one", T0, T0 + timedelta(seconds=30), queries, "1")
    assert _key(got) == _key(memory.feature_counts("p-one", T0, T0 + timedelta(seconds=30), queries, "1"))
    assert {r["bucket"] for r in got if r["feature"] == "flag"} == {"true", "false"}


def test_score_counts_spans_labels_and_written_checks_agree(both):
    sql, memory, _ = both
    end = T0 + timedelta(minutes=1)
    assert _key(sql.score_counts("p-one", T0, end, SCORE_EDGES)) == _key(memory.score_counts("p-one", T0, end, SCORE_EDGES))
    assert _key(sql.score_counts("p-one", T0, end, SCORE_EDGES, version="2")) == \
        _key(memory.score_counts("p-one", T0, end, SCORE_EDGES, version="2"))
    assert _key(sql.served_span("p-one")) == _key(memory.served_span("p-one"))
    assert _key(sql.labelled("p-one", T0, end)) == _key(memory.labelled("p-one", T0, end))
    labelled = {r["request_id"] for r in sql.labelled("p-one", T0, end)}
    assert "r004" in labelled and not labelled & {"r008", "r028", "r048"}  # failed requests have nothing to score
    assert sql.written_checks(["chk-1", "chk-2"]) == memory.written_checks(["chk-1", "chk-2"]) == {"chk-1": T0}


def test_a_pipeline_with_nothing_served_gets_empty_answers(both):
    sql, memory, _ = both
    end = T0 + timedelta(minutes=1)
    assert sql.served_span("nobody") == memory.served_span("nobody") == []
    assert sql.labelled("nobody", T0, end) == memory.labelled("nobody", T0, end) == []
    assert sql.feature_counts("nobody", T0, end, [CategoricalValues("colour")], "1") == []
    assert sql.written_checks(["chk-9"]) == {}


def test_local_alerts_list_the_breached_check(both):
    from mlops.ops.alerts import breached_checks

    _, _, real = both
    [alert] = breached_checks(real)
    assert (alert.pipeline, alert.condition, alert.value, alert.threshold) == ("p-one", "drift_above", 0.5, 0.1)

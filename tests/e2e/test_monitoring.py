"""Monitoring on the real stack: shifted serving inputs cross the drift threshold, an alert opens in
`mlops alerts --json`, and the data-watcher retrains with `trigger: drift`."""

from __future__ import annotations

import csv
import json
import time

import pytest

from tests.e2e.conftest import mlops

# Minutes of real work on a loaded machine (a stack, training, deploys): waited for, never timed.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PIPELINE = "drifty"


def _write_csv(path, rows, columns):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def _wait_for(what, probe, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}")


def test_shifted_inputs_cross_the_drift_threshold_alert_and_retrain_with_trigger_drift(stack, stack_dir, tmp_path):
    from sklearn.datasets import load_breast_cancer  # real data bundled in the scikit-learn wheel

    data = load_breast_cancer()
    features = ["mean_radius", "mean_texture", "mean_smoothness"]
    index = [list(data.feature_names).index(name.replace("_", " ")) for name in features]
    rows = [{**{f: float(x[i]) for f, i in zip(features, index)}, "malignant": str(int(y == 0))}
            for x, y in zip(data.data, data.target)]
    columns = [*features, "malignant"]
    _write_csv(tmp_path / "train.csv", rows[:450], columns)
    spec = tmp_path / "drifty.yaml"
    # New rows alone never retrain (ten times the trained rows); the ticker ticks every 10 s; the
    # monitor judges one-minute windows of at least 40 predictions.
    spec.write_text(
        f"name: {PIPELINE}\n"
        f"source: {{table: drifty, label: malignant, features: [{', '.join(features)}]}}\n"
        "model: {type: LOGISTIC_REG}\n"
        "retrain: {new_rows_fraction: 10.0, schedule_seconds: 10}\n"
        "promotion: {metric: roc_auc, minimum: 0.6}\n"
        "monitoring: {window_minutes: 1, min_rows: 40, drift: {js_threshold: 0.2}}\n")
    mlops("pipeline", "apply", str(spec), data_dir=stack_dir)

    quiet = mlops("alerts", data_dir=stack_dir)
    assert quiet.returncode == 0
    listed = json.loads(mlops("alerts", "--json", data_dir=stack_dir).stdout)
    assert [a for a in listed if a["pipeline"] == PIPELINE] == []

    mlops("ingest", "--pipeline", PIPELINE, "--csv", str(tmp_path / "train.csv"), data_dir=stack_dir)

    def predict(instances) -> bool:
        # Through `mlops predict`, whatever serves the endpoint (the predictor, or Vertex's route to it).
        return mlops("predict", "--pipeline", PIPELINE, "--json", json.dumps({"instances": instances}),
                     data_dir=stack_dir, check=False).returncode == 0

    _wait_for("the first model to serve", lambda: predict([{f: rows[0][f] for f in features}]), 300)
    # Serving inputs far from training: every feature tripled.
    shifted = [{f: row[f] * 3 for f in features} for row in rows[450:]]
    for start in range(0, len(shifted), 40):
        assert predict(shifted[start:start + 40])
    # A few shifted rows with labels land too (below the new-row threshold): what a retrain learns from.
    _write_csv(tmp_path / "shifted.csv", [{**row, **{f: row[f] * 3 for f in features}} for row in rows[450:]], columns)
    mlops("ingest", "--pipeline", PIPELINE, "--csv", str(tmp_path / "shifted.csv"), "--no-tick", data_dir=stack_dir)

    def drift_alert():
        listed = json.loads(mlops("alerts", "--json", data_dir=stack_dir).stdout)
        return [a for a in listed if a["pipeline"] == PIPELINE and a["condition"] == "drift_above"]

    alerts = _wait_for("a drift alert", drift_alert, 300)
    assert {a["detail"].split(":")[1].split()[0] for a in alerts} & set(features)
    assert all(a["value"] > a["threshold"] for a in alerts)

    def drift_retrain():
        ready = json.loads(mlops("events", "--type", "data.ready", "--json", data_dir=stack_dir).stdout)
        return [e for e in ready if e["data"]["pipeline"] == PIPELINE and e["data"]["trigger"] == "drift"]

    retrains = _wait_for("a data.ready with trigger drift", drift_retrain, 240)
    # At most once per window, however many features drifted: the shifted predictions (sent over some
    # seconds) fall in one one-minute window, or two when they straddle a minute.
    assert 1 <= len(retrains) <= 2
    run = retrains[0]["run_id"]
    trained = _wait_for("the drift run's model.trained", lambda: json.loads(mlops(
        "events", "--run", run, "--type", "model.trained", "--json", data_dir=stack_dir).stdout), 300)
    assert trained[0]["data"]["pipeline"] == PIPELINE

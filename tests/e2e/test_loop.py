"""The loop, end to end, on the emulators: the demo's real dataset, then a user's own CSV and spec.

Both pipelines share one stack, as several pipelines do in one deployment.
"""

from __future__ import annotations

import csv
import json
import time

import pytest

from mlops.ops.demo import run_demo
from tests.e2e.conftest import mlops

pytestmark = pytest.mark.e2e


def test_status_reports_every_component_healthy_with_port_and_pid(stack, stack_dir):
    report = json.loads(mlops("status", "--json", data_dir=stack_dir).stdout)
    assert report["up"] is True
    expected = {"supervisor", "pubsub", "bigquery", "storage", "vertex", "archiver", "ticker", "data-watcher", "monitor",
                "trainer", "evaluator", "registrar", "deployer", "inference-logger"}
    # The predictor is no service of its own: one serving process per deployed model (`serving-<id>`).
    assert {n for n in report["components"] if not n.startswith("serving-")} == expected
    for name, component in report["components"].items():
        assert component["healthy"] and component["pid"] > 0, name
        if component["kind"] != "worker":
            assert component["port"], name


def test_the_demo_retrains_gates_deploys_and_logs_by_itself(stack, stack_dir):
    summary = run_demo(stack_dir, keep=True)
    decisions = [r["decision"] for r in summary["rounds"]]
    assert len(decisions) >= 3
    assert "promote" in decisions and "reject" in decisions
    assert summary["predictions_logged"] == summary["predictions_sent"] > 0
    champion = max(int(r["version"]) for r in summary["rounds"] if r["decision"] == "promote")
    assert summary["serving"][str(champion)] == 100
    # Each deployed version is its own serving process, started with Vertex's environment, and listed.
    report = json.loads(mlops("status", "--json", data_dir=stack_dir).stdout)
    serving = {n: c for n, c in report["components"].items() if c["kind"] == "serving"}
    assert len(serving) >= 1 and all(c["healthy"] and c["pid"] > 0 for c in serving.values()), serving
    # Another test on this stack may have run the demo first: this run's pipeline is then abalone-2.
    models = json.loads(mlops("models", "--pipeline", summary["pipeline"], "--json", data_dir=stack_dir).stdout)
    statuses = {m["version"]: m["status"] for m in models}
    assert statuses[str(champion)] == "champion"
    assert {"rejected", "retired"} <= set(statuses.values())


def test_a_new_user_with_their_own_csv_and_spec_needs_no_other_command(stack, stack_dir, tmp_path):
    from sklearn.datasets import (
        load_diabetes,  # real data bundled in the scikit-learn wheel
    )

    data = load_diabetes()
    features = [f"f_{name}" for name in data.feature_names]
    rows = [{**{f: float(v) for f, v in zip(features, x)}, "progression": float(y)}
            for x, y in zip(data.data, data.target)]
    chunks = [rows[:200], rows[200:320], rows[320:]]
    for number, chunk in enumerate(chunks):
        with (tmp_path / f"chunk{number}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, [*features, "progression"])
            writer.writeheader()
            writer.writerows(chunk)
    spec = tmp_path / "diabetes.yaml"
    spec.write_text(
        "name: diabetes\n"
        "source: {table: diabetes, label: progression, features: [" + ", ".join(features) + "]}\n"
        "model: {type: LINEAR_REG, options: {l2_reg: 0.5, data_split_method: RANDOM, data_split_eval_fraction: 0.25}}\n"
        "retrain: {new_rows_fraction: 0.3}\n"
        "promotion: {metric: mean_absolute_error, minimum: 80.0, min_gain: 0.0}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("mean_absolute_error", "roc_auc"))
    refused = mlops("pipeline", "apply", str(bad), data_dir=stack_dir, check=False)
    assert refused.returncode == 2 and "promotion.metric" in refused.stderr.replace("\n", "")

    mlops("pipeline", "apply", str(spec), data_dir=stack_dir)
    for number in range(len(chunks)):
        mlops("ingest", "--pipeline", "diabetes", "--csv", str(tmp_path / f"chunk{number}.csv"), data_dir=stack_dir)
        time.sleep(2)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        models = json.loads(mlops("models", "--pipeline", "diabetes", "--json", data_dir=stack_dir).stdout)
        if models and any(m["status"] == "champion" for m in models):
            break
        time.sleep(1)
    assert any(m["status"] == "champion" for m in models), models
    assert all("mean_absolute_error" in m["metrics"] for m in models)

    instance = {f: rows[0][f] for f in features}
    deadline = time.monotonic() + 30
    while True:
        answer = mlops("predict", "--pipeline", "diabetes", "--json", json.dumps({"instances": [instance]}),
                       data_dir=stack_dir, check=False)
        if answer.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    prediction = json.loads(answer.stdout)["predictions"][0]
    assert isinstance(prediction["value"], float)

    wrong = mlops("predict", "--pipeline", "diabetes", "--json", json.dumps({"instances": [{"f_age": "old"}]}),
                  data_dir=stack_dir, check=False)
    # Vertex AI answers the container's 400 in its error shape, the container's JSON as the message.
    error = json.loads(wrong.stdout)["error"]
    problems = json.loads(error["message"])["problems"]
    assert wrong.returncode == 1 and any("f_bmi" in p for p in problems) and any("f_age" in p for p in problems)

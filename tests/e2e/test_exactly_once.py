"""Exactly-once effects on at-least-once delivery, on the real stack: duplicates, crashes, replays.

Each test uses its own pipeline (its own source table, model and endpoint), so they share the stack
without depending on each other or on the order they run in.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from mlops.core.events import WatchTick, decode
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import parse_spec
from mlops.core.sql import quote_qualified
from mlops.core.topology import PREDICTIONS_TABLE, SNAPSHOTS_TABLE
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.ingest import ingest_rows
from tests.e2e.conftest import endpoint_split, mlops, predict
from tests.integration.harness import wait_for

# A deploy ends once the version's serving process answers its health route: seconds when the machine is
# idle, over 30 s when it is loaded (seen in CI at a load average of 12). A bound for liveness, not speed.
SERVING_BOOT_S = 120

pytestmark = pytest.mark.e2e

FEATURES = ["sex", "length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight", "shell_weight"]


def spec_for(name: str, model_options: str = "{max_iterations: 20, data_split_method: RANDOM, data_split_eval_fraction: 0.2}"):
    return parse_spec(
        f"name: {name}\n"
        f"source: {{table: {name.replace('-', '_')}, label: rings_above_9, features: [{', '.join(FEATURES)}]}}\n"
        f"model: {{type: BOOSTED_TREE_CLASSIFIER, options: {model_options}}}\n"
        "retrain: {new_rows_fraction: 0.2}\n"
        "promotion: {metric: roc_auc, minimum: 0.5, min_gain: 0.0}\n"
    )


def land(ctx: CliContext, spec, rows, tick_times: int = 1):
    """Rows in, then one tick published `tick_times` times with the same ce-id (a duplicated delivery)."""
    ingest_rows(ctx.warehouse, spec, rows)
    tick = WatchTick(pipeline=spec.name, reason="data_landed")
    envelope = new_envelope(tick, "test")
    for _ in range(tick_times):
        ctx.bus.publish(tick, envelope).result(timeout=30)
    return envelope


def champion(ctx: CliContext, pipeline: str):
    versions = ctx.registry.list_versions(pipeline)
    return next((v for v in versions if "champion" in v.aliases), None)


def serving(ctx: CliContext, pipeline: str) -> dict:
    return endpoint_split(ctx, pipeline)


def announced(ctx: CliContext, pipeline: str, version: str, timeout: float = 60) -> list:
    """Wait for the deployer's `model.deployed` of `version` in the archive: a deploy is done on a
    tick after the endpoint serves it, so the endpoint's split alone does not mean it was announced."""
    return wait_for(lambda: [e for e in query_events(ctx.warehouse, event_type="model.deployed.v1", limit=500)
                             if e.pipeline == pipeline and json.loads(e.data).get("version_id") == version],
                    timeout=timeout, what=f"model.deployed of {pipeline} version {version}")


def candidates(ctx: CliContext, pipeline: str) -> set[str]:
    """The trained candidates of `pipeline`: its artifact folders `models/<pipeline>/<candidate>/`
    (the trainer's `<candidate>.trained.json` record beside each is not one)."""
    return {parts[2] for parts in (path.split("/") for path in ctx.blobs.list(f"models/{pipeline}/")) if len(parts) > 3}


def quiet(seconds: float = 3.0) -> None:
    """Let redeliveries and duplicates drain through every stage."""
    time.sleep(seconds)


def test_the_same_event_delivered_three_times_has_exactly_one_effect_per_stage(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("dup-check")
    ctx.specs.put(spec)
    rows = load_demo_dataset().rows[:600]
    land(ctx, spec, rows, tick_times=3)
    winner = wait_for(lambda: champion(ctx, spec.name), timeout=90, what="a champion")
    wait_for(lambda: serving(ctx, spec.name).get(winner.version_id) == 100, timeout=SERVING_BOOT_S, what="serving")
    announced(ctx, spec.name, winner.version_id)
    ids = []
    for number in range(20):
        status, _ = predict(ctx, spec.name, {f: rows[number][f] for f in FEATURES}, f"dup-{number}")
        assert status == 200
        ids.append(f"dup-{number}")
    run_id = winner.labels["run_id"]
    wait_for(lambda: query_events(ctx.warehouse, event_type="prediction.made.v1", limit=50), timeout=30)

    # Every stage now gets its input three more times, with the original ce-id (as a redelivery would).
    inputs = query_events(ctx.warehouse, run_id=run_id, limit=100)
    made = [e for e in query_events(ctx.warehouse, event_type="prediction.made.v1", limit=200)
            if e.pipeline == spec.name]
    assert {e.type for e in inputs} >= {"data.ready.v1", "model.trained.v1", "model.evaluated.v1",
                                        "model.registered.v1", "model.deployed.v1"}
    for event in [*inputs, *made]:
        attributes = {k: v for k, v in event.attributes.items()}
        for _ in range(3):
            ctx.bus.publish_raw(event.type, event.data.encode(), attributes).result(timeout=30)
    quiet(6)

    snapshots = ctx.warehouse.query(
        f"SELECT COUNT(*) AS n FROM {quote_qualified(ctx.warehouse.qualified(SNAPSHOTS_TABLE))} WHERE pipeline = @p", {"p": spec.name})
    assert snapshots[0]["n"] == 1, "the data-watcher made a second snapshot"
    trained = candidates(ctx, spec.name)
    assert len(trained) == 1, f"the trainer trained more than once: {trained}"
    versions = ctx.registry.list_versions(spec.name)
    assert [v.version_id for v in versions] == [winner.version_id], "the registrar registered a duplicate"
    assert serving(ctx, spec.name) == {winner.version_id: 100}
    from mlops import runtime

    endpoint = runtime.model_endpoint(ctx.settings)
    assert len(endpoint.deployments(endpoint.ensure_endpoint(spec.name))) == 1, "the deployer deployed twice"
    logged = wait_for(lambda: ctx.warehouse.query(
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids FROM "
        f"{quote_qualified(ctx.warehouse.qualified(PREDICTIONS_TABLE))} WHERE pipeline = @p", {"p": spec.name})[0], timeout=30)
    assert logged["n"] == logged["ids"] == len(ids), f"prediction rows doubled or lost: {logged}"


def _pid(stack_dir, name: str) -> int:
    report = json.loads(mlops("status", "--json", data_dir=stack_dir).stdout)
    return report["components"][name]["pid"]


def test_a_trainer_killed_mid_training_completes_the_run_after_restart(stack, stack_dir):
    ctx = CliContext(stack_dir)
    # Deliberately slow training (hundreds of deep trees) so there is a "middle" to kill it in.
    spec = spec_for("crash-trainer", "{max_iterations: 300, learn_rate: 0.01, max_tree_depth: 10, early_stop: false, "
                                     "data_split_method: RANDOM, data_split_eval_fraction: 0.2}")
    ctx.specs.put(spec)
    land(ctx, spec, load_demo_dataset().rows[:3000])
    wait_for(lambda: [e for e in query_events(ctx.warehouse, event_type="data.ready.v1", limit=50)
                      if e.pipeline == spec.name], timeout=60, what="data.ready")
    time.sleep(1.5)  # the trainer is now fitting
    os.kill(_pid(stack_dir, "trainer"), signal.SIGKILL)
    assert champion(ctx, spec.name) is None
    stack.wait_healthy(["trainer"])  # the supervisor restarts it, as Cloud Run would
    winner = wait_for(lambda: champion(ctx, spec.name), timeout=180, what="the run to complete after the restart")
    assert [v.version_id for v in ctx.registry.list_versions(spec.name)] == [winner.version_id]
    wait_for(lambda: serving(ctx, spec.name).get(winner.version_id) == 100, timeout=SERVING_BOOT_S, what="serving")


def test_a_registrar_killed_mid_registration_completes_without_a_duplicate_version(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("crash-registrar")
    ctx.specs.put(spec)
    vertex = ctx.state.url("vertex")
    # Moving the champion alias is the registrar's second registry call: stall it, kill the registrar there.
    requests.put(f"{vertex}/_faults", json={"delays": {"mergeVersionAliases": 30}}, timeout=5)
    try:
        land(ctx, spec, load_demo_dataset().rows[:600])
        registered = wait_for(lambda: ctx.registry.list_versions(spec.name), timeout=90, what="the upload")
        time.sleep(0.5)
        os.kill(_pid(stack_dir, "registrar"), signal.SIGKILL)
    finally:
        requests.delete(f"{vertex}/_faults", timeout=5)
    assert champion(ctx, spec.name) is None, "the alias move should not have finished before the kill"
    stack.wait_healthy(["registrar"])
    winner = wait_for(lambda: champion(ctx, spec.name), timeout=120, what="the registration to complete")
    assert [v.version_id for v in ctx.registry.list_versions(spec.name)] == [registered[0].version_id]
    assert winner.version_id == registered[0].version_id
    wait_for(lambda: serving(ctx, spec.name).get(winner.version_id) == 100, timeout=SERVING_BOOT_S, what="serving")


STALL_S = 25.0  # a slow Vertex AI call, as the probe saw; the kill lands inside it


def stalled(vertex: str) -> dict:
    return requests.get(f"{vertex}/_faults", timeout=5).json()


def kill_during_the_slow_call(stack, stack_dir, ctx: CliContext, service: str, call: str, spec, rows: int) -> dict:
    """Land rows with `call` stalled at the Vertex server; SIGKILL `service` while the call is in
    flight; the stall stays on (so a second call would show) until the round has deployed.
    Returns the fault report: how many calls were stalled in all."""
    vertex = ctx.state.url("vertex")
    requests.put(f"{vertex}/_faults", json={"delays": {call: STALL_S}}, timeout=5)
    try:
        land(ctx, spec, load_demo_dataset().rows[:rows])
        wait_for(lambda: stalled(vertex)["stalled"] >= 1, timeout=90, interval=0.1, what=f"the {call} call to stall")
        os.kill(_pid(stack_dir, service), signal.SIGKILL)
        stack.wait_healthy([service])  # restarted by the supervisor while the call is still in flight
        winner = wait_for(lambda: champion(ctx, spec.name), timeout=120, what="a champion")
        wait_for(lambda: serving(ctx, spec.name).get(winner.version_id) == 100, timeout=120, what="serving")
        return stalled(vertex)
    finally:
        requests.delete(f"{vertex}/_faults", timeout=5)


def test_a_registrar_killed_during_a_slow_upload_registers_one_version(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("crash-upload")
    ctx.specs.put(spec)
    faults = kill_during_the_slow_call(stack, stack_dir, ctx, "registrar", "models:upload", spec, 600)
    assert faults["stalled_total"] == 1, "the restarted registrar uploaded a second time"
    versions = ctx.registry.list_versions(spec.name)
    assert len(versions) == 1 and "champion" in versions[0].aliases


def test_a_deployer_killed_during_a_slow_deploy_deploys_once_and_its_manifest_agrees(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("crash-deploy")
    ctx.specs.put(spec)
    faults = kill_during_the_slow_call(stack, stack_dir, ctx, "deployer", ":deployModel", spec, 600)
    assert faults["stalled_total"] == 1, "the restarted deployer deployed a second time"
    winner = champion(ctx, spec.name)
    announced(ctx, spec.name, winner.version_id)  # the deployer writes its record when it announces
    from mlops import runtime
    from mlops.core.events import ModelDeployed
    from mlops.core.layout import manifest_path

    endpoint = runtime.model_endpoint(ctx.settings)
    deployed = endpoint.deployments(endpoint.ensure_endpoint(spec.endpoint_name))
    assert len(deployed) == 1 and deployed[0].traffic_percent == 100
    manifest = ModelDeployed.model_validate_json(ctx.blobs.get(manifest_path(spec.name)))
    assert {(m.deployed_model_id, m.traffic_percent) for m in manifest.deployed_models} == \
        {(d.deployed_model_id, d.traffic_percent) for d in deployed}, "the manifest disagrees with the endpoint"


def test_replaying_data_ready_reproduces_the_metrics_and_links_a_new_version(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("replay-check")
    ctx.specs.put(spec)
    land(ctx, spec, load_demo_dataset().rows[:700])
    first = wait_for(lambda: champion(ctx, spec.name), timeout=90, what="a champion")
    original = json.loads(mlops("lineage", spec.name, first.version_id, "--json", data_dir=stack_dir).stdout)

    replayed = json.loads(mlops("replay", "--run", original["run_id"], "--from-stage", "trainer",
                                data_dir=stack_dir).stdout)
    assert replayed["type"] == "data.ready.v1" and replayed["replay_of"]
    second = wait_for(lambda: [v for v in ctx.registry.list_versions(spec.name) if v.version_id != first.version_id],
                      timeout=90, what="the replayed run's version")[0]
    again = json.loads(mlops("lineage", spec.name, second.version_id, "--json", data_dir=stack_dir).stdout)
    assert again["evaluation"]["metrics"] == original["evaluation"]["metrics"]
    assert again["data"]["snapshot_table"] == original["data"]["snapshot_table"]
    assert again["replay_of"] == replayed["replay_of"]
    assert again["run_id"] == replayed["run_id"] != original["run_id"]


def test_lineage_of_the_champion_names_snapshot_params_metrics_deployment_and_code(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("lineage-check")
    ctx.specs.put(spec)
    land(ctx, spec, load_demo_dataset().rows[:800])
    winner = wait_for(lambda: champion(ctx, spec.name), timeout=90, what="a champion")
    report = wait_for(lambda: (r := json.loads(mlops("lineage", spec.name, winner.version_id, "--json",
                                                     data_dir=stack_dir).stdout))["deployments"] and r,
                      timeout=30, what="a deployment in the archive")
    assert report["data"]["snapshot_table"].endswith(f"{spec.source.table}__d0001")
    assert report["data"]["total_rows"] == 800 and report["data"]["watermark"]
    assert report["training"]["hyperparameters"]["max_iterations"] == 20  # as a value, not its JSON text
    assert "roc_auc" in report["evaluation"]["metrics"] and report["evaluation"]["decision"] == "promote"
    assert report["deployments"][0]["traffic_percent"] == 100
    stages = {s["stage"] for s in report["stages"]}
    assert {"data-watcher", "trainer", "evaluator", "registrar", "deployer"} <= stages
    assert all(s["code_version"] for s in report["stages"] if s["stage"] != "cli")


def test_an_event_archived_before_its_schema_gained_a_field_still_replays(stack, stack_dir):
    """data.ready v1 as first published had no `drift_score`: such an archived event is upcast."""
    ctx = CliContext(stack_dir)
    from mlops.core.events import DataReady, encode
    from mlops.ops.archive import ArchivedEvent
    from mlops.ops.replay import plan_replay

    old_payload = json.loads(encode(DataReady.example()))
    del old_payload["drift_score"]  # written by the schema as it was before the field existed
    archived = ArchivedEvent(id="old-1", type="data.ready.v1", time="2026-01-01T00:00:00Z", run_id="r-old",
                             causation_id="", replay_of="", pipeline="breast-cancer", message_id="1",
                             subscription="data.ready.v1--archive", attributes={}, data=json.dumps(old_payload))
    planned = plan_replay(archived)
    assert planned.event.drift_score is None and planned.envelope.replay_of == "old-1"
    # ... and today's topic (which checks the schema) accepts the upcast event.
    from mlops.ops.replay import publish

    publish(ctx.bus, planned)
    assert decode("data.ready.v1", json.dumps(old_payload).encode()).pipeline == "breast-cancer"

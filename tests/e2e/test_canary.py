"""The canary on the real stack: a bad challenger deployed as a 20% canary is rolled back by itself
once its window has passed (the champion serves 100% again; the reason names the signal), a good one
is promoted to 100%; `mlops rollback` and `mlops promote` change what serves, through events, with
lineage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.core.events import WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import PipelineSpec, parse_spec
from mlops.core.sql import quote_qualified
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.ingest import ingest_labels, ingest_rows
from mlops.ops.serving import EndpointClient
from tests.e2e.conftest import mlops
from tests.integration.harness import wait_for

# Minutes of real work on a loaded machine (a stack, training, deploys): waited for, never timed.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DATA = load_demo_dataset()
LABEL = "rings_above_9"
FEATURES = ["length", "diameter", "height", "whole_weight"]
CANARY_REQUESTS = 160  # ~32 reach the 20% canary


def make_spec(name: str) -> PipelineSpec:
    return parse_spec(
        f"name: {name}\n"
        f"source: {{table: {name.replace('-', '_')}, label: {LABEL}, features: [{', '.join(FEATURES)}]}}\n"
        "model: {type: LOGISTIC_REG, options: {max_iterations: 50}}\n"
        "retrain: {new_rows_fraction: 0.2}\n"
        "promotion: {metric: roc_auc, minimum: 0.5, tolerance: 1.0}\n"  # the gate lets every challenger through
        "deployment:\n"
        "  canary_percent: 20\n"
        "  canary_window: {min_predictions: 15, min_labels: 10}\n"  # judged once labels of both versions are in
        # min_labelled: the metric counts from 10 labels per version (~32 of the 160 requests reach the canary)
        "  canary_thresholds: {max_metric_drop: 0.15, max_score_shift: 0.5, min_labelled: 10}\n"
    )


def tick(ctx: CliContext, name: str) -> None:
    event = WatchTick(pipeline=name, reason="schedule")
    ctx.bus.publish(event, new_envelope(event, "test")).result(timeout=30)


def land(ctx: CliContext, spec: PipelineSpec, rows: list[dict[str, Any]]) -> None:
    ingest_rows(ctx.warehouse, spec, rows)
    tick(ctx, spec.name)


def split(ctx: CliContext, spec: PipelineSpec) -> dict[str, int]:
    return EndpointClient(ctx.settings).split(spec.endpoint_name)


def inverted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shells with the label flipped: a model trained mostly on them ranks everything backwards."""
    return [{**r, LABEL: 1 - int(r[LABEL])} for r in rows]


def serve_and_label(ctx: CliContext, spec: PipelineSpec, rows: list[dict[str, Any]], prefix: str) -> None:
    """Requests through the endpoint (the traffic split picks the version), then their true labels."""
    client = EndpointClient(ctx.settings)
    labelled = []
    for i, row in enumerate(rows):
        request_id = f"{prefix}-{i}"
        status, answer = client.predict(spec.endpoint_name, {
            "instances": [{f: row[f] for f in FEATURES}], "parameters": {"request_id": request_id}})
        assert status == 200, answer
        labelled.append({"request_id": request_id, LABEL: row[LABEL]})
    table = quote_qualified(ctx.warehouse.qualified(PREDICTIONS_TABLE))
    wait_for(lambda: ctx.warehouse.query(
        f"SELECT COUNT(*) AS n FROM {table} WHERE pipeline = @pipeline AND STARTS_WITH(request_id, @prefix)",
        {"pipeline": spec.name, "prefix": prefix})[0]["n"] >= len(rows),
        timeout=300, interval=1, what="the predictions logged")
    ingest_labels(ctx.warehouse, spec.name, labelled, LABEL)


def deployed_events(ctx: CliContext, name: str) -> list[dict[str, Any]]:
    return [e.payload() for e in query_events(ctx.warehouse, event_type="model.deployed.v1", limit=200)
            if e.pipeline == name]


def status(ctx: CliContext, name: str, version: str) -> str:
    return ctx.registry.get_version(name, version).labels.get("status", "")


def start_canary(ctx: CliContext, name: str, first: list, second: list):
    """A pipeline whose v1 (trained on `first`) serves, then whose v2 (on `first` + `second`) serves 20%."""
    spec = make_spec(name)
    ctx.specs.put(spec)
    land(ctx, spec, first)
    wait_for(lambda: split(ctx, spec) == {"1": 100}, timeout=300, interval=1, what="v1 serving")
    land(ctx, spec, second)
    wait_for(lambda: split(ctx, spec) == {"1": 80, "2": 20}, timeout=300, interval=1, what="v2 as a 20% canary")
    return spec


def test_a_bad_canary_is_rolled_back_by_itself(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = start_canary(ctx, "canary-bad", DATA.rows[:200], inverted(DATA.rows[200:1400]))

    serve_and_label(ctx, spec, DATA.rows[1400:1400 + CANARY_REQUESTS], "bad")
    tick(ctx, spec.name)

    wait_for(lambda: split(ctx, spec) == {"1": 100}, timeout=300, interval=1, what="v1 alone again")
    [rollback] = wait_for(lambda: [d for d in deployed_events(ctx, spec.name) if d["action"] == "rollback"],
                          timeout=180, interval=1, what="the rollback in the archive")
    assert (rollback["version_id"], rollback["previous_version"]) == ("1", "2")
    assert "roc_auc on labelled predictions fell" in rollback["reason"]
    assert ctx.registry.get_version(spec.name, "champion").version_id == "1"
    assert status(ctx, spec.name, "2") == "rolled_back"
    [judged] = wait_for(lambda: [e.payload() for e in query_events(ctx.warehouse, event_type="canary.judged.v1",
                                                                   limit=50) if e.pipeline == spec.name],
                        timeout=180, interval=1, what="the verdict in the archive")
    assert judged["outcome"] == "rollback" and judged["signals"]["canary_roc_auc"] < judged["signals"]["champion_roc_auc"]


def test_a_good_canary_is_promoted_and_operators_roll_back_and_promote(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = start_canary(ctx, "canary-good", DATA.rows[:300], DATA.rows[300:900])

    serve_and_label(ctx, spec, DATA.rows[1400:1400 + CANARY_REQUESTS], "good")
    tick(ctx, spec.name)

    wait_for(lambda: split(ctx, spec) == {"1": 0, "2": 100}, timeout=300, interval=1, what="v2 promoted")
    # The traffic moves before the announcement reaches the archive (the archiver's subscription).
    promoted = wait_for(lambda: [d for d in deployed_events(ctx, spec.name) if d["action"] == "promote"],
                        timeout=180, interval=1, what="the promotion in the archive")
    assert promoted[0]["reason"].startswith("canary judged: within every threshold")

    rolled = mlops("rollback", spec.name, "--reason", "support tickets", data_dir=stack_dir)
    assert rolled.stdout.startswith(f"{spec.name}: rollback to v1 (was v2)")
    assert split(ctx, spec) == {"1": 100, "2": 0}
    assert status(ctx, spec.name, "2") == "rolled_back"

    refused = mlops("promote", spec.name, "7", "--reason", "x", data_dir=stack_dir, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "has no version '7'" in refused.stderr

    mlops("promote", spec.name, "2", "--reason", "tickets were a client bug", data_dir=stack_dir)
    assert split(ctx, spec) == {"1": 0, "2": 100}
    assert ctx.registry.get_version(spec.name, "champion").version_id == "2"
    lineage = json.loads(mlops("lineage", spec.name, "2", "--json", data_dir=stack_dir).stdout)
    actions = [(d["action"], d["traffic_percent"], d["reason"]) for d in lineage["deployments"]]
    assert ("rollback", 0, "support tickets (requested by " + actions[-2][2].split("requested by ")[-1]) in actions
    assert actions[-1][0] == "promote" and actions[-1][2].startswith("tickets were a client bug (requested by")

"""Rollback by replay on the real stack: replaying an earlier champion's `model.registered` moves the
endpoint's traffic and the champion alias back to it, and says so in `model.deployed`."""

from __future__ import annotations

import pytest

from mlops.core.events import WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import parse_spec
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.ingest import ingest_rows
from mlops.ops.serving import EndpointClient
from tests.e2e.conftest import mlops
from tests.integration.harness import wait_for

pytestmark = pytest.mark.e2e

NAME = "rollback-check"


def land(ctx: CliContext, spec, rows) -> None:
    ingest_rows(ctx.warehouse, spec, rows)
    tick = WatchTick(pipeline=spec.name, reason="data_landed")
    ctx.bus.publish(tick, new_envelope(tick, "test")).result(timeout=30)


def serving(ctx: CliContext) -> dict:
    """Version -> traffic share on the pipeline's endpoint."""
    return EndpointClient(ctx.settings).split(ctx.specs.get(NAME).endpoint_name)


def champion(ctx: CliContext) -> str | None:
    return next((v.version_id for v in ctx.registry.list_versions(NAME) if "champion" in v.aliases), None)


def archived(ctx: CliContext, event_type: str) -> list:
    return [e for e in query_events(ctx.warehouse, event_type=event_type, limit=200) if e.pipeline == NAME]


def test_replaying_an_earlier_champions_registration_rolls_traffic_and_champion_back(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = parse_spec(
        f"name: {NAME}\n"
        "source: {table: rollback_check, label: rings_above_9, features: [length, diameter, height, whole_weight]}\n"
        "model: {type: LOGISTIC_REG, options: {max_iterations: 20}}\n"
        "retrain: {new_rows_fraction: 0.2}\n"
        "promotion: {metric: roc_auc, minimum: 0.5, tolerance: 1.0}\n"  # every candidate is promoted
    )
    ctx.specs.put(spec)
    rows = load_demo_dataset().rows
    land(ctx, spec, rows[:200])
    wait_for(lambda: serving(ctx).get("1") == 100, timeout=90, interval=0.5, what="v1 serving")
    land(ctx, spec, rows[200:400])
    wait_for(lambda: serving(ctx) == {"1": 0, "2": 100}, timeout=90, interval=0.5, what="v2 serving, v1 kept")
    [first] = [e for e in archived(ctx, "model.registered.v1") if e.payload()["version_id"] == "1"]

    mlops("replay", "--event", first.id, data_dir=stack_dir)

    wait_for(lambda: serving(ctx) == {"1": 100, "2": 0}, timeout=60, interval=0.5, what="traffic back on v1")
    assert champion(ctx) == "1"
    statuses = {v.version_id: v.labels["status"] for v in ctx.registry.list_versions(NAME)}
    assert statuses == {"1": "champion", "2": "retired"}
    [rollback] = wait_for(lambda: [e.payload() for e in archived(ctx, "model.deployed.v1")
                                   if e.payload()["action"] == "rollback"], timeout=30, interval=0.5,
                          what="the rollback in the archive")
    assert (rollback["version_id"], rollback["previous_version"]) == ("1", "2")

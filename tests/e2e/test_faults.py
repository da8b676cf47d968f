"""Faults on the real stack, short enough for every `make test` (the long ones are `make chaos`):

- a service killed and kept down past the Pub/Sub emulator's ~4 s push give-up is restarted by the
  supervisor and then gets every message published while it was down, exactly once in effect;
- a poison message with a real `ce-type` is archived as a dead letter, never as the type it claims,
  and `mlops events` / `mlops lineage` read on;
- `mlops restart` restarts a component by name, and refuses an unknown one in one line.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid

import pytest
import requests

from mlops.core.events import ModelRegistered, new_envelope
from mlops.core.sql import quote_qualified
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from tests.e2e.conftest import endpoint_split, mlops, predict
from tests.e2e.test_exactly_once import FEATURES, champion, land, spec_for
from tests.integration.harness import wait_for

pytestmark = pytest.mark.e2e

# Longer than the emulator's give-up (a push endpoint down for more than ~4 s gets nothing more).
HELD_DOWN_S = 8.0


def component(stack_dir, name: str) -> dict:
    return json.loads(mlops("status", "--json", data_dir=stack_dir, check=False).stdout)["components"][name]


def logged(ctx: CliContext, pipeline: str) -> dict:
    return ctx.warehouse.query(
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids FROM {quote_qualified(ctx.warehouse.qualified(PREDICTIONS_TABLE))} "
        "WHERE pipeline = @p", {"p": pipeline})[0]


def test_a_service_down_past_the_push_give_up_gets_everything_once_it_is_restarted(stack, stack_dir):
    ctx = CliContext(stack_dir)
    spec = spec_for("fault-logger")
    ctx.specs.put(spec)
    rows = load_demo_dataset().rows
    land(ctx, spec, rows[:600])
    winner = wait_for(lambda: champion(ctx, spec.name), timeout=120, what="a champion")
    wait_for(lambda: endpoint_split(ctx, spec.name).get(winner.version_id) == 100, timeout=60, what="serving")

    supervisor = component(stack_dir, "supervisor")["pid"]
    os.kill(supervisor, signal.SIGSTOP)  # hold the restart back, so the outage outlasts the give-up
    try:
        os.kill(component(stack_dir, "inference-logger")["pid"], signal.SIGKILL)
        answered = []
        started = time.monotonic()
        for number in range(30):
            status, answer = predict(ctx, spec.name, {f: rows[number][f] for f in FEATURES}, f"fault-{number}")
            assert status == 200, answer
            answered.append(f"fault-{number}")
        time.sleep(max(0.0, HELD_DOWN_S - (time.monotonic() - started)))
    finally:
        os.kill(supervisor, signal.SIGCONT)
    stack.wait_healthy(["inference-logger"])
    counts = wait_for(lambda: (c := logged(ctx, spec.name))["n"] >= len(answered) and c, timeout=60,
                      what="the predictions made while the logger was down to be logged")
    time.sleep(2)  # a redelivery racing the restarted logger would add its rows now
    counts = logged(ctx, spec.name)
    assert counts["n"] == counts["ids"] == len(answered), f"lost or doubled: {counts}"
    assert component(stack_dir, "inference-logger")["restarts"] >= 1

    # A poison message with a real ce-type, pushed straight at a service: dead-lettered, and archived
    # as a dead letter, not as the registration it claims to be.
    poison_id = f"poison-{uuid.uuid4()}"
    attributes = new_envelope(ModelRegistered.example(), "forger", pipeline=spec.name).to_attributes()
    attributes["ce-id"] = poison_id
    deployer = component(stack_dir, "deployer")["port"]
    pushed = requests.post(f"http://127.0.0.1:{deployer}/push", timeout=10, json={
        "message": {"data": base64.b64encode(b'{"version_id": ["not a string"]}').decode(),
                    "attributes": attributes, "messageId": "1"},
        "subscription": "model.registered.v1--deployer"})
    assert pushed.status_code == 200 and pushed.json()["status"] == "dead-lettered"
    [parked] = wait_for(lambda: query_events(ctx.warehouse, event_id=poison_id, dead_letters=True), timeout=30,
                        what="the dead letter in the archive")
    assert parked.type == "mlops.dead-letter" and parked.attributes["ce-type"] == "model.registered.v1"
    registrations = json.loads(mlops("events", "--type", "model.registered", "--json", data_dir=stack_dir).stdout)
    assert poison_id not in {e["id"] for e in registrations} and registrations
    dead = json.loads(mlops("events", "--type", "mlops.dead-letter", "--json", data_dir=stack_dir).stdout)
    assert poison_id in {e["id"] for e in dead}
    report = json.loads(mlops("lineage", spec.name, winner.version_id, "--json", data_dir=stack_dir).stdout)
    assert report["deployments"] and all(d["event_id"] != poison_id for d in report["deployments"])


def test_mlops_restart_restarts_a_component_and_refuses_an_unknown_one(stack, stack_dir):
    before = component(stack_dir, "ticker")
    result = mlops("restart", "ticker", data_dir=stack_dir)
    assert "ticker restarted" in result.stderr
    after = component(stack_dir, "ticker")
    assert after["pid"] != before["pid"] and after["healthy"] and after["restarts"] == before["restarts"] + 1
    unknown = mlops("restart", "no-such-service", data_dir=stack_dir, check=False)
    lines = [line for line in unknown.stderr.splitlines() if line.strip()]
    assert unknown.returncode == 2 and len(lines) == 1 and "no component 'no-such-service'" in lines[0]

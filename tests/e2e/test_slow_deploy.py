"""A deploy slower than the push's ack deadline, on a stack of its own: the Vertex stand-in takes 25 s
per operation and Pub/Sub gives a push 10 s. The deployer acks `model.registered` at once (the deploy
started, its operation recorded), the ticker's heartbeats let it finish the deploy later, and the
version is deployed and announced exactly once."""

from __future__ import annotations

import json
import time

import pytest

from mlops.core.events import WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.spec import parse_spec
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.ingest import ingest_rows
from mlops.ops.serving import EndpointClient
from mlops.stack.processes import pid_alive
from mlops.stack.supervisor import Stack, serving_containers
from tests.integration.harness import wait_for

pytestmark = pytest.mark.e2e

NAME = "slow-deploy"
DELAY_S, ACK_DEADLINE_S = 25, 10


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("slow") / ".mlops",
                  extra_env={"MLOPS_VERTEX_OPERATION_DELAY_S": str(DELAY_S),
                             "MLOPS_PUSH_ACK_DEADLINE_S": str(ACK_DEADLINE_S)})
    stack.up()
    try:
        yield stack
    finally:
        containers = [c.pid for c in serving_containers(stack.data_dir).values()]
        stack.down()
        assert not [p for p in containers if pid_alive(p)], "mlops down left serving processes behind"


def test_a_deploy_slower_than_the_ack_deadline_completes_exactly_once(slow_stack):
    ctx = CliContext(slow_stack.data_dir)
    data = load_demo_dataset()
    spec = parse_spec(f"""
name: {NAME}
source: {{table: slow_deploy, label: {data.label_column}, features: [{', '.join(data.feature_columns)}]}}
model: {{type: LOGISTIC_REG, options: {{data_split_method: RANDOM, data_split_eval_fraction: 0.2}}}}
promotion: {{metric: roc_auc, minimum: 0.5}}
""", "test spec")
    ctx.specs.put(spec)
    ingest_rows(ctx.warehouse, spec, data.rows[:800])
    tick = WatchTick(pipeline=NAME, reason="data_landed")
    ctx.bus.publish(tick, new_envelope(tick, "test")).result(timeout=30)

    def announced() -> list:
        return [e for e in query_events(ctx.warehouse, event_type="model.deployed.v1", limit=50) if e.pipeline == NAME]

    wait_for(lambda: announced(), timeout=240, interval=1, what="model.deployed after the slow deploy")
    # Long enough for any redelivery of the push (ack deadline passed several times) to show.
    time.sleep(2 * ACK_DEADLINE_S)  # not a timing assert: room for a redelivery to do harm, if it could
    assert len(announced()) == 1
    assert EndpointClient(ctx.settings).split(spec.endpoint_name) == {"1": 100}
    vertex = json.loads((slow_stack.data_dir / "vertex.json").read_text())
    deploys = [op for op in vertex["operations"].values() if "DeployModel" in op["metadata"]["@type"]]
    assert len(deploys) == 1 and deploys[0]["done"] and "error" not in deploys[0], deploys
    assert [e for e in query_events(ctx.warehouse, event_type="stage.failed.v1", limit=50) if e.pipeline == NAME] == []
    status, answer = EndpointClient(ctx.settings).predict(
        spec.endpoint_name, {"instances": [{f: data.rows[-1][f] for f in data.feature_columns}]})
    assert status == 200 and answer["modelVersionId"] == "1", answer

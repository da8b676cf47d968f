"""One real local stack for the end-to-end tests, started by `Stack.up` and always stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.stack.processes import pid_alive
from mlops.stack.supervisor import Stack, serving_containers


@pytest.fixture(scope="package")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack") / ".mlops"


@pytest.fixture(scope="package")
def stack(stack_dir):
    stack = Stack(stack_dir)
    state = stack.up()
    pids = [c.pid for c in state.components.values()]
    try:
        yield stack
    finally:
        now = stack.state()  # the supervisor may have restarted components since: their new PIDs too
        pids += [c.pid for c in now.components.values()] if now else []
        pids += [c.pid for c in serving_containers(stack.data_dir).values()]  # the Vertex stand-in's models
        stack.down()
        assert not [p for p in pids if pid_alive(p)], "mlops down left processes behind"


def mlops(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed `mlops` console script as a user would."""
    command = [str(Path(sys.executable).parent / "mlops"), *args, "--data-dir", str(data_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def endpoint_split(ctx, pipeline: str) -> dict[str, int]:
    """Version -> traffic share on the pipeline's Vertex AI endpoint (the stand-in's)."""
    from mlops.ops.serving import EndpointClient

    return EndpointClient(ctx.settings).split(ctx.specs.get(pipeline).endpoint_name)


def predict(ctx, pipeline: str, instance: dict, request_id: str) -> tuple[int, dict]:
    """One prediction through the pipeline's endpoint, as a client makes it (the id in the body)."""
    from mlops.ops.serving import EndpointClient

    return EndpointClient(ctx.settings).predict(ctx.specs.get(pipeline).endpoint_name,
                                                {"instances": [instance], "parameters": {"request_id": request_id}},
                                                timeout=10)

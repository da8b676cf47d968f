"""Where the CLI's commands point: the local stack (its state file) or, without one, the cloud.

With a stack up under the data folder, the emulator variables and project come from its state
file; otherwise from the environment, exactly as a service reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mlops.core.settings import CommonSettings, load_settings
from mlops.ports.blobs import BlobStore
from mlops.ports.bus import EventBus
from mlops.ports.registry import ModelRegistry
from mlops.ports.specs import SpecStore
from mlops.ports.warehouse import SqlWarehouse
from mlops.stack.supervisor import DEFAULT_DATA_DIR, Stack, StackState


@dataclass
class CliContext:
    """The settings and the clients (as ports) one CLI command uses, each built on first use:
    a command that only reads the archive never pays for the registry's SDK."""

    data_dir: Path = DEFAULT_DATA_DIR

    @cached_property
    def stack(self) -> Stack:
        return Stack(self.data_dir)

    @cached_property
    def state(self) -> StackState | None:
        return self.stack.state()

    @cached_property
    def settings(self) -> CommonSettings:
        # The stack's variables (emulator endpoints, project, bucket) win over the shell's; the
        # clients get them through these settings, so the process environment is left alone.
        return load_settings(CommonSettings, "cli", {**os.environ, **(self.state.env if self.state else {})})

    @cached_property
    def bus(self) -> EventBus:
        from mlops import runtime

        return runtime.event_bus(self.settings)

    @cached_property
    def warehouse(self) -> SqlWarehouse:
        from mlops import runtime

        return runtime.warehouse(self.settings)

    @cached_property
    def blobs(self) -> BlobStore:
        from mlops import runtime

        return runtime.blob_store(self.settings)

    @cached_property
    def specs(self) -> SpecStore:
        return SpecStore(self.blobs, cache_seconds=0)

    @cached_property
    def registry(self) -> ModelRegistry:
        from mlops import runtime

        return runtime.model_registry(self.settings)

    @cached_property
    def readers(self) -> ReadClients:
        return ReadClients(self)

    def require_stack(self, *components: str) -> None:
        """Refuse at once, in one line, when the local stack recorded here (if any) is not answering:
        a client would otherwise retry against a closed port for minutes. Without a recorded stack
        the commands talk to the cloud project in the environment, and the clients' timeouts apply."""
        from mlops.ops.errors import NotReachable
        from mlops.stack.processes import pid_alive

        if self.state is None:
            return
        down = []
        for name in components or tuple(self.state.components):
            component = self.state.components.get(name)
            if component is None or not pid_alive(component.pid) or not _port_open(component.port):
                down.append(name)
        if down:
            raise NotReachable(f"the local stack in {self.data_dir} is not running ({', '.join(down)} down): "
                               f"start it with `mlops up --data-dir {self.data_dir}`; nothing was changed")


def _port_open(port: int | None, timeout: float = 0.5) -> bool:
    import socket

    from mlops.stack.emulators import HOST

    if port is None:
        return True
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class ReadClients:
    """What the read-only commands (`models`, `events`, `lineage`, `pipeline list`) use: REST
    readers on one HTTP session instead of the client libraries, which take seconds to import
    (docs/performance.md). They can query and list, never write."""

    def __init__(self, ctx: CliContext):
        from mlops.ports.specs import SpecStore
        from mlops.runtime.readers import readers

        clients = readers(ctx.settings)
        self.warehouse = clients.warehouse
        self.registry = clients.registry
        self.specs = SpecStore(clients.blobs, cache_seconds=0)

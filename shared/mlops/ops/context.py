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
from mlops.stack.supervisor import DEFAULT_DATA_DIR, Stack, StackState


@dataclass
class CliContext:
    data_dir: Path = DEFAULT_DATA_DIR

    @cached_property
    def stack(self) -> Stack:
        return Stack(self.data_dir)

    @cached_property
    def state(self) -> StackState | None:
        return self.stack.state()

    @cached_property
    def settings(self) -> CommonSettings:
        if self.state is not None:
            os.environ.update(self.state.env)
        return load_settings(CommonSettings, "cli")

    @cached_property
    def bus(self):
        from mlops import runtime

        return runtime.event_bus(self.settings)

    @cached_property
    def warehouse(self):
        from mlops import runtime

        return runtime.warehouse(self.settings)

    @cached_property
    def blobs(self):
        from mlops import runtime

        return runtime.blob_store(self.settings)

    @cached_property
    def specs(self):
        from mlops.ports.specs import SpecStore

        return SpecStore(self.blobs, cache_seconds=0)

    @cached_property
    def registry(self):
        from mlops import runtime

        return runtime.model_registry(self.settings)

    def predictor_url(self) -> str:
        if self.state is None or "predictor" not in self.state.components:
            return os.environ.get("MLOPS_PREDICTOR_URL", "")
        return self.state.url("predictor")

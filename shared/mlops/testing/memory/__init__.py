"""In-memory implementations of the ports, for unit tests only (never used by a running service).

Each passes its port's contract suite (`mlops.testing.contracts`) beside the emulator-backed
adapter, so a behaviour a unit test relies on here is one the real adapter has too.
"""

from mlops.testing.memory.blobs import InMemoryBlobStore
from mlops.testing.memory.bus import InMemoryEventBus, Published
from mlops.testing.memory.metrics import InMemoryMetrics, MetricPoint
from mlops.testing.memory.registry import InMemoryModelEndpoint, InMemoryModelRegistry
from mlops.testing.memory.trainer import ScriptedTrainerBackend
from mlops.testing.memory.warehouse import InMemoryWarehouse

__all__ = [
    "InMemoryBlobStore", "InMemoryEventBus", "InMemoryMetrics", "InMemoryModelEndpoint", "InMemoryModelRegistry",
    "InMemoryWarehouse", "MetricPoint", "Published", "ScriptedTrainerBackend",
]

"""The runtime: turns settings into adapters and wraps a handler in a Pub/Sub push endpoint.

The only layer that imports adapters (`builders`), so a service's code names ports, never clients.
Its names load on first use (PEP 562): the operator's read commands import `mlops.runtime.readers`
without paying for the Pub/Sub client and Flask that `builders` and `push` bring in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.runtime.builders import (
        blob_store,
        event_bus,
        metrics_sink,
        model_endpoint,
        model_registry,
        push_app,
        spec_store,
        trainer_backend,
        warehouse,
    )
    from mlops.runtime.push import PushEndpoint, Route, create_push_app

_HOMES = {
    "blob_store": "builders", "event_bus": "builders", "metrics_sink": "builders", "model_endpoint": "builders",
    "model_registry": "builders", "push_app": "builders", "spec_store": "builders", "trainer_backend": "builders",
    "warehouse": "builders", "PushEndpoint": "push", "Route": "push", "create_push_app": "push",
}

__all__ = [
    "PushEndpoint", "Route", "blob_store", "create_push_app", "event_bus", "metrics_sink", "model_endpoint",
    "model_registry", "push_app", "spec_store", "trainer_backend", "warehouse",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mlops.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mlops.runtime.{home}"), name)

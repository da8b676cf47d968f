"""The runtime: turns settings into adapters and wraps a handler in a Pub/Sub push endpoint.

The only layer that imports adapters (`builders`), so a service's code names ports, never clients.
"""

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

__all__ = [
    "PushEndpoint", "Route", "blob_store", "create_push_app", "event_bus", "metrics_sink", "model_endpoint",
    "model_registry", "push_app", "spec_store", "trainer_backend", "warehouse",
]

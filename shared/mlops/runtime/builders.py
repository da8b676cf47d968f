"""Builders that turn settings into adapters: the one place a service's clients are constructed.

Called from each service's `create_app()`, never at import time, so tests build the same handlers
with in-memory or emulator-backed ports instead. Each adapter is imported inside its builder: a
service image installs only the client libraries of the ports it uses (pyproject extras). Each
builder returns its port's type: what a service holds is a port, never a client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a service imports the ports it uses; building one port must not import them all
    from flask import Flask

    from mlops.core.settings import CommonSettings, TrainingSettings
    from mlops.ports.blobs import BlobStore
    from mlops.ports.bus import EventBus
    from mlops.ports.metrics import MetricsSink
    from mlops.ports.registry import ModelEndpoint, ModelRegistry
    from mlops.ports.specs import SpecStore
    from mlops.ports.trainer import TrainerBackend
    from mlops.ports.warehouse import SqlWarehouse
    from mlops.runtime.push import Route


def event_bus(settings: CommonSettings) -> EventBus:
    from mlops.adapters.pubsub import PubSubEventBus

    return PubSubEventBus(settings.project, emulator_host=settings.pubsub_emulator_host)


def warehouse(settings: CommonSettings) -> SqlWarehouse:
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client, storage_clients

    # Rows move through the Storage Read/Write APIs: in the cloud always, locally when the emulator's gRPC
    # port is known (a stack started before BIGQUERY_STORAGE_EMULATOR_HOST existed falls back to REST).
    local_rest_only = settings.bigquery_emulator_host and not settings.bigquery_storage_emulator_host
    storage = None if local_rest_only else storage_clients(settings.bigquery_storage_emulator_host)
    return BigQueryWarehouse(bigquery_client(settings.project, settings.bigquery_emulator_host), settings.project, settings.dataset,
                             settings.snapshot_dataset, storage=storage,
                             append_format=settings.bigquery_append_format)


def blob_store(settings: CommonSettings) -> BlobStore:
    from mlops.adapters.gcs import GcsBlobStore, storage_client

    return GcsBlobStore(storage_client(settings.project, settings.storage_emulator_host), settings.bucket)


def spec_store(settings: CommonSettings) -> SpecStore:
    from mlops.ports.specs import SpecStore

    return SpecStore(blob_store(settings))


def model_registry(settings: CommonSettings) -> ModelRegistry:
    from mlops.adapters.vertex import VertexModelRegistry

    return VertexModelRegistry(settings.project, settings.location, settings.vertex_endpoint)


def model_endpoint(settings: CommonSettings) -> ModelEndpoint:
    from mlops.adapters.vertex import VertexEndpoint

    return VertexEndpoint(settings.project, settings.location, settings.vertex_endpoint)


def trainer_backend(settings: TrainingSettings) -> TrainerBackend:
    """The backend named by MLOPS_TRAINER_BACKEND. It also says which of its failures are permanent
    (`TrainerBackend.is_permanent`): that depends on the backend's clients, so it lives there."""
    if settings.trainer_backend == "bqml":
        from mlops.adapters.bqml_backend import BigQueryMLBackend

        return BigQueryMLBackend(warehouse(settings), settings.dataset, blob_store(settings))
    from mlops.adapters.sklearn_backend import SklearnBackend

    return SklearnBackend(warehouse(settings), blob_store(settings))


def metrics_sink(settings: CommonSettings) -> MetricsSink:
    if settings.metrics_sink == "cloud-monitoring":
        from mlops.adapters.cloud_monitoring import CloudMonitoringMetrics

        return CloudMonitoringMetrics(settings.project, settings.service, settings.location)
    from mlops.adapters.metrics_local import LogMetrics

    return LogMetrics()


def push_app(settings: CommonSettings, routes: Mapping[str, Route[Any]], *, bus: EventBus | None = None,
             metrics: MetricsSink | None = None, health: Callable[[], dict[str, Any]] | None = None) -> Flask:
    """A service's push endpoint, wired the same way for every service: its bus, the dead-letter
    topic, its code version (for lineage), its metrics sink and, when configured, its push token check."""
    from mlops.runtime.push import PushEndpoint, create_push_app

    auth = None
    if settings.push_audience:  # google-auth's verifier and HTTP transport: only where tokens are checked
        from mlops.runtime.push_auth import push_authenticator

        auth = push_authenticator(settings)
    endpoint = PushEndpoint(
        service=settings.service, project=settings.project, bus=bus or event_bus(settings), routes=dict(routes),
        dead_letter_topic=settings.dead_letter_topic, code_version=settings.code_version,
        metrics=metrics or metrics_sink(settings), health=health or (lambda: {}),
        auth=auth,
    )
    return create_push_app(endpoint)

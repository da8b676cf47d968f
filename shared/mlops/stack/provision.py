"""Apply the topology to Pub/Sub, BigQuery and Cloud Storage (locally: to their emulators).

Idempotent: everything is created if missing and left alone if present, so `mlops up` on an
existing data folder keeps its state. In the cloud, Terraform in deploy/ creates the same things
from the same topology (rendered by `mlops topology --tfvars`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping

import google.cloud.pubsub_v1 as pubsub_v1
import structlog
from google.api_core.exceptions import AlreadyExists
from google.protobuf.duration_pb2 import Duration
from google.pubsub_v1.types import Encoding, Schema

from mlops.core.events.catalog import schema_text
from mlops.core.topology import (
    ALL_TOPICS,
    DEAD_LETTER_TOPIC,
    EVENT_TOPICS,
    PUSH_PATH,
    SERVICES,
    TABLES,
    DeliveryPolicy,
    archive_subscription,
    as_tfvars,
    push_subscription,
)

log = structlog.get_logger("provision")


DEFAULT_POLICY = DeliveryPolicy()


def provision_pubsub(project: str, service_urls: Mapping[str, str], policy: DeliveryPolicy = DEFAULT_POLICY,
                     publisher: pubsub_v1.PublisherClient | None = None,
                     subscriber: pubsub_v1.SubscriberClient | None = None,
                     schemas: pubsub_v1.SchemaServiceClient | None = None) -> None:
    """Schemas, topics (schema-checked, JSON encoding), push subscriptions, archive subscriptions."""
    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    schemas = schemas or pubsub_v1.SchemaServiceClient()
    parent = f"projects/{project}"
    for topic in EVENT_TOPICS:
        schema_name = f"{parent}/schemas/{topic}"
        _create(schemas.create_schema, {
            "parent": parent, "schema_id": topic,
            "schema": Schema(type_=Schema.Type.AVRO, definition=schema_text(topic)),
        })
        _create(publisher.create_topic, {
            "name": f"{parent}/topics/{topic}",
            "schema_settings": {"schema": schema_name, "encoding": Encoding.JSON},
        })
    _create(publisher.create_topic, {"name": f"{parent}/topics/{DEAD_LETTER_TOPIC}"})

    for service in SERVICES:
        url = service_urls.get(service.name)
        if url is None:
            continue
        for topic in service.consumes:
            _create(subscriber.create_subscription, {
                "name": f"{parent}/subscriptions/{push_subscription(topic, service.name)}",
                "topic": f"{parent}/topics/{topic}",
                "push_config": {"push_endpoint": url.rstrip("/") + PUSH_PATH},
                "ack_deadline_seconds": policy.ack_deadline_s,
                "retry_policy": {"minimum_backoff": Duration(seconds=policy.min_backoff_s),
                                 "maximum_backoff": Duration(seconds=policy.max_backoff_s)},
                "dead_letter_policy": {"dead_letter_topic": f"{parent}/topics/{DEAD_LETTER_TOPIC}",
                                       "max_delivery_attempts": policy.max_delivery_attempts},
            })
    for topic in ALL_TOPICS:
        # In the cloud these are BigQuery subscriptions; locally the stack's archiver pulls them.
        _create(subscriber.create_subscription, {
            "name": f"{parent}/subscriptions/{archive_subscription(topic)}",
            "topic": f"{parent}/topics/{topic}",
            "ack_deadline_seconds": 60,
            "retain_acked_messages": True,
        })
    log.info("pubsub provisioned", topics=len(ALL_TOPICS))


def redeliver_unacked(project: str, subscriptions: Iterable[str],
                      subscriber: pubsub_v1.SubscriberClient | None = None) -> None:
    """Make the Pub/Sub emulator push again every message it holds unacknowledged on these subscriptions.

    The emulator gives up on a message it could not push for a few seconds (a restarted service's
    inputs, sent while it was down) without dead-lettering it, yet keeps it unacknowledged. Seeking a
    subscription to a snapshot of itself taken a moment earlier marks exactly those messages (and
    none that were acknowledged) for delivery again. Idempotent effects absorb the message that the
    restarted service may already be handling again. Locally only: Pub/Sub itself keeps retrying.
    """
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    names = list(subscriptions)
    for name in names:
        path = f"projects/{project}/subscriptions/{name}"
        snapshot = f"projects/{project}/snapshots/{name}--redeliver-{uuid.uuid4().hex[:12]}"
        subscriber.create_snapshot(request={"name": snapshot, "subscription": path})
        try:
            subscriber.seek(request={"subscription": path, "snapshot": snapshot})
        finally:
            subscriber.delete_snapshot(request={"snapshot": snapshot})
    log.info("unacked messages redelivered", subscriptions=names)


def provision_bigquery(warehouse, location: str = "US") -> None:  # warehouse: BigQueryWarehouse
    warehouse.ensure_datasets(location)
    for table, columns in TABLES.items():
        warehouse.ensure_table(table, columns)
    log.info("bigquery provisioned", tables=sorted(TABLES))


def provision_storage(blobs, location: str) -> None:  # blobs: GcsBlobStore
    blobs.ensure_bucket(location)


def _create(create, request: dict) -> None:
    """Create unless it exists: provisioning is re-run on every `mlops up`."""
    try:
        create(request=request)
    except AlreadyExists:
        pass


def tfvars_json() -> str:
    return json.dumps(as_tfvars(), indent=2, sort_keys=True) + "\n"

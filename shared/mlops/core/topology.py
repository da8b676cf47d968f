"""The whole deployment's shape in one place: topics, who consumes what, tables, bucket.

The local provisioner (`mlops up`) applies it to the emulators; `mlops topology --tfvars` renders it
for Terraform (`deploy/terraform/topology.auto.tfvars.json`, checked for staleness in tests/contract),
so the cloud and the laptop cannot disagree about which service listens to which event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.core.events.types import EVENT_CLASSES

DEAD_LETTER_TOPIC = "mlops.dead-letter"
ARCHIVE_SUFFIX = "--archive"
PUSH_PATH = "/push"


@dataclass(frozen=True)
class Service:
    name: str
    consumes: tuple[str, ...]
    publishes: tuple[str, ...]
    # The predictor also serves HTTP traffic; everything else only receives pushes.
    serves_traffic: bool = False


SERVICES: tuple[Service, ...] = (
    # data.skipped.v1 (nothing trained, and why) is for operators and `--wait`: only the archive reads it.
    Service("data-watcher", consumes=("watch.tick.v1",), publishes=("data.ready.v1", "data.skipped.v1")),
    Service("trainer", consumes=("data.ready.v1",), publishes=("model.trained.v1",)),
    Service("evaluator", consumes=("model.trained.v1",), publishes=("model.evaluated.v1",)),
    Service("registrar", consumes=("model.evaluated.v1",), publishes=("model.registered.v1",)),
    Service("deployer", consumes=("model.registered.v1",), publishes=("model.deployed.v1",)),
    Service("predictor", consumes=("model.deployed.v1",), publishes=("prediction.made.v1",), serves_traffic=True),
    Service("inference-logger", consumes=("prediction.made.v1",), publishes=()),
)
SERVICES_BY_NAME = {service.name: service for service in SERVICES}
EVENT_TOPICS: tuple[str, ...] = tuple(cls.EVENT_TYPE for cls in EVENT_CLASSES)
ALL_TOPICS: tuple[str, ...] = EVENT_TOPICS + (DEAD_LETTER_TOPIC,)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry and dead-letter policy of every push subscription."""

    min_backoff_s: int = 1
    max_backoff_s: int = 60
    max_delivery_attempts: int = 5  # Pub/Sub's minimum; a poison message is parked after five tries
    ack_deadline_s: int = 600  # training may take minutes; a push is outstanding until answered


def push_subscription(topic: str, service: str) -> str:
    return f"{topic}--{service}"


def archive_subscription(topic: str) -> str:
    return f"{topic}{ARCHIVE_SUFFIX}"


# BigQuery tables of the `dataset`, as (name, [(column, type, mode)]). Sources and snapshots are
# created per pipeline from its spec; these are the system's own.
EVENTS_TABLE = "events"
PREDICTIONS_TABLE = "predictions"
LABELS_TABLE = "labels"
SNAPSHOTS_TABLE = "snapshots"

TABLES: dict[str, list[tuple[str, str, str]]] = {
    # Exactly the columns a Pub/Sub BigQuery subscription writes with write_metadata=true.
    EVENTS_TABLE: [
        ("subscription_name", "STRING", "NULLABLE"),
        ("message_id", "STRING", "NULLABLE"),
        ("publish_time", "TIMESTAMP", "NULLABLE"),
        ("data", "STRING", "NULLABLE"),
        ("attributes", "STRING", "NULLABLE"),
    ],
    PREDICTIONS_TABLE: [
        ("event_id", "STRING", "REQUIRED"),
        ("pipeline", "STRING", "REQUIRED"),
        ("request_id", "STRING", "REQUIRED"),
        ("model_version", "STRING", "REQUIRED"),
        ("features", "STRING", "REQUIRED"),
        ("predicted_label", "STRING", "NULLABLE"),
        ("predicted_value", "FLOAT64", "NULLABLE"),
        ("score", "FLOAT64", "NULLABLE"),
        ("latency_ms", "FLOAT64", "REQUIRED"),
        ("predicted_at", "TIMESTAMP", "REQUIRED"),
    ],
    LABELS_TABLE: [
        ("pipeline", "STRING", "REQUIRED"),
        ("request_id", "STRING", "REQUIRED"),
        ("label", "STRING", "REQUIRED"),
        ("labeled_at", "TIMESTAMP", "REQUIRED"),
    ],
    SNAPSHOTS_TABLE: [
        ("pipeline", "STRING", "REQUIRED"),
        ("data_version", "STRING", "REQUIRED"),
        ("snapshot_table", "STRING", "REQUIRED"),
        ("total_rows", "INT64", "REQUIRED"),
        ("new_rows", "INT64", "REQUIRED"),
        ("watermark", "TIMESTAMP", "REQUIRED"),
        ("trigger", "STRING", "REQUIRED"),
        ("source_event_id", "STRING", "REQUIRED"),
        ("created_at", "TIMESTAMP", "REQUIRED"),
        ("drift_score", "FLOAT64", "NULLABLE"),
        ("spec_hash", "STRING", "NULLABLE"),
    ],
}


def as_tfvars(policy: DeliveryPolicy = DeliveryPolicy()) -> dict[str, Any]:
    """The topology as Terraform variables (JSON), consumed by deploy/terraform."""
    return {
        "topics": list(EVENT_TOPICS),
        "dead_letter_topic": DEAD_LETTER_TOPIC,
        "services": {
            s.name: {"consumes": list(s.consumes), "publishes": list(s.publishes), "serves_traffic": s.serves_traffic}
            for s in SERVICES
        },
        "delivery": {
            "min_backoff_s": policy.min_backoff_s,
            "max_backoff_s": policy.max_backoff_s,
            "max_delivery_attempts": policy.max_delivery_attempts,
            "ack_deadline_s": policy.ack_deadline_s,
        },
        "tables": {name: [{"name": c, "type": t, "mode": m} for c, t, m in cols] for name, cols in TABLES.items()},
    }

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
    # Where it runs: a Cloud Run service, or the serving container of a Vertex AI endpoint's models.
    runs_on: str = "cloud-run"


SERVICES: tuple[Service, ...] = (
    # data.skipped.v1 (nothing trained, and why) is for operators and `--wait`: only the archive reads it.
    # monitoring.breached.v1: a drift or degradation check crossed its threshold -> a retrain.
    Service("data-watcher", consumes=("watch.tick.v1", "monitoring.breached.v1"),
            publishes=("data.ready.v1", "data.skipped.v1")),
    Service("trainer", consumes=("data.ready.v1",), publishes=("model.trained.v1",)),
    Service("evaluator", consumes=("model.trained.v1",), publishes=("model.evaluated.v1",)),
    Service("registrar", consumes=("model.evaluated.v1",), publishes=("model.registered.v1",)),
    # canary.judged.v1 (the monitor's verdict) and deployment.requested.v1 (`mlops rollback` / `promote`)
    # change the traffic split: deployer/traffic.py.
    # watch.tick.v1: a deploy outlives its push; the next tick finishes it (deployer/handler.py).
    Service("deployer", consumes=("model.registered.v1", "canary.judged.v1", "deployment.requested.v1",
                                  "watch.tick.v1"),
            publishes=("model.deployed.v1",)),
    # Not a Cloud Run service: the serving container of each deployed model version on its pipeline's
    # Vertex AI endpoint (started by DeployModel, locally by the Vertex stand-in); it hears no events.
    Service("predictor", consumes=(), publishes=("prediction.made.v1",), serves_traffic=True, runs_on="vertex-ai"),
    Service("inference-logger", consumes=("prediction.made.v1",), publishes=()),
    # Checks serving against training data and labels on every tick (monitoring_checks table).
    Service("monitor", consumes=("watch.tick.v1",), publishes=("monitoring.breached.v1", "canary.judged.v1")),
)
SERVICES_BY_NAME = {service.name: service for service in SERVICES}
# Web apps for people, not stages of the loop: no subscription, no event published but by a person's
# replay; `mlops ui` runs the dashboard locally, deploy/terraform/services/dashboard in the cloud.
OPERATOR_APPS: tuple[str, ...] = ("dashboard",)
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
MONITORING_CHECKS_TABLE = "monitoring_checks"

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
        ("deployed_model_id", "STRING", "NULLABLE"),  # the Vertex AI deployed model that answered
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
    # One row per monitoring check (services/monitor); check_id is deterministic, so a redelivered
    # tick writes nothing twice.
    MONITORING_CHECKS_TABLE: [
        ("checked_at", "TIMESTAMP", "REQUIRED"),
        ("pipeline", "STRING", "REQUIRED"),
        ("version", "STRING", "NULLABLE"),
        ("check_kind", "STRING", "REQUIRED"),
        ("feature", "STRING", "NULLABLE"),
        ("measure", "STRING", "REQUIRED"),
        ("value", "FLOAT64", "REQUIRED"),
        ("threshold", "FLOAT64", "NULLABLE"),
        ("breached", "BOOL", "REQUIRED"),
        ("window_start", "TIMESTAMP", "REQUIRED"),
        ("window_end", "TIMESTAMP", "REQUIRED"),
        ("rows", "INT64", "REQUIRED"),
        ("check_id", "STRING", "REQUIRED"),
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

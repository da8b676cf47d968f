"""The closed vocabularies that travel in events: one enum each, compared by member, never by string.

On the wire each is a plain Avro `string` (the schemas stay as they are, and every reader of the
archive sees the same words); `tests/contract` checks that each field's schema doc lists every member.
Being `StrEnum`s, members compare equal to their words, so archived events decode unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class TickReason(StrEnum):
    """Why a `watch.tick` was sent."""

    SCHEDULE = "schedule"        # Cloud Scheduler, or the local stack's ticker
    MANUAL = "manual"            # `mlops trigger`: train on whatever is new, below the thresholds too
    DATA_LANDED = "data_landed"  # `mlops ingest` after it landed rows
    SPEC_APPLIED = "spec_applied"  # `mlops pipeline apply`: look again now, with the new spec
    # Work in flight, not data: the deployer finishes the deploys it started (a deploy outlives the
    # push that asked for it). The data-watcher takes no snapshot on it.
    HEARTBEAT = "heartbeat"


class Trigger(StrEnum):
    """What made the data-watcher take a snapshot (`data.ready`)."""

    NEW_ROWS = "new_rows"
    DRIFT = "drift"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    SPEC_CHANGED = "spec_changed"  # the spec's source, model or gate changed: the same rows, retrained
    DEGRADATION = "degradation"    # the monitor saw the served model's realized metric fall below the spec's


class CheckKind(StrEnum):
    """What a monitoring check looked at (`monitoring.breached`, the `monitoring_checks` table)."""

    DRIFT = "drift"                # a feature's serving distribution against its training data
    SCORE_DRIFT = "score_drift"    # the model's scores against the scores on its training data
    QUALITY = "quality"            # missing values, unseen categories, out-of-range values
    PERFORMANCE = "performance"    # the gate's metric on predictions whose labels arrived
    CANARY = "canary"              # a canary against its champion (the canary judge)
    FRESHNESS = "freshness"        # no predictions for too long


class SkipCause(StrEnum):
    """Why a tick made the data-watcher train nothing for a pipeline (`data.skipped`)."""

    NO_TABLE = "no_table"                  # the source table does not exist yet: nothing ingested
    NO_NEW_ROWS = "no_new_rows"            # nothing ingested since the last snapshot, spec unchanged
    TOO_FEW_ROWS = "too_few_rows"          # fewer rows in all than the spec's min_rows
    BELOW_THRESHOLDS = "below_thresholds"  # new rows (and drift) below every retrain threshold


class Decision(StrEnum):
    """The promotion gate's verdict on a candidate (`model.evaluated`, `model.registered`)."""

    PROMOTE = "promote"
    REJECT = "reject"


class DeploymentAction(StrEnum):
    """What the deployer did to the endpoint (`model.deployed`)."""

    DEPLOY = "deploy"
    CANARY = "canary"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class CanaryOutcome(StrEnum):
    """The canary judge's verdict (`canary.judged`)."""

    PROMOTE = "promote"    # the canary takes all the traffic
    ROLLBACK = "rollback"  # the previous champion takes it back; the canary is undeployed


class RequestedAction(StrEnum):
    """What an operator asks the deployer for (`deployment.requested`: `mlops rollback` / `mlops promote`)."""

    ROLLBACK = "rollback"
    PROMOTE = "promote"

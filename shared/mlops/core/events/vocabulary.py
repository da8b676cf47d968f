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


class Trigger(StrEnum):
    """What made the data-watcher take a snapshot (`data.ready`)."""

    NEW_ROWS = "new_rows"
    DRIFT = "drift"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    SPEC_CHANGED = "spec_changed"  # the spec's source, model or gate changed: the same rows, retrained


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

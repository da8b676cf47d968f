"""inference-logger: every served prediction becomes one row of the `predictions` table.

The predictor already batches (one `prediction.made` carries up to hundreds of predictions), so one
push is one streaming insert. Idempotent on the input event: rows carry `event_id`, checked before
writing, so a redelivered batch writes nothing twice.
"""

from __future__ import annotations

import structlog

from mlops.core.events import Envelope, PredictionMade
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ports.warehouse import Warehouse

log = structlog.get_logger("inference-logger")


class InferenceLogger:
    def __init__(self, warehouse: Warehouse):
        self._warehouse = warehouse

    def handle(self, made: PredictionMade, envelope: Envelope) -> list:
        if self._warehouse.has_rows(PREDICTIONS_TABLE, "event_id", envelope.id):
            log.info("batch already logged; skipping the duplicate delivery", rows=len(made.predictions))
            return []
        rows = [
            {"event_id": envelope.id, "pipeline": made.pipeline, **p.model_dump()}
            for p in made.predictions
        ]
        self._warehouse.insert_rows(PREDICTIONS_TABLE, rows, row_ids=[f"{envelope.id}/{i}" for i in range(len(rows))])
        log.info("logged predictions", rows=len(rows))
        return []

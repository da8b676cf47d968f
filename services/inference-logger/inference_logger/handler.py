"""inference-logger: every served prediction becomes one row of the `predictions` table, once.

The predictor already batches (one `prediction.made` carries up to hundreds of predictions), so one
push is one query and one streaming insert. Rows are keyed on (pipeline, request id), not on the
event: before writing, the logger asks which of the batch's request ids the pipeline has already
logged and writes only the others (and one row per request id within the batch). So a redelivered
batch, a batch the predictor re-published under another event id (a publish that timed out but
landed), or a client's retry with the same request id adds no row twice. Insert ids cannot do this
(bqemulator ignores them; BigQuery dedupes them only best-effort).

The check and the insert run under one lock, so two overlapping batches pushed at the same time
cannot both find a request id missing. Across instances that lock does not reach: the service runs
as one instance (deploy/), like the other stages whose effects are checked before they are made.
"""

from __future__ import annotations

import threading

import structlog

from mlops.core.events import Envelope, PredictionMade
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ports.warehouse import Warehouse

log = structlog.get_logger("inference-logger")


class InferenceLogger:
    def __init__(self, warehouse: Warehouse):
        self._warehouse = warehouse
        self._lock = threading.Lock()

    def handle(self, made: PredictionMade, envelope: Envelope) -> list:
        with self._lock:
            ids = [p.request_id for p in made.predictions]
            logged = self._warehouse.present_values(PREDICTIONS_TABLE, "request_id", ids,
                                                    where={"pipeline": made.pipeline})
            rows, seen = [], set(logged)
            for index, prediction in enumerate(made.predictions):
                if prediction.request_id in seen:
                    continue
                seen.add(prediction.request_id)
                rows.append((f"{envelope.id}/{index}",
                             {"event_id": envelope.id, "pipeline": made.pipeline, **prediction.model_dump()}))
            if rows:
                self._warehouse.insert_rows(PREDICTIONS_TABLE, [row for _, row in rows],
                                            row_ids=[row_id for row_id, _ in rows])
        skipped = len(made.predictions) - len(rows)
        if skipped:
            log.info("request ids already logged; skipped", skipped=skipped, rows=len(rows))
        log.info("logged predictions", rows=len(rows))
        return []

"""inference-logger: every served prediction becomes one row of the `predictions` table, once.

The predictor already batches (one `prediction.made` carries up to thousands of predictions), and
pushes that arrive together are written together (group commit): a push that finds no write under
way writes every batch waiting at that moment as one round; pushes arriving meanwhile wait, and when
the round ends one of them writes the next round for all of them. Each push answers once its own
round is written (or with the round's error, so Pub/Sub redelivers it). A round is one presence
query and one Storage Write API append for all its batches, however many there are: under load, rows
per round grow instead of rounds queueing up, so throughput follows the arrival rate
(docs/performance.md, `logging`).

Rows are keyed on (pipeline, request id), not on the event: before writing, a round asks which of
its request ids each pipeline has already logged and writes only the others (and one row per
request id within the round). So a redelivered batch, a batch the predictor re-published under
another event id (a publish that timed out but landed), or a client's retry with the same request
id adds no row twice. The check looks back from the round's earliest prediction by the dedupe
horizon (MLOPS_DEDUPE_HORIZON_HOURS, a day), not over the whole table: `predictions` is partitioned
by `predicted_at`, so BigQuery reads the horizon's partitions, not every day ever logged, several
times a second. A redelivered or re-published batch is always within it (its rows keep their
times); a client's retry is, if it came within the horizon. The append itself carries its stream
offset, so the adapter's resend of an append whose answer was lost lands once too. Insert ids cannot do this (bqemulator ignores them;
BigQuery dedupes them only best-effort).

Rounds never overlap (one writer at a time), so two overlapping batches cannot both find a request
id missing. Across instances that does not reach: the service runs as one instance (deploy/), like
the other stages whose effects are checked before they are made.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from mlops.core.events import Envelope, Prediction, PredictionMade
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ports.warehouse import Warehouse

log = structlog.get_logger("inference-logger")

# Request ids per presence query.
PRESENCE_CHECK_IDS = 10_000
DEDUPE_HORIZON = timedelta(hours=24)


@dataclass
class _Pending:
    made: PredictionMade
    event_id: str
    done: Future[int] = field(default_factory=Future)


class InferenceLogger:
    def __init__(self, warehouse: Warehouse, dedupe_horizon: timedelta = DEDUPE_HORIZON):
        self._warehouse = warehouse
        self._horizon = dedupe_horizon
        self._turn = threading.Condition()
        self._waiting: list[_Pending] = []
        self._writing = False
        self.rounds = 0  # for /healthz and the benchmark: rounds written, rows per round
        self.rows_written = 0

    def handle(self, made: PredictionMade, envelope: Envelope) -> list:
        pending = _Pending(made, envelope.id)
        with self._turn:
            self._waiting.append(pending)
        self._write_until_done(pending)
        written = pending.done.result()  # raises the round's error: the push answers 503, Pub/Sub redelivers
        skipped = len(made.predictions) - written
        if skipped:
            log.info("request ids already logged; skipped", skipped=skipped, rows=written)
        log.info("logged predictions", rows=written)
        return []

    def _write_until_done(self, pending: _Pending) -> None:
        """Wait while another push writes a round; if this push's batch is still unwritten when no
        round is under way, write a round of everything waiting (this batch among them). So each push
        answers right after its own round: a push never holds its answer while writing later pushes'
        rounds, which would keep it unacknowledged past its ack deadline under sustained load (and
        count against the subscription's outstanding pushes)."""
        with self._turn:
            while self._writing and not pending.done.done():
                self._turn.wait()
            if pending.done.done():
                return
            batch, self._waiting = self._waiting, []
            self._writing = True
        try:
            try:
                counts = self._write(batch)
            except BaseException as error:  # every push of the round fails alike: Pub/Sub redelivers them
                for each in batch:
                    each.done.set_exception(error)
            else:
                for each, count in zip(batch, counts, strict=True):
                    each.done.set_result(count)
        finally:
            with self._turn:
                self._writing = False
                self._turn.notify_all()  # the waiting pushes: one of them writes the next round

    def _look_back_from(self, predictions: list[Prediction]) -> tuple[str, datetime] | None:
        """(`predicted_at`, the earliest prediction's time minus the horizon), a time read as the table
        reads it (no offset is UTC); None (the whole table) if one is not a time at all, which the
        append then refuses by name."""
        try:
            times = [datetime.fromisoformat(p.predicted_at.strip().replace("Z", "+00:00")) for p in predictions]
        except ValueError:
            return None
        earliest = min(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
        return "predicted_at", earliest - self._horizon

    def _write(self, batch: list[_Pending]) -> list[int]:
        by_pipeline: dict[str, list[Prediction]] = defaultdict(list)
        for pending in batch:
            by_pipeline[pending.made.pipeline].extend(pending.made.predictions)
        started = time.perf_counter()
        seen: dict[str, set[str]] = {}
        for pipeline, predictions in by_pipeline.items():
            unique = list(dict.fromkeys(p.request_id for p in predictions))
            since = self._look_back_from(predictions)
            logged: set[str] = set()
            for start in range(0, len(unique), PRESENCE_CHECK_IDS):
                logged |= self._warehouse.present_values(PREDICTIONS_TABLE, "request_id",
                                                         unique[start:start + PRESENCE_CHECK_IDS],
                                                         where={"pipeline": pipeline}, since=since)
            seen[pipeline] = logged
        rows: list[dict[str, Any]] = []
        counts = []
        for pending in batch:
            known = seen[pending.made.pipeline]
            before = len(rows)
            for prediction in pending.made.predictions:
                if prediction.request_id in known:
                    continue
                known.add(prediction.request_id)
                rows.append({"event_id": pending.event_id, "pipeline": pending.made.pipeline,
                             **prediction.model_dump()})
            counts.append(len(rows) - before)
        checked = time.perf_counter()
        if rows:
            self._warehouse.insert_rows(PREDICTIONS_TABLE, rows)
        log.info("round written", pushes=len(batch), rows=len(rows),
                 presence_ms=round((checked - started) * 1000, 1),
                 append_ms=round((time.perf_counter() - checked) * 1000, 1))
        self.rounds += 1
        self.rows_written += len(rows)
        return counts

"""The monitor's warehouse questions answered in Python over the in-memory warehouse's rows: the
twin of `monitor.figures.SqlServingFigures`, held to the same answers on bqemulator by
tests/integration/test_monitor_figures.py."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE
from mlops.ports.warehouse import Row
from mlops.testing.memory import InMemoryWarehouse
from monitor.figures import FeatureQuery, NumericBins


class MemoryServingFigures:
    def __init__(self, warehouse: InMemoryWarehouse):
        self._warehouse = warehouse

    def _rows(self, table: str) -> list[Row]:
        return self._warehouse.tables.get(self._warehouse.qualified(table), [])

    def _window(self, pipeline: str, start: datetime, end: datetime) -> list[Row]:
        return [r for r in self._rows(PREDICTIONS_TABLE)
                if r["pipeline"] == pipeline and start <= r["predicted_at"] < end]

    def feature_counts(self, pipeline: str, start: datetime, end: datetime, features: Sequence[FeatureQuery],
                       version: str) -> list[Row]:
        rows = [r for r in self._window(pipeline, start, end) if r["model_version"] == version]
        out = []
        for query in features:
            buckets: Counter[Any] = Counter()
            outside: Counter[Any] = Counter()
            for row in rows:
                value = json.loads(row["features"]).get(query.feature)
                if isinstance(query, NumericBins):
                    number = None if value is None else float(value)
                    bucket = None if number is None else str(sum(1 for e in query.inner_edges if e < number))
                    if number is not None and query.low is not None and query.high is not None \
                            and not query.low <= number <= query.high:
                        outside[bucket] += 1
                else:
                    bucket = None if value is None else ("true" if value is True else "false" if value is False
                                                         else str(value))
                buckets[bucket] += 1
            out += [{"model_version": version, "feature": query.feature, "bucket": b, "n": n, "out_of_range": outside[b]}
                    for b, n in buckets.items()]
        return out

    def score_counts(self, pipeline: str, start: datetime, end: datetime, edges: Sequence[float],
                     version: str | None = None) -> list[Row]:
        counts: Counter[tuple[str, str]] = Counter()
        for row in self._window(pipeline, start, end):
            if row["score"] is None or (version is not None and row["model_version"] != version):
                continue
            counts[(row["model_version"], str(sum(1 for e in edges if e < row["score"])))] += 1
        return [{"model_version": v, "bucket": b, "n": n} for (v, b), n in counts.items()]

    def served_span(self, pipeline: str) -> list[Row]:
        spans: dict[str, list[datetime]] = {}
        for row in self._rows(PREDICTIONS_TABLE):
            if row["pipeline"] == pipeline:
                spans.setdefault(row["model_version"], []).append(row["predicted_at"])
        return [{"model_version": v, "first_at": min(t), "last_at": max(t)} for v, t in spans.items()]

    def written_checks(self, check_ids: Sequence[str]) -> dict[str, datetime]:
        wanted = set(check_ids)
        found: dict[str, datetime] = {}
        for row in self._rows(MONITORING_CHECKS_TABLE):
            if row["check_id"] in wanted:
                found[row["check_id"]] = min(found.get(row["check_id"], row["checked_at"]), row["checked_at"])
        return found

    def labelled(self, pipeline: str, start: datetime, end: datetime) -> list[Row]:
        labels = {r["request_id"]: r["label"] for r in self._rows(LABELS_TABLE) if r["pipeline"] == pipeline}
        seen: dict[tuple[str, str], Row] = {}
        for row in self._window(pipeline, start, end):
            answered = row["predicted_label"] is not None or row["predicted_value"] is not None
            if row["request_id"] in labels and answered:
                seen.setdefault((row["model_version"], row["request_id"]), {
                    "model_version": row["model_version"], "request_id": row["request_id"],
                    "predicted_label": row["predicted_label"], "predicted_value": row["predicted_value"],
                    "score": row["score"], "label": labels[row["request_id"]]})
        return sorted(seen.values(), key=lambda r: r["request_id"])

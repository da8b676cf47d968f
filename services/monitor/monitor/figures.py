"""What the monitor asks the warehouse, aggregated there: one SQL text for BigQuery and bqemulator.

Names reach SQL only through `mlops.core.sql` (tables qualified and quoted; a feature's JSON path
from a name that passed `is_column_name`, the pattern every spec column is held to); values (the
pipeline, the window, bin edges, training ranges) travel as query parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mlops.core.sql import SqlBuildError, is_column_name, quote_qualified, sql_string
from mlops.core.topology import LABELS_TABLE, MONITORING_CHECKS_TABLE, PREDICTIONS_TABLE
from mlops.ports.warehouse import Row, SqlReader


@dataclass(frozen=True)
class NumericBins:
    feature: str
    inner_edges: tuple[float, ...]  # bins (-inf, e0], (e0, e1], ..., (e_last, inf)
    low: float | None               # the training minimum and maximum: outside is out of range
    high: float | None


@dataclass(frozen=True)
class CategoricalValues:
    feature: str


FeatureQuery = NumericBins | CategoricalValues


class ServingFigures(Protocol):
    """Predictions (and labels) of one pipeline, counted over `[start, end)` of `predicted_at`."""

    def feature_counts(self, pipeline: str, start: datetime, end: datetime,
                       features: Sequence[FeatureQuery], version: str) -> list[Row]:
        """Of one version's predictions: rows (model_version, feature, bucket, n, out_of_range): a numeric feature's bucket is its bin's
        index as text, a categorical one's the served category; NULL (None) for a missing value.
        `out_of_range` counts the bucket's values outside the training range (0 for categories)."""

    def score_counts(self, pipeline: str, start: datetime, end: datetime, edges: Sequence[float],
                     version: str | None = None) -> list[Row]:
        """Rows (model_version, bucket, n) of the scores' bins (index as text), NULL scores left out."""

    def served_span(self, pipeline: str) -> list[Row]:
        """Rows (model_version, first_at, last_at): each version's first and last prediction time."""

    def written_checks(self, check_ids: Sequence[str]) -> dict[str, datetime]:
        """Which of these checks `monitoring_checks` holds already, and when each was written."""

    def labelled(self, pipeline: str, start: datetime, end: datetime) -> list[Row]:
        """Rows (model_version, request_id, predicted_label, predicted_value, score, label): one per
        request id whose label arrived, among the predictions of the window that were answered."""


def json_path(feature: str) -> str:
    """`'$.feature'` as a SQL string, for a name that is a plain column name (nothing else is quoted)."""
    if not is_column_name(feature):
        raise SqlBuildError(f"{feature[:80]!r} is not a column name")
    return sql_string(f"$.{feature}")


class SqlServingFigures:
    def __init__(self, sql: SqlReader):
        self._sql = sql

    def _table(self, name: str) -> str:
        return quote_qualified(self._sql.qualified(name))

    def _window(self, pipeline: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
        return ("pipeline = @pipeline AND predicted_at >= @start AND predicted_at < @end",
                {"pipeline": pipeline, "start": start, "end": end})

    def feature_counts(self, pipeline: str, start: datetime, end: datetime,
                       features: Sequence[FeatureQuery], version: str) -> list[Row]:
        if not features:
            return []
        where, params = self._window(pipeline, start, end)
        where += " AND model_version = @version"
        params["version"] = version
        parts = []
        for i, query in enumerate(features):
            params[f"f{i}"] = query.feature
            path = json_path(query.feature)
            if isinstance(query, NumericBins):
                cases = []
                for j, edge in enumerate(query.inner_edges):
                    params[f"e{i}_{j}"] = float(edge)
                    cases.append(f"WHEN v <= @e{i}_{j} THEN '{j}'")
                bucket = f"CASE WHEN v IS NULL THEN NULL {' '.join(cases)} ELSE '{len(query.inner_edges)}' END"
                value = f"SAFE_CAST(JSON_VALUE(features, {path}) AS FLOAT64)"
                outside = "0"
                if query.low is not None and query.high is not None:
                    params[f"lo{i}"], params[f"hi{i}"] = float(query.low), float(query.high)
                    outside = f"SUM(CASE WHEN v < @lo{i} OR v > @hi{i} THEN 1 ELSE 0 END)"
            else:
                bucket, value, outside = "v", f"JSON_VALUE(features, {path})", "0"
            parts.append(
                f"SELECT model_version, @f{i} AS feature, bucket, COUNT(*) AS n, {outside} AS out_of_range FROM ("
                f"SELECT model_version, v, {bucket} AS bucket FROM (SELECT model_version, {value} AS v "
                f"FROM {self._table(PREDICTIONS_TABLE)} WHERE {where})) GROUP BY model_version, bucket")
        return self._sql.query(" UNION ALL ".join(parts), params)

    def score_counts(self, pipeline: str, start: datetime, end: datetime, edges: Sequence[float],
                     version: str | None = None) -> list[Row]:
        where, params = self._window(pipeline, start, end)
        if version is not None:
            where += " AND model_version = @version"
            params["version"] = version
        cases = []
        for j, edge in enumerate(edges):
            params[f"e{j}"] = float(edge)
            cases.append(f"WHEN score <= @e{j} THEN '{j}'")
        return self._sql.query(
            f"SELECT model_version, bucket, COUNT(*) AS n FROM (SELECT model_version, "
            f"CASE {' '.join(cases)} ELSE '{len(edges)}' END AS bucket FROM {self._table(PREDICTIONS_TABLE)} "
            f"WHERE {where} AND score IS NOT NULL) GROUP BY model_version, bucket", params)

    def served_span(self, pipeline: str) -> list[Row]:
        return self._sql.query(
            f"SELECT model_version, MIN(predicted_at) AS first_at, MAX(predicted_at) AS last_at "
            f"FROM {self._table(PREDICTIONS_TABLE)} WHERE pipeline = @pipeline GROUP BY model_version",
            {"pipeline": pipeline})

    def labelled(self, pipeline: str, start: datetime, end: datetime) -> list[Row]:
        _, params = self._window(pipeline, start, end)
        return self._sql.query(
            f"SELECT p.model_version AS model_version, p.request_id AS request_id, "
            f"ANY_VALUE(p.predicted_label) AS predicted_label, ANY_VALUE(p.predicted_value) AS predicted_value, "
            f"ANY_VALUE(p.score) AS score, ANY_VALUE(l.label) AS label "
            f"FROM {self._table(PREDICTIONS_TABLE)} AS p JOIN {self._table(LABELS_TABLE)} AS l "
            f"ON l.pipeline = p.pipeline AND l.request_id = p.request_id "
            f"WHERE p.pipeline = @pipeline AND p.predicted_at >= @start AND p.predicted_at < @end "
            # A request the model failed on has no answer to score (the canary's error rate counts it).
            f"AND (p.predicted_label IS NOT NULL OR p.predicted_value IS NOT NULL) "
            f"GROUP BY p.model_version, p.request_id ORDER BY p.request_id", params)

    def written_checks(self, check_ids: Sequence[str]) -> dict[str, datetime]:
        if not check_ids:
            return {}
        rows = self._sql.query(
            f"SELECT check_id, MIN(checked_at) AS checked_at FROM {self._table(MONITORING_CHECKS_TABLE)} "
            f"WHERE check_id IN UNNEST(@ids) GROUP BY check_id", {"ids": list(check_ids)})
        return {row["check_id"]: row["checked_at"] for row in rows}

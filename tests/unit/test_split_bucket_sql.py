"""The split bucket a snapshot stores is the one BigQuery ML's eval predicate computes, text for text,
so a row is an eval row for the local backend exactly when it is one for BigQuery ML."""

from __future__ import annotations

from mlops.adapters.bigquery import split_bucket_sql
from mlops.adapters.bqml import eval_predicate_sql
from mlops.ml.split import SPLIT_BUCKET_COLUMN, eval_restriction, plan_split


def test_the_snapshot_bucket_is_the_expression_bigquery_ml_splits_on():
    for method, rows, fraction in (("RANDOM", 0, 0.2), ("AUTO_SPLIT", 1_000_000, None)):
        cloud = plan_split(method, rows, eval_fraction=fraction)
        local = plan_split(method, rows, eval_fraction=fraction, bucket_column=SPLIT_BUCKET_COLUMN)
        restriction = eval_restriction(local)
        assert restriction is not None and restriction[0] == SPLIT_BUCKET_COLUMN
        _, op, threshold = restriction
        assert eval_predicate_sql(cloud) == f"{split_bucket_sql()} {op} {threshold}"


def test_the_bucket_is_taken_mod_before_abs():
    # ABS(FARM_FINGERPRINT(...)) fails in BigQuery for the one INT64 without a positive twin (-2^63).
    assert split_bucket_sql() == "ABS(MOD(FARM_FINGERPRINT(CAST(`_row_id` AS STRING)), 10000))"

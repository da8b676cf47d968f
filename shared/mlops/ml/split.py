"""The train/eval split, shared by the local trainer, the evaluator and the BigQuery ML SQL builder.

The property the loop depends on: a row lands on the same side (train or eval) in every snapshot of a
growing, append-only table. A champion trained on an older snapshot then never saw the rows a newer
candidate is evaluated on, so comparing both on the candidate's eval rows is fair.

That is why `RANDOM` (and `AUTO_SPLIT` once it splits) hash a stable row key instead of drawing random
numbers: the row's side depends only on its key and the eval fraction. BigQuery ML's own RANDOM split
is deterministic for identical input but not stable as the table grows, so the cloud side renders the
same rule in SQL (`eval_predicate_sql`) and hands it to BigQuery ML as a CUSTOM split.

The bucket is the warehouse's: a snapshot carries `_split_bucket` = ABS(MOD(FARM_FINGERPRINT(CAST(key AS
STRING)), 10000)), computed by BigQuery (or bqemulator) when it takes the snapshot
(`Warehouse.create_snapshot`), the expression the BigQuery ML path computes too. So both backends put
every row on the same side, and the evaluator reads only its rows: `_split_bucket < threshold` is a
row restriction the Storage Read API applies (`eval_restriction`). Snapshots taken before the column
existed keep the rule they were trained with: a blake2b hash of the key computed here (`row_bucket`,
`bucket_column=None`), which a row may not share with FARM_FINGERPRINT; for those, a row may be an
eval row locally and a training row in the cloud.

Per method:
- RANDOM: eval iff bucket(key) < round(fraction * 10,000), bucket = hash(key) mod 10,000, read from the
  snapshot's bucket column when it has one.
- AUTO_SPLIT: BigQuery ML's documented rule for the fraction (no split under 500 rows, 20% from 500 to
  50,000 rows, 10,000 eval rows above that), then the RANDOM rule. The fraction only shrinks as the
  table grows past 50,000 rows, so rows only move from eval to train there, never the other way; the one
  jump that breaks the property is 499 -> 500 rows (no split -> 20%): a champion trained on fewer than
  500 rows saw every row. Pipelines that start small should say RANDOM explicitly.
- SEQ: rows ordered by `data_split_col` (NULLs first, ties broken by the row key); the last
  round(fraction * n) rows are eval. With an ordering column that grows with ingestion, old training
  rows stay training rows.
- CUSTOM: the BOOL `data_split_col` says it; TRUE or NULL is eval (BigQuery ML's rule).
- NO_SPLIT: everything trains, and evaluation uses the training rows (optimistic; say so in reports).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mlops.ml.errors import InputError

# The column `mlops ingest` adds to every source row; its value never changes once written.
ROW_KEY_COLUMN = "_row_id"
# The column a snapshot adds beside the source's: each row's bucket in [0, EVAL_BUCKETS), computed by
# the warehouse from ROW_KEY_COLUMN (NULL where the key is NULL).
SPLIT_BUCKET_COLUMN = "_split_bucket"
EVAL_BUCKETS = 10_000
DEFAULT_EVAL_FRACTION = 0.2

# BigQuery ML's AUTO_SPLIT thresholds (CREATE MODEL docs, DATA_SPLIT_METHOD).
AUTO_SPLIT_MIN_ROWS = 500
AUTO_SPLIT_MAX_ROWS_AT_DEFAULT_FRACTION = 50_000
AUTO_SPLIT_LARGE_EVAL_ROWS = 10_000


class DataSplitMethod(StrEnum):
    AUTO_SPLIT = "AUTO_SPLIT"
    RANDOM = "RANDOM"
    NO_SPLIT = "NO_SPLIT"
    SEQ = "SEQ"
    CUSTOM = "CUSTOM"


class SplitError(InputError):
    """The rows can't be split as asked (a missing key or split column, a non-BOOL CUSTOM column...)."""


@dataclass(frozen=True)
class SplitPlan:
    """A split resolved for one snapshot: AUTO_SPLIT is already turned into RANDOM or NO_SPLIT."""

    method: DataSplitMethod
    eval_fraction: float | None = None
    split_column: str | None = None
    key_column: str = ROW_KEY_COLUMN
    # RANDOM: the column holding each row's bucket, computed by the warehouse; None: hash the key here.
    bucket_column: str | None = None

    @property
    def eval_is_training_data(self) -> bool:
        return self.method is DataSplitMethod.NO_SPLIT


@dataclass(frozen=True)
class Split:
    train_rows: list[Mapping[str, Any]]
    eval_rows: list[Mapping[str, Any]]
    plan: SplitPlan


def auto_split_eval_fraction(row_count: int) -> float:
    """BigQuery ML's AUTO_SPLIT fraction for a table of `row_count` rows (0.0 means no split)."""
    if row_count < AUTO_SPLIT_MIN_ROWS:
        return 0.0
    if row_count <= AUTO_SPLIT_MAX_ROWS_AT_DEFAULT_FRACTION:
        return DEFAULT_EVAL_FRACTION
    return AUTO_SPLIT_LARGE_EVAL_ROWS / row_count


def plan_split(
    method: DataSplitMethod | str,
    row_count: int,
    *,
    eval_fraction: float | None = None,
    split_column: str | None = None,
    key_column: str = ROW_KEY_COLUMN,
    bucket_column: str | None = None,
) -> SplitPlan:
    """Resolve the options of one training run into the split applied to a snapshot of `row_count` rows
    (only AUTO_SPLIT looks at the count). `bucket_column`: where a RANDOM split finds each row's bucket
    (the snapshot's SPLIT_BUCKET_COLUMN); None hashes the key here (snapshots older than that column)."""
    method = DataSplitMethod(method)
    if method is DataSplitMethod.AUTO_SPLIT:
        fraction = auto_split_eval_fraction(row_count)
        if fraction == 0.0:
            return SplitPlan(DataSplitMethod.NO_SPLIT, key_column=key_column)
        return SplitPlan(DataSplitMethod.RANDOM, fraction, key_column=key_column, bucket_column=bucket_column)
    if method is DataSplitMethod.NO_SPLIT:
        return SplitPlan(method, key_column=key_column)
    if method is DataSplitMethod.CUSTOM:
        if not split_column:
            raise SplitError("data_split_method CUSTOM needs data_split_col")
        return SplitPlan(method, split_column=split_column, key_column=key_column)
    fraction = DEFAULT_EVAL_FRACTION if eval_fraction is None else eval_fraction
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"data_split_eval_fraction must be between 0 and 1, got {fraction}")
    if method is DataSplitMethod.SEQ and not split_column:
        raise SplitError("data_split_method SEQ needs data_split_col (the ordering column)")
    return SplitPlan(method, fraction, split_column=split_column if method is DataSplitMethod.SEQ else None,
                     key_column=key_column,
                     bucket_column=bucket_column if method is DataSplitMethod.RANDOM else None)


def row_bucket(key: Any) -> int:
    """A stable bucket in [0, 10,000) for a row key: blake2b of its text, so it never changes between runs,
    processes or Python versions (unlike `hash()`)."""
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % EVAL_BUCKETS


def eval_bucket_threshold(eval_fraction: float) -> int:
    """Buckets below this number are eval rows; shared with the SQL rendering so both round alike."""
    return int(math.floor(eval_fraction * EVAL_BUCKETS + 0.5))


def is_eval_key(key: Any, eval_fraction: float) -> bool:
    return row_bucket(key) < eval_bucket_threshold(eval_fraction)


def eval_restriction(plan: SplitPlan) -> tuple[str, str, Any] | None:
    """The eval side of a plan as one predicate on a snapshot column, `(column, operator, value)` in the
    warehouse port's operators, for a read to push down; None when no column holds it (SEQ ranks all
    rows, NO_SPLIT evaluates on every row, a RANDOM split without a stored bucket hashes here)."""
    if plan.method is DataSplitMethod.RANDOM and plan.bucket_column is not None:
        assert plan.eval_fraction is not None
        return (plan.bucket_column, "<", eval_bucket_threshold(plan.eval_fraction))
    if plan.method is DataSplitMethod.CUSTOM:
        assert plan.split_column is not None
        return (plan.split_column, "is not false", None)  # TRUE or NULL is eval, as BigQuery ML reads it
    return None


def seq_eval_row_count(row_count: int, eval_fraction: float) -> int:
    # Half away from zero, like BigQuery's ROUND, so SQL and Python agree on the boundary row.
    return int(math.floor(row_count * eval_fraction + 0.5))


def split_rows(rows: Sequence[Mapping[str, Any]], plan: SplitPlan) -> Split:
    """Split one snapshot's rows according to a resolved plan. Row order is preserved on both sides."""
    if plan.method is DataSplitMethod.NO_SPLIT:
        return Split(list(rows), list(rows), plan)
    if plan.method is DataSplitMethod.RANDOM and plan.bucket_column is not None:
        assert plan.eval_fraction is not None
        threshold = eval_bucket_threshold(plan.eval_fraction)
        eval_flags = [_stored_bucket(row, plan, index) < threshold for index, row in enumerate(rows)]
    elif plan.method is DataSplitMethod.RANDOM:
        assert plan.eval_fraction is not None
        eval_flags = [is_eval_key(_row_key(row, plan.key_column, index), plan.eval_fraction)
                      for index, row in enumerate(rows)]
    elif plan.method is DataSplitMethod.SEQ:
        eval_flags = _seq_eval_flags(rows, plan)
    elif plan.method is DataSplitMethod.CUSTOM:
        eval_flags = [_custom_flag(row, plan.split_column, index) for index, row in enumerate(rows)]
    else:  # AUTO_SPLIT never reaches here: plan_split resolves it.
        raise SplitError(f"unresolved split method {plan.method}; call plan_split first")
    train = [row for row, is_eval in zip(rows, eval_flags) if not is_eval]
    evaluation = [row for row, is_eval in zip(rows, eval_flags) if is_eval]
    return Split(train, evaluation, plan)


def _row_key(row: Mapping[str, Any], key_column: str, index: int) -> Any:
    key = row.get(key_column)
    if key is None:
        raise SplitError(f"row {index} has no {key_column!r}: a RANDOM/AUTO_SPLIT split hashes that stable "
                         "row key so that a row stays on the same side as the table grows")
    return key


def _stored_bucket(row: Mapping[str, Any], plan: SplitPlan, index: int) -> int:
    assert plan.bucket_column is not None
    bucket = row.get(plan.bucket_column)
    if bucket is None:  # the warehouse leaves it NULL where the key is NULL
        raise SplitError(f"row {index} has no {plan.bucket_column!r} (its {plan.key_column!r} is NULL?): a "
                         "RANDOM/AUTO_SPLIT split needs a stable row key so that a row stays on the same side "
                         "as the table grows")
    return int(bucket)


def _seq_eval_flags(rows: Sequence[Mapping[str, Any]], plan: SplitPlan) -> list[bool]:
    assert plan.split_column is not None and plan.eval_fraction is not None
    column = plan.split_column
    for index, row in enumerate(rows):
        if column not in row:
            raise SplitError(f"row {index} has no SEQ ordering column {column!r}")

    def order(index: int) -> tuple[bool, Any, str, int]:
        value = rows[index][column]
        # NULLs first (BigQuery's ORDER BY ... ASC), then the row key to break ties like the SQL does.
        key = rows[index].get(plan.key_column)
        return (value is not None, value if value is not None else 0, "" if key is None else str(key), index)

    ordered = sorted(range(len(rows)), key=order)
    eval_count = seq_eval_row_count(len(rows), plan.eval_fraction)
    eval_indexes = set(ordered[len(rows) - eval_count:]) if eval_count else set()
    return [index in eval_indexes for index in range(len(rows))]


def _custom_flag(row: Mapping[str, Any], column: str | None, index: int) -> bool:
    assert column is not None
    if column not in row:
        raise SplitError(f"row {index} has no CUSTOM split column {column!r}")
    value = row[column]
    if value is None:
        return True  # BigQuery ML: TRUE or NULL means eval.
    if not isinstance(value, bool):
        raise SplitError(f"CUSTOM split column {column!r} must be BOOL, row {index} has {value!r}")
    return value

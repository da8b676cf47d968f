"""BigQuery ML SQL for the cloud trainer and evaluator: CREATE MODEL, ML.EVALUATE and ML.PREDICT.

Only builders: they return SQL text, run nothing, and import no client (BigQuery ML can't run locally;
the emulator accepts CREATE MODEL but trains nothing). Options use `ModelOptions`, the same object the
local backend trains from. Values are rendered as SQL literals (strings quoted and escaped, arrays as
[...], booleans as TRUE/FALSE), identifiers are checked and backtick-quoted, so no option or column name
can change the statement's shape.

The split. The loop needs a row to stay on the same side as the table grows (see mlops.ml.split), which
BigQuery ML's own RANDOM split doesn't promise. So every split except NO_SPLIT is handed to BigQuery ML
as a CUSTOM split over a computed BOOL column, `_mlops_is_eval`:
- RANDOM / AUTO_SPLIT: ABS(MOD(FARM_FINGERPRINT(CAST(key AS STRING)), 10000)) < round(fraction * 10000),
  with AUTO_SPLIT's fraction chosen from the snapshot's row count by BigQuery ML's documented rule (the
  caller passes `row_count`). MOD before ABS: ABS of FARM_FINGERPRINT's minimum INT64 would overflow.
- SEQ: the last round(fraction * n) rows ordered by data_split_col (then the key), via ROW_NUMBER().
- CUSTOM: the user's column, with NULL read as eval as BigQuery ML does.
`eval_rows_sql` selects the same eval rows, so a champion and a candidate are evaluated on rows that
neither trained on. The local backend splits on the same expression: snapshots store it per row
(`_split_bucket`, `mlops.adapters.bigquery.split_bucket_sql`), so both backends agree on every row's side
(snapshots taken before that column were split locally by a blake2b hash instead).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mlops.core.sql import SqlBuildError, quote_column, quote_qualified, sql_literal, sql_string
from mlops.ml.options import (
    ModelOptions,
    ModelType,
    parse_model_options,
    parse_model_type,
)
from mlops.ml.split import (
    EVAL_BUCKETS,
    ROW_KEY_COLUMN,
    DataSplitMethod,
    SplitPlan,
    eval_bucket_threshold,
    plan_split,
)

EVAL_FLAG_COLUMN = "_mlops_is_eval"
_SPLIT_OPTIONS = ("data_split_method", "data_split_eval_fraction", "data_split_col")
_QUERY_START = re.compile(r"^\s*\(?\s*(SELECT|WITH)\b", re.IGNORECASE)


def _table_or_query(source: str) -> str:
    """A query is parenthesized, a table id becomes `TABLE `id``, the two forms BigQuery ML functions take."""
    if _QUERY_START.match(source):
        return "(\n" + source.strip() + "\n)"
    return f"TABLE {quote_qualified(source)}"


# ---------------------------------------------------------------------------------------------------
# The split, in SQL
# ---------------------------------------------------------------------------------------------------

def eval_predicate_sql(plan: SplitPlan) -> str | None:
    """A BOOL expression, TRUE for eval rows, for a resolved split plan; None for NO_SPLIT."""
    key = f"CAST({quote_column(plan.key_column)} AS STRING)"
    if plan.method is DataSplitMethod.NO_SPLIT:
        return None
    if plan.method is DataSplitMethod.RANDOM:
        assert plan.eval_fraction is not None
        return (f"ABS(MOD(FARM_FINGERPRINT({key}), {EVAL_BUCKETS})) "
                f"< {eval_bucket_threshold(plan.eval_fraction)}")
    if plan.method is DataSplitMethod.SEQ:
        assert plan.split_column is not None and plan.eval_fraction is not None
        order = f"{quote_column(plan.split_column)}, {quote_column(plan.key_column)}"
        # The last ROUND(n * fraction) rows in order are eval, NULLs sorting first as in ORDER BY ... ASC.
        return (f"ROW_NUMBER() OVER (ORDER BY {order}) > COUNT(*) OVER () - "
                f"CAST(ROUND(COUNT(*) OVER () * {sql_literal(float(plan.eval_fraction))}) AS INT64)")
    if plan.method is DataSplitMethod.CUSTOM:
        assert plan.split_column is not None
        return f"COALESCE({quote_column(plan.split_column)}, TRUE)"
    raise SqlBuildError(f"unresolved split method {plan.method}")


def split_plan_for(model_type: str | ModelType, options: ModelOptions, *, row_count: int | None,
                   row_key_column: str = ROW_KEY_COLUMN) -> SplitPlan:
    """The split a training run applies; AUTO_SPLIT needs the snapshot's row count to pick its fraction."""
    method = options.data_split_method or DataSplitMethod.AUTO_SPLIT
    if method is DataSplitMethod.AUTO_SPLIT and row_count is None:
        raise SqlBuildError("AUTO_SPLIT needs row_count (the snapshot's rows) to choose its eval fraction "
                            "the way BigQuery ML documents it")
    parse_model_type(model_type)
    return plan_split(method, row_count or 0, eval_fraction=options.data_split_eval_fraction,
                      split_column=options.data_split_col, key_column=row_key_column)


# ---------------------------------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------------------------------

def create_model_sql(
    model_fqn: str,
    model_type: str | ModelType,
    options: ModelOptions | Mapping[str, Any] | None,
    feature_columns: Sequence[str],
    label_column: str,
    source_table: str,
    *,
    row_count: int | None = None,
    row_key_column: str = ROW_KEY_COLUMN,
) -> str:
    """`CREATE OR REPLACE MODEL ... OPTIONS(...) AS SELECT features, label[, eval flag] FROM source`."""
    kind = parse_model_type(model_type)
    parsed = parse_model_options(kind, options)
    _check_columns(feature_columns, label_column)
    plan = split_plan_for(kind, parsed, row_count=row_count, row_key_column=row_key_column)
    predicate = eval_predicate_sql(plan)
    rendered = [("model_type", sql_literal(kind.value)), ("input_label_cols", sql_literal([label_column]))]
    rendered += [(name, _option_literal(name, value)) for name, value in parsed.explicit().items()
                 if name not in _SPLIT_OPTIONS and name != "input_label_cols"]
    if predicate is None:
        rendered.append(("data_split_method", sql_literal("NO_SPLIT")))
    else:
        rendered += [("data_split_method", sql_literal("CUSTOM")),
                     ("data_split_col", sql_literal(EVAL_FLAG_COLUMN))]
    select = [quote_column(column) for column in (*feature_columns, label_column)]
    if predicate is not None:
        select.append(f"{predicate} AS {quote_column(EVAL_FLAG_COLUMN)}")
    return (
        f"CREATE OR REPLACE MODEL {quote_qualified(model_fqn)}\n"
        "OPTIONS (\n" + ",\n".join(f"  {name} = {value}" for name, value in rendered) + "\n) AS\n"
        "SELECT\n" + ",\n".join(f"  {item}" for item in select) + "\n"
        f"FROM {quote_qualified(source_table)}"
    )


def eval_rows_sql(
    source_table: str,
    model_type: str | ModelType,
    options: ModelOptions | Mapping[str, Any] | None,
    feature_columns: Sequence[str],
    label_column: str,
    *,
    row_count: int | None = None,
    row_key_column: str = ROW_KEY_COLUMN,
) -> str:
    """The eval rows of a training run (features and label), to evaluate a candidate and the champion on."""
    kind = parse_model_type(model_type)
    parsed = parse_model_options(kind, options)
    _check_columns(feature_columns, label_column)
    columns = ", ".join(quote_column(column) for column in (*feature_columns, label_column))
    predicate = eval_predicate_sql(split_plan_for(kind, parsed, row_count=row_count, row_key_column=row_key_column))
    if predicate is None:  # NO_SPLIT: evaluation on the training rows
        return f"SELECT {columns}\nFROM {quote_qualified(source_table)}"
    flag = quote_column(EVAL_FLAG_COLUMN)
    return (f"SELECT {columns}\nFROM (\n  SELECT {columns}, {predicate} AS {flag}\n"
            f"  FROM {quote_qualified(source_table)}\n)\nWHERE {flag}")


def evaluate_sql(model_fqn: str, eval_table_or_query: str | None = None, *, threshold: float | None = None) -> str:
    """`SELECT * FROM ML.EVALUATE(MODEL m[, TABLE t | (query)][, STRUCT(threshold)])`. Without input,
    BigQuery ML evaluates on the model's own eval split."""
    arguments = [f"MODEL {quote_qualified(model_fqn)}"]
    if eval_table_or_query is not None:
        arguments.append(_table_or_query(eval_table_or_query))
    if threshold is not None:
        if eval_table_or_query is None:
            raise SqlBuildError("ML.EVALUATE takes a threshold only together with input data")
        arguments.append(f"STRUCT({_threshold(threshold)} AS threshold)")
    return "SELECT *\nFROM ML.EVALUATE(" + ", ".join(arguments) + ")"


def predict_sql(model_fqn: str, table_or_query: str, *, threshold: float | None = None) -> str:
    """`SELECT * FROM ML.PREDICT(MODEL m, TABLE t | (query)[, STRUCT(threshold)])`."""
    arguments = [f"MODEL {quote_qualified(model_fqn)}", _table_or_query(table_or_query)]
    if threshold is not None:
        arguments.append(f"STRUCT({_threshold(threshold)} AS threshold)")
    return "SELECT *\nFROM ML.PREDICT(" + ", ".join(arguments) + ")"


def _threshold(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise SqlBuildError(f"threshold must be a number in [0, 1], got {value!r}")
    return sql_literal(float(value))


def _option_literal(name: str, value: Any) -> str:
    if name == "class_weights":
        # BigQuery ML's form: [STRUCT('label', weight), ...]
        return "[" + ", ".join(f"STRUCT({sql_string(label)}, {sql_literal(float(weight))})"
                               for label, weight in value.items()) + "]"
    return sql_literal(value)


def _check_columns(feature_columns: Sequence[str], label_column: str) -> None:
    if not feature_columns:
        raise SqlBuildError("no feature columns")
    if label_column in feature_columns:
        raise SqlBuildError(f"label {label_column!r} is also a feature")
    if EVAL_FLAG_COLUMN in (*feature_columns, label_column):
        raise SqlBuildError(f"{EVAL_FLAG_COLUMN!r} is reserved for the split")


# ---------------------------------------------------------------------------------------------------
# Reading the trained model out: weights, feature statistics, export; and its lifetime
# ---------------------------------------------------------------------------------------------------

def weights_sql(model_fqn: str) -> str:
    """`ML.WEIGHTS` with STANDARDIZE => FALSE: weights on the raw, unstandardized features (what serving
    multiplies request values by), one row per processed_input (and class_label when multiclass)."""
    return f"SELECT *\nFROM ML.WEIGHTS(MODEL {quote_qualified(model_fqn)}, STRUCT(FALSE AS standardize))"


def feature_info_sql(model_fqn: str) -> str:
    """`ML.FEATURE_INFO`: per input, min/max/mean/median/stddev/category_count/null_count of the
    training data; the mean is what BigQuery ML imputes a NULL numeric input with."""
    return f"SELECT *\nFROM ML.FEATURE_INFO(MODEL {quote_qualified(model_fqn)})"


def export_model_sql(model_fqn: str, destination_uri: str) -> str:
    """`EXPORT MODEL m OPTIONS(URI = 'gs://...')`: for boosted trees and random forests, an XGBoost
    booster with its assets (feature order, vocabularies) in that Cloud Storage folder."""
    if not destination_uri.startswith("gs://"):
        raise SqlBuildError(f"EXPORT MODEL writes to Cloud Storage, not {destination_uri[:100]!r}")
    return f"EXPORT MODEL {quote_qualified(model_fqn)}\nOPTIONS (URI = {sql_string(destination_uri)})"


def expire_model_sql(model_fqn: str) -> str:
    """`ALTER MODEL ... SET OPTIONS(expiration_timestamp = ...)` @expire_days days from now (an INT64
    query parameter). CREATE MODEL has no expiration option; ALTER MODEL does."""
    return (f"ALTER MODEL IF EXISTS {quote_qualified(model_fqn)}\n"
            "SET OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @expire_days DAY))")


def distinct_labels_sql(source_table: str, label_column: str) -> str:
    """The labels a classifier was trained on (a binary model's ML.WEIGHTS does not name them)."""
    label = quote_column(label_column)
    return (f"SELECT DISTINCT {label} AS label\nFROM {quote_qualified(source_table)}\n"
            f"WHERE {label} IS NOT NULL\nORDER BY label")

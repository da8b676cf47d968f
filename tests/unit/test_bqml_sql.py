import pytest

from mlops.adapters.bqml import create_model_sql, eval_rows_sql, evaluate_sql, predict_sql
from mlops.core.sql import SqlBuildError, quote_column, quote_qualified, sql_literal, sql_string
from mlops.ml.errors import ModelOptionsError
from mlops.ml.options import LearnRateStrategy

FEATURES = ["sex", "length"]


def test_create_model_renders_options_and_the_stable_random_split():
    sql = create_model_sql(
        "proj-1.demo.abalone_model", "BOOSTED_TREE_CLASSIFIER",
        {"max_iterations": 50, "learn_rate": 0.1, "early_stop": False, "class_weights": {0: 1, 1: 2.5},
         "data_split_method": "random", "data_split_eval_fraction": 0.25},
        FEATURES, "rings_above_9", "proj-1.demo.abalone")
    assert sql == """\
CREATE OR REPLACE MODEL `proj-1.demo.abalone_model`
OPTIONS (
  model_type = 'BOOSTED_TREE_CLASSIFIER',
  input_label_cols = ['rings_above_9'],
  max_iterations = 50,
  learn_rate = 0.1,
  early_stop = FALSE,
  class_weights = [STRUCT('0', 1.0), STRUCT('1', 2.5)],
  data_split_method = 'CUSTOM',
  data_split_col = '_mlops_is_eval'
) AS
SELECT
  `sex`,
  `length`,
  `rings_above_9`,
  ABS(MOD(FARM_FINGERPRINT(CAST(`_row_id` AS STRING)), 10000)) < 2500 AS `_mlops_is_eval`
FROM `proj-1.demo.abalone`"""


def test_auto_split_needs_the_row_count_and_follows_the_documented_rule():
    with pytest.raises(SqlBuildError, match="row_count"):
        create_model_sql("d.m", "LOGISTIC_REG", {}, ["a"], "y", "d.t")
    small = create_model_sql("d.m", "LOGISTIC_REG", {}, ["a"], "y", "d.t", row_count=499)
    assert "data_split_method = 'NO_SPLIT'" in small and "_mlops_is_eval" not in small
    large = create_model_sql("d.m", "LOGISTIC_REG", {}, ["a"], "y", "d.t", row_count=60_000)
    assert "10000)) < 1667 AS `_mlops_is_eval`" in large


def test_seq_and_custom_splits_become_custom_over_the_same_predicate():
    seq = create_model_sql("d.m", "LINEAR_REG", {"data_split_method": "SEQ", "data_split_col": "ts",
                                                 "learn_rate_strategy": LearnRateStrategy.CONSTANT, "learn_rate": 0.2},
                           ["a"], "y", "d.t")
    assert "  learn_rate = 0.2,\n  learn_rate_strategy = 'CONSTANT',\n" in seq
    assert ("  ROW_NUMBER() OVER (ORDER BY `ts`, `_row_id`) > COUNT(*) OVER () - "
            "CAST(ROUND(COUNT(*) OVER () * 0.2) AS INT64) AS `_mlops_is_eval`\n") in seq
    custom = create_model_sql("d.m", "LOGISTIC_REG", {"data_split_method": "CUSTOM", "data_split_col": "holdout"},
                              ["a"], "y", "d.t")
    assert "  COALESCE(`holdout`, TRUE) AS `_mlops_is_eval`\n" in custom


def test_invalid_options_are_refused_before_any_sql():
    with pytest.raises(ModelOptionsError, match="max_tree_depth"):
        create_model_sql("d.m", "LOGISTIC_REG", {"max_tree_depth": 3}, ["a"], "y", "d.t", row_count=10)


def test_eval_rows_select_the_same_predicate():
    assert eval_rows_sql("d.t", "LOGISTIC_REG", {"data_split_method": "RANDOM"}, ["a", "b"], "y") == """\
SELECT `a`, `b`, `y`
FROM (
  SELECT `a`, `b`, `y`, ABS(MOD(FARM_FINGERPRINT(CAST(`_row_id` AS STRING)), 10000)) < 2000 AS `_mlops_is_eval`
  FROM `d.t`
)
WHERE `_mlops_is_eval`"""
    assert eval_rows_sql("d.t", "LOGISTIC_REG", {"data_split_method": "NO_SPLIT"}, ["a"], "y") == \
        "SELECT `a`, `y`\nFROM `d.t`"


def test_evaluate_sql_forms():
    assert evaluate_sql("p.d.m") == "SELECT *\nFROM ML.EVALUATE(MODEL `p.d.m`)"
    assert evaluate_sql("p.d.m", "p.d.eval") == "SELECT *\nFROM ML.EVALUATE(MODEL `p.d.m`, TABLE `p.d.eval`)"
    assert evaluate_sql("d.m", "SELECT a, y FROM `d.t`", threshold=0.5) == (
        "SELECT *\nFROM ML.EVALUATE(MODEL `d.m`, (\nSELECT a, y FROM `d.t`\n), STRUCT(0.5 AS threshold))")
    with pytest.raises(SqlBuildError, match="threshold"):
        evaluate_sql("d.m", "d.t", threshold=2)


def test_predict_sql_forms():
    assert predict_sql("d.m", "d.new_rows") == "SELECT *\nFROM ML.PREDICT(MODEL `d.m`, TABLE `d.new_rows`)"
    assert predict_sql("d.m", "WITH x AS (SELECT 1 AS a) SELECT * FROM x", threshold=0.3) == (
        "SELECT *\nFROM ML.PREDICT(MODEL `d.m`, (\nWITH x AS (SELECT 1 AS a) SELECT * FROM x\n), "
        "STRUCT(0.3 AS threshold))")


@pytest.mark.parametrize(("value", "literal"), [
    (None, "NULL"), (True, "TRUE"), (False, "FALSE"), (3, "3"), (0.25, "0.25"), (1e-05, "1e-05"),
    ("LINE_SEARCH", "'LINE_SEARCH'"), (LearnRateStrategy.CONSTANT, "'CONSTANT'"), (["a", "b"], "['a', 'b']"),
    ((1, 2.5), "[1, 2.5]"),
])
def test_sql_literals(value, literal):
    assert sql_literal(value) == literal


def test_strings_are_escaped():
    assert sql_string("it's a \\ path\nwith\ttabs\x01") == "'it\\'s a \\\\ path\\nwith\\ttabs\\x01'"
    with pytest.raises(SqlBuildError):
        sql_literal(float("nan"))


@pytest.mark.parametrize("name", ["a`b", "a b", "1abc", "x; DROP TABLE t", ""])
def test_unsafe_column_names_are_refused(name):
    with pytest.raises(SqlBuildError):
        quote_column(name)


@pytest.mark.parametrize("name", ["t", "d.t`", "d.t; DROP", "`d.t`", "a.b.c.d"])
def test_unsafe_table_ids_are_refused(name):
    with pytest.raises(SqlBuildError):
        quote_qualified(name)


def test_column_injection_through_create_model_is_refused():
    with pytest.raises(SqlBuildError):
        create_model_sql("d.m", "LOGISTIC_REG", {"data_split_method": "NO_SPLIT"}, ["a`, (SELECT 1) AS `b"], "y", "d.t")

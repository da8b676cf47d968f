"""Hostile names never become SQL: refused by the spec at `mlops pipeline apply`, and by the one
quoting function (mlops.core.sql) if anything slips past a spec.

The payloads are the two that reached the warehouse before (a DROP TABLE smuggled in a feature name,
a label that re-pointed the trainer's FROM) and sqlmap-style classics: quote breaking, comments,
stacked statements, UNION, boolean and time-based blind, encodings.
"""

from __future__ import annotations

import re

import pytest

from mlops.adapters.bqml import create_model_sql, eval_rows_sql
from mlops.core.spec import SpecError, parse_spec
from mlops.core.sql import SqlBuildError, quote_column, quote_qualified
from mlops.ml.errors import ModelOptionsError
from mlops.ml.options import parse_model_options

PAYLOADS = [
    "length` FROM `mlops-local.mlops.abalone`; DROP TABLE `mlops-local.mlops.sqli_canary`; SELECT `length",
    "y` FROM `mlops.labels` -- ",
    "x`; DELETE FROM mlops.predictions WHERE TRUE; --",
    "a' OR '1'='1",
    "a\" OR \"1\"=\"1",
    "1 OR 1=1",
    "x) UNION ALL SELECT * FROM `mlops.events` --",
    "x/**/UNION/**/SELECT/**/1",
    "x; SELECT SLEEP(5)",
    "x AND (SELECT 1 FROM (SELECT COUNT(*), CONCAT(0x7e, USER())) a)",
    "x%60; DROP TABLE t",
    "x\\`; DROP TABLE t",
    "x`\nDROP TABLE t",
    "x\u0060 DROP",
    "ｘ`",  # a full-width letter: BigQuery would accept it quoted, the loop does not
    "",
    " ",
    "9col",
    "a-b",
    "a.b",
]
IDS = [f"p{i}" for i in range(len(PAYLOADS))]

SPEC = """
name: sqli
source: {{table: {table}, label: {label}, features: [{feature}]}}
model: {{type: LOGISTIC_REG, options: {{data_split_method: {split}, data_split_col: {split_col}}}}}
promotion: {{metric: roc_auc, minimum: 0.5}}
"""


def _yaml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _spec(table: str = "t", label: str = "y", feature: str = "f", split: str = "NO_SPLIT",
          split_col: str | None = None) -> str:
    return SPEC.format(table=_yaml(table), label=_yaml(label), feature=_yaml(feature), split=split,
                       split_col=_yaml(split_col) if split_col is not None else "null")


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
@pytest.mark.parametrize("where", ["label", "feature", "table"])
def test_a_spec_naming_a_hostile_column_or_table_is_refused_at_apply(payload: str, where: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(_spec(**{where: payload}), "sqli.yaml")
    assert any(f"source.{where if where != 'feature' else 'features.0'}" in p for p in refused.value.problems), \
        refused.value.problems


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_a_hostile_split_column_is_refused_at_apply(payload: str) -> None:
    spec = parse_spec(_spec(split="CUSTOM", split_col=payload), "sqli.yaml")  # options are the model's
    with pytest.raises(ModelOptionsError) as refused:  # ... and `pipeline apply` checks them next
        parse_model_options(spec.model.type, spec.model.options)
    assert any("data_split_col" in p for p in refused.value.problems), refused.value.problems


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if p], ids=[i for i, p in zip(IDS, PAYLOADS) if p])
def test_the_sql_builder_refuses_a_hostile_split_column_that_skipped_the_spec(payload: str) -> None:
    options = parse_model_options("LOGISTIC_REG", {"data_split_method": "CUSTOM", "data_split_col": "ok"})
    smuggled = options.model_copy(update={"data_split_col": payload})  # no validation, as if forged
    with pytest.raises(SqlBuildError):
        create_model_sql("p.d.m", "LOGISTIC_REG", smuggled, ["f"], "y", "p.d.t")


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_the_quoting_function_refuses_every_payload(payload: str) -> None:
    with pytest.raises(SqlBuildError):
        quote_column(payload)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", payload):  # a table id may also start with a digit or hold '-'
        with pytest.raises(SqlBuildError):
            quote_qualified(f"mlops-local.mlops.{payload}")
        with pytest.raises(SqlBuildError):
            eval_rows_sql(f"p.d.{payload}", "LOGISTIC_REG", parse_model_options("LOGISTIC_REG", {}), ["f"], "y")


def test_plain_names_pass_and_come_back_backtick_quoted() -> None:
    assert quote_column("shell_weight") == "`shell_weight`"
    assert quote_column("_row_id") == "`_row_id`"
    assert quote_qualified("mlops-local.mlops_snapshots.abalone__d0001") == "`mlops-local.mlops_snapshots.abalone__d0001`"
    spec = parse_spec(_spec(label="rings_above_9", feature="whole_weight"), "ok.yaml")
    assert (spec.source.label, spec.source.features) == ("rings_above_9", ["whole_weight"])

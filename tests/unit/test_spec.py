"""The pipeline spec: a valid YAML parses; every bad field is named by its path, all at once."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from pydantic import ValidationError

from mlops.core.spec import (
    CLASSIFIER_METRICS,
    MODEL_TYPES,
    REGRESSOR_METRICS,
    PipelineSpec,
    SpecError,
    load_spec,
    parse_spec,
    snapshot_table_id,
    spec_problems,
)
from mlops.ports.specs import SpecStore, UnknownPipeline
from mlops.testing.memory import InMemoryBlobStore

from .conftest import spec_data

VALID = textwrap.dedent("""\
    name: breast-cancer
    source:
      table: breast_cancer
      label: malignant
      features: [mean_radius, mean_texture, mean_area]
    model:
      type: LOGISTIC_REG
      options: {l2_reg: 1.0, max_iterations: 200}
    retrain:
      new_rows_fraction: 0.25
      drift_psi: 0.2
      schedule_seconds: 60
    promotion:
      metric: roc_auc
      minimum: 0.9
      min_gain: 0.005
    deployment:
      canary_percent: 10
""")


def problems_of(text_or_data) -> list[str]:
    text = text_or_data if isinstance(text_or_data, str) else yaml.safe_dump(text_or_data)
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "spec.yaml")
    assert "spec.yaml" in str(caught.value)
    return caught.value.problems


def paths_of(problems: list[str]) -> set[str]:
    return {p.split(":", 1)[0] for p in problems}


def test_a_valid_spec_parses_with_defaults_filled():
    spec = parse_spec(VALID)
    assert spec.name == "breast-cancer"
    assert spec.source.features == ["mean_radius", "mean_texture", "mean_area"]
    assert spec.model.type == "LOGISTIC_REG" and spec.model.is_classifier
    assert spec.model.options == {"l2_reg": 1.0, "max_iterations": 200}
    assert spec.model.seed == 42
    assert (spec.retrain.new_rows_fraction, spec.retrain.drift_psi, spec.retrain.min_rows) == (0.25, 0.2, 50)
    assert spec.retrain.new_rows_min is None
    assert (spec.promotion.metric, spec.promotion.minimum, spec.promotion.min_gain) == ("roc_auc", 0.9, 0.005)
    assert (spec.deployment.canary_percent, spec.deployment.keep_previous) == (10, True)
    assert spec.endpoint_name == "breast-cancer" and spec.model_id == "breast-cancer"


def test_the_smallest_spec_takes_every_default():
    spec = parse_spec(yaml.safe_dump({
        "name": "tiny", "source": {"table": "t", "label": "y", "features": ["x"]},
        "model": {"type": "LINEAR_REG"}, "promotion": {"metric": "mean_absolute_error"},
    }))
    assert spec.retrain.new_rows_fraction == 0.1
    assert spec.deployment.canary_percent == 0 and spec.deployment.endpoint is None
    assert not spec.model.is_classifier


def test_to_yaml_round_trips():
    spec = parse_spec(VALID)
    assert parse_spec(spec.to_yaml()) == spec


def test_load_spec_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\n")
    with pytest.raises(SpecError, match="bad.yaml"):
        load_spec(path)
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    assert load_spec(good).name == "breast-cancer"


@pytest.mark.parametrize(("change", "path"), [
    ({"promotion": {"metric": 3}}, "promotion.metric"),
    ({"promotion": {"min_gain": -0.1}}, "promotion.min_gain"),
    ({"model": {"type": "RANDOM_FOREST"}}, "model.type"),
    ({"model": {"seed": "lucky"}}, "model.seed"),
    ({"source": {"features": []}}, "source.features"),
    ({"source": {"table": "my-table"}}, "source.table"),
    ({"retrain": {"new_rows_fraction": 0}}, "retrain.new_rows_fraction"),
    ({"retrain": {"min_rows": 5}}, "retrain.min_rows"),
    ({"retrain": {"schedule_seconds": 1}}, "retrain.schedule_seconds"),
    ({"deployment": {"canary_percent": 100}}, "deployment.canary_percent"),
    ({"deployment": {"canary_percent": -1}}, "deployment.canary_percent"),
    ({"name": "Breast Cancer"}, "name"),
    ({"name": "x"}, "name"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_field_is_named_by_its_path(change, path):
    assert path in paths_of(problems_of(spec_data(**change)))


@pytest.mark.parametrize(("data", "path"), [
    (spec_data(colour="blue"), "colour"),
    (spec_data(model={"learning_rate": 0.1}), "model.learning_rate"),
    (spec_data(promotion={"metrc": "roc_auc"}), "promotion.metrc"),
    (spec_data(deployment={"canary": 10}), "deployment.canary"),
], ids=["top", "model", "promotion", "deployment"])
def test_an_unknown_key_is_refused_by_its_path(data, path):
    problems = problems_of(data)
    assert path in paths_of(problems)
    assert any("Extra inputs are not permitted" in p for p in problems)


def test_missing_sections_are_all_named():
    data = spec_data()
    for key in ("source", "model", "promotion"):
        del data[key]
    assert paths_of(problems_of(data)) == {"source", "model", "promotion"}


def test_every_bad_field_is_listed_at_once():
    data = spec_data(model={"type": "RANDOM_FOREST"}, retrain={"min_rows": 1}, deployment={"canary_percent": 200},
                     source={"features": []}, extra_key=1)
    assert {"model.type", "retrain.min_rows", "deployment.canary_percent", "source.features",
            "extra_key"} <= paths_of(problems_of(data))


def test_the_model_type_error_lists_the_choices():
    [problem] = problems_of(spec_data(model={"type": "RANDOM_FOREST"}))
    for model_type in MODEL_TYPES:
        assert model_type in problem


@pytest.mark.parametrize(("model_type", "metric"), [
    ("LINEAR_REG", "roc_auc"), ("BOOSTED_TREE_REGRESSOR", "accuracy"),
    ("LOGISTIC_REG", "mean_absolute_error"), ("BOOSTED_TREE_CLASSIFIER", "r2_score"), ("LOGISTIC_REG", "auc"),
])
def test_a_metric_the_model_type_does_not_report_is_explained(model_type, metric):
    [problem] = problems_of(spec_data(model={"type": model_type}, promotion={"metric": metric}))
    assert "promotion.metric" in problem and repr(metric) in problem and model_type in problem
    allowed = CLASSIFIER_METRICS if model_type in ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER") else REGRESSOR_METRICS
    assert all(name in problem for name in allowed)  # the choices are offered


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_metric_of_a_model_type_is_accepted(model_type):
    allowed = CLASSIFIER_METRICS if model_type in ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER") else REGRESSOR_METRICS
    for metric in allowed:
        parse_spec(yaml.safe_dump(spec_data(model={"type": model_type}, promotion={"metric": metric})))


def test_the_label_listed_as_a_feature_is_refused():
    [problem] = problems_of(spec_data(source={"label": "mean_radius"}))
    assert problem.startswith("source")
    assert "'mean_radius' is also listed as a feature" in problem


def test_system_columns_cannot_be_features():
    [problem] = problems_of(spec_data(source={"features": ["mean_radius", "_row_id", "_ingested_at"]}))
    assert problem.startswith("source") and "_row_id" in problem and "_ingested_at" in problem


@pytest.mark.parametrize("text", ["name: [unclosed", "- just\n- a list\n", "42", ""],
                         ids=["yaml", "list", "scalar", "empty"])
def test_text_that_is_not_a_yaml_mapping_is_refused(text):
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(("not YAML", "expected a mapping"))


def test_specs_are_frozen():
    spec = parse_spec(VALID)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(Exception):
        spec.promotion.metric = "accuracy"  # type: ignore[misc]


def test_a_custom_endpoint_name_is_used():
    assert PipelineSpec.model_validate(spec_data(deployment={"endpoint": "shared"})).endpoint_name == "shared"


# ---------------------------------------------------------------------------------------------- spec store

def test_spec_store_puts_gets_and_lists_specs():
    blobs = InMemoryBlobStore("b")
    store = SpecStore(blobs, cache_seconds=0)
    spec = parse_spec(VALID)
    assert store.put(spec) == "gs://b/specs/breast-cancer.yaml"
    assert store.get("breast-cancer") == spec
    assert store.names() == ["breast-cancer"]
    with pytest.raises(UnknownPipeline, match="iris"):
        store.get("iris")


def test_spec_store_sees_a_changed_spec_once_its_cache_expires():
    blobs = InMemoryBlobStore("b")
    store = SpecStore(blobs, cache_seconds=3600)
    spec = parse_spec(VALID)
    store.put(spec)
    assert store.get("breast-cancer").promotion.minimum == 0.9
    changed = spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"minimum": 0.5})})
    blobs.put("specs/breast-cancer.yaml", changed.to_yaml().encode())  # written by another process
    assert store.get("breast-cancer").promotion.minimum == 0.9  # cached
    assert SpecStore(blobs, cache_seconds=0).get("breast-cancer").promotion.minimum == 0.5
    store.put(changed)  # a put through the store drops its cache entry
    assert store.get("breast-cancer").promotion.minimum == 0.5


def test_a_fresh_read_sees_a_spec_another_process_applied_within_the_cache_time():
    blobs = InMemoryBlobStore("b")
    store = SpecStore(blobs, cache_seconds=3600)
    spec = parse_spec(VALID)
    store.put(spec)
    assert store.get("breast-cancer").source.label == "malignant"
    fixed = spec.model_copy(update={"source": spec.source.model_copy(update={"label": "is_malignant"})})
    blobs.put("specs/breast-cancer.yaml", fixed.to_yaml().encode())  # `mlops pipeline apply`, elsewhere
    assert store.get("breast-cancer", fresh=True).source.label == "is_malignant"
    assert store.get("breast-cancer").source.label == "is_malignant"  # and the cache holds the fresh one


def test_a_bad_spec_in_the_bucket_is_reported_with_its_path():
    blobs = InMemoryBlobStore("b")
    blobs.put("specs/broken.yaml", b"name: broken\n")
    with pytest.raises(SpecError, match="specs/broken.yaml"):
        SpecStore(blobs).get("broken")


# ---------------------------------------------------------------------- a spec against its table's columns

TABLE_COLUMNS = [("_row_id", "STRING"), ("_ingested_at", "TIMESTAMP"), ("mean_radius", "FLOAT64"),
                 ("mean_texture", "INT64"), ("smoker", "BOOL"), ("site", "STRING"), ("malignant", "INT64")]


def test_a_spec_that_fits_its_table_has_no_problems():
    spec = PipelineSpec.model_validate(spec_data(source={"features": ["mean_radius", "mean_texture", "smoker", "site"]}))
    assert spec_problems(spec, TABLE_COLUMNS) == []
    legacy = [("mean_radius", "FLOAT"), ("mean_texture", "INTEGER"), ("smoker", "BOOLEAN"), ("site", "STRING"),
              ("malignant", "INTEGER")]  # the names BigQuery's API answers with
    assert spec_problems(spec, legacy) == []


def test_missing_columns_are_each_named_with_a_near_name_and_the_table_listed_once():
    spec = PipelineSpec.model_validate(spec_data(source={"label": "Malignant", "features": ["mean_radius", "mean_txture",
                                                                                          "zzz"]}))
    assert spec_problems(spec, TABLE_COLUMNS) == [
        "label column 'Malignant' (did you mean 'malignant'?) is not in table breast_cancer",
        "feature columns 'mean_txture' (did you mean 'mean_texture'?), 'zzz' are not in table breast_cancer",
        "table breast_cancer has columns: mean_radius, mean_texture, smoker, site, malignant",
    ]
    one = PipelineSpec.model_validate(spec_data(source={"features": ["mean_radius", "radius"]}))
    assert spec_problems(one, TABLE_COLUMNS)[0] == "feature column 'radius' is not in table breast_cancer"


def test_a_wide_table_is_listed_in_part():
    spec = PipelineSpec.model_validate(spec_data(source={"label": "y", "features": ["nope"]}))
    wide = [(f"c{n:03d}", "FLOAT64") for n in range(40)] + [("y", "INT64")]
    [_, listing] = spec_problems(spec, wide)
    assert listing.startswith("table breast_cancer has columns: c000, c001") and listing.endswith("and 16 more")


@pytest.mark.parametrize(("model_type", "label_type", "feature_type", "problems"), [
    ("LOGISTIC_REG", "STRING", "FLOAT64", []),
    ("LOGISTIC_REG", "BOOL", "NUMERIC", []),
    ("LOGISTIC_REG", "FLOAT64", "BIGNUMERIC", []),
    ("LINEAR_REG", "FLOAT64", "STRING", []),
    ("LINEAR_REG", "STRING", "FLOAT64", ["label 'y' is STRING: a LINEAR_REG label must be numeric"]),
    ("BOOSTED_TREE_REGRESSOR", "BOOL", "FLOAT64", ["label 'y' is BOOL: a BOOSTED_TREE_REGRESSOR label must be numeric"]),
    ("LOGISTIC_REG", "TIMESTAMP", "FLOAT64",
     ["label 'y' is TIMESTAMP: a LOGISTIC_REG label must be numeric, STRING or BOOL"]),
    ("LOGISTIC_REG", "INT64", "TIMESTAMP", ["feature 'x' is TIMESTAMP: features must be numeric, STRING or BOOL"]),
    ("LOGISTIC_REG", "INT64", "ARRAY", ["feature 'x' is ARRAY: features must be numeric, STRING or BOOL"]),
])
def test_column_types_a_model_cannot_use_are_named(model_type, label_type, feature_type, problems):
    metric = "roc_auc" if model_type in ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER") else "mean_absolute_error"
    spec = PipelineSpec.model_validate(spec_data(source={"label": "y", "features": ["x"]}, model={"type": model_type},
                                                 promotion={"metric": metric, "min_gain": 0.0}))
    assert spec_problems(spec, [("x", feature_type), ("y", label_type)]) == problems


def test_a_pipeline_name_is_a_snapshot_table_id_no_other_pipeline_shares():
    assert snapshot_table_id("breast-cancer", "d0003") == "breast_cancer__d0003"
    assert snapshot_table_id("breast-cancer-2", "d0003") == "breast_cancer_2__d0003"
    with pytest.raises(ValueError):
        snapshot_table_id("Bad_Name", "d0001")
    with pytest.raises(ValueError):
        snapshot_table_id("fine", "d1; DROP")


def test_the_fingerprint_follows_source_model_and_gate_only():
    base = PipelineSpec.model_validate(spec_data())
    same = [spec_data(retrain={"new_rows_fraction": 0.9}), spec_data(deployment={"canary_percent": 20}),
            spec_data(promotion={"tolerance": 0.0})]  # a default written out is the same spec
    different = [spec_data(source={"features": ["mean_radius"]}), spec_data(model={"options": {"l2_reg": 2.0}}),
                 spec_data(model={"seed": 7}), spec_data(promotion={"minimum": 0.7})]
    assert {PipelineSpec.model_validate(d).fingerprint for d in same} == {base.fingerprint}
    assert base.fingerprint not in {PipelineSpec.model_validate(d).fingerprint for d in different}
    assert len(base.fingerprint) == 16


def test_a_tolerance_replaces_min_gain_and_cannot_join_it():
    spec = PipelineSpec.model_validate(spec_data(promotion={"min_gain": 0.0, "tolerance": 0.002}))
    assert (spec.promotion.min_gain, spec.promotion.tolerance) == (0.0, 0.002)
    with pytest.raises(ValidationError, match="set min_gain .* or tolerance .* not both"):
        PipelineSpec.model_validate(spec_data(promotion={"min_gain": 0.01, "tolerance": 0.002}))
    with pytest.raises(ValidationError, match="tolerance"):
        PipelineSpec.model_validate(spec_data(promotion={"min_gain": 0.0, "tolerance": -0.1}))

"""The compiled serving path gives scikit-learn's predictions and scores, for every model type."""

from __future__ import annotations

import math

import pytest

from mlops.ml.datasets import load_demo_dataset
from mlops.ml.errors import InvalidInstancesError
from mlops.ml.fastpath import compile_model
from mlops.ml.training import train

DATA = load_demo_dataset()
FEATURES = DATA.feature_columns  # sex (categorical) + seven measurements
NUMERIC = [f for f in FEATURES if f != "sex"]


def rows_with_gaps(rows):
    """Real rows, plus NULLs and a category never seen in training, as production sends them."""
    out = [{f: r[f] for f in FEATURES} for r in rows]
    out[0]["length"] = None
    out[1]["sex"] = None
    out[2]["sex"] = "unknown-sex"
    return out


CASES = [
    ("LOGISTIC_REG", {"l2_reg": 0.1, "max_iterations": 50}, DATA.label_column, FEATURES),
    ("LOGISTIC_REG", {"max_iterations": 50}, "sex", NUMERIC),  # multiclass: M / F / I
    ("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 25, "max_tree_depth": 5}, DATA.label_column, FEATURES),
    ("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 10}, "sex", NUMERIC),
    ("LINEAR_REG", {"l2_reg": 1.0}, "rings", FEATURES),
    ("BOOSTED_TREE_REGRESSOR", {"max_iterations": 25}, "rings", FEATURES),
]


@pytest.mark.parametrize(("model_type", "options", "label", "features"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_compiled_predictions_equal_scikit_learn(model_type, options, label, features):
    model = train(model_type, options, DATA.rows[:1500], features, label, seed=7)
    compiled = compile_model(model)
    assert compiled is not None
    rows = [{f: r[f] for f in features} for r in rows_with_gaps(DATA.rows[1500:1900])]
    expected_labels, expected_scores = model.predict(rows)
    labels, scores = compiled.predict(rows)
    if model.is_classifier:
        assert labels == expected_labels
        assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(scores, expected_scores, strict=True))
    else:
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(labels, expected_labels, strict=True))


def test_compiled_model_refuses_instances_that_do_not_fit_with_every_problem():
    model = train("LOGISTIC_REG", {"max_iterations": 20}, DATA.rows[:500], FEATURES, DATA.label_column)
    compiled = compile_model(model)
    with pytest.raises(InvalidInstancesError) as refused:
        compiled.predict([{"sex": 3}])
    assert len(refused.value.problems) == len(FEATURES)


def test_an_unrecognized_pipeline_is_not_compiled():
    model = train("LOGISTIC_REG", {"max_iterations": 20}, DATA.rows[:500], FEATURES, DATA.label_column)
    model.pipeline.steps.append(("extra", "passthrough"))
    assert compile_model(model) is None

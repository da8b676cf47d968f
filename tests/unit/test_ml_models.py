import math
import random

import pytest

from mlops.ml.datasets import load_demo_dataset
from mlops.ml.errors import (
    InvalidInstancesError,
    ModelOptionsError,
    TrainingDataError,
)
from mlops.ml.features import FeatureKind
from mlops.ml.options import ModelType, parse_model_options
from mlops.ml.training import build_estimator, split_for, train
from mlops.ml.trees import booster_params

FEATURES = ["size", "colour", "fresh"]


def toy_rows(count: int = 240, seed: int = 7, classes: int = 2) -> list[dict]:
    """A small problem with a numeric, a string and a bool feature, and a few NULLs."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        size = rng.gauss(0, 1)
        colour = rng.choice(["red", "green", "blue"])
        fresh = rng.random() < 0.5
        signal = size + (0.8 if colour == "red" else 0) + rng.gauss(0, 0.5)
        label = int(signal > 0.3) if classes == 2 else min(2, max(0, int(signal + 1)))
        rows.append({"_row_id": f"toy-{i}", "size": None if i % 37 == 0 else size,
                     "colour": None if i % 41 == 0 else colour, "fresh": fresh, "label": label,
                     "amount": 3 * size + rng.gauss(0, 0.3)})
    return rows


# --- options ---------------------------------------------------------------------------------------

def test_options_report_every_problem_by_name():
    with pytest.raises(ModelOptionsError) as error:
        parse_model_options("LOGISTIC_REG", {"l2_regg": 1.0, "max_iterations": 0, "early_stop": "yes"})
    problems = error.value.problems
    assert any("unknown option 'l2_regg'" in p and "did you mean 'l2_reg'" in p for p in problems)
    assert any(p.startswith("option 'max_iterations'") for p in problems)
    assert any(p.startswith("option 'early_stop'") for p in problems)


def test_options_refuse_what_the_model_type_does_not_take():
    with pytest.raises(ModelOptionsError, match="'max_tree_depth' does not apply to model type LOGISTIC_REG"):
        parse_model_options("LOGISTIC_REG", {"max_tree_depth": 4})
    with pytest.raises(ModelOptionsError, match="'auto_class_weights' does not apply"):
        parse_model_options("LINEAR_REG", {"auto_class_weights": True})


@pytest.mark.parametrize(("options", "message"), [
    ({"data_split_method": "SEQ"}, "'data_split_col' is required"),
    ({"data_split_col": "c"}, "only applies to data_split_method SEQ or CUSTOM"),
    ({"data_split_method": "NO_SPLIT", "data_split_eval_fraction": 0.1}, "only applies to data_split_method RANDOM"),
    ({"learn_rate": 0.1}, "needs learn_rate_strategy = 'CONSTANT'"),
    ({"auto_class_weights": True, "class_weights": {"1": 2.0}}, "exclude each other"),
    ({"l1_reg": True}, "must be a number"),
    ({"l2_reg": -1}, "greater than or equal to 0"),
    ({"data_split_method": "SOMETIMES"}, "option 'data_split_method'"),
    ({"model_type": "LOGISTIC_REG"}, "given by the model type"),
])
def test_options_reject_inconsistent_values(options, message):
    with pytest.raises(ModelOptionsError, match=message):
        parse_model_options("LOGISTIC_REG", options)


def test_option_names_and_enum_values_are_case_insensitive():
    options = parse_model_options("boosted_tree_classifier", {"DATA_SPLIT_METHOD": "random", "Learn_Rate": 0.1})
    assert options.data_split_method == "RANDOM" and options.learn_rate == 0.1
    assert options.explicit() == {"learn_rate": 0.1, "data_split_method": "RANDOM"}


def test_regularization_maps_onto_logistic_regression():
    labels = __import__("numpy").array([0, 1])
    ridge, _ = build_estimator(ModelType.LOGISTIC_REG, parse_model_options("LOGISTIC_REG", {"l2_reg": 0.5}),
                               seed=0, labels=labels)
    assert ridge.C == pytest.approx(1.0) and ridge.l1_ratio == 0 and ridge.solver == "lbfgs"
    mixed, _ = build_estimator(ModelType.LOGISTIC_REG,
                               parse_model_options("LOGISTIC_REG", {"l1_reg": 1.0, "l2_reg": 0.5}), seed=0, labels=labels)
    assert mixed.C == pytest.approx(0.5) and mixed.l1_ratio == pytest.approx(0.5) and mixed.solver == "saga"
    plain, _ = build_estimator(ModelType.LOGISTIC_REG, parse_model_options("LOGISTIC_REG", {}), seed=0, labels=labels)
    assert math.isinf(plain.C) and plain.max_iter == 20  # BigQuery ML defaults: no regularization, 20 iterations


def test_boosted_tree_options_map_onto_xgboost_parameters():
    options = parse_model_options("BOOSTED_TREE_CLASSIFIER", {
        "learn_rate": 0.1, "max_iterations": 40, "max_tree_depth": 3, "l1_reg": 0.5, "l2_reg": 2.0,
        "subsample": 0.8, "min_split_loss": 0.2, "min_tree_child_weight": 3, "colsample_bytree": 0.7,
        "num_parallel_tree": 2, "booster_type": "dart"})
    params, rounds = booster_params(ModelType.BOOSTED_TREE_CLASSIFIER, options, seed=3, num_class=2)
    assert rounds == 40
    assert {k: params[k] for k in ("eta", "max_depth", "alpha", "lambda", "subsample", "gamma", "min_child_weight",
                                   "colsample_bytree", "num_parallel_tree", "booster", "seed", "nthread")} == {
        "eta": 0.1, "max_depth": 3, "alpha": 0.5, "lambda": 2.0, "subsample": 0.8, "gamma": 0.2,
        "min_child_weight": 3.0, "colsample_bytree": 0.7, "num_parallel_tree": 2, "booster": "dart", "seed": 3,
        "nthread": 1}
    # BigQuery ML's exported predictor takes the arg-max of a probability vector, binary included.
    assert (params["objective"], params["num_class"]) == ("multi:softprob", 2)
    defaults, rounds = booster_params(ModelType.BOOSTED_TREE_REGRESSOR,
                                      parse_model_options("BOOSTED_TREE_REGRESSOR", {}), seed=0, num_class=None)
    assert (rounds, defaults["eta"], defaults["max_depth"], defaults["lambda"], defaults["objective"]) == (
        20, 0.3, 6, 1.0, "reg:squarederror")
    forest, rounds = booster_params(ModelType.RANDOM_FOREST_CLASSIFIER,
                                    parse_model_options("RANDOM_FOREST_CLASSIFIER", {}), seed=0, num_class=3)
    assert (rounds, forest["eta"], forest["num_parallel_tree"], forest["subsample"]) == (1, 1.0, 100, 0.8)


def test_early_stop_ends_boosting_when_progress_is_small():
    rows = toy_rows()
    stopped = train("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 200, "min_rel_progress": 0.2}, rows, FEATURES,
                    "label", seed=1)
    full = train("BOOSTED_TREE_CLASSIFIER", {"max_iterations": 30, "early_stop": False}, rows, FEATURES, "label",
                 seed=1)
    assert stopped.training.iterations < 200 and full.training.iterations == 30


# --- training and prediction -----------------------------------------------------------------------

def test_train_logistic_predicts_labels_and_positive_probabilities():
    model = train("LOGISTIC_REG", {"data_split_method": "RANDOM"}, toy_rows(), FEATURES, "label", seed=1)
    assert model.classes == (0, 1)
    assert [f.kind for f in model.features] == [FeatureKind.NUMERIC, FeatureKind.STRING, FeatureKind.BOOL]
    assert model.training.rows_train + model.training.rows_eval == 240 and model.training.rows_eval > 0
    labels, scores = model.predict([{"size": 2.0, "colour": "red", "fresh": True},
                                    {"size": -2.0, "colour": "blue", "fresh": None}])
    assert labels == [1, 0]
    assert scores[0] > 0.5 > scores[1]
    assert all(isinstance(label, int) for label in labels)


def test_training_is_deterministic_for_a_seed():
    rows = toy_rows()
    for model_type in ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER", "RANDOM_FOREST_CLASSIFIER"):
        first = train(model_type, {}, rows, FEATURES, "label", seed=5)
        second = train(model_type, {}, rows, FEATURES, "label", seed=5)
        assert first.predict(rows[:20], extra_columns_ok=True) == second.predict(rows[:20], extra_columns_ok=True)
        assert first.files == second.files  # the same bytes: a replay reproduces the checksum


@pytest.mark.parametrize("model_type", ["LINEAR_REG", "BOOSTED_TREE_REGRESSOR"])
def test_regressors_predict_values_without_scores(model_type):
    model = train(model_type, {"data_split_method": "NO_SPLIT"}, toy_rows(), FEATURES, "amount")
    values, scores = model.predict([{"size": 1.0, "colour": "red", "fresh": False}])
    assert model.classes is None and scores == [None]
    assert values[0] == pytest.approx(3.0, abs=1.0)


def test_multiclass_score_is_the_winning_probability():
    model = train("BOOSTED_TREE_CLASSIFIER", {}, toy_rows(classes=3), FEATURES, "label")
    assert model.classes == (0, 1, 2)
    labels, scores = model.predict([{"size": 0.1, "colour": "green", "fresh": True}])
    probabilities = model.predict_proba([{"size": 0.1, "colour": "green", "fresh": True}])[0]
    assert scores[0] == pytest.approx(max(probabilities))
    assert labels[0] == model.classes[int(probabilities.argmax())]


def test_random_forest_and_class_weights():
    model = train("RANDOM_FOREST_CLASSIFIER", {"num_parallel_tree": 10, "class_weights": {"1": 3.0}},
                  toy_rows(), FEATURES, "label", seed=2)
    assert model.predict([{"size": 0.0, "colour": "red", "fresh": True}])[0][0] in (0, 1)


def test_columnar_frame_trains_like_rows():
    rows = toy_rows(120)
    frame = {column: [row[column] for row in rows] for column in rows[0]}
    from_rows = train("LOGISTIC_REG", {}, rows, FEATURES, "label")
    from_frame = train("LOGISTIC_REG", {}, frame, FEATURES, "label")
    assert from_rows.predict(rows[:10], extra_columns_ok=True) == from_frame.predict(rows[:10], extra_columns_ok=True)


def test_unseen_category_and_nulls_still_predict():
    model = train("LOGISTIC_REG", {}, toy_rows(120), FEATURES, "label")
    labels, scores = model.predict([{"size": None, "colour": "purple", "fresh": None}])
    assert len(labels) == 1 and 0.0 <= scores[0] <= 1.0


def test_split_for_gives_the_evaluator_the_candidates_eval_rows():
    rows = toy_rows(600)
    model = train("LOGISTIC_REG", {}, rows, FEATURES, "label")  # AUTO_SPLIT: 600 rows -> 20% RANDOM
    eval_rows = split_for(model.model_type, model.options, rows).eval_rows
    assert len(eval_rows) == model.training.rows_eval and model.training.split_method == "RANDOM"


@pytest.mark.parametrize(("rows", "features", "label", "message"), [
    ([{"_row_id": "a", "x": 1, "y": 1}] * 5, ["x"], "y", "single class"),
    ([{"_row_id": str(i), "x": "a" if i % 2 else 1, "y": i % 2} for i in range(10)], ["x"], "y", "mixes value types"),
    ([{"_row_id": str(i), "x": None, "y": i % 2} for i in range(10)], ["x"], "y", "no non-NULL value"),
    ([{"_row_id": "a", "x": 1, "y": None}], ["x"], "y", "no rows with a non-NULL label"),
    ([{"_row_id": "a", "x": 1, "y": 1}], ["x", "y"], "y", "also a feature"),
])
def test_training_data_problems_are_explained(rows, features, label, message):
    with pytest.raises(TrainingDataError, match=message):
        train("LOGISTIC_REG", {}, rows, features, label)


# --- validating prediction input ---------------------------------------------------------------------

def test_validate_instances_reports_every_problem_at_once():
    model = train("LOGISTIC_REG", {}, toy_rows(120), FEATURES, "label")
    problems = model.validate_instances([
        {"size": "big", "colour": "red", "fresh": True},
        {"colour": 3, "fresh": 1, "weight": 2.0, "size": 1.0},
        {"size": float("inf"), "colour": None, "fresh": None},
        "not an object",
    ])
    assert problems == [
        "instance 0: feature 'size' must be a finite number, got str 'big'",
        "instance 1: feature 'colour' must be a string, got int 3",
        "instance 1: feature 'fresh' must be a boolean, got int 1",
        "instance 1: unknown feature 'weight'",
        "instance 2: feature 'size' must be a finite number, got float inf",
        "instance 3: must be an object of feature values, got str",
    ]
    assert model.validate_instances([{"size": 1.0}]) == ["instance 0: missing feature 'colour'",
                                                         "instance 0: missing feature 'fresh'"]
    assert model.validate_instances([]) == ["instances is empty"]
    with pytest.raises(InvalidInstancesError) as error:
        model.predict([{"size": 1}])
    assert len(error.value.problems) == 2


# --- the demo dataset --------------------------------------------------------------------------------

def test_breast_cancer_fallback_loads_from_scikit_learn():
    rows, label, features, description = load_demo_dataset("breast_cancer")
    assert len(rows) == 569 and label == "benign" and len(features) == 30
    assert rows[0]["_row_id"] == "breast_cancer-00001" and "Wisconsin" in description


def test_abalone_demo_dataset_when_scikit_lego_is_installed():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("scikit-lego")
    except PackageNotFoundError:
        pytest.skip("scikit-lego (which ships the abalone file) is not installed")
    rows, label, features, description = load_demo_dataset()
    assert len(rows) == 4177 and label == "rings_above_9"
    assert features == ["sex", "length", "diameter", "height", "whole_weight", "shucked_weight",
                        "viscera_weight", "shell_weight"]
    assert rows[0] == {"_row_id": "abalone-00001", "sex": "M", "length": 0.455, "diameter": 0.365, "height": 0.095,
                       "whole_weight": 0.514, "shucked_weight": 0.2245, "viscera_weight": pytest.approx(0.101),
                       "shell_weight": 0.15, "rings": 15, "rings_above_9": 1}
    assert "rings" not in features and "UCI" in description

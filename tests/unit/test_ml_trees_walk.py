"""The numpy tree walk (mlops.ml.tree_walk) predicts what XGBoost's inplace_predict does.

Every tree model the trainer makes (binary and multiclass boosted trees, DART, the regressor, the
random forest), plus boosters as a BigQuery ML export may hold them (binary:logistic, one-hot
columns), on random rows: missing values, unseen categories and values exactly on a split threshold
(where `<` decides) included.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.ml.features import FeatureKind, FeatureSpec
from mlops.ml.options import ModelType
from mlops.ml.served import ModelCard
from mlops.ml.training import train
from mlops.ml.tree_walk import WALK_MAX_ROWS, compile_booster
from mlops.ml.trees import LABEL_ENCODED, NUMERICAL, ONE_HOT, TreeModel

FEATURES = ["x", "z", "colour", "fresh"]
COLOURS = ["red", "green", "blue"]
TRAINED = [("BOOSTED_TREE_CLASSIFIER", "label", {}), ("BOOSTED_TREE_CLASSIFIER", "size", {}),
           ("BOOSTED_TREE_CLASSIFIER", "size", {"booster_type": "DART", "max_iterations": 8}),
           ("BOOSTED_TREE_REGRESSOR", "amount", {}), ("BOOSTED_TREE_REGRESSOR", "amount", {"booster_type": "DART"}),
           ("RANDOM_FOREST_CLASSIFIER", "label", {"num_parallel_tree": 30}),
           ("RANDOM_FOREST_CLASSIFIER", "size", {"num_parallel_tree": 10})]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def training_rows(n: int = 300) -> list[dict]:
    rng = random.Random(11)
    out = []
    for i in range(n):
        x, colour = rng.gauss(5, 3), rng.choice(COLOURS)
        z = None if i % 13 == 0 else rng.random()
        fresh = None if i % 17 == 0 else rng.random() < 0.5
        out.append({"x": x, "z": z, "colour": colour, "fresh": fresh,
                    "label": int(x + (colour == "red") * 2 + rng.gauss(0, 1) > 6),
                    "size": ["small", "medium", "large"][min(2, int(x // 4))] if x > 0 else "small",
                    "amount": 200.0 * x + (300.0 if colour == "blue" else 0.0) + rng.gauss(0, 20)})
    return out


@functools.cache
def trained(index: int) -> TreeModel:
    model_type, label, options = TRAINED[index]
    served = train(model_type, options, training_rows(), FEATURES, label, seed=5).served
    assert isinstance(served, TreeModel)
    return served


def thresholds(model: TreeModel) -> list[float]:
    assert model._walk is not None
    return sorted({float(t) for t in model._walk.threshold if not np.isnan(t)})


def instances(draw_threshold: st.SearchStrategy[float]) -> st.SearchStrategy[list[dict]]:
    number = st.one_of(st.none(), st.floats(-30, 30, width=32), draw_threshold)
    row = st.fixed_dictionaries({
        "x": number, "z": number,
        "colour": st.one_of(st.none(), st.sampled_from([*COLOURS, "purple"])),
        "fresh": st.one_of(st.none(), st.booleans()),
    })
    return st.lists(row, min_size=1, max_size=WALK_MAX_ROWS)


def assert_walk_matches_xgboost(model: TreeModel, batch: list[dict]) -> None:
    assert model._walk is not None
    matrix = model.encode(batch)
    expected = model.booster.inplace_predict(matrix)
    actual = model._walk.predict(matrix)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("index", range(len(TRAINED)), ids=[f"{t}-{label}-{o}" for t, label, o in TRAINED])
def test_the_walk_predicts_what_inplace_predict_does_for_every_trained_model_type(index):
    model = trained(index)
    on_threshold = st.sampled_from(thresholds(model))

    @SETTINGS
    @given(instances(on_threshold))
    def check(batch):
        assert_walk_matches_xgboost(model, batch)

    check()


@pytest.mark.parametrize("index", range(len(TRAINED)), ids=[f"{t}-{label}-{o}" for t, label, o in TRAINED])
def test_a_request_scores_the_same_through_the_walk_and_through_xgboost(index):
    """TreeModel walks up to WALK_MAX_ROWS rows and hands larger batches to inplace_predict: the
    predictor's answer for a row does not depend on the batch it came in."""
    model = trained(index)
    batch = [{k: r[k] for k in FEATURES} for r in training_rows(3 * WALK_MAX_ROWS)]
    labels, scores = model.predict(batch)  # one call: inplace_predict
    walked = [model.predict(batch[i:i + WALK_MAX_ROWS]) for i in range(0, len(batch), WALK_MAX_ROWS)]
    if model.is_classifier:
        assert [label for part in walked for label in part[0]] == labels
        assert np.asarray([s for part in walked for s in part[1]]) == pytest.approx(np.asarray(scores), abs=1e-6)
    else:
        assert np.asarray([v for part in walked for v in part[0]]) == pytest.approx(np.asarray(labels), rel=1e-6)


def exported_style_model(objective: str, encoding: str, **params) -> TreeModel:
    """A booster as an export may hold it (not what the local trainer writes): its own objective,
    `colour` one-hot (one column per category, 1 or missing) or label-encoded."""
    import xgboost

    classifier = objective != "reg:squarederror"
    features = (FeatureSpec("x", FeatureKind.NUMERIC), FeatureSpec("z", FeatureKind.NUMERIC),
                FeatureSpec("colour", FeatureKind.STRING), FeatureSpec("fresh", FeatureKind.BOOL))
    kind = ModelType.BOOSTED_TREE_CLASSIFIER if classifier else ModelType.BOOSTED_TREE_REGRESSOR
    card = ModelCard(kind, features, "label", (0, 1) if classifier else None)
    encodings = [(features[0], NUMERICAL, []), (features[1], NUMERICAL, []), (features[2], encoding, COLOURS),
                 (features[3], LABEL_ENCODED, ["false", "true"])]
    encoder = TreeModel(card, None, encodings)
    data = training_rows()
    target = np.array([r["label"] if classifier else r["amount"] for r in data], dtype=float)
    booster = xgboost.train({"objective": objective, "max_depth": 5, "nthread": 1, "seed": 1, **params},
                            xgboost.DMatrix(encoder.encode(data), label=target), num_boost_round=12)
    booster.set_param({"nthread": 1})
    return TreeModel(card, booster, encodings)


EXPORTED = [("binary:logistic", ONE_HOT, {}), ("binary:logistic", LABEL_ENCODED, {"base_score": 0.3}),
            ("multi:softprob", ONE_HOT, {"num_class": 2, "num_parallel_tree": 3, "subsample": 0.7}),
            ("reg:squarederror", ONE_HOT, {}), ("binary:logistic", ONE_HOT, {"booster": "dart", "rate_drop": 0.2})]


@pytest.mark.parametrize(("objective", "encoding", "params"), EXPORTED)
def test_the_walk_predicts_what_inplace_predict_does_for_exported_boosters(objective, encoding, params):
    model = exported_style_model(objective, encoding, **params)
    assert model._walk is not None

    @SETTINGS
    @given(instances(st.sampled_from(thresholds(model))))
    def check(batch):
        assert_walk_matches_xgboost(model, batch)

    check()
    # Through the model's own scores too (the binary:logistic column is turned into two classes).
    probes = [{"x": 4.0, "z": None, "colour": "purple", "fresh": True}, {"x": 9.0, "z": 0.5, "colour": "red", "fresh": None}]
    walked = model.predict(probes)
    model._walk = None
    assert model.predict(probes)[0] == walked[0]


def test_what_the_walk_does_not_reproduce_stays_with_inplace_predict():
    import xgboost

    rng = np.random.default_rng(0)
    features = rng.integers(0, 4, size=(200, 2)).astype(np.float32)
    target = (features[:, 0] == 2).astype(float)
    categorical = xgboost.train({"objective": "binary:logistic", "max_cat_to_onehot": 1, "nthread": 1},
                                xgboost.DMatrix(features, label=target, enable_categorical=True,
                                                feature_types=["c", "c"]), num_boost_round=3)
    assert compile_booster(categorical) is None  # a categorical split tests set membership, not `<`
    linear = xgboost.train({"booster": "gblinear", "objective": "binary:logistic", "nthread": 1},
                           xgboost.DMatrix(features, label=target), num_boost_round=3)
    assert compile_booster(linear) is None
    ranker = xgboost.train({"objective": "count:poisson", "nthread": 1},
                           xgboost.DMatrix(features, label=target + 1), num_boost_round=3)
    assert compile_booster(ranker) is None  # an objective the walk has no output transform for

import json
import math
import random

import pytest

from mlops.ml.drift import (
    DriftReference,
    build_reference,
    measure_drift,
    population_stability_index,
    psi_between,
)


def numeric_rows(count: int, shift: float = 0.0, seed: int = 1, missing_every: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"x": None if missing_every and i % missing_every == 0 else rng.gauss(shift, 1.0),
             "colour": rng.choice(["red", "blue"])} for i in range(count)]


def test_psi_of_known_shares():
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert population_stability_index([10, 10], [5, 15]) == pytest.approx(expected)  # counts work too


def test_empty_bins_do_not_make_psi_infinite():
    assert math.isfinite(population_stability_index([1.0, 0.0], [0.0, 1.0]))


def test_same_distribution_has_small_psi_and_a_shift_large_psi():
    reference = numeric_rows(2000, seed=1)
    same = psi_between(reference, numeric_rows(2000, seed=2), ["x"], ["colour"])
    shifted = psi_between(reference, numeric_rows(2000, shift=1.0, seed=3), ["x"], ["colour"])
    assert same.max_psi < 0.05
    assert shifted.psi_by_feature["x"] > 0.25 and shifted.max_feature == "x" and shifted.exceeds(0.25)


def test_a_rise_in_missing_values_is_drift():
    report = psi_between(numeric_rows(1000), numeric_rows(1000, seed=2, missing_every=3), ["x"])
    assert report.psi_by_feature["x"] > 0.25


def test_unseen_categories_count_as_drift():
    reference = build_reference([{"c": "a"}, {"c": "b"}] * 50, [], ["c"])
    assert measure_drift(reference, [{"c": "z"}] * 100).psi_by_feature["c"] > 1.0


def test_discrete_features_with_ties_keep_valid_bins():
    reference = build_reference([{"x": float(i % 3)} for i in range(300)], ["x"])
    bins = reference.numeric["x"]
    assert len(bins.shares) == len(bins.inner_edges) + 2  # value bins + the NULL bin
    assert sum(bins.shares) == pytest.approx(1.0)
    assert measure_drift(reference, [{"x": float(i % 3)} for i in range(90)]).max_psi == pytest.approx(0.0, abs=1e-9)


def test_reference_survives_json_and_no_rows_means_no_drift():
    reference = build_reference(numeric_rows(500), ["x"], ["colour"])
    restored = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert restored == reference
    empty = measure_drift(restored, [])
    assert empty.max_psi == 0.0 and empty.rows == 0


# ------------------------------------------------------------------------------- serving monitoring

def test_jensen_shannon_known_values():
    from mlops.ml.drift import jensen_shannon

    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: the base-2 maximum
    assert jensen_shannon([5, 5], [1, 1]) == pytest.approx(0.0)  # counts or shares alike
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4); JS = (KL(p||m) + KL(q||m)) / 2
    expected = (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25) + math.log2(1 / 0.75)) / 2
    assert jensen_shannon([1, 1], [1, 0]) == pytest.approx(expected)
    assert jensen_shannon([0, 0], [0, 0]) == 0.0


def test_l_infinity_known_values():
    from mlops.ml.drift import l_infinity

    assert l_infinity({"a": 0.5, "b": 0.5}, {"a": 10}) == pytest.approx(0.5)
    assert l_infinity({"a": 1, "b": 3}, {"a": 2, "b": 6}) == pytest.approx(0.0)
    assert l_infinity({"a": 1}, {"z": 1}) == pytest.approx(1.0)  # a category never seen in training


def test_a_numeric_window_from_bin_counts():
    from mlops.ml.drift import NumericReference, numeric_window

    reference = NumericReference((1.0, 2.0), (0.25, 0.25, 0.5, 0.0))  # three value bins, then NULL
    same = numeric_window("x", reference, [25, 25, 50], missing=0, out_of_range=0)
    assert same.distance == pytest.approx(0.0) and same.psi == pytest.approx(0.0, abs=1e-9) and same.rows == 100
    moved = numeric_window("x", reference, [0, 0, 80], missing=20, out_of_range=8)
    assert moved.distance > 0.3 and moved.psi > same.psi
    assert (moved.missing_rate, moved.out_of_range_rate, moved.measure) == (0.2, 0.1, "js")
    with pytest.raises(ValueError, match="bin counts"):
        numeric_window("x", reference, [1, 2], missing=0, out_of_range=0)


def test_a_categorical_window_counts_unseen_and_missing():
    from mlops.ml.drift import build_reference, categorical_window

    reference = build_reference([{"c": "a"}, {"c": "b"}], [], ["c"]).categorical["c"]
    window = categorical_window("c", reference, {"a": 6, "z": 2}, missing=2)
    assert window.distance == pytest.approx(0.5)  # b: 0.5 in training, none served
    assert (window.unseen_rate, window.missing_rate, window.measure) == (0.25, 0.2, "linf")


def test_realized_metrics_in_numpy_match_the_known_answers():
    from mlops.ml.drift import realized_metric

    truth, served, scores = ["1", "0", "1", "0"], ["1", "0", "0", "1"], [0.9, 0.2, 0.4, 0.6]
    assert realized_metric("accuracy", truth, served, scores) == 0.5
    assert realized_metric("roc_auc", truth, served, scores) == pytest.approx(0.75)
    assert realized_metric("precision", truth, served, scores) == 0.5
    assert realized_metric("log_loss", ["1", "0"], ["1", "0"], [0.6, 0.4]) == pytest.approx(-math.log(0.6))
    assert realized_metric("roc_auc", ["1", "1"], ["1", "1"], [0.9, 0.8]) is None  # one class: no AUC
    assert realized_metric("mean_absolute_error", [1.0, 3.0], [2.0, 2.0], [None, None]) == 1.0
    assert realized_metric("r2_score", [1.0, 3.0], [1.0, 3.0], [None, None]) == 1.0


def test_score_bins_put_an_edge_in_the_bin_it_closes():
    from mlops.ml.drift import score_bins

    assert score_bins([0.1, 0.1000001, 1.0]) == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]

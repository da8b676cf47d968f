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

import numpy as np
import pytest
from sklearn import metrics as sk

from mlops.ml.metrics import (
    CLASSIFIER_METRICS,
    REGRESSOR_METRICS,
    classification_metrics,
    evaluate,
    gain,
    higher_is_better,
    regression_metrics,
)
from mlops.ml.training import train


def test_binary_metrics_on_a_hand_checked_case():
    # predictions at 0.5: [0, 1, 0, 1] -> TP 1, FP 1, FN 1, TN 1.
    truth = [0, 0, 1, 1]
    positive = np.array([0.1, 0.6, 0.4, 0.8])
    result = classification_metrics(truth, np.column_stack([1 - positive, positive]), (0, 1))
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["f1_score"] == pytest.approx(0.5)
    assert result["roc_auc"] == pytest.approx(0.75)  # 3 of the 4 positive/negative pairs ordered right
    expected_log_loss = -np.mean(np.log([0.9, 0.4, 0.4, 0.8]))
    assert result["log_loss"] == pytest.approx(expected_log_loss)
    assert result["log_loss"] == pytest.approx(sk.log_loss(truth, positive))
    assert tuple(result) == CLASSIFIER_METRICS


def test_binary_metrics_match_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    positive = np.clip(truth * 0.3 + rng.random(200) * 0.7, 0, 1)
    result = classification_metrics(list(truth), np.column_stack([1 - positive, positive]), (0, 1))
    predicted = positive > 0.5
    assert result["precision"] == pytest.approx(sk.precision_score(truth, predicted))
    assert result["recall"] == pytest.approx(sk.recall_score(truth, predicted))
    assert result["f1_score"] == pytest.approx(sk.f1_score(truth, predicted))
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, positive))


def test_positive_class_is_the_larger_label_and_threshold_is_strict():
    result = classification_metrics(["no", "yes"], np.array([[0.5, 0.5], [0.2, 0.8]]), ("no", "yes"))
    assert result["accuracy"] == 1.0  # 0.5 is not above the threshold: "no"


def test_single_class_rows_leave_roc_auc_out():
    result = classification_metrics([1, 1], np.array([[0.3, 0.7], [0.6, 0.4]]), (0, 1))
    assert "roc_auc" not in result and result["recall"] == 0.5


def test_multiclass_metrics_are_macro_averaged_and_accuracy_micro():
    truth = [0, 1, 2, 2, 1, 0]
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6],
                              [0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.5, 0.1, 0.4]])
    result = classification_metrics(truth, probabilities, (0, 1, 2))
    predicted = probabilities.argmax(axis=1)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert result["precision"] == pytest.approx(sk.precision_score(truth, predicted, average="macro", zero_division=0))
    assert result["recall"] == pytest.approx(sk.recall_score(truth, predicted, average="macro"))
    assert result["f1_score"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, probabilities, multi_class="ovr", average="macro"))
    one_vs_rest = [sk.log_loss(np.array(truth) == c, probabilities[:, c]) for c in range(3)]
    assert result["log_loss"] == pytest.approx(np.mean(one_vs_rest))


def test_unknown_labels_are_refused():
    with pytest.raises(ValueError, match="not seen in training"):
        classification_metrics([0, 7], np.array([[0.5, 0.5], [0.5, 0.5]]), (0, 1))


def test_regression_metrics_match_sklearn():
    truth = [3.0, 5.0, 2.5, 7.0]
    predicted = [2.5, 5.0, 4.0, 8.0]
    result = regression_metrics(truth, predicted)
    assert tuple(result) == REGRESSOR_METRICS
    assert result["mean_absolute_error"] == pytest.approx(sk.mean_absolute_error(truth, predicted))
    assert result["mean_squared_error"] == pytest.approx(sk.mean_squared_error(truth, predicted))
    assert result["mean_squared_log_error"] == pytest.approx(sk.mean_squared_log_error(truth, predicted))
    assert result["median_absolute_error"] == pytest.approx(sk.median_absolute_error(truth, predicted))
    assert result["r2_score"] == pytest.approx(sk.r2_score(truth, predicted))
    assert result["explained_variance"] == pytest.approx(sk.explained_variance_score(truth, predicted))


def test_mean_squared_log_error_is_left_out_when_undefined():
    assert "mean_squared_log_error" not in regression_metrics([-2.0, 1.0], [0.0, 1.0])


@pytest.mark.parametrize(("metric", "higher"), [("roc_auc", True), ("log_loss", False), ("r2_score", True),
                                                ("mean_absolute_error", False), ("explained_variance", True)])
def test_metric_direction(metric, higher):
    assert higher_is_better(metric) is higher


def test_gain_is_positive_when_the_candidate_is_better():
    assert gain("roc_auc", 0.91, 0.90) == pytest.approx(0.01)
    assert gain("log_loss", 0.30, 0.35) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("auc")


def test_evaluate_a_trained_model_on_rows_with_extra_columns():
    rows = [{"_row_id": str(i), "x": float(i % 10), "label": int(i % 10 > 4)} for i in range(100)]
    model = train("LOGISTIC_REG", {"l2_reg": 0.1}, rows, ["x"], "label")
    result = evaluate(model, rows)
    assert set(result) == set(CLASSIFIER_METRICS) and result["roc_auc"] == 1.0
    regressor = train("LINEAR_REG", {}, [{**r, "y": 2 * r["x"]} for r in rows], ["x"], "y")
    assert evaluate(regressor, [{**r, "y": 2 * r["x"]} for r in rows])["r2_score"] == pytest.approx(1.0)

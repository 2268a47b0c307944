"""The gate's statistics: per-example proper scores and the paired t-interval
of their difference; macro-F1 and paired-bootstrap intervals of a metric
difference between two models on one holdout."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.scoring.stats import macro_f1, metric_value, paired_bootstrap_difference, rmse_bootstrap_improvement
from tests.generated import predictions_with_accuracy, three_class_labels


def _interval(metric, y, challenger, champion, samples=500, confidence=0.95, seed=0):
    """(observed, low, high) of challenger minus champion on `metric`, as the
    gate computes it: higher is better for accuracy and macro-F1, lower for RMSE."""
    if metric == "rmse":
        improvement, low, high = rmse_bootstrap_improvement(y, challenger, champion, samples, confidence, seed)
        return -improvement, -high, -low
    return paired_bootstrap_difference(y, challenger, champion, metric, samples, confidence, seed)


# --- macro-F1 ------------------------------------------------------------ #


def _never_predicted(y, pred):
    pred[pred == 2] = 1  # the highest class is never predicted
    return pred


def _predicted_but_absent(y, pred):
    pred[:5] = 3  # a class the holdout does not hold
    return pred


def _a_class_seen_once(y, pred):
    y[0] = pred[0] = 3
    pred[1] = 3
    return pred


@pytest.mark.parametrize("case", [None, _never_predicted, _predicted_but_absent, _a_class_seen_once])
def test_macro_f1_matches_scikit_learn_over_the_classes_of_the_holdout(case):
    from sklearn.metrics import f1_score

    y = three_class_labels(n=300, seed=7)
    pred = predictions_with_accuracy(y, 0.7, 8)
    if case is not None:
        pred = case(y, pred)
    classes = int(max(y.max(), pred.max())) + 1
    expected = f1_score(y, pred, labels=np.unique(y), average="macro")
    assert macro_f1(y, pred, classes) == pytest.approx(expected)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_an_empty_sample_scores_zero_not_nan(metric):
    empty = np.array([], dtype="int64")
    assert metric_value(metric, empty, empty, 3) == 0.0


def test_an_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown gate metric 'f2'"):
        metric_value("f2", np.zeros(3, dtype="int64"), np.zeros(3, dtype="int64"), 1)


@pytest.mark.parametrize("top_class_in", ["y_true", "challenger", "champion"])
def test_the_classes_span_the_labels_of_all_three_arrays(top_class_in):
    """The highest label may appear in any one of them; macro-F1 still
    counts the classes of the holdout, whichever array holds it."""
    from sklearn.metrics import f1_score

    y = three_class_labels(n=300, seed=1)
    arrays = {"y_true": y, "challenger": predictions_with_accuracy(y, 0.8, 2), "champion": predictions_with_accuracy(y, 0.7, 3)}
    arrays[top_class_in][:4] = 3
    y, challenger, champion = arrays["y_true"], arrays["challenger"], arrays["champion"]
    labels = np.unique(y)
    expected = f1_score(y, challenger, labels=labels, average="macro") - f1_score(y, champion, labels=labels, average="macro")
    observed, low, high = paired_bootstrap_difference(y, challenger, champion, "macro_f1", 200, 0.95)
    assert observed == pytest.approx(expected)
    assert low < observed < high


# --- the paired bootstrap ------------------------------------------------ #


def test_bootstrap_interval_covers_the_true_difference():
    y = three_class_labels(n=2000, seed=3)
    a, b = predictions_with_accuracy(y, 0.90, 4), predictions_with_accuracy(y, 0.85, 5)
    observed, low, high = paired_bootstrap_difference(y, a, b, "accuracy", 2000, 0.95)
    assert observed == pytest.approx(0.05, abs=1e-9)
    assert low < 0.05 < high and low > 0
    f1_obs, f1_low, f1_high = paired_bootstrap_difference(y, a, b, "macro_f1", 300, 0.95)
    assert f1_low < f1_obs < f1_high


@pytest.mark.parametrize("confidence", [0.8, 0.95])
@pytest.mark.parametrize("metric", ["accuracy", "rmse"])
def test_the_bounds_are_the_bootstrap_quantiles_at_the_stated_confidence(metric, confidence):
    """Built so that each resample's difference is a binomial count: the
    challenger is right (accuracy) or exact (RMSE) on 1000 of 4000 rows where
    the champion is not, and the two agree elsewhere. The interval's bounds
    must be that binomial's quantiles at (1 - confidence) / 2 and its
    complement, within the noise of 1100 resamples."""
    from scipy.stats import binom

    n, k, samples = 4000, 1000, 1100  # 1100: not a multiple of the 200-resample chunks
    tail = (1 - confidence) / 2
    counts = binom.ppf([tail, 1 - tail], n, k / n)
    if metric == "accuracy":
        y = np.zeros(n, dtype="int64")
        champion = np.ones(n, dtype="int64")
        challenger = champion.copy()
        challenger[:k] = 0
        _, low, high = paired_bootstrap_difference(y, challenger, champion, "accuracy", samples, confidence)
        expected = counts / n
    else:
        y = np.zeros(n)
        champion = np.zeros(n)
        champion[:k] = 1.0  # squared errors 0 or 1: the champion's RMSE is sqrt(count / n)
        _, low, high = rmse_bootstrap_improvement(y, y.copy(), champion, samples, confidence)
        low, high = low**2, high**2
        expected = counts / n
    assert (low, high) == pytest.approx(tuple(expected), abs=3 / n)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "rmse"])
def test_both_models_are_resampled_on_the_same_rows(metric):
    """The challenger equals the champion except on 3 rows of 1000, where it is
    worse: every resample's difference comes from those rows alone, so the
    interval hugs the small observed loss. Resampling the two models
    independently would give an interval some ten times wider."""
    if metric == "rmse":
        y = np.random.default_rng(0).normal(150, 75, 1000)
        champion = y + np.random.default_rng(1).normal(0, 30, 1000)
        challenger = champion.copy()
        challenger[:3] += np.sign(challenger[:3] - y[:3]) * 20
        scale = np.sqrt(np.mean((champion - y) ** 2))  # compare with the champion's RMSE
    else:
        y = three_class_labels(n=1000)
        champion = predictions_with_accuracy(y, 0.9, 1)
        challenger = champion.copy()
        right = np.flatnonzero(champion == y)[:3]
        challenger[right] = (y[right] + 1) % 3
        scale = 1.0
    observed, low, high = _interval(metric, y, challenger, champion)
    loss = -observed if metric != "rmse" else observed
    assert 0 < loss
    assert low <= observed <= high
    width = (high - low) / scale
    assert width < 0.01  # independent resampling: about 0.05 (accuracy, macro-F1), 0.1 (RMSE)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "rmse"])
def test_every_row_can_be_drawn(metric):
    """The models differ on the first row only: resamples that draw it show
    the difference, so the interval is not a single point at zero."""
    y = three_class_labels(n=300)
    champion = y.copy()
    challenger = y.copy()
    challenger[0] = (y[0] + 1) % 3
    if metric == "rmse":
        y, champion, challenger = y.astype("float64"), y + 1.0, y + 1.0
        challenger[0] += 3
    observed, low, high = _interval(metric, y, challenger, champion)
    worst = high if metric == "rmse" else -low  # the challenger is worse on that row
    assert worst > 0


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "rmse"])
def test_the_same_holdout_gives_the_same_interval(metric):
    """A rerun of the gate on the same predictions decides the same way."""
    y = three_class_labels()
    a, b = predictions_with_accuracy(y, 0.9, 1), predictions_with_accuracy(y, 0.88, 2)
    if metric == "rmse":
        y, a, b = y * 10.0, a * 10.0 + 1, b * 10.0 - 1
    assert _interval(metric, y, a, b, samples=200) == _interval(metric, y, a, b, samples=200)


# --- per-example proper scores and their paired t-interval ----------------- #


def test_brier_losses_are_the_squared_distance_to_the_one_hot_truth():
    from lockgate.scoring.stats import brier_losses

    proba = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    y = np.array([0, 0, 0, 2])
    expected = [0.0, 2.0, 0.25 + 0.0625 + 0.0625, 2 * (1 / 9) + (2 / 3) ** 2]
    np.testing.assert_allclose(brier_losses(y, proba), expected)


def test_squared_errors_are_per_row():
    from lockgate.scoring.stats import squared_errors

    np.testing.assert_allclose(squared_errors(np.array([1.0, 2.0, 3.0]), np.array([[1.5], [2.0], [1.0]])), [0.25, 0.0, 4.0])


def test_the_paired_loss_interval_is_student_s_t_on_the_row_differences():
    from scipy import stats

    from lockgate.scoring.stats import paired_loss_difference

    rng = np.random.default_rng(5)
    champion = rng.uniform(0, 1, 40)
    challenger = champion + rng.normal(-0.05, 0.1, 40)
    paired = paired_loss_difference(challenger, champion, confidence=0.9, power=0.7)
    differences = champion - challenger
    # each end is a one-sided 90% bound: the two-sided 80% interval
    low, high = stats.ttest_rel(champion, challenger).confidence_interval(0.8)
    one_sided_low = stats.ttest_rel(champion, challenger, alternative="greater").confidence_interval(0.9).low
    assert paired.low == pytest.approx(one_sided_low)
    assert paired.improvement == pytest.approx(differences.mean())
    assert (paired.low, paired.high) == (pytest.approx(low), pytest.approx(high))
    assert paired.spread == pytest.approx(differences.std(ddof=1)) and paired.rows == 40
    error = differences.std(ddof=1) / np.sqrt(40)
    assert paired.detectable == pytest.approx((stats.t.ppf(0.9, 39) + stats.norm.ppf(0.7)) * error)


def test_a_paired_loss_interval_needs_two_rows():
    from lockgate.scoring.stats import paired_loss_difference

    one = paired_loss_difference(np.array([0.1]), np.array([0.2]), 0.95, 0.8)
    assert one.rows == 1
    assert all(np.isnan(value) for value in (one.improvement, one.low, one.high, one.detectable, one.spread))
    two = paired_loss_difference(np.array([0.1, 0.3]), np.array([0.2, 0.2]), 0.95, 0.8)
    assert two.rows == 2 and two.improvement == pytest.approx(0.0) and two.spread == pytest.approx(np.sqrt(0.02))
    assert np.isfinite(two.low) and np.isfinite(two.detectable)


def test_rows_to_detect_a_difference():
    from lockgate.scoring.stats import rows_to_detect

    # One-sided: ((1.644854 + 0.841621) * 0.2 / 0.02)^2 = 618.3
    assert rows_to_detect(0.2, 0.02, 0.95, 0.8) == 619
    assert rows_to_detect(0.2, 0.04, 0.95, 0.8) == 155
    assert rows_to_detect(0.2, 0.02, 0.99, 0.8) == 1004
    assert rows_to_detect(0.2, 0.02, 0.95, 0.9) == 857
    assert rows_to_detect(0.2, 0.0, 0.95, 0.8) == 0 and rows_to_detect(float("nan"), 0.02, 0.95, 0.8) == 0

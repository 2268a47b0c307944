"""The gate's rules on arrays: absolute thresholds, then no regression against
the champion, judged on an interval's lower bound: on per-example proper
scores with a paired t-interval (the default), or on a whole-holdout metric
with a paired bootstrap (`comparison="metric"`); and the scores put together
from the evaluation's arrays in memory, or read back from its predictions
file, which are the same scores. (Which rule a family takes is the gate step's
choice: tests/unit/test_steps.py.)"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from lockgate.core.records import EvaluationReport
from lockgate.core.settings import GateSettings
from lockgate.scoring.gate import (
    HoldoutScores,
    decide_classification,
    decide_regression,
    holdout_scores,
    read_holdout_scores,
)
from lockgate.scoring.metrics import classification_metrics, regression_metrics
from lockgate.scoring.stats import brier_losses, macro_f1
from tests.generated import predictions_with_accuracy, three_class_labels

MetricGate = partial(GateSettings, comparison="metric")


# --- classification scores ----------------------------------------------- #


def _changed(pred, y, worse=0, better=0):
    """`pred` with its first `worse` right answers made wrong and its first
    `better` wrong answers made right: a model that differs on those rows only."""
    changed = pred.copy()
    right, wrong = np.flatnonzero(pred == y)[:worse], np.flatnonzero(pred != y)[:better]
    changed[right] = (y[right] + 1) % 3
    changed[wrong] = y[wrong]
    return changed


def _classification_metrics(y, pred):
    return {"accuracy": float(np.mean(pred == y)), "macro_f1": macro_f1(y, pred, int(max(y.max(), pred.max())) + 1)}


def _scores(score, champion_version: str, losses):
    """A maker of holdout scores whose metrics come from `score(y, pred)` and
    per-row losses (the challenger's and no skill's) from `losses(y, pred)`."""

    def make(y, challenger, champion=None, metrics=None) -> HoldoutScores:
        challenger_loss, baseline_loss = losses(y, challenger)
        return HoldoutScores(
            y_true=y,
            challenger_pred=challenger,
            metrics=score(y, challenger) if metrics is None else metrics,
            champion_version=None if champion is None else champion_version,
            champion_pred=champion,
            champion_metrics=None if champion is None else score(y, champion),
            challenger_loss=challenger_loss,
            baseline_loss=baseline_loss,
        )

    return make


def _label_losses(y, pred):
    """Brier losses of hard labels (0 right, 2 wrong), and of the class shares."""
    shares = np.bincount(y, minlength=int(max(y.max(), pred.max())) + 1) / len(y)
    return np.where(pred == y, 0.0, 2.0), brier_losses(y, np.tile(shares, (len(y), 1)))


def _value_losses(y, pred):
    """Squared errors of the predictions, and of the holdout mean."""
    return (pred - y) ** 2, (y - y.mean()) ** 2


_classification = _scores(_classification_metrics, "1", _label_losses)


# --- regression scores --------------------------------------------------- #


def _values(n=400, seed=0):
    return np.random.default_rng(seed).normal(150, 75, n)


def _errors(n=400, sd=30.0, seed=1):
    return np.random.default_rng(seed).normal(0, sd, n)


_regression = _scores(regression_metrics, "3", _value_losses)


def _metrics_only(metrics) -> HoldoutScores:
    """A first model (no champion) clearly better than no skill: only its
    thresholds can reject it."""
    noise = np.random.default_rng(0).uniform(0, 0.1, 40)
    return HoldoutScores(y_true=np.zeros(40), challenger_pred=np.zeros(40), metrics=metrics,
                         challenger_loss=0.1 + noise, baseline_loss=0.8 + noise[::-1])


# --- absolute thresholds ------------------------------------------------- #


def test_a_set_floor_is_named_in_the_decision():
    y = three_class_labels()
    decision = decide_classification(_classification(y, predictions_with_accuracy(y, 0.95, 1)), MetricGate(min_accuracy=0.8))
    assert decision.promote is True and decision.metric == "accuracy" and decision.higher_is_better
    assert decision.champion is None and decision.difference_ci is None
    assert decision.reasons[0] == "accuracy 0.9500 meets the required 0.8000"
    assert decision.reasons[-1].startswith("no champion yet, so judged against no skill")


def test_below_a_set_floor_is_rejected_with_reason():
    y = three_class_labels()
    decision = decide_classification(_classification(y, predictions_with_accuracy(y, 0.6, 1)), MetricGate(min_accuracy=0.8))
    assert decision.promote is False
    assert "accuracy 0.6000 is below the required 0.8000" in decision.reasons


# --- a first model against no skill -------------------------------------- #


def _imbalanced(rows=1000, minority=0.05, seed=0):
    """A 95/5 holdout, the training rows' class shares and a feature that
    tells the minority apart most of the time."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=rows) < minority).astype("int64")
    return y, np.array([1 - minority, minority])


def _first(y, proba, shares, gate=GateSettings()):
    """The decision on a first model whose class probabilities are `proba`."""
    scores = HoldoutScores(
        y_true=y, challenger_pred=proba.argmax(axis=1), metrics=classification_metrics(y, proba, ["no", "yes"])["metrics"],
        challenger_loss=brier_losses(y, proba), baseline_loss=brier_losses(y, np.tile(shares, (len(y), 1))),
        baseline="always the training class shares (no 95.0%, yes 5.0%)",
    )
    return decide_classification(scores, gate)


def test_a_majority_class_model_on_a_95_5_table_is_rejected_against_the_class_shares():
    y, shares = _imbalanced()
    always_no = np.tile([0.99, 0.01], (len(y), 1))  # confident, and right on 95% of rows
    decision = _first(y, always_no, shares)
    assert decision.imbalance["accuracy"] > 0.93 and decision.imbalance["balanced_accuracy"] == 0.5
    assert decision.promote is False
    assert decision.no_skill.model_score > decision.no_skill.baseline_score
    assert "not shown to be better than no skill" in decision.reasons[-1]
    assert "always the training class shares" in decision.reasons[-1]


def test_a_model_that_only_repeats_the_class_shares_is_rejected():
    y, shares = _imbalanced()
    decision = _first(y, np.tile(shares, (len(y), 1)), shares)
    assert decision.promote is False and decision.no_skill.improvement_low <= 0


def test_a_useful_model_on_the_same_table_is_promoted():
    y, shares = _imbalanced()
    rng = np.random.default_rng(1)
    # Right about the minority most of the time, with honest uncertainty.
    p_yes = np.clip(np.where(y == 1, rng.uniform(0.5, 0.95, len(y)), rng.uniform(0.0, 0.2, len(y))), 0, 1)
    decision = _first(y, np.column_stack([1 - p_yes, p_yes]), shares)
    assert decision.promote is True, decision.reasons
    assert decision.no_skill.improvement_low > 0 and decision.no_skill.baseline_score > decision.no_skill.model_score
    assert decision.reasons[-1].endswith("better than no skill")


def test_no_floor_applies_unless_set():
    y, shares = _imbalanced()
    rng = np.random.default_rng(1)
    # Useful, yet its macro-F1 and accuracy sit far under the old fixed floors.
    p_yes = np.where(y == 1, rng.uniform(0.3, 0.6, len(y)), rng.uniform(0.0, 0.1, len(y)))
    proba = np.column_stack([1 - p_yes, p_yes])
    metrics = classification_metrics(y, proba, ["no", "yes"])["metrics"]
    assert metrics["macro_f1"] < 0.75
    default = _first(y, proba, shares)
    assert default.promote is True, default.reasons
    assert not any("required" in reason for reason in default.reasons)
    floored = _first(y, proba, shares, GateSettings(min_macro_f1=0.75))
    assert floored.promote is False
    assert f"macro_f1 {metrics['macro_f1']:.4f} is below the required 0.7500" in floored.reasons


def test_a_first_regression_must_beat_the_training_mean():
    y = _values()
    useful = decide_regression(_regression(y, y + _errors(sd=30)), GateSettings())
    assert useful.promote is True and useful.no_skill.score == "mse"
    mean_only = decide_regression(_regression(y, np.full(len(y), y.mean()) + _errors(sd=1)), GateSettings())
    assert mean_only.promote is False and "not shown to be better than no skill" in mean_only.reasons[-1]


def test_a_first_model_without_the_baseline_losses_fails_closed():
    y = three_class_labels()
    scores = replace(_classification(y, predictions_with_accuracy(y, 0.95, 1)), baseline_loss=None)
    decision = decide_classification(scores, GateSettings())
    assert decision.promote is False and "cannot tell whether it beats no skill" in decision.reasons[-1]


CLASSIFICATION_METRICS = {"accuracy": 0.9, "macro_f1": 0.9}
REGRESSION_METRICS = {"r2": 0.9, "rmse": 10.0}


@pytest.mark.parametrize(
    ("metric", "settings", "at_limit", "beyond", "meets", "fails"),
    [
        ("accuracy", MetricGate(min_accuracy=0.8), 0.8, 0.7999, "meets the required 0.8000", "0.7999 is below the required 0.8000"),
        ("macro_f1", MetricGate(min_macro_f1=0.75), 0.75, 0.7499, "meets the required 0.7500", "0.7499 is below the required 0.7500"),
        ("r2", MetricGate(min_r2=0.2), 0.2, 0.1999, "meets the required 0.2000", "0.1999 is below the required 0.2000"),
        ("rmse", MetricGate(max_rmse=30), 30.0, 30.0001, "meets the allowed 30.0000", "30.0001 is above the allowed 30.0000"),
    ],
)
def test_absolute_thresholds_hold_at_their_limit(metric, settings, at_limit, beyond, meets, fails):
    """A metric exactly at its floor (or ceiling) passes; a hair beyond it rejects."""
    regression = metric in REGRESSION_METRICS
    rule = decide_regression if regression else decide_classification
    others = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    at = rule(_metrics_only(others | {metric: at_limit}), settings)
    assert at.promote is True
    assert f"{metric} {at_limit:.4f} {meets}" in at.reasons
    past = rule(_metrics_only(others | {metric: beyond}), settings)
    assert past.promote is False
    assert f"{metric} {fails}" in past.reasons


@pytest.mark.parametrize(
    ("rule", "metrics", "settings", "missing"),
    [
        (decide_classification, {"accuracy": 1.0}, MetricGate(min_macro_f1=0.5), "macro_f1"),
        (decide_classification, {"accuracy": float("nan"), "macro_f1": 1.0}, MetricGate(min_accuracy=0.5), "accuracy"),
        (decide_regression, {"rmse": 10.0}, MetricGate(min_r2=0.2), "r2"),
        (decide_regression, {"r2": float("nan"), "rmse": 10.0}, MetricGate(min_r2=0.2), "r2"),
        # Without rmse the decision still names it: the challenger's value is NaN.
        (decide_regression, {"r2": 0.9}, MetricGate(max_rmse=30), "rmse"),
    ],
)
def test_missing_or_nan_metric_fails_closed(rule, metrics, settings, missing):
    decision = rule(_metrics_only(metrics), settings)
    assert decision.promote is False
    assert f"{missing} is missing from the evaluation: cannot judge, rejecting" in decision.reasons


# --- against the champion: classification -------------------------------- #


def test_the_lower_bound_decides_not_the_point_estimate():
    """Even on paper (4 rows won, 4 lost), but the interval reaches below the
    margin: the challenger could be worse by more than allowed, so it is rejected."""
    y = three_class_labels(n=200)
    champion = predictions_with_accuracy(y, 0.9, 1)
    challenger = _changed(champion, y, worse=4, better=4)
    gate = MetricGate(regression_margin=0.01)
    decision = decide_classification(_classification(y, challenger, champion), gate)
    low, high = decision.difference_ci
    assert decision.challenger - decision.champion >= -gate.regression_margin  # the point estimate would promote
    assert low < -gate.regression_margin < high
    assert decision.promote is False
    assert any("could be worse by more than the allowed 0.0100" in r for r in decision.reasons)


def test_a_lower_bound_within_the_margin_promotes_a_challenger_worse_on_paper():
    """6 rows lost of 2000: worse on paper, but the interval's lower bound stays
    within the margin, so the challenger is not a regression."""
    y = three_class_labels(n=2000)
    champion = predictions_with_accuracy(y, 0.9, 1)
    decision = decide_classification(_classification(y, _changed(champion, y, worse=6), champion), MetricGate())
    low, high = decision.difference_ci
    assert decision.challenger < decision.champion and high < 0
    assert -MetricGate().regression_margin <= low
    assert decision.promote is True
    assert any("not worse by more than the allowed 0.0100" in r for r in decision.reasons)


@pytest.mark.parametrize(("margin", "promote"), [(0.01, True), (0.004, False), (0.0, False)])
def test_regression_margin_is_honoured(margin, promote):
    """The same challenger (its interval's lower bound near -0.0055) passes a
    margin of 0.01 and fails a margin of 0.004, though its point estimate
    (-0.003) is within both."""
    y = three_class_labels(n=2000)
    champion = predictions_with_accuracy(y, 0.9, 1)
    decision = decide_classification(_classification(y, _changed(champion, y, worse=6), champion),
                                     MetricGate(regression_margin=margin))
    assert decision.promote is promote
    assert decision.reasons[-1].endswith(f"by more than the allowed {margin:.4f}")


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_a_challenger_identical_to_the_champion_passes_even_with_no_margin(metric):
    y = three_class_labels()
    same = predictions_with_accuracy(y, 0.95, 1)
    gate = MetricGate(metric=metric, regression_margin=0.0, bootstrap_samples=200)
    decision = decide_classification(_classification(y, same, same.copy()), gate)
    assert decision.difference_ci == (0.0, 0.0)
    assert decision.promote is True


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_higher_is_better_for_accuracy_and_macro_f1(metric):
    y = three_class_labels()
    strong, weak = predictions_with_accuracy(y, 0.97, 1), predictions_with_accuracy(y, 0.86, 2)
    gate = MetricGate(metric=metric, bootstrap_samples=500)

    better = decide_classification(_classification(y, strong, weak), gate)
    assert better.metric == metric and better.higher_is_better
    assert better.challenger > better.champion and better.difference_ci[0] > 0
    assert better.promote is True

    worse = decide_classification(_classification(y, weak, strong), gate)
    assert worse.challenger < worse.champion and worse.difference_ci[1] < 0
    assert worse.promote is False
    assert any("could be worse by more than the allowed" in r for r in worse.reasons)


def test_the_gate_judges_the_metric_it_is_set_to():
    """The challenger trades 20 common-class errors for 20 rare-class ones:
    the same accuracy, a clearly better macro-F1."""
    y = np.array([0] * 900 + [1] * 100)
    champion, challenger = y.copy(), y.copy()
    champion[:50], champion[900:940] = 1, 0
    challenger[:70], challenger[900:920] = 1, 0
    scores = _classification(y, challenger, champion)
    assert scores.metrics["accuracy"] == scores.champion_metrics["accuracy"]

    on_accuracy = decide_classification(scores, MetricGate(metric="accuracy", regression_margin=0.0))
    assert on_accuracy.difference_ci[0] < 0 < on_accuracy.difference_ci[1]
    assert on_accuracy.promote is False
    on_macro_f1 = decide_classification(scores, MetricGate(metric="macro_f1", regression_margin=0.0, bootstrap_samples=500))
    assert on_macro_f1.metric == "macro_f1" and on_macro_f1.difference_ci[0] > 0
    assert on_macro_f1.promote is True


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_a_challenger_that_differs_on_three_rows_is_judged_on_those_rows(metric):
    """Both models are resampled on the same rows, so the interval only holds
    what three rows of 1000 can change (about -0.007 at worst). Resampling
    the models independently would give about +/-0.026 and reject."""
    y = three_class_labels(n=1000)
    champion = predictions_with_accuracy(y, 0.9, 1)
    decision = decide_classification(
        _classification(y, _changed(champion, y, worse=3), champion), MetricGate(metric=metric, bootstrap_samples=500)
    )
    low, high = decision.difference_ci
    assert -0.01 < low and high <= 0.0
    assert decision.promote is True


def test_the_comparison_is_stated_in_words():
    y = three_class_labels(n=2000)
    champion = predictions_with_accuracy(y, 0.9, 1)
    decision = decide_classification(_classification(y, _changed(champion, y, worse=6), champion), MetricGate())
    low, high = decision.difference_ci
    assert decision.reasons[-1] == (
        f"accuracy challenger - champion v1 = {decision.challenger - decision.champion:+.4f}, "
        f"95% CI [{low:+.4f}, {high:+.4f}]: not worse by more than the allowed 0.0100"
    )
    rejected = decide_classification(_classification(y, _changed(champion, y, worse=60), champion), MetricGate())
    low, high = rejected.difference_ci
    assert rejected.reasons[-1] == (
        f"accuracy challenger - champion v1 = {rejected.challenger - rejected.champion:+.4f}, "
        f"95% CI [{low:+.4f}, {high:+.4f}]: could be worse by more than the allowed 0.0100"
    )


@pytest.mark.parametrize(
    "unscored",
    [
        {"champion_pred": None},
        {"champion_pred": np.array([], dtype="int64")},  # what evaluation writes when scoring failed
        {"champion_pred": np.zeros(599, dtype="int64")},
        {"champion_metrics": None},
        {"champion_metrics": {"macro_f1": 0.9}},  # not the judged metric
    ],
)
def test_a_champion_not_scored_on_every_row_fails_closed(unscored):
    y = three_class_labels()
    good = y.copy()
    scores = _classification(y, good, good.copy())
    decision = decide_classification(replace(scores, **unscored), MetricGate())
    assert decision.promote is False
    assert decision.reasons[-1] == "champion v1 could not be scored on this holdout: rejecting"


# --- against the champion: regression ------------------------------------ #


def test_regression_is_judged_on_r2_and_an_optional_rmse_ceiling():
    y = _values()
    good = decide_regression(_regression(y, y + _errors(sd=40)), MetricGate())
    assert good.promote is True and good.metric == "rmse" and not good.higher_is_better
    poor = decide_regression(_regression(y, y + _errors(sd=90)), MetricGate(min_r2=0.2))
    assert poor.promote is False and any("r2" in r and "below the required 0.2000" in r for r in poor.reasons)
    capped = decide_regression(_regression(y, y + _errors(sd=40)), MetricGate(max_rmse=30))
    assert capped.promote is False and any("above the allowed 30.0000" in r for r in capped.reasons)


def test_rmse_lower_is_better():
    y = _values()
    small, large = y + _errors(sd=35, seed=1), y + _errors(sd=50, seed=2)
    worse = decide_regression(_regression(y, large, small), MetricGate())
    assert worse.challenger > worse.champion and worse.difference_ci[0] > 0  # a higher rmse
    assert worse.promote is False
    assert any("could be worse by more than the allowed" in r for r in worse.reasons)
    better = decide_regression(_regression(y, small, large), MetricGate())
    assert better.challenger < better.champion and better.difference_ci[1] < 0
    assert better.promote is True
    assert any("not worse by more than the allowed" in r for r in better.reasons)


def test_the_rmse_interval_bound_decides_not_the_point_estimate():
    """The champion's errors shuffled across rows: the very same RMSE, but the
    rows disagree, so the interval is wide and could be worse than allowed."""
    y, errors = _values(), _errors()
    champion = y + errors
    challenger = y + np.random.default_rng(2).permutation(errors)
    gate = MetricGate()
    decision = decide_regression(_regression(y, challenger, champion), gate)
    allowed = gate.rmse_margin_fraction * decision.champion
    assert decision.challenger == pytest.approx(decision.champion)  # the point estimate would promote
    assert decision.difference_ci[0] < 0 and decision.difference_ci[1] > allowed
    assert decision.promote is False


@pytest.mark.parametrize(("fraction", "promote"), [(0.02, True), (0.005, False), (0.0, False)])
def test_rmse_margin_fraction_is_honoured(fraction, promote):
    """Every error 1% larger than the champion's: 1% worse on paper, with a
    narrow interval around it, so a 2% margin admits it and 0.5% does not."""
    y, errors = _values(), _errors()
    decision = decide_regression(_regression(y, y + 1.01 * errors, y + errors), MetricGate(rmse_margin_fraction=fraction))
    assert decision.challenger == pytest.approx(1.01 * decision.champion)
    assert 0 < decision.difference_ci[0] < decision.difference_ci[1] < 0.015 * decision.champion
    assert decision.promote is promote
    assert decision.reasons[-1].split(": ")[-1].startswith(
        ("not worse" if promote else "could be worse") + f" by more than the allowed {fraction * decision.champion:.4f}"
    )


def test_a_regression_challenger_identical_to_the_champion_passes_even_with_no_margin():
    y = _values()
    same = y + _errors()
    decision = decide_regression(_regression(y, same, same.copy()), MetricGate(rmse_margin_fraction=0.0))
    assert decision.difference_ci == (0.0, 0.0)
    assert decision.promote is True


def test_a_regression_challenger_that_differs_on_three_rows_is_judged_on_those_rows():
    """Three rows of 400 a little worse: paired, the interval stays near the
    small observed loss; resampled independently it would span about +/-2."""
    y, errors = _values(), _errors()
    champion = y + errors
    challenger = champion.copy()
    challenger[:3] += np.sign(errors[:3]) * 10
    decision = decide_regression(_regression(y, challenger, champion), MetricGate(rmse_margin_fraction=0.02))
    low, high = decision.difference_ci
    assert 0 <= low <= high < 0.02 * decision.champion
    assert decision.promote is True


def test_the_rmse_comparison_is_stated_in_words():
    y, errors = _values(), _errors()
    gate = MetricGate(rmse_margin_fraction=0.006)
    decision = decide_regression(_regression(y, y + 1.01 * errors, y + errors), gate)
    low, high = decision.difference_ci
    allowed = 0.006 * decision.champion
    assert decision.reasons[-1] == (
        f"rmse challenger - champion v3 = {decision.challenger - decision.champion:+.4f}, "
        f"95% CI [{low:+.4f}, {high:+.4f}]: could be worse by more than the allowed {allowed:.4f} "
        "(0.6% of the champion's rmse)"
    )
    better = decide_regression(_regression(y, y + errors, y + 1.01 * errors), gate)
    low, high = better.difference_ci
    assert better.reasons[-1] == (
        f"rmse challenger - champion v3 = {better.challenger - better.champion:+.4f}, "
        f"95% CI [{low:+.4f}, {high:+.4f}]: not worse by more than the allowed {0.006 * better.champion:.4f}"
    )


@pytest.mark.parametrize("unscored", [{"champion_pred": np.array([])}, {"champion_metrics": None}])
def test_a_regression_champion_not_scored_on_every_row_fails_closed(unscored):
    y = _values()
    scores = _regression(y, y + _errors(seed=1), y + _errors(seed=2))
    decision = decide_regression(replace(scores, **unscored), MetricGate())
    assert decision.promote is False
    assert decision.reasons[-1] == "champion v3 could not be scored on this holdout: rejecting"


# --- the scores: in memory, or read back from the predictions file ------- #


def _report(tmp_path, family, scores: HoldoutScores) -> EvaluationReport:
    path = tmp_path / "holdout_predictions.npz"
    empty = np.array([], dtype=scores.y_true.dtype)
    np.savez(path, y_true=scores.y_true, challenger_pred=scores.challenger_pred,
             champion_pred=empty if scores.champion_pred is None else scores.champion_pred)
    return EvaluationReport(
        run_id="r", family=family, metrics=dict(scores.metrics), per_class={},
        champion_version=scores.champion_version,
        champion_metrics=None if scores.champion_metrics is None else dict(scores.champion_metrics),
        predictions_file=str(path),
    )


def _rule(report: EvaluationReport):
    """The rule of the report's task (the gate step picks it by family)."""
    return decide_regression if report.family == "regression" else decide_classification


def _decide_from_file(report: EvaluationReport, gate: GateSettings):
    """The decision on the scores read back from the report's file."""
    return _rule(report)(read_holdout_scores(report), gate)


def test_decide_reads_the_report_and_applies_its_family_rule(tmp_path):
    y = three_class_labels()
    strong, weak = predictions_with_accuracy(y, 0.97, 1), predictions_with_accuracy(y, 0.88, 2)
    rejected = _decide_from_file(_report(tmp_path, "tabular", _classification(y, weak, strong)), MetricGate())
    assert rejected.promote is False and rejected.metric == "accuracy" and rejected.difference_ci[1] < 0
    promoted = _decide_from_file(_report(tmp_path, "image", _classification(y, strong, weak)), MetricGate())
    assert promoted.promote is True and promoted.champion == pytest.approx(0.88)

    values = _values()
    small, large = values + _errors(sd=35, seed=1), values + _errors(sd=50, seed=2)
    better = _decide_from_file(_report(tmp_path, "regression", _regression(values, small, large)), MetricGate())
    assert better.promote is True and better.metric == "rmse" and better.difference_ci[1] < 0


def test_decide_without_champion_predictions_in_the_file_fails_closed(tmp_path):
    y = three_class_labels()
    report = _report(tmp_path, "tabular", _classification(y, y.copy(), y.copy()))
    np.savez(report.predictions_file, y_true=y, challenger_pred=y, champion_pred=np.array([], dtype="int64"))
    decision = _decide_from_file(report, MetricGate())
    assert decision.promote is False
    assert any("could not be scored" in r for r in decision.reasons)


# --- NaN fails closed ---------------------------------------------------- #


def test_a_champion_whose_rmse_is_nan_fails_closed():
    """A champion that predicts NaN cannot be compared with: reject and say so."""
    y = _values()
    champion = y + _errors(seed=2)
    champion[0] = np.nan
    decision = decide_regression(_regression(y, y + _errors(seed=1), champion), MetricGate())
    assert decision.promote is False
    assert decision.reasons[-1] == "champion v3 could not be scored on this holdout: rejecting"


def test_an_interval_that_cannot_be_computed_rejects():
    """NaN predictions make a NaN interval, and NaN is not within the margin."""
    y = _values()
    challenger = y + _errors(seed=1)
    challenger[0] = np.nan
    scores = _regression(y, challenger, y + _errors(seed=2), metrics={"r2": 0.9, "rmse": 30.0})
    decision = decide_regression(scores, MetricGate())
    assert decision.promote is False
    assert "could be worse by more than the allowed" in decision.reasons[-1]


# --- the proper-score comparison (the default) --------------------------- #


def _paired_losses(n, worse_by, spread, seed=0, base=1.0):
    """Champion losses, and challenger losses whose per-row difference from
    them has exactly mean `worse_by` and standard deviation `spread`."""
    rng = np.random.default_rng(seed)
    champion = base + rng.uniform(-0.5, 0.5, n)
    noise = rng.normal(size=n)
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    return champion + worse_by + spread * noise, champion


def _proper(challenger_loss, champion_loss, task="classification", metrics=None):
    score = "brier_score" if task == "classification" else "mse"
    passing = {"accuracy": 0.9, "macro_f1": 0.9} if task == "classification" else {"r2": 0.9}
    n = len(challenger_loss)
    return HoldoutScores(
        y_true=np.zeros(n),
        challenger_pred=np.zeros(n),
        metrics=(passing | {score: float(np.mean(challenger_loss))}) if metrics is None else metrics,
        champion_version="2",
        champion_pred=np.zeros(len(champion_loss)),
        champion_metrics=passing | {score: float(np.mean(champion_loss))},
        challenger_loss=challenger_loss,
        champion_loss=champion_loss,
    )


def _bound(n, worse_by, spread, confidence=0.96):
    """The pessimistic end (challenger minus champion): the one-sided t bound."""
    from scipy.stats import t

    return worse_by + t.ppf(confidence, n - 1) * spread / np.sqrt(n)


def test_the_default_comparison_is_the_brier_score():
    y = three_class_labels()
    decision = decide_classification(_classification(y, y.copy()), GateSettings())
    assert GateSettings().comparison == "proper_score"
    assert decision.metric == "brier_score" and decision.higher_is_better is False


def test_the_proper_score_interval_bound_decides_not_the_point_estimate():
    """Worse by 0.018 on average, inside the 0.02 margin, but the interval
    reaches beyond it: rejected."""
    challenger, champion = _paired_losses(3000, worse_by=0.018, spread=0.2)
    decision = decide_classification(_proper(challenger, champion), GateSettings(score_margin=0.02))
    assert decision.resolved is True
    assert decision.promote is False and "could be worse by more than the allowed 0.0200" in decision.reasons[-1]
    assert decision.difference_ci[1] == pytest.approx(_bound(3000, 0.018, 0.2))
    assert decision.difference_ci[0] < 0.018 < 0.02 < decision.difference_ci[1]


@pytest.mark.parametrize(("margin", "promote"), [(0.02, True), (0.0133, True), (0.0131, False), (0.0, False)])
def test_the_score_margin_is_honoured(margin, promote):
    """Worse by 0.01 with the one-sided 96% bound at 0.013197 (a two-sided 95%
    interval would end at 0.01358, and 0.0133 would reject)."""
    challenger, champion = _paired_losses(3000, worse_by=0.01, spread=0.1)
    assert _bound(3000, 0.01, 0.1) == pytest.approx(0.013197, abs=1e-6)
    decision = decide_classification(_proper(challenger, champion), GateSettings(score_margin=margin))
    assert decision.promote is promote and decision.margin == margin


@pytest.mark.parametrize(("worse_by", "promote"), [(-0.05, True), (0.05, False)])
def test_a_lower_proper_score_is_better(worse_by, promote):
    challenger, champion = _paired_losses(500, worse_by=worse_by, spread=0.1)
    decision = decide_classification(_proper(challenger, champion), GateSettings())
    assert decision.promote is promote
    low, high = decision.difference_ci
    assert low < worse_by < high and np.sign(low) == np.sign(high) == np.sign(worse_by)
    assert decision.challenger == pytest.approx(decision.champion + worse_by)


def test_the_proper_score_comparison_is_paired():
    """Losses that vary a lot from row to row but move together: paired, the
    tiny consistent gain is resolved; the same losses with the champion's rows
    shuffled (no longer paired) leave too much noise to promote."""
    rng = np.random.default_rng(3)
    champion = rng.uniform(0.0, 2.0, 100)
    challenger = champion - 0.001 + rng.normal(0, 0.002, 100)
    paired = decide_classification(_proper(challenger, champion), GateSettings(score_margin=0.01))
    assert paired.promote is True and paired.resolved is True
    shuffled = decide_classification(_proper(challenger, rng.permutation(champion)), GateSettings(score_margin=0.01))
    assert shuffled.promote is False


def test_an_identical_challenger_passes_the_proper_score_with_no_margin():
    _, champion = _paired_losses(50, worse_by=0.0, spread=0.1)
    decision = decide_classification(_proper(champion.copy(), champion), GateSettings(score_margin=0.0))
    assert decision.promote is True and decision.detectable == 0.0 and decision.difference_ci == (0.0, 0.0)


def test_every_decision_states_its_power_in_words():
    """36 rows, per-row spread 0.2: the smallest difference detected with 80%
    power by a one-sided 96% bound is (t(35; 0.96) + z(0.8)) * 0.2 / 6; the
    margin of 0.02 needs about ((z(0.96) + z(0.8)) * 0.2 / 0.02)^2 = 673 rows."""
    from scipy.stats import norm, t

    challenger, champion = _paired_losses(36, worse_by=-0.15, spread=0.2)
    decision = decide_classification(_proper(challenger, champion), GateSettings(score_margin=0.02))
    detectable = (t.ppf(0.96, 35) + norm.ppf(0.8)) * 0.2 / 6
    assert decision.detectable == pytest.approx(detectable) and decision.resolved is False
    high = decision.difference_ci[1]
    assert high == pytest.approx(_bound(36, -0.15, 0.2))
    assert decision.promote is True
    assert decision.reasons[-1] == (
        f"brier_score challenger - champion v2 = -0.1500 (lower is better), at most {high:+.4f} at 96% confidence "
        f"(one-sided): not worse by more than the allowed 0.0200, although the holdout cannot resolve the allowed "
        f"margin of 0.0200: 36 holdout rows detect a difference of {detectable:.4f} with 80% power; about 673 rows would"
    )
    resolved = decide_classification(_proper(*_paired_losses(3000, -0.15, 0.2)), GateSettings(score_margin=0.02, power=0.9))
    assert resolved.resolved is True
    assert resolved.reasons[-1].endswith(
        f"not worse by more than the allowed 0.0200 (3000 holdout rows detect a difference of "
        f"{(t.ppf(0.96, 2999) + norm.ppf(0.9)) * 0.2 / np.sqrt(3000):.4f} with 90% power)"
    )


@pytest.mark.parametrize(
    ("policy", "worse_by", "promote", "says"),
    [
        ("non_inferiority", -0.15, True, "not worse by more than the allowed 0.0200, although"),
        ("non_inferiority", -0.05, True, "not worse by more than the allowed 0.0200, although"),
        ("non_inferiority", 0.0, False, "could be worse by more than the allowed 0.0200; the holdout cannot"),
        ("improvement", -0.15, True, "significantly better, which the 'improvement' policy asks for"),
        ("improvement", -0.05, False, "not significantly better, which the 'improvement' policy asks for"),
        ("refuse", -0.15, False, "Rejecting, as the 'refuse' policy says: evaluate on more rows"),
    ],
)
def test_an_underpowered_holdout_follows_the_configured_policy(policy, worse_by, promote, says):
    """36 rows cannot resolve a 0.02 margin (the one-sided bound lies 0.060
    above the mean)."""
    challenger, champion = _paired_losses(36, worse_by=worse_by, spread=0.2)
    decision = decide_classification(_proper(challenger, champion), GateSettings(score_margin=0.02, underpowered=policy))
    assert decision.resolved is False
    assert decision.promote is promote and says in decision.reasons[-1], decision.reasons
    assert "36 holdout rows detect a difference of 0.0882 with 80% power; about 673 rows would" in decision.reasons[-1]


def test_a_resolved_holdout_ignores_the_underpowered_policy():
    challenger, champion = _paired_losses(3000, worse_by=0.005, spread=0.1)
    for policy in ("non_inferiority", "improvement", "refuse"):
        decision = decide_classification(_proper(challenger, champion), GateSettings(underpowered=policy))
        assert decision.resolved is True and decision.promote is True, policy


@pytest.mark.parametrize(("fraction", "promote"), [(0.02, True), (0.01, False)])
def test_the_squared_error_margin_follows_the_rmse_fraction(fraction, promote):
    """Champion MSE 900: an RMSE 2% worse is an MSE (1.02^2 - 1) * 900 = 36.36
    worse; the challenger is 20 worse, at most 26.4 at the one-sided bound."""
    challenger, champion = _paired_losses(3000, worse_by=20.0, spread=200.0, base=900.0)
    decision = decide_regression(_proper(challenger, champion, "regression"), GateSettings(rmse_margin_fraction=fraction))
    assert decision.metric == "mse" and decision.higher_is_better is False
    assert decision.margin == pytest.approx(((1 + fraction) ** 2 - 1) * np.mean(champion))
    assert decision.difference_ci[1] == pytest.approx(_bound(3000, 20.0, 200.0))
    assert decision.promote is promote


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_missing_per_example_losses_fail_closed(task):
    challenger, champion = _paired_losses(100, worse_by=-0.1, spread=0.1)
    rule = decide_classification if task == "classification" else decide_regression
    for broken in ({"champion_loss": None}, {"challenger_loss": None}, {"champion_loss": champion[:-1]}):
        decision = rule(replace(_proper(challenger, champion, task), **broken), GateSettings())
        assert decision.promote is False
        assert decision.reasons[-1] == "per-example losses of both models are missing: cannot compare, rejecting"


def test_a_nan_loss_fails_closed():
    challenger, champion = _paired_losses(3000, worse_by=-0.1, spread=0.1)
    challenger[7] = np.nan
    for policy in ("non_inferiority", "improvement", "refuse"):
        decision = decide_classification(_proper(challenger, champion), GateSettings(underpowered=policy))
        assert decision.promote is False and decision.resolved is False, policy


def test_decide_reads_the_per_example_losses_from_the_file(tmp_path):
    challenger, champion = _paired_losses(400, worse_by=-0.05, spread=0.1)
    scores = _proper(challenger, champion)
    report = _report(tmp_path, "tabular", scores)
    with np.load(report.predictions_file) as saved:
        arrays = dict(saved)
    np.savez(report.predictions_file, **arrays, challenger_loss=challenger, champion_loss=champion)
    assert _decide_from_file(report, GateSettings()).promote is True
    np.savez(report.predictions_file, **arrays, challenger_loss=champion, champion_loss=challenger)
    assert _decide_from_file(report, GateSettings()).promote is False


@pytest.mark.parametrize("family", ["tabular", "regression"])
@pytest.mark.parametrize("champion", [True, False])
def test_the_scores_in_memory_decide_as_the_file_read_back_does(tmp_path, family, champion):
    """The evaluation hands the gate the arrays it writes to the predictions
    file; deciding from them in memory is deciding from the file."""
    rng = np.random.default_rng(3)
    y = three_class_labels() if family == "tabular" else _values()
    n = len(y)
    challenger, champion_loss = _paired_losses(n, worse_by=-0.05, spread=0.1)
    predictions = {
        "y_true": y,
        "challenger_pred": y.copy(),
        "champion_pred": y.copy() if champion else np.array([], dtype=y.dtype),
        "challenger_loss": challenger,
        "champion_loss": champion_loss if champion else np.array([], dtype="float64"),
        "baseline_loss": challenger + rng.uniform(0.0, 0.2, n),
    }
    score = "brier_score" if family == "tabular" else "mse"
    report = EvaluationReport(
        run_id="r", family=family, metrics={score: float(challenger.mean()), "accuracy": 0.9, "r2": 0.9},
        per_class={"0": {"recall": 0.9}} if family == "tabular" else {},
        champion_version="2" if champion else None,
        champion_metrics={score: float(champion_loss.mean()), "accuracy": 0.9} if champion else None,
        predictions_file=str(tmp_path / "holdout_predictions.npz"), baseline="always the mean",
    )
    np.savez(report.predictions_file, **predictions)
    in_memory, read_back = holdout_scores(report, predictions), read_holdout_scores(report)
    rule = _rule(report)
    for gate in (GateSettings(), MetricGate(bootstrap_samples=200)):
        assert rule(in_memory, gate).model_dump_json() == rule(read_back, gate).model_dump_json()


def test_a_margin_equal_to_the_detectable_difference_is_resolved():
    challenger, champion = _paired_losses(400, worse_by=-0.01, spread=0.1)
    detectable = decide_classification(_proper(challenger, champion), GateSettings()).detectable
    at_limit = decide_classification(_proper(challenger, champion), GateSettings(score_margin=detectable))
    assert at_limit.resolved is True and at_limit.margin == at_limit.detectable


def test_a_zero_margin_names_no_number_of_rows():
    """No holdout resolves a margin of 0, so the reason does not promise one."""
    challenger, champion = _paired_losses(36, worse_by=0.0, spread=0.2)
    decision = decide_classification(_proper(challenger, champion), GateSettings(score_margin=0.0))
    assert decision.resolved is False and decision.promote is False
    assert decision.reasons[-1].endswith("36 holdout rows detect a difference of 0.0882 with 80% power")

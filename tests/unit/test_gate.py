"""The gate: absolute thresholds, paired bootstrap, and failing closed."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.records import EvaluationReport
from lockgate.settings import GateSettings
from lockgate.stats import macro_f1, paired_bootstrap_difference
from lockgate.gate import decide

pytestmark = pytest.mark.unit


def _report(tmp_path, y, challenger, champion=None, metric_values=None) -> EvaluationReport:
    path = tmp_path / "pred.npz"
    np.savez(path, y_true=y, challenger_pred=challenger,
             champion_pred=champion if champion is not None else np.array([], dtype="int64"))
    acc = float(np.mean(challenger == y))
    champion_metrics = None
    if champion is not None:
        champion_metrics = {"accuracy": float(np.mean(champion == y)), "macro_f1": macro_f1(y, champion, 3)}
    return EvaluationReport(
        run_id="r", family="tabular", metrics=metric_values or {"accuracy": acc, "macro_f1": macro_f1(y, challenger, 3)},
        per_class={}, champion_version="1" if champion is not None else None,
        champion_metrics=champion_metrics, predictions_file=str(path),
    )


def _labels(n=600, seed=0):
    return np.random.default_rng(seed).integers(0, 3, n)


def _with_accuracy(y, accuracy, seed):
    rng = np.random.default_rng(seed)
    pred = y.copy()
    wrong = rng.choice(len(y), int(round((1 - accuracy) * len(y))), replace=False)
    pred[wrong] = (pred[wrong] + 1) % 3
    return pred


def test_first_model_is_judged_on_thresholds(tmp_path):
    y = _labels()
    decision = decide(_report(tmp_path, y, _with_accuracy(y, 0.95, 1)), GateSettings())
    assert decision.promote
    assert any("no champion yet" in r for r in decision.reasons)


def test_below_threshold_is_rejected_with_reason(tmp_path):
    y = _labels()
    decision = decide(_report(tmp_path, y, _with_accuracy(y, 0.6, 1)), GateSettings())
    assert not decision.promote
    assert any("accuracy 0.6000 is below the required 0.8000" in r for r in decision.reasons)


def test_clearly_worse_challenger_is_rejected(tmp_path):
    y = _labels()
    report = _report(tmp_path, y, _with_accuracy(y, 0.88, 1), champion=_with_accuracy(y, 0.97, 2))
    decision = decide(report, GateSettings())
    assert not decision.promote
    low, high = decision.difference_ci
    assert high < 0 and low < -0.01
    assert any("could be worse" in r for r in decision.reasons)


def test_equal_models_pass(tmp_path):
    y = _labels()
    same = _with_accuracy(y, 0.95, 1)
    decision = decide(_report(tmp_path, y, same, champion=same.copy()), GateSettings())
    assert decision.promote
    assert decision.difference_ci == (0.0, 0.0)


def test_a_small_lucky_edge_is_not_enough_to_hide_noise(tmp_path):
    """Slightly worse on paper but within the noise band: the CI decides, not the point estimate."""
    y = _labels(n=100)
    champion = _with_accuracy(y, 0.95, 2)
    challenger = champion.copy()
    challenger[np.flatnonzero(challenger == y)[:1]] = (y[np.flatnonzero(challenger == y)[:1]] + 1) % 3
    strict = GateSettings(regression_margin=0.0)
    decision = decide(_report(tmp_path, y, challenger, champion=champion), strict)
    assert not decision.promote, "with no margin, a CI reaching below zero must reject"


def test_missing_metric_fails_closed(tmp_path):
    y = _labels()
    report = _report(tmp_path, y, y.copy(), metric_values={"accuracy": 1.0})
    decision = decide(report, GateSettings())
    assert not decision.promote
    assert any("macro_f1 is missing" in r for r in decision.reasons)


def test_unscorable_champion_fails_closed(tmp_path):
    y = _labels()
    report = _report(tmp_path, y, y.copy(), champion=y.copy())
    np.savez(report.predictions_file, y_true=y, challenger_pred=y, champion_pred=np.array([], dtype="int64"))
    decision = decide(report, GateSettings())
    assert not decision.promote
    assert any("could not be scored" in r for r in decision.reasons)


def test_bootstrap_interval_covers_the_true_difference():
    y = _labels(n=2000, seed=3)
    a, b = _with_accuracy(y, 0.90, 4), _with_accuracy(y, 0.85, 5)
    observed, low, high = paired_bootstrap_difference(y, a, b, "accuracy", 2000, 0.95)
    assert observed == pytest.approx(0.05, abs=1e-9)
    assert low < 0.05 < high and low > 0
    f1_obs, f1_low, f1_high = paired_bootstrap_difference(y, a, b, "macro_f1", 300, 0.95)
    assert f1_low < f1_obs < f1_high


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    y = _labels(n=300, seed=7)
    pred = _with_accuracy(y, 0.7, 8)
    assert macro_f1(y, pred, 3) == pytest.approx(f1_score(y, pred, average="macro"))


def _regression_report(tmp_path, y, challenger, champion=None) -> EvaluationReport:
    from lockgate.metrics import regression_metrics

    path = tmp_path / "values.npz"
    np.savez(path, y_true=y, challenger_pred=challenger,
             champion_pred=champion if champion is not None else np.array([], dtype="float32"))
    return EvaluationReport(
        run_id="r", family="regression", metrics=regression_metrics(y, challenger), per_class={},
        champion_version="3" if champion is not None else None,
        champion_metrics=regression_metrics(y, champion) if champion is not None else None,
        predictions_file=str(path),
    )


def _values(n=400, seed=0):
    return np.random.default_rng(seed).normal(150, 75, n)


def _noisy(y, noise, seed):
    return y + np.random.default_rng(seed).normal(0, noise, len(y))


def test_regression_is_judged_on_r2_and_rmse_ceiling(tmp_path):
    y = _values()
    good = decide(_regression_report(tmp_path, y, _noisy(y, 40, 1)), GateSettings())
    assert good.promote and good.metric == "rmse" and not good.higher_is_better
    poor = decide(_regression_report(tmp_path, y, _noisy(y, 90, 1)), GateSettings())
    assert not poor.promote and any("r2" in r and "below the required 0.2000" in r for r in poor.reasons)
    capped = decide(_regression_report(tmp_path, y, _noisy(y, 40, 1)), GateSettings(max_rmse=30))
    assert not capped.promote and any("above the allowed 30.0000" in r for r in capped.reasons)


def test_regression_compares_rmse_lower_is_better(tmp_path):
    y = _values()
    worse = decide(_regression_report(tmp_path, y, _noisy(y, 50, 1), champion=_noisy(y, 35, 2)), GateSettings())
    assert not worse.promote
    assert worse.challenger > worse.champion and worse.difference_ci[0] > 0  # a higher rmse
    assert any("could be worse by more than the allowed" in r for r in worse.reasons)
    better = decide(_regression_report(tmp_path, y, _noisy(y, 35, 1), champion=_noisy(y, 50, 2)), GateSettings())
    assert better.promote and better.difference_ci[1] < 0
    assert any("not worse by more than the allowed" in r for r in better.reasons)


def test_regression_with_unscored_champion_fails_closed(tmp_path):
    y = _values()
    report = _regression_report(tmp_path, y, _noisy(y, 30, 1), champion=_noisy(y, 30, 2))
    np.savez(report.predictions_file, y_true=y, challenger_pred=_noisy(y, 30, 1), champion_pred=np.array([]))
    decision = decide(report, GateSettings())
    assert not decision.promote and any("could not be scored" in r for r in decision.reasons)

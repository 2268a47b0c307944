"""The promotion gate's rules. They fail closed and say why in plain words."""

from __future__ import annotations

import math

from lockgate.metrics import read_predictions
from lockgate.records import EvaluationReport, GateDecision
from lockgate.settings import GateSettings
from lockgate.stats import paired_bootstrap_difference, rmse_bootstrap_improvement


def decide(report: EvaluationReport, gate: GateSettings) -> GateDecision:
    """The rule of the report's family: its task's thresholds, then no
    regression against the champion."""
    from lockgate.families import family_for

    return family_for(report.family).decide(report, gate)


def decide_classification(report: EvaluationReport, gate: GateSettings) -> GateDecision:
    """Accuracy and macro-F1 thresholds, then the chosen metric against the
    champion: the confidence interval's lower bound must not fall below
    minus the allowed margin."""
    reasons: list[str] = []
    passed = True
    value = report.metrics.get(gate.metric, float("nan"))
    for metric, floor in (("accuracy", gate.min_accuracy), ("macro_f1", gate.min_macro_f1)):
        observed = report.metrics.get(metric)
        if observed is None or math.isnan(observed):
            passed = False
            reasons.append(f"{metric} is missing from the evaluation: cannot judge, rejecting")
        elif observed < floor:
            passed = False
            reasons.append(f"{metric} {observed:.4f} is below the required {floor:.4f}")
        else:
            reasons.append(f"{metric} {observed:.4f} meets the required {floor:.4f}")
    decision = GateDecision(promote=False, metric=gate.metric, challenger=value, reasons=reasons)

    if report.champion_version is not None:
        decision.champion = (report.champion_metrics or {}).get(gate.metric)
        predictions = _scored_champion(report, decision.champion)
        if predictions is None:
            passed = False
            reasons.append(f"champion v{report.champion_version} could not be scored on this holdout: rejecting")
        else:
            observed, low, high = paired_bootstrap_difference(
                predictions["y_true"],
                predictions["challenger_pred"],
                predictions["champion_pred"],
                gate.metric,
                gate.bootstrap_samples,
                gate.confidence,
            )
            decision.difference_ci = (low, high)
            verdict = f"{gate.metric} challenger - champion v{report.champion_version} = {observed:+.4f}, " \
                      f"{gate.confidence:.0%} CI [{low:+.4f}, {high:+.4f}]"
            if low < -gate.regression_margin:
                passed = False
                reasons.append(f"{verdict}: could be worse by more than the allowed {gate.regression_margin:.4f}")
            else:
                reasons.append(f"{verdict}: not worse by more than the allowed {gate.regression_margin:.4f}")
    else:
        reasons.append("no champion yet: judged on absolute thresholds only")
    decision.promote = passed
    decision.reasons = reasons
    return decision


def decide_regression(report: EvaluationReport, gate: GateSettings) -> GateDecision:
    """R^2 (and optionally RMSE) thresholds, then RMSE against the champion,
    lower being better, with the same paired-bootstrap rule."""
    reasons: list[str] = []
    passed = True
    rmse, r2 = report.metrics.get("rmse", float("nan")), report.metrics.get("r2", float("nan"))
    checks = [("r2", r2, gate.min_r2, True)]
    if gate.max_rmse is not None:
        checks.append(("rmse", rmse, gate.max_rmse, False))
    for metric, observed, bound, at_least in checks:
        if observed is None or math.isnan(observed):
            passed = False
            reasons.append(f"{metric} is missing from the evaluation: cannot judge, rejecting")
        elif (observed < bound) if at_least else (observed > bound):
            passed = False
            reasons.append(f"{metric} {observed:.4f} is {'below the required' if at_least else 'above the allowed'} {bound:.4f}")
        else:
            reasons.append(f"{metric} {observed:.4f} meets the {'required' if at_least else 'allowed'} {bound:.4f}")
    decision = GateDecision(promote=False, metric="rmse", higher_is_better=False, challenger=rmse, reasons=reasons)
    if report.champion_version is None:
        reasons.append("no champion yet: judged on absolute thresholds only")
    else:
        decision.champion = (report.champion_metrics or {}).get("rmse")
        predictions = _scored_champion(report, decision.champion)
        if predictions is None:
            passed = False
            reasons.append(f"champion v{report.champion_version} could not be scored on this holdout: rejecting")
        else:
            observed, low, high = rmse_bootstrap_improvement(
                predictions["y_true"], predictions["challenger_pred"], predictions["champion_pred"],
                gate.bootstrap_samples, gate.confidence,
            )
            # Reported as challenger minus champion RMSE, so negative is better.
            decision.difference_ci = (-high, -low)
            allowed = gate.rmse_margin_fraction * decision.champion
            verdict = (
                f"rmse challenger - champion v{report.champion_version} = {-observed:+.4f}, "
                f"{gate.confidence:.0%} CI [{-high:+.4f}, {-low:+.4f}]"
            )
            if low < -allowed:
                passed = False
                reasons.append(f"{verdict}: could be worse by more than the allowed {allowed:.4f} "
                               f"({gate.rmse_margin_fraction:.0%} of the champion's rmse)")
            else:
                reasons.append(f"{verdict}: not worse by more than the allowed {allowed:.4f}")
    decision.promote = passed
    decision.reasons = reasons
    return decision


def _scored_champion(report: EvaluationReport, champion_value: float | None) -> dict | None:
    """The holdout predictions, when the champion was scored on every row;
    None otherwise, and the gate then fails closed."""
    predictions = read_predictions(report.predictions_file)
    champion_pred = predictions.get("champion_pred")
    if champion_pred is None or len(champion_pred) != len(predictions["y_true"]) or champion_value is None:
        return None
    return predictions

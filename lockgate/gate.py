"""The promotion gate's rules. They fail closed and say why in plain words.

A rule is a pure function of the holdout scores and the gate settings, so it
can be tested on arrays; `decide` is the adapter that reads the evaluation's
predictions file and hands the scores to the family's rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lockgate.metrics import read_predictions
from lockgate.records import EvaluationReport, GateDecision
from lockgate.settings import GateSettings
from lockgate.stats import paired_bootstrap_difference, rmse_bootstrap_improvement


@dataclass(frozen=True)
class HoldoutScores:
    """Both models on one holdout: the true values, each model's predictions
    (labels or values) and metrics, and which champion version it was."""

    y_true: np.ndarray
    challenger_pred: np.ndarray
    metrics: Mapping[str, float]
    champion_version: str | None = None
    champion_pred: np.ndarray | None = None
    champion_metrics: Mapping[str, float] | None = None


class Bound(NamedTuple):
    """An absolute threshold: a floor the metric must reach, or a ceiling it
    must not pass."""

    metric: str
    limit: float
    at_least: bool = True


def decide(report: EvaluationReport, gate: GateSettings) -> GateDecision:
    """The rule of the report's family: its task's thresholds, then no
    regression against the champion."""
    from lockgate.families import family_for

    return family_for(report.family).decide(read_holdout_scores(report), gate)


def read_holdout_scores(report: EvaluationReport) -> HoldoutScores:
    predictions = read_predictions(report.predictions_file)
    return HoldoutScores(
        y_true=predictions["y_true"],
        challenger_pred=predictions["challenger_pred"],
        metrics=report.metrics,
        champion_version=report.champion_version,
        champion_pred=predictions.get("champion_pred"),
        champion_metrics=report.champion_metrics,
    )


def decide_classification(scores: HoldoutScores, gate: GateSettings) -> GateDecision:
    """Accuracy and macro-F1 floors, then the chosen metric against the
    champion: the confidence interval's lower bound must not fall below
    minus the allowed margin."""
    decision = _judge_thresholds(
        scores.metrics, [Bound("accuracy", gate.min_accuracy), Bound("macro_f1", gate.min_macro_f1)], gate.metric
    )
    champion_pred = _champion_to_compare(scores, decision)
    if champion_pred is None:
        return decision
    observed, low, high = paired_bootstrap_difference(
        scores.y_true, scores.challenger_pred, champion_pred, gate.metric, gate.bootstrap_samples, gate.confidence
    )
    decision.difference_ci = (low, high)
    verdict = (
        f"{gate.metric} challenger - champion v{scores.champion_version} = {observed:+.4f}, "
        f"{gate.confidence:.0%} CI [{low:+.4f}, {high:+.4f}]"
    )
    if low >= -gate.regression_margin:  # a NaN bound rejects
        decision.reasons.append(f"{verdict}: not worse by more than the allowed {gate.regression_margin:.4f}")
    else:
        _reject(decision, f"{verdict}: could be worse by more than the allowed {gate.regression_margin:.4f}")
    return decision


def decide_regression(scores: HoldoutScores, gate: GateSettings) -> GateDecision:
    """R^2 (and optionally RMSE) thresholds, then RMSE against the champion,
    lower being better, with the same lower-bound rule; the margin is a
    fraction of the champion's RMSE."""
    bounds = [Bound("r2", gate.min_r2)]
    if gate.max_rmse is not None:
        bounds.append(Bound("rmse", gate.max_rmse, at_least=False))
    decision = _judge_thresholds(scores.metrics, bounds, "rmse", higher_is_better=False)
    champion_pred = _champion_to_compare(scores, decision)
    if champion_pred is None:
        return decision
    improvement, low, high = rmse_bootstrap_improvement(
        scores.y_true, scores.challenger_pred, champion_pred, gate.bootstrap_samples, gate.confidence
    )
    # The interval is of champion minus challenger RMSE (positive: the
    # challenger is better); it is reported as challenger minus champion.
    decision.difference_ci = (-high, -low)
    allowed = gate.rmse_margin_fraction * decision.champion
    verdict = (
        f"rmse challenger - champion v{scores.champion_version} = {-improvement:+.4f}, "
        f"{gate.confidence:.0%} CI [{-high:+.4f}, {-low:+.4f}]"
    )
    if low >= -allowed:  # a NaN bound rejects
        decision.reasons.append(f"{verdict}: not worse by more than the allowed {allowed:.4f}")
    else:
        _reject(
            decision,
            f"{verdict}: could be worse by more than the allowed {allowed:.4f} "
            f"({gate.rmse_margin_fraction:.0%} of the champion's rmse)",
        )
    return decision


def _judge_thresholds(
    metrics: Mapping[str, float], bounds: list[Bound], metric: str, higher_is_better: bool = True
) -> GateDecision:
    """A decision on the absolute thresholds alone; a missing or NaN metric
    cannot be judged, so it rejects."""
    decision = GateDecision(
        promote=True, metric=metric, higher_is_better=higher_is_better, challenger=metrics.get(metric, math.nan)
    )
    for bound in bounds:
        observed = metrics.get(bound.metric)
        if observed is None or math.isnan(observed):
            _reject(decision, f"{bound.metric} is missing from the evaluation: cannot judge, rejecting")
        elif bound.at_least and observed < bound.limit:
            _reject(decision, f"{bound.metric} {observed:.4f} is below the required {bound.limit:.4f}")
        elif not bound.at_least and observed > bound.limit:
            _reject(decision, f"{bound.metric} {observed:.4f} is above the allowed {bound.limit:.4f}")
        else:
            required = "required" if bound.at_least else "allowed"
            decision.reasons.append(f"{bound.metric} {observed:.4f} meets the {required} {bound.limit:.4f}")
    return decision


def _champion_to_compare(scores: HoldoutScores, decision: GateDecision) -> np.ndarray | None:
    """The champion's predictions when there is a champion to compare with.
    None when there is none (thresholds alone decide) and when it was not
    scored on every holdout row or its metric is missing or NaN (the decision
    is then a rejection)."""
    if scores.champion_version is None:
        decision.reasons.append("no champion yet: judged on absolute thresholds only")
        return None
    decision.champion = (scores.champion_metrics or {}).get(decision.metric)
    champion_pred = scores.champion_pred
    scored = (
        champion_pred is not None
        and len(champion_pred) == len(scores.y_true)
        and decision.champion is not None
        and not math.isnan(decision.champion)
    )
    if not scored:
        _reject(decision, f"champion v{scores.champion_version} could not be scored on this holdout: rejecting")
        return None
    return champion_pred


def _reject(decision: GateDecision, reason: str) -> None:
    decision.promote = False
    decision.reasons.append(reason)

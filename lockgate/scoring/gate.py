"""The promotion gate's rules. They fail closed and say why in plain words.

A rule is a pure function of the holdout scores and the gate settings, so it
can be tested on arrays. The evaluation hands the gate its scores in memory
(`holdout_scores` puts them together from the report and the holdout's
arrays); `read_holdout_scores` makes the same scores from the predictions file
the evaluation leaves for people and tools. Which rule applies is the family's
choice, made by the gate step (tasks/gate.py), not here. Absolute floors
apply only when set. A first model, with no champion to compare with, must
beat no skill (the training rows' class shares or mean) on the same proper
score and one-sided bound as the champion comparison below.

Why a proper score, paired, with a t-interval. Accuracy scores each row 0 or
1, so two models differ only on the few rows where one is right and the other
wrong: on 36 rows the 95% interval of an accuracy difference is about +-0.11,
and a margin of 0.01 can never be cleared by anything but an identical model.
A proper scoring rule (the Brier score for classifiers, the squared error for
regression) scores every row by how much probability the model put on the
truth, so a better-calibrated or more confident-and-right model shows on
every row, not only on the disagreements. The two models' losses on the same
row move together, so the interval is of the per-row difference (pairing),
and for a mean of bounded differences Student's t-interval holds its level
from a few dozen rows. The question is one-sided (could the challenger be
worse by more than the margin?), so the bound is one-sided at
`score_confidence`: a challenger exactly at the margin is promoted at most
about 1 - score_confidence of the time, and no test of the mean difference
at that level has more power (for normal differences the one-sided t-test
is the most powerful one).
`bench/gate_power.py` measures the false- and true-promotion rates; it also
shows the limit no rule escapes: the power to pass an equal challenger is
set by margin / (spread / sqrt(rows)), so a tight margin needs many rows. Every decision states the smallest difference the
holdout could detect; when that is larger than the margin the decision says
so and applies the configured policy (`GateSettings.underpowered`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lockgate.core.records import EvaluationReport, GateDecision, NoSkillComparison
from lockgate.core.settings import GateSettings
from lockgate.scoring.metrics import read_predictions
from lockgate.scoring.stats import (
    paired_bootstrap_difference,
    paired_loss_difference,
    rmse_bootstrap_improvement,
    rows_to_detect,
)


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
    # Per-row losses under the family's proper score (Brier score, squared
    # error), for the proper-score comparison.
    challenger_loss: np.ndarray | None = None
    champion_loss: np.ndarray | None = None
    # The no-skill baseline's per-row losses (a first model must beat it) and
    # what it answers, in words.
    baseline_loss: np.ndarray | None = None
    baseline: str = "the no-skill baseline"
    # Classification: each class's holdout recall, shown beside accuracy.
    recall: Mapping[str, float] | None = None


class Bound(NamedTuple):
    """An absolute threshold: a floor the metric must reach, or a ceiling it
    must not pass."""

    metric: str
    limit: float | None
    at_least: bool = True


def holdout_scores(report: EvaluationReport, predictions: Mapping[str, np.ndarray]) -> HoldoutScores:
    """The scores a rule takes: the report's metrics, and the holdout's arrays
    as the evaluation computed them (or as read back from its predictions
    file): y_true, challenger_pred and, where present, champion_pred and
    the per-row losses."""
    return HoldoutScores(
        y_true=predictions["y_true"],
        challenger_pred=predictions["challenger_pred"],
        metrics=report.metrics,
        champion_version=report.champion_version,
        champion_pred=predictions.get("champion_pred"),
        champion_metrics=report.champion_metrics,
        challenger_loss=predictions.get("challenger_loss"),
        champion_loss=predictions.get("champion_loss"),
        baseline_loss=predictions.get("baseline_loss"),
        baseline=report.baseline,
        recall={name: row["recall"] for name, row in report.per_class.items() if "recall" in row},
    )


def read_holdout_scores(report: EvaluationReport) -> HoldoutScores:
    """The same scores, read back from the report's predictions file."""
    return holdout_scores(report, read_predictions(report.predictions_file))


def decide_classification(scores: HoldoutScores, gate: GateSettings) -> GateDecision:
    """Accuracy and macro-F1 floors where set; a first model must beat the
    class shares on the Brier score; then the comparison with the champion:
    by default the Brier score (lower is better), at most `score_margin`
    worse at the interval's bound; or the chosen metric (`comparison="metric"`)."""
    floors = _set_bounds(Bound("accuracy", gate.min_accuracy), Bound("macro_f1", gate.min_macro_f1))
    metric = "brier_score" if gate.comparison == "proper_score" else gate.metric
    decision = _judge_thresholds(scores.metrics, floors, metric, higher_is_better=gate.comparison != "proper_score")
    decision.imbalance = _imbalance_figures(scores)
    if scores.champion_version is None:
        _beat_no_skill(decision, scores, gate, "brier_score")
        return decision
    if gate.comparison == "proper_score":
        if _champion_to_compare(scores, decision) is not None:
            _compare_losses(decision, scores, gate, gate.score_margin)
        return decision
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
    """R^2 and RMSE thresholds where set; a first model must beat the
    training mean on the squared error; then the comparison with the
    champion, lower being better: by default the mean squared error, whose
    margin is what lets the RMSE grow by `rmse_margin_fraction`; or the RMSE
    itself with a paired bootstrap (`comparison="metric"`)."""
    bounds = _set_bounds(Bound("r2", gate.min_r2), Bound("rmse", gate.max_rmse, at_least=False))
    metric = "mse" if gate.comparison == "proper_score" else "rmse"
    decision = _judge_thresholds(scores.metrics, bounds, metric, higher_is_better=False)
    if scores.champion_version is None:
        _beat_no_skill(decision, scores, gate, "mse")
        return decision
    if gate.comparison == "proper_score":
        if _champion_to_compare(scores, decision) is not None:
            margin = ((1 + gate.rmse_margin_fraction) ** 2 - 1) * decision.champion
            _compare_losses(decision, scores, gate, margin)
        return decision
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
            f"({gate.rmse_margin_fraction:.1%} of the champion's rmse)",
        )
    return decision


def _compare_losses(decision: GateDecision, scores: HoldoutScores, gate: GateSettings, margin: float) -> None:
    """The proper-score rule: the interval's bound of (champion loss minus
    challenger loss) must not fall below minus the margin, and the decision
    states the holdout's power. When the holdout cannot resolve the margin,
    `gate.underpowered` decides."""
    if scores.challenger_loss is None or scores.champion_loss is None or len(scores.champion_loss) != len(scores.challenger_loss):
        _reject(decision, "per-example losses of both models are missing: cannot compare, rejecting")
        return
    paired = paired_loss_difference(scores.challenger_loss, scores.champion_loss, gate.score_confidence, gate.power)
    decision.difference_ci = (-paired.high, -paired.low)
    decision.margin, decision.detectable = margin, paired.detectable
    decision.resolved = paired.detectable <= margin  # NaN: not resolved
    verdict = (
        f"{decision.metric} challenger - champion v{scores.champion_version} = {-paired.improvement:+.4f} "
        f"(lower is better), at most {-paired.low:+.4f} at {gate.score_confidence:.0%} confidence (one-sided)"
    )
    power = (
        f"{paired.rows} holdout rows detect a difference of {paired.detectable:.4f} "
        f"with {gate.power:.0%} power"
    )
    not_worse = paired.low >= -margin  # a NaN bound rejects
    if decision.resolved:
        if not_worse:
            decision.reasons.append(f"{verdict}: not worse by more than the allowed {margin:.4f} ({power})")
        else:
            _reject(decision, f"{verdict}: could be worse by more than the allowed {margin:.4f} ({power})")
        return
    needed = rows_to_detect(paired.spread, margin, gate.score_confidence, gate.power)
    unresolved = (
        f"the holdout cannot resolve the allowed margin of {margin:.4f}: {power}"
        + (f"; about {needed} rows would" if needed else "")
    )
    if gate.underpowered == "refuse":
        _reject(decision, f"{verdict}; {unresolved}. Rejecting, as the 'refuse' policy says: evaluate on more rows")
    elif gate.underpowered == "improvement":
        if paired.low > 0:
            decision.reasons.append(f"{verdict}: significantly better, which the 'improvement' policy asks for when {unresolved}")
        else:
            _reject(decision, f"{verdict}: not significantly better, which the 'improvement' policy asks for when {unresolved}")
    elif not_worse:
        decision.reasons.append(f"{verdict}: not worse by more than the allowed {margin:.4f}, although {unresolved}")
    else:
        _reject(decision, f"{verdict}: could be worse by more than the allowed {margin:.4f}; {unresolved}")


def _beat_no_skill(decision: GateDecision, scores: HoldoutScores, gate: GateSettings, score: str) -> None:
    """A first model has no champion to be compared with, so it is compared
    with no skill: the baseline that always answers the training rows' class
    shares (or mean), on the same proper score, paired rows and one-sided
    bound as the champion comparison. It must be better at that bound: a
    model that only learnt the majority class is rejected however high its
    accuracy (on a 95% majority table it has 0.95)."""
    model, baseline = scores.challenger_loss, scores.baseline_loss
    if model is None or baseline is None or len(model) != len(baseline) or not len(model):
        _reject(decision, f"per-example losses of the model and of {scores.baseline} are missing: "
                          "cannot tell whether it beats no skill, rejecting")
        return
    paired = paired_loss_difference(model, baseline, gate.score_confidence, gate.power)
    decision.no_skill = NoSkillComparison(
        score=score, baseline=scores.baseline, model_score=float(np.mean(model)), baseline_score=float(np.mean(baseline)),
        improvement_low=paired.low, detectable=paired.detectable,
    )
    verdict = (
        f"no champion yet, so judged against no skill: {score} {np.mean(model):.4f} against {np.mean(baseline):.4f} "
        f"for {scores.baseline}, better by {paired.improvement:+.4f}, at least {paired.low:+.4f} "
        f"at {gate.score_confidence:.0%} confidence (one-sided; {paired.rows} holdout rows detect "
        f"{paired.detectable:.4f} with {gate.power:.0%} power)"
    )
    if paired.low > 0:  # a NaN bound rejects
        decision.reasons.append(f"{verdict}: better than no skill")
    else:
        _reject(decision, f"{verdict}: not shown to be better than no skill, rejecting")


def _imbalance_figures(scores: HoldoutScores) -> dict[str, float]:
    """Balanced accuracy, the majority class's rate and each class's recall:
    on a 95/5 table an accuracy of 0.95 says nothing without them."""
    figures = {k: float(scores.metrics[k]) for k in ("accuracy", "balanced_accuracy", "majority_class_rate")
               if k in scores.metrics}
    return figures | {f"recall[{name}]": float(value) for name, value in (scores.recall or {}).items()}


def _set_bounds(*bounds: Bound) -> list[Bound]:
    """The thresholds the user set; an unset one (None) is not a rule."""
    return [b for b in bounds if b.limit is not None]


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
    """The champion's predictions; None when it was not scored on every
    holdout row or its metric is missing or NaN (the decision is then a
    rejection)."""
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

"""Paired comparisons of two models on one holdout: a t-interval on
per-example proper-score differences (the gate's default), and the paired
bootstrap of a whole-holdout metric (accuracy, macro-F1, RMSE)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """Champion loss minus challenger loss, averaged over the holdout rows
    (positive: the challenger is better), with its confidence interval and
    the smallest true difference this many rows detects at the stated power."""

    improvement: float
    low: float
    high: float
    detectable: float
    rows: int
    spread: float  # standard deviation of the per-row differences


def brier_losses(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-row multi-class Brier score: the squared distance between the
    predicted probabilities and the one-hot truth (0 perfect, 2 worst)."""
    proba = proba.astype("float64")
    one_hot = np.zeros_like(proba)
    one_hot[np.arange(len(y_true)), y_true.astype("int64")] = 1.0
    return ((proba - one_hot) ** 2).sum(axis=1)


def squared_errors(y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return (predicted.astype("float64").reshape(-1) - y_true.astype("float64").reshape(-1)) ** 2


def paired_loss_difference(
    challenger_loss: np.ndarray, champion_loss: np.ndarray, confidence: float, power: float
) -> PairedDifference:
    """Student's t-interval of the mean per-row difference. Pairing is what
    makes small holdouts usable: both models' losses on the same row move
    together, so only their difference's spread counts.

    Each end is a one-sided bound at `confidence` (so the interval is
    two-sided at 2 * confidence - 1): the gate asks the one-sided question
    "could the challenger be worse by more than the margin?", and a bound at
    95% promotes a challenger exactly at the margin 5% of the time, which is
    the false-promotion rate it promises. A two-sided 95% interval would test
    at 2.5% and give away power for nothing. NaN where fewer than two rows
    (or a NaN loss) leave nothing to judge."""
    # deferred: SciPy loads only when a statistic needs it
    from scipy.stats import norm, t

    differences = champion_loss.astype("float64") - challenger_loss.astype("float64")
    rows = len(differences)
    if rows < 2:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, rows, math.nan)
    mean = float(differences.mean())
    spread = float(differences.std(ddof=1))
    error = spread / math.sqrt(rows)
    critical = float(t.ppf(confidence, rows - 1))
    detectable = (critical + float(norm.ppf(power))) * error
    return PairedDifference(mean, mean - critical * error, mean + critical * error, detectable, rows, spread)


def rows_to_detect(spread: float, difference: float, confidence: float, power: float) -> int:
    """About how many holdout rows detect `difference` with a one-sided bound
    at this confidence and power, given the per-row spread of the paired
    differences."""
    # deferred: SciPy loads only when a statistic needs it
    from scipy.stats import norm

    if not difference > 0 or math.isnan(spread):
        return 0
    z = float(norm.ppf(confidence)) + float(norm.ppf(power))
    return math.ceil((z * spread / difference) ** 2)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> float:
    """Mean F1 over the classes present in `y_true`: a resample that lacks a
    class is not scored on it."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=classes)
    predicted = np.bincount(y_pred, minlength=classes)
    actual = np.bincount(y_true, minlength=classes)
    present = actual > 0  # so the denominator below is never zero
    f1 = 2 * tp[present] / (predicted[present] + actual[present])
    return float(f1.mean()) if present.any() else 0.0


def rmse_bootstrap_improvement(
    y_true: np.ndarray, challenger: np.ndarray, champion: np.ndarray, samples: int, confidence: float, seed: int = 0
) -> tuple[float, float, float]:
    """(observed, CI low, CI high) of champion RMSE minus challenger RMSE on the
    same resampled rows: positive means the challenger is better."""
    challenger_sq = (challenger.astype("float64") - y_true) ** 2
    champion_sq = (champion.astype("float64") - y_true) ** 2
    observed = float(np.sqrt(champion_sq.mean()) - np.sqrt(challenger_sq.mean()))
    rng = np.random.default_rng(seed)
    diffs = np.full(samples, np.nan)  # a draw left unfilled shows as NaN, and the gate rejects NaN
    for start in range(0, samples, 200):  # bounded memory on large holdouts
        idx = rng.integers(0, len(y_true), size=(min(200, samples - start), len(y_true)))
        diffs[start : start + len(idx)] = np.sqrt(champion_sq[idx].mean(axis=1)) - np.sqrt(challenger_sq[idx].mean(axis=1))
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return observed, float(low), float(high)


def metric_value(metric: str, y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> float:
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0
    if metric == "macro_f1":
        return macro_f1(y_true, y_pred, classes)
    raise ValueError(f"unknown gate metric {metric!r}")


def paired_bootstrap_difference(
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    metric: str,
    samples: int,
    confidence: float,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(observed difference, CI low, CI high) of challenger minus champion.

    Both models are scored on the same resampled rows each time, so the
    interval reflects the difference, not two independent noises.
    """
    classes = int(max(y_true.max(initial=0), challenger.max(initial=0), champion.max(initial=0))) + 1
    observed = metric_value(metric, y_true, challenger, classes) - metric_value(metric, y_true, champion, classes)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    diffs = np.full(samples, np.nan)  # a draw left unfilled shows as NaN, and the gate rejects NaN
    if metric == "accuracy":
        gain = (challenger == y_true).astype("float64") - (champion == y_true).astype("float64")
        idx = rng.integers(0, n, size=(samples, n))
        diffs = gain[idx].mean(axis=1)
    else:
        for i in range(samples):
            rows = rng.integers(0, n, size=n)
            diffs[i] = metric_value(metric, y_true[rows], challenger[rows], classes) - metric_value(
                metric, y_true[rows], champion[rows], classes
            )
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return float(observed), float(low), float(high)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a proportion: sound at small counts
    and at 0 or 100%, where the normal approximation is not."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    # deferred: SciPy loads only where an interval is asked for
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rmse_interval(squared: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of a root mean squared error: Student's t on the mean of the
    per-row squared errors, the bounds then square-rooted."""
    n = len(squared)
    if n < 2:
        return (float("nan"), float("nan"))
    # deferred: SciPy loads only where an interval is asked for
    from scipy.stats import t

    mean, spread = float(squared.mean()), float(squared.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * spread / math.sqrt(n)
    return (math.sqrt(max(0.0, mean - half)), math.sqrt(mean + half))

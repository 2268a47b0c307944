"""Paired bootstrap of a metric difference between two models on one holdout."""

from __future__ import annotations

import numpy as np


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

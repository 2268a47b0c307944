"""Judging an export against the Keras model, and timing it.

A converter can succeed and still change what the model predicts, so every
format is judged here by the same rule, on the same holdout, with the same
latency measure; no format judges itself.
"""

from __future__ import annotations

import time

import numpy as np

from lockgate.core.records import ExportResult
from lockgate.core.settings import ExportSettings
from lockgate.export.base import Predict

TASKS = ("classification", "regression")


def judge_parity(
    fmt: str,
    task: str,
    keras_outputs: np.ndarray,
    export_outputs: np.ndarray,
    y_holdout: np.ndarray,
    settings: ExportSettings,
) -> ExportResult:
    """Compare an export's holdout outputs with the Keras model's.

    Classification: share of examples with the same predicted label.
    Regression: share of examples within `regression_tolerance` times the
    holdout target's standard deviation of the Keras value."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} for judging parity; known: {', '.join(TASKS)}")
    expected = np.asarray(keras_outputs, dtype="float64").reshape(len(keras_outputs), -1)
    observed = np.asarray(export_outputs, dtype="float64").reshape(len(export_outputs), -1)
    n = len(expected)
    if observed.shape != expected.shape:
        return ExportResult(
            format=fmt, status="failed_parity",
            reason=f"outputs have shape {observed.shape}; the Keras model's have {expected.shape}",
        )
    if n == 0:
        return ExportResult(format=fmt, status="failed_parity", reason="no holdout examples to compare on")
    non_finite = int((~np.isfinite(observed)).sum())
    if non_finite:
        return ExportResult(
            format=fmt, status="failed_parity",
            reason=f"{non_finite} of {observed.size} outputs on {n} holdout examples are not finite (NaN or inf)",
        )
    max_abs_difference = float(np.abs(observed - expected).max())
    required = settings.min_label_agreement
    if task == "classification":
        agreement = float(np.mean(observed.argmax(axis=1) == expected.argmax(axis=1)))
        measure = "labels agree"
    else:
        std = float(np.std(np.asarray(y_holdout, dtype="float64")))
        scale = std if np.isfinite(std) and std > 0 else 1.0
        tolerance = settings.regression_tolerance * scale
        agreement = float(np.mean(np.abs(observed - expected).max(axis=1) <= tolerance))
        measure = f"predictions lie within {tolerance:.4g} ({settings.regression_tolerance:g} x the target's std)"
    shown, needed = _percentages(agreement, required)
    if agreement >= required:
        return ExportResult(
            format=fmt, status="passed", agreement=agreement, max_abs_difference=max_abs_difference,
        )
    return ExportResult(
        format=fmt,
        status="failed_parity",
        reason=f"{measure} on {shown} of {n} holdout examples; at least {needed} is required",
        agreement=agreement,
        max_abs_difference=max_abs_difference,
    )


def _percentages(value: float, required: float) -> tuple[str, str]:
    """Both as percentages, with enough decimals that they do not look equal."""
    for decimals in (1, 2, 3, 4):
        shown, needed = f"{value:.{decimals}%}", f"{required:.{decimals}%}"
        if shown != needed or value == required:
            return shown, needed
    return shown, needed


def median_latency_ms(predict: Predict, one_example: np.ndarray, repeats: int) -> float:
    """Median wall time of `repeats` single-example calls, after one warm-up call."""
    predict(one_example)
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        predict(one_example)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def in_chunks(predict: Predict, x: np.ndarray, size: int) -> np.ndarray:
    """`predict` over `x` in chunks, as float32 of shape (n, outputs)."""
    parts = []
    for start in range(0, len(x), size):
        out = np.asarray(predict(x[start : start + size]), dtype="float32")
        parts.append(out.reshape(len(out), -1))
    if not parts:
        return np.zeros((0, 0), dtype="float32")
    return np.concatenate(parts)

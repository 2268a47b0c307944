"""Holdout metrics of either task, and the predictions file the gate reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lockgate.scoring.stats import brier_losses


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy beside balanced accuracy and the majority class's rate (what
    always answering the most frequent class scores), macro-F1, log-loss,
    Brier score and per-class precision/recall."""
    # deferred: scikit-learn loads only where it is used
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    clipped = np.clip(proba.astype("float64"), 1e-7, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return {
        "metrics": {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
            "majority_class_rate": float(support.max() / support.sum()) if support.sum() else 0.0,
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "log_loss": float(log_loss(y_true, clipped, labels=labels)),
            "brier_score": float(brier_losses(y_true, proba).mean()),
        },
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "support": float(s)}
            for name, p, r, s in zip(class_names, precision, recall, support)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels),
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE (and its square, the MSE), MAE and R^2, beside the RMSE of always
    predicting the mean."""
    errors = predicted.astype("float64") - y_true.astype("float64")
    variance = float(np.var(y_true.astype("float64")))
    rmse = float(np.sqrt(np.mean(errors**2)))
    return {
        "rmse": rmse,
        "mse": float(np.mean(errors**2)),
        "mae": float(np.mean(np.abs(errors))),
        "r2": float(1 - np.mean(errors**2) / variance) if variance > 0 else float("nan"),
        "mean_predictor_rmse": float(np.sqrt(variance)),
    }


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}

"""Data made by the tests: the sample reviews of `lockgate.data.samples` in the
IMDB archive's layout, and labels and predictions for the gate's statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lockgate.data.samples import make_reviews


def write_review_folder(root: Path, rows: int = 200, seed: int = 1) -> Path:
    """The IMDB archive's layout: one folder per class of .txt files."""
    frame = make_reviews(rows, seed)
    for i, (text, label) in enumerate(zip(frame["review"], frame["sentiment"])):
        folder = root / ("pos" if label == "positive" else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_review.txt").write_text(text, encoding="utf-8")
    return root


def three_class_labels(n: int = 600, seed: int = 0) -> np.ndarray:
    """Holdout labels for the gate's statistics."""
    return np.random.default_rng(seed).integers(0, 3, n)


def predictions_with_accuracy(y: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Predictions of `y` that are right on exactly `accuracy` of the rows,
    wrong on rows drawn with `seed`."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    wrong = rng.choice(len(y), int(round((1 - accuracy) * len(y))), replace=False)
    pred[wrong] = (pred[wrong] + 1) % 3
    return pred

"""Figures people would rather look at than read: curves, confusion matrices,
and predicted-against-actual plots for regression."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    # deferred: matplotlib loads only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # deferred: matplotlib loads only when a figure is drawn
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], path: Path, first_epoch: int = 0) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    second = "accuracy" if "accuracy" in history else "rmse"
    for ax, metric in zip(axes, ("loss", second)):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                epochs = np.arange(first_epoch + 1, first_epoch + len(history[key]) + 1)
                ax.plot(epochs, history[key], style, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_image(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    plt = pyplot()
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def prediction_scatter(actual: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> Path:
    """Predicted against actual values, and the residuals, for a regression."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    axes[0].scatter(actual, predicted, s=8, alpha=0.6)
    axes[0].plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
    axes[0].set_xlabel("actual")
    axes[0].set_ylabel("predicted")
    axes[0].legend()
    axes[1].hist(predicted - actual, bins=30)
    axes[1].set_xlabel("residual (predicted - actual)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def distribution_panels(
    panels: list[tuple[str, np.ndarray, np.ndarray, list[str] | None]], path: Path, title: str
) -> Path:
    """Served against held-out values, one panel a feature: overlaid
    histograms for numbers, side-by-side shares for categories (`labels`
    names each code)."""
    plt = pyplot()
    columns = min(3, max(1, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, reference, window, labels) in zip(axes.flat, panels):
        reference, window = reference[np.isfinite(reference)], window[np.isfinite(window)]
        if labels is not None:
            codes = np.union1d(np.unique(reference), np.unique(window)).astype(int)
            ref_share = np.array([(reference == c).mean() if len(reference) else 0 for c in codes])
            win_share = np.array([(window == c).mean() if len(window) else 0 for c in codes])
            keep = np.argsort(-(ref_share + win_share))[:12]
            positions = np.arange(len(keep))
            ax.bar(positions - 0.2, ref_share[keep], width=0.4, label="held out")
            ax.bar(positions + 0.2, win_share[keep], width=0.4, label="served")
            names = [labels[c] if 0 <= c < len(labels) else str(c) for c in codes[keep]]
            ax.set_xticks(positions, [n[:12] for n in names], rotation=45, ha="right", fontsize=7)
            ax.set_ylabel("share")
        else:
            both = np.concatenate([reference, window])
            bins = np.histogram_bin_edges(both, bins=30) if both.size else 10
            ax.hist(reference, bins=bins, density=True, alpha=0.5, label="held out")
            ax.hist(window, bins=bins, density=True, alpha=0.5, label="served")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

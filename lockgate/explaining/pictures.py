"""Attributions drawn for people: a map per class for images, highlighted
tokens for texts, and a bar chart of importances for tables."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from lockgate.scoring.plots import pyplot

MAX_CLASSES_DRAWN = 10
HIGHLIGHTED_TEXTS = 12


def image_maps(images: np.ndarray, values: np.ndarray, explained: np.ndarray, class_names: list[str], path: Path) -> Path:
    """Per predicted class: the mean image and the mean attribution map
    (red raised the class's probability, blue lowered it)."""
    plt = pyplot()
    classes = [c for c in np.unique(explained)][:MAX_CLASSES_DRAWN]
    fig, axes = plt.subplots(2, max(len(classes), 1), figsize=(1.8 * max(len(classes), 1) + 1, 4), squeeze=False)
    for column, label in enumerate(classes):
        chosen = explained == label
        picture = images[chosen].mean(axis=0)
        picture = picture[..., 0] if picture.shape[-1] == 1 else picture / max(float(picture.max()), 1e-9)
        attribution = values[chosen].sum(axis=-1).mean(axis=0)
        bound = float(np.abs(attribution).max()) or 1.0
        axes[0, column].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axes[0, column].set_title(f"{class_names[label] if label < len(class_names) else label} ({int(chosen.sum())})",
                                  fontsize=8)
        axes[1, column].imshow(attribution, cmap="bwr", vmin=-bound, vmax=bound)
        for row in (0, 1):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
    axes[0, 0].set_ylabel("mean image", fontsize=8)
    axes[1, 0].set_ylabel("attribution", fontsize=8)
    fig.suptitle("Integrated gradients by predicted class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def importance_chart(attributions: dict[str, float], permutation: dict[str, float],
                     spread: dict[str, float], path: Path, top: int = 20) -> Path:
    """The most important columns by both methods, side by side, each scaled
    to its largest value so the two rankings can be compared by eye."""
    plt = pyplot()
    names = list(permutation)[:top] or list(attributions)[:top]
    names += [n for n in list(attributions)[:top] if n not in names][: max(0, top - len(names))]
    names = names[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.4))
    positions = np.arange(len(names))
    height = 0.4 if attributions and permutation else 0.8
    if permutation:
        scale = max(max(permutation.values()), 1e-12)
        ax.barh(positions + (height / 2 if attributions else 0), [permutation.get(n, 0) / scale for n in names],
                height, xerr=[spread.get(n, 0) / scale for n in names], label="permutation importance", color="#4c72b0")
    if attributions:
        scale = max(max(attributions.values()), 1e-12)
        ax.barh(positions - (height / 2 if permutation else 0), [attributions.get(n, 0) / scale for n in names],
                height, label="integrated gradients (mean |attribution|)", color="#dd8452")
    ax.set_yticks(positions, names, fontsize=8)
    ax.set_xlabel("importance, relative to the largest")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Global feature importance on the holdout", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def token_highlights(ids: np.ndarray, per_token: np.ndarray, words: list[str], explained: np.ndarray,
                     class_names: list[str], path: Path) -> Path:
    """An HTML page of explained texts, each token shaded by its attribution
    to the predicted class (green for, red against)."""
    rows = []
    for row_ids, values, label in list(zip(np.asarray(ids), per_token, explained))[:HIGHLIGHTED_TEXTS]:
        bound = float(np.abs(values).max()) or 1.0
        spans = []
        for token, value in zip(row_ids.reshape(-1), values):
            if int(token) <= 0:
                continue
            word = words[int(token)] if int(token) < len(words) else f"#{int(token)}"
            strength = min(abs(float(value)) / bound, 1.0)
            colour = f"rgba(0,160,60,{strength:.2f})" if value > 0 else f"rgba(220,40,40,{strength:.2f})"
            spans.append(f'<span style="background:{colour}" title="{float(value):+.4f}">{html.escape(word)}</span>')
        name = class_names[label] if label < len(class_names) else str(label)
        rows.append(f"<p><b>{html.escape(name)}</b>: {' '.join(spans)}</p>")
    page = ("<!doctype html><meta charset='utf-8'><title>Token attributions</title>"
            "<h3>Integrated gradients per token, toward the predicted class</h3>"
            "<p>Green raised the predicted class's probability, red lowered it.</p>" + "\n".join(rows))
    path.write_text(page, encoding="utf-8")
    return path

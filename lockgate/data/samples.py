"""Synthetic sample data for trying Lockgate and for benchmarks, no download needed.

Deterministic for a seed, and not trivially separable: every review mixes
neutral filler with words of both sentiments, and every image has noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

POSITIVE = "great wonderful superb moving brilliant charming delightful gripping excellent touching".split()
NEGATIVE = "awful boring dull clumsy tedious weak terrible bland messy forgettable".split()
NEUTRAL = (
    "the film story plot actor actress scene camera music director cast script ending "
    "character movie picture score dialogue pace set it was and with a of this that"
).split()


def make_reviews(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Short movie reviews labelled positive or negative (IMDB style)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(rows):
        label = "positive" if i % 2 == 0 else "negative"
        own, other = (POSITIVE, NEGATIVE) if label == "positive" else (NEGATIVE, POSITIVE)
        words = list(rng.choice(NEUTRAL, size=rng.integers(8, 20)))
        words += list(rng.choice(own, size=rng.integers(2, 4)))
        words += list(rng.choice(other, size=rng.integers(0, 2)))  # mixed feelings
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(label)
    return pd.DataFrame({"review": texts, "sentiment": labels})


def make_colour_images(rows: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32x32 RGB images (CIFAR style) of three classes: a red square, a green
    disc and blue horizontal stripes, at random places on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images = rng.uniform(0, 90, size=(rows, 32, 32, 3))
    labels = np.array(["square", "disc", "stripes"])[np.arange(rows) % 3]
    for image, label in zip(images, labels):
        cy, cx = rng.integers(10, 22, size=2)
        if label == "square":
            mask = (abs(yy - cy) < 6) & (abs(xx - cx) < 6)
            channel = 0
        elif label == "disc":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
            channel = 1
        else:
            mask = (yy // 3) % 2 == 0
            channel = 2
        image[mask, channel] = rng.uniform(170, 255)
    return images.round().astype("float32"), labels

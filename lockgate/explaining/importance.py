"""Global importance: permutation importance on the holdout, and how far two
rankings of features agree.

Permutation importance needs nothing of the model but its answers, so it is
the cross-check of integrated gradients on tables and the only explanation
of a forest. Agreement is nDCG: the ranking's discounted gain, with the
reference's importances as the gains, over the best ranking's (1 is the
same order at the top; a managed monitor warns below 0.9).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    losses: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    groups: dict[str, list[int]],
    repeats: int = 5,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Each feature's mean increase of the holdout's loss when its columns are
    shuffled across rows (the other columns kept), and the spread of that
    increase over `repeats` shuffles."""
    rng = np.random.default_rng(seed)
    base = float(losses(predict(x)).mean())
    mean, spread = {}, {}
    for name, columns in groups.items():
        rises = []
        for _ in range(repeats):
            shuffled = x.copy()
            order = rng.permutation(len(x))
            shuffled[:, columns] = x[order][:, columns]
            rises.append(float(losses(predict(shuffled)).mean()) - base)
        mean[name], spread[name] = float(np.mean(rises)), float(np.std(rises))
    return mean, spread


def ranked(importance: dict[str, float]) -> list[str]:
    """Features by importance, largest first (ties by name, so stable)."""
    return sorted(importance, key=lambda name: (-importance[name], name))


def ndcg(reference: dict[str, float], candidate: dict[str, float], k: int | None = None) -> float:
    """How well `candidate`'s order ranks the features `reference` finds
    important: DCG of candidate's top k with reference's (non-negative)
    importances as gains, over the DCG of reference's own top k."""
    common = [name for name in reference if name in candidate]
    if not common:
        return float("nan")
    gains = {name: max(reference[name], 0.0) for name in common}
    k = min(k or len(common), len(common))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = float(np.sum(np.array(sorted(gains.values(), reverse=True)[:k]) * discounts))
    if ideal <= 0:
        return float("nan")
    order = ranked({name: candidate[name] for name in common})[:k]
    return float(np.sum(np.array([gains[name] for name in order]) * discounts) / ideal)


def spearman(first: dict[str, float], second: dict[str, float]) -> float:
    """Rank correlation of two importances over the features both have."""
    common = [name for name in first if name in second]
    if len(common) < 2:
        return float("nan")
    a = np.argsort(np.argsort([first[n] for n in common]))
    b = np.argsort(np.argsort([second[n] for n in common]))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])

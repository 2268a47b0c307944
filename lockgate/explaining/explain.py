"""The explain step's computation: integrated gradients on a sample of the
holdout (checked for completeness), permutation importance for tables, the
two rankings' agreement and the pictures; written under the run's
`explanation/` folder, logging nothing."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.locks import atomic_write_text
from lockgate.core.records import DatasetMeta, Explanation
from lockgate.core.settings import ExplainSettings
from lockgate.data.datasets import Snapshot
from lockgate.explaining.attributions import Attributions, gradient_function, integrated_gradients
from lockgate.explaining.importance import ndcg, permutation_importance, ranked, spearman
from lockgate.explaining.inputs import GradientStart, NotDifferentiable, gradient_start, source_columns
from lockgate.explaining.pictures import image_maps, importance_chart, token_highlights
from lockgate.families import family_for
from lockgate.models.architectures import predict_outputs

EXPLANATION_FOLDER = "explanation"
EXPLANATION_RECORD = "explanation.json"
TOP_FEATURES = 30  # importances kept in the record and the card
TOP_SHOWN = 5  # the champion's top features a challenger's card names


def explain(
    model: Any, snapshot: Snapshot, holdout: np.ndarray, settings: ExplainSettings, seed: int, run_folder: Path,
    champion: Explanation | None = None, champion_version: str | None = None,
) -> Explanation:
    """Explain `model` on the snapshot's `holdout` rows, its ranking compared
    with the champion's recorded `champion` explanation (when there is a
    champion); the record and the pictures go to `run_folder/explanation/`."""
    started = time.perf_counter()
    meta = snapshot.meta
    target = family_for(meta.family).target
    out = run_folder / EXPLANATION_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(holdout, size=min(settings.examples, len(holdout)), replace=False))
    x = snapshot.x[sample]
    record = Explanation(folder=str(out))
    pictures: list[Path] = []
    try:
        start = gradient_start(meta.inputs, model, x, meta)
        outputs = predict_outputs(model, x)
        explained = outputs.argmax(axis=1) if target.name == "classification" else np.zeros(len(x), dtype="int32")
        attributions = integrated_gradients(
            gradient_function(start.call), start.x, start.baseline, explained, settings.tolerance,
            settings.complete_share, settings.start_steps, settings.max_steps, start.context,
        )
        per_feature = start.per_feature(attributions.values)
        record = record.model_copy(update=_attribution_fields(attributions, start, per_feature, x, meta, settings))
        pictures += _attribution_pictures(attributions, per_feature, x, meta, out)
    except NotDifferentiable as reason:
        record.integrated_gradients = str(reason)
    if meta.contract:
        rows = np.sort(rng.choice(holdout, size=min(settings.permutation_rows, len(holdout)), replace=False))
        mean, spread = permutation_importance(
            lambda rows_x: predict_outputs(model, rows_x),
            lambda outputs: target.example_losses(snapshot.y[rows], outputs),
            snapshot.x[rows].astype("float32"), _column_groups(meta), settings.permutation_repeats, seed,
        )
        keep = ranked(mean)[:TOP_FEATURES]
        record.permutation = {name: round(mean[name], 6) for name in keep}
        record.permutation_spread = {name: round(spread[name], 6) for name in keep}
        if record.importance:
            record.agreement_ndcg = _finite(ndcg(mean, record.importance))
            record.agreement_spearman = _finite(spearman(mean, record.importance))
        pictures.append(importance_chart(record.importance, record.permutation, record.permutation_spread,
                                         out / "importance.png"))
    record.method = _method(record)
    record.pictures = [str(p) for p in pictures]
    record = compare_with_champion(record, champion, champion_version, settings)
    record.seconds = round(time.perf_counter() - started, 3)
    atomic_write_text(out / EXPLANATION_RECORD, record.model_dump_json(indent=2))
    return record


def compare_with_champion(record: Explanation, champion: Explanation | None, champion_version: str | None,
                          settings: ExplainSettings) -> Explanation:
    """The record with its ranking compared to the champion's (nDCG, with the
    champion's importances as the gains)."""
    if champion_version is None:
        return record.model_copy(update={"champion_note": "no champion: a first model"})
    if champion is None:
        return record.model_copy(update={
            "champion_version": champion_version,
            "champion_note": f"could not tell: champion v{champion_version} has no recorded attributions"})
    mine, theirs = record.ranking(), champion.ranking()
    if record.permutation and not champion.permutation or champion.permutation and not record.permutation:
        mine, theirs = record.importance, champion.importance
    score = _finite(ndcg(theirs, mine)) if mine and theirs else None
    if score is None:
        note = f"could not tell: no importances in common with champion v{champion_version}"
    else:
        method = "permutation importance" if mine is record.permutation else "integrated gradients"
        note = (f"{method} ranking against champion v{champion_version}: nDCG {score:.3f}"
                + (f", below {settings.ranking_warning_ndcg}" if score < settings.ranking_warning_ndcg else ""))
    return record.model_copy(update={"champion_version": champion_version, "champion_ndcg": score,
                                     "champion_note": note, "champion_top": ranked(champion.ranking())[:TOP_SHOWN]})


def ranking_warning(record: Explanation, settings: ExplainSettings) -> str | None:
    """A gate warning when the ranking moved far from the champion's."""
    if record.champion_ndcg is None or record.champion_ndcg >= settings.ranking_warning_ndcg:
        return None
    return (f"the feature importance ranking changed against champion v{record.champion_version}: "
            f"nDCG {record.champion_ndcg:.3f} < {settings.ranking_warning_ndcg} (see the model card's changes)")


def _finite(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def _method(record: Explanation) -> str:
    if record.steps is not None and record.permutation:
        return "integrated gradients, cross-checked by permutation importance on the holdout"
    if record.steps is not None:
        return "integrated gradients"
    if record.permutation:
        return "permutation importance on the holdout"
    return "none"


def _column_groups(meta: DatasetMeta) -> dict[str, list[int]]:
    """Each source column's positions in an encoded row (a date's parts and a
    text's tokens are shuffled together)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, column in enumerate(source_columns(meta.table_contract())):
        groups[column].append(position)
    return dict(groups)


def _attribution_fields(
    attributions: Attributions, start: GradientStart, per_feature: np.ndarray, x: np.ndarray, meta: DatasetMeta,
    settings: ExplainSettings,
) -> dict[str, Any]:
    size = np.abs(per_feature)
    if start.feature_names:
        importance = dict(zip(start.feature_names, size.mean(axis=0).tolist()))
    else:  # tokens: a word's mean |attribution| where it occurs
        importance = _word_importance(size, x, meta)
    keep = ranked(importance)[:TOP_FEATURES]
    return {
        "examples": len(x),
        "steps": attributions.steps,
        "tolerance": settings.tolerance,
        "complete_share": round(attributions.complete_share, 4),
        "max_relative_error": round(float(attributions.relative_errors().max()), 6) if len(x) else None,
        "baseline": start.baseline_words,
        "importance": {name: round(float(importance[name]), 6) for name in keep},
    }


def token_words(meta: DatasetMeta) -> list[str]:
    """Id -> word of a text model's vocabulary (lockgate/core/tokens.py:
    0 padding, 1 a word it does not know); empty when it has none."""
    vocabulary = getattr(meta, "vocabulary", None)
    return ["", "[unknown word]"] + list(vocabulary.words) if vocabulary is not None else []


def _word_importance(per_token: np.ndarray, ids: np.ndarray, meta: DatasetMeta) -> dict[str, float]:
    words = token_words(meta)
    totals: dict[str, list[float]] = defaultdict(list)
    for row_ids, row in zip(np.asarray(ids), per_token):
        for token, value in zip(row_ids.reshape(-1), row):
            if int(token) > 0:
                word = words[int(token)] if int(token) < len(words) else f"#{int(token)}"
                totals[word].append(float(value))
    # Words seen once say more about one text than about the model.
    return {word: float(np.mean(v)) for word, v in totals.items() if len(v) >= 2}


def _attribution_pictures(
    attributions: Attributions, per_feature: np.ndarray, x: np.ndarray, meta: DatasetMeta, out: Path
) -> list[Path]:
    if meta.inputs == "images":
        return [image_maps(x, attributions.values, attributions.explained_output, meta.class_names,
                           out / "image_attributions.png")]
    if meta.inputs == "texts":
        return [token_highlights(x, per_feature, token_words(meta), attributions.explained_output, meta.class_names,
                                 out / "token_highlights.html")]
    return []



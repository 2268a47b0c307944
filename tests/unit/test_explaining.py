"""The explanation library's pure parts: the integrated gradients' path sum
and its completeness check, permutation importance, ranking agreement, the
gate's ranking warning, holdout slices and the model card's sections."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.core.records import DatasetMeta, EvaluationReport, Explanation, GateDecision, TrainingResult, ValidationSummary
from lockgate.core.settings import ExplainSettings
from lockgate.explaining.attributions import integrated_gradients
from lockgate.explaining.card import CardFacts, ChampionFacts, card_html, card_markdown, holdout_slices
from lockgate.explaining.explain import compare_with_champion, ranking_warning
from lockgate.explaining.importance import ndcg, permutation_importance, spearman

WEIGHTS = np.array([1.5, -2.0, 0.0, 0.7], dtype="float64")


def _curved(x: np.ndarray, index: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) = tanh(w.x)^2 + sin(x0): curved along any path, with exact
    gradients; input 2 has weight 0, so f cannot see it."""
    z = x.astype("float64") @ WEIGHTS
    out = np.tanh(z) ** 2 + np.sin(x[:, 0])
    grad = (2 * np.tanh(z) * (1 - np.tanh(z) ** 2))[:, None] * WEIGHTS[None, :]
    grad[:, 0] += np.cos(x[:, 0])
    return out, grad


def _examples(n: int = 200) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1.5, size=(n, 4)).astype("float32")


def test_integrated_gradients_sum_to_the_output_change_within_one_percent():
    x = _examples()
    result = integrated_gradients(_curved, x, np.zeros(4), np.zeros(len(x), dtype="int32"))
    assert result.complete_share >= 0.99
    gap = result.output_at_input - result.output_at_baseline
    np.testing.assert_allclose(result.output_at_input, _curved(x, None, None)[0], rtol=1e-6)
    sums = result.values.sum(axis=1)
    close = np.abs(sums - gap) <= np.maximum(0.01 * np.abs(gap), 1e-5)
    assert close.mean() >= 0.99
    assert result.steps >= 16 and result.steps & (result.steps - 1) == 0  # doubled from the start
    # Only the examples that need them get more steps: most pass at the start.
    assert np.median(result.example_steps) == 16 and result.example_steps.max() == result.steps
    # And the sum is the integral: against a path of 65,536 steps, the same attributions.
    fine = integrated_gradients(_curved, x, np.zeros(4), np.zeros(len(x), dtype="int32"), start_steps=65536,
                                max_steps=65536)
    np.testing.assert_allclose(result.values, fine.values, rtol=0.02, atol=0.01)


def test_too_few_steps_fail_the_completeness_check_and_say_so():
    x = _examples()
    result = integrated_gradients(_curved, x, np.zeros(4), np.zeros(len(x), dtype="int32"), start_steps=1, max_steps=2)
    assert result.steps == 2
    assert result.complete_share < 0.99  # the check is real: a coarse path sum does not pass it


def test_an_input_the_model_cannot_see_gets_exactly_zero():
    x = _examples()
    result = integrated_gradients(_curved, x, np.zeros(4), np.zeros(len(x), dtype="int32"))
    assert np.all(result.values[:, 2] == 0.0)
    assert np.abs(result.values[:, 1]).mean() > 0.01


def test_permutation_importance_is_zero_for_an_unused_column_and_large_for_a_used_one():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)).astype("float32")
    y = (x[:, 0] > 0).astype(int)

    def predict(rows: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-4 * rows[:, 0]))
        return np.stack([1 - p, p], axis=1)

    def losses(outputs: np.ndarray) -> np.ndarray:
        return (outputs[:, 1] - y) ** 2

    mean, spread = permutation_importance(predict, losses, x, {"a": [0], "b": [1], "c": [2]}, repeats=3)
    assert mean["b"] == 0.0 and mean["c"] == 0.0 and spread["b"] == 0.0
    assert mean["a"] > 0.2


def test_ndcg_is_one_for_the_same_order_and_low_when_the_top_is_swapped_for_the_bottom():
    reference = {"a": 10.0, "b": 5.0, "c": 1.0, "d": 0.5, "e": 0.1}
    assert ndcg(reference, reference) == pytest.approx(1.0)
    assert ndcg(reference, {k: v * 3 for k, v in reference.items()}) == pytest.approx(1.0)  # only the order counts
    reversed_order = {k: -v for k, v in reference.items()}
    assert ndcg(reference, reversed_order) < 0.9
    swapped = dict(reference, a=0.0, e=10.0)
    assert ndcg(reference, swapped) < 0.9
    assert spearman(reference, reference) == pytest.approx(1.0)
    assert spearman(reference, reversed_order) == pytest.approx(-1.0)
    assert np.isnan(ndcg(reference, {"z": 1.0}))


def test_a_ranking_far_from_the_champions_is_a_warning_and_a_close_one_is_not():
    settings = ExplainSettings()
    champion = Explanation(permutation={"a": 1.0, "b": 0.5, "c": 0.1, "d": 0.05})
    close = compare_with_champion(Explanation(permutation={"a": 0.9, "b": 0.6, "c": 0.2, "d": 0.01}), champion, "3", settings)
    assert close.champion_ndcg == pytest.approx(1.0) and ranking_warning(close, settings) is None
    far = compare_with_champion(Explanation(permutation={"a": 0.0, "b": 0.1, "c": 0.5, "d": 1.0}), champion, "3", settings)
    assert far.champion_ndcg < 0.9 and far.champion_top == ["a", "b", "c", "d"]
    warning = ranking_warning(far, settings)
    assert warning and "champion v3" in warning and "nDCG" in warning
    unknown = compare_with_champion(Explanation(permutation={"a": 1.0}), None, "3", settings)
    assert unknown.champion_ndcg is None and "could not tell" in unknown.champion_note
    assert ranking_warning(unknown, settings) is None


def test_holdout_slices_by_quartile_and_by_category():
    rng = np.random.default_rng(2)
    values = rng.normal(size=400)
    y = (values > 0).astype(int)
    predicted = np.where(values > 1.0, 1 - y, y)  # wrong only in the top quartile or so
    slices = holdout_slices("x", values.astype(object), y, predicted, regression=False)
    assert [s.rows for s in slices[:4]] == [100, 100, 100, 100]
    assert slices[0].score == 1.0 and slices[3].score < 0.5
    assert slices[3].interval[0] <= slices[3].score <= slices[3].interval[1]
    colours = np.array(["red"] * 300 + ["blue"] * 100, dtype=object)
    by_colour = holdout_slices("colour", colours, y, y, regression=False)
    assert [(s.value, s.rows) for s in by_colour] == [("red", 300), ("blue", 100)]


def _facts(champion: ChampionFacts | None = None, explanation: Explanation | None = None) -> CardFacts:
    meta = DatasetMeta(name="toy", family="tabular", task="classification", inputs="tables", target="label",
                       feature_columns=["a", "b"], class_names=["no", "yes"], input_shape=[2], rows=100,
                       contract={"target": "label", "rows": 100, "columns": [
                           {"name": "a", "role": "numeric", "dtype": "float64", "missing_share": 0.0},
                           {"name": "b", "role": "numeric", "dtype": "float64", "missing_share": 0.0},
                           {"name": "id", "role": "identifier", "dtype": "int64", "missing_share": 0.0}]})
    y = np.array([0, 1] * 10)
    return CardFacts(
        model_name="toy", version="2", run_id="r1", code_version="abc",
        training=TrainingResult(run_id="r1", model_path="m", model_uri="u", epochs_run=3, parameters=10, seconds=1.0,
                                device="CPU", architecture="mlp"),
        summary=ValidationSummary(dataset="toy", family="tabular", rows=100, success=True, checks=[], data_hash="h"),
        meta=meta,
        evaluation=EvaluationReport(run_id="r1", family="tabular", task="classification",
                                    metrics={"accuracy": 0.9, "brier_score": 0.1, "no_skill_brier_score": 0.5},
                                    per_class={"no": {"precision": 1, "recall": 0.9, "support": 10},
                                               "yes": {"precision": 0.9, "recall": 1, "support": 10}},
                                    predictions_file="p"),
        gate=GateDecision(promote=True, metric="brier_score", challenger=0.1, reasons=["better than no skill"],
                          warnings=["the ranking moved"]),
        exports=None, explanation=explanation, champion=champion, y_true=y, predicted=y,
    )


def test_the_card_fills_every_section_or_says_why_it_does_not_apply():
    text = card_markdown(_facts(), ExplainSettings(intended_use="Sorting toys."))
    sections = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["Model details", "Intended use", "Training data", "Evaluation", "Gate decision",
                        "Exports and parity", "Explanations", "Changes against the champion", "Limitations and caveats"]
    for body in text.split("\n## ")[1:]:
        assert len(body.strip().splitlines()) > 1, body  # a title alone is an empty section
    assert "Sorting toys." in text
    assert "*Not applicable: a first model" in text and "*Not applicable: explanations are turned off" in text
    assert "Small holdout (20 rows)" in text and "`id` (identifier)" in text  # caveats from the facts
    assert "0.900 | 1.000 |" in text or "| yes | 10 |" in text
    assert "Warning: the ranking moved" in text
    page = card_html(text, [])
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h2>Gate decision</h2>" in page


def test_a_challengers_card_shows_what_changed_against_the_champion():
    base = _facts()
    champion_meta = base.meta.model_copy(update={"contract": {"target": "label", "rows": 100, "columns": [
        {"name": "a", "role": "numeric", "dtype": "float64", "missing_share": 0.0},
        {"name": "c", "role": "categorical", "dtype": "object", "missing_share": 0.0}]}})
    mine = Explanation(permutation={"a": 0.1, "b": 0.3}, champion_version="1", champion_ndcg=0.5,
                       champion_note="permutation importance ranking against champion v1: nDCG 0.500, below 0.9",
                       champion_top=["a", "c"],
                       method="permutation importance on the holdout")
    text = card_markdown(_facts(ChampionFacts("1", {"accuracy": 0.8}, champion_meta), mine), ExplainSettings())
    changes = text.split("## Changes against the champion")[1].split("## ")[0]
    assert "| accuracy | 0.8 | 0.9 | +0.1 |" in changes
    assert "`b` added (numeric)" in changes and "`c` removed" in changes and "`id` added (excluded identifier)" in changes
    assert "nDCG 0.500" in changes and "champion a, c; this version b, a" in changes

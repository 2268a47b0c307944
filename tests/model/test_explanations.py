"""Each family's trained model explained with default settings: attributions
complete within 1% on at least 99% of examples, zero for what the model
cannot see, and, on a table where two columns decide the label, those two
first by both integrated gradients and permutation importance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lockgate.core.settings import ExplainSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.explaining.explain import explain
from lockgate.explaining.inputs import gradient_start
from lockgate.explaining.importance import ranked
from lockgate.training.fit import fit
from tasks.validate import validate_task

DEFAULTS = ExplainSettings()


def _trained(source: str, target: str | None, **training):
    snapshot = read_snapshot(validate_task.fn(source, target).snapshot)
    settings = get_settings().training.model_copy(update=training)
    outcome = fit(snapshot, settings)
    return snapshot, outcome.model, split_for(snapshot.y, settings)["holdout"]


def _assert_complete(record):
    assert record.steps is not None, record.integrated_gradients
    assert record.complete_share >= 0.99, record
    assert record.examples >= min(DEFAULTS.examples, 30)


@pytest.fixture(scope="module")
def two_column_table(tmp_path_factory) -> str:
    """Only `a` and `b` decide the label; four other columns are noise."""
    rng = np.random.default_rng(7)
    n = 1200
    frame = pd.DataFrame({name: rng.normal(size=n) for name in ("a", "b", "noise1", "noise2", "noise3")})
    frame["colour"] = rng.choice(["red", "green", "blue"], size=n)
    frame["label"] = np.where(frame["a"] + frame["b"] > 0, "yes", "no")
    path = tmp_path_factory.mktemp("explain") / "two_columns.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_two_deciding_columns_rank_first_by_both_methods(two_column_table, tmp_path):
    snapshot, model, holdout = _trained(two_column_table, "label", epochs=30, architecture="mlp")
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    _assert_complete(record)
    assert set(ranked(record.importance)[:2]) == {"a", "b"}, record.importance
    assert set(ranked(record.permutation)[:2]) == {"a", "b"}, record.permutation
    assert record.agreement_ndcg is not None and record.agreement_ndcg >= 0.9
    assert (tmp_path / "explanation" / "importance.png").stat().st_size > 5000


def test_a_table_column_the_model_cannot_see_gets_zero_by_both_methods(two_column_table, tmp_path):
    snapshot, model, holdout = _trained(two_column_table, "label", epochs=5, architecture="mlp")
    start = gradient_start("tables", model, snapshot.x[holdout[:4]], snapshot.meta)
    unseen = start.grouping[:, start.feature_names.index("noise1")] > 0
    first_dense = next(layer for layer in model.layers if layer.name.startswith("dense"))
    kernel, bias = first_dense.get_weights()
    kernel[unseen, :] = 0.0  # the network no longer reads noise1's features
    first_dense.set_weights([kernel, bias])
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    _assert_complete(record)
    assert record.importance["noise1"] == 0.0
    assert record.permutation["noise1"] == 0.0
    assert record.importance["a"] > 0 and record.permutation["a"] > 0


def test_a_forest_is_explained_by_permutation_importance_and_says_why(two_column_table, tmp_path):
    snapshot, model, holdout = _trained(two_column_table, "label", architecture="forest")
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    assert record.steps is None and "trees" in record.integrated_gradients
    assert set(ranked(record.permutation)[:2]) == {"a", "b"}
    assert record.method == "permutation importance on the holdout"


def test_image_attributions_are_complete_and_drawn_per_class(tmp_path):
    snapshot, model, holdout = _trained("digits", None, epochs=4)
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    _assert_complete(record)
    assert record.examples == DEFAULTS.examples
    assert (tmp_path / "explanation" / "image_attributions.png").stat().st_size > 10_000


def test_a_pixel_the_model_cannot_see_gets_zero(tmp_path):
    import keras

    snapshot, model, holdout = _trained("digits", None, epochs=2)
    mask = np.ones((8, 8, 1), dtype="float32")
    mask[3, 4, 0] = 0.0  # a pixel that is ink in most digits
    inputs = keras.Input(shape=(8, 8, 1))
    masked = keras.Model(inputs, model(keras.layers.Lambda(lambda t: t * mask)(inputs)))
    record = explain(masked, snapshot, holdout, DEFAULTS.model_copy(update={"examples": 40}), 0, tmp_path)
    _assert_complete(record)
    start = gradient_start("images", masked, snapshot.x[holdout[:40]], snapshot.meta)
    assert "pixel (3, 4)" in start.feature_names
    assert record.importance.get("pixel (3, 4)", 0.0) == 0.0  # kept only if among the top ones, and then 0
    assert float(snapshot.x[holdout, 3, 4, 0].mean()) > 1.0  # the pixel does vary: zero is the model's doing


def test_regression_attributions_are_complete(tmp_path):
    from sklearn.datasets import load_diabetes

    path = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    snapshot, model, holdout = _trained(str(path), "target", epochs=40, architecture="mlp")
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    _assert_complete(record)
    assert record.permutation and record.importance


@pytest.mark.parametrize("architecture", ["bag", "lstm", "transformer"])
def test_text_attributions_are_complete_and_zero_on_padding(reviews_csv, tmp_path, architecture):
    snapshot, model, holdout = _trained(str(reviews_csv), "sentiment", epochs=6, architecture=architecture)
    record = explain(model, snapshot, holdout, DEFAULTS, 0, tmp_path)
    _assert_complete(record)
    assert record.importance, "no word was explained"
    page = (tmp_path / "explanation" / "token_highlights.html").read_text()
    assert "<span" in page and "Green raised" in page
    # Padding is masked: the model cannot see it, so it gets nothing.
    ids = snapshot.x[holdout[:20]]
    start = gradient_start("texts", model, ids, snapshot.meta)
    from lockgate.explaining.attributions import gradient_function, integrated_gradients

    explained = np.zeros(len(ids), dtype="int32")
    values = start.per_feature(integrated_gradients(gradient_function(start.call), start.x, start.baseline, explained,
                                                    context=start.context).values)
    assert (ids == 0).any() and np.all(values[ids == 0] == 0.0)
    assert np.abs(values[ids > 0]).sum() > 0

"""Model behaviour: minimum functionality, invariance, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.core.settings import get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.models.architectures import predict_outputs
from lockgate.training.fit import fit
from tasks.validate import validate_task


@pytest.fixture(scope="module")
def digits():
    snapshot = read_snapshot(validate_task.fn("digits").snapshot)
    training = get_settings().training.model_copy(update={"epochs": 8})
    outcome = fit(snapshot, training)
    holdout = split_for(snapshot.y, training)["holdout"]
    return snapshot, training, outcome.model, snapshot.x[holdout], snapshot.y[holdout]


def test_minimum_functionality(digits):
    _, _, model, x, y = digits
    accuracy = float(np.mean(predict_outputs(model, x).argmax(axis=1) == y))
    assert accuracy >= 0.93


def test_small_pixel_noise_rarely_changes_the_answer(digits):
    _, _, model, x, _ = digits
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.3, x.shape), 0, 16).astype("float32")
    changed = np.mean(predict_outputs(model, x).argmax(axis=1) != predict_outputs(model, noisy).argmax(axis=1))
    assert changed <= 0.03


def test_prediction_does_not_depend_on_batch_order(digits):
    _, _, model, x, _ = digits
    order = np.random.default_rng(1).permutation(len(x))
    direct = predict_outputs(model, x)
    shuffled = predict_outputs(model, x[order])
    np.testing.assert_allclose(shuffled, direct[order], atol=1e-5)


def test_blank_image_is_not_a_confident_answer(digits):
    _, _, model, x, _ = digits
    blank = np.zeros((1, *x.shape[1:]), dtype="float32")
    assert predict_outputs(model, blank).max() < predict_outputs(model, x).max(axis=1).mean()


def test_same_seed_same_model(digits):
    snapshot, training, model, x, _ = digits
    again = fit(snapshot, training).model
    np.testing.assert_allclose(predict_outputs(again, x), predict_outputs(model, x), atol=1e-6)


def test_tabular_model_learns_the_wine_classes(wine_csv):
    snapshot = read_snapshot(validate_task.fn(str(wine_csv), "target").snapshot)
    training = get_settings().training.model_copy(update={"epochs": 40})
    model = fit(snapshot, training).model
    split = split_for(snapshot.y, training)
    x, y = snapshot.x[split["holdout"]], snapshot.y[split["holdout"]]
    assert np.mean(predict_outputs(model, x).argmax(axis=1) == y) >= 0.9

"""Boosted trees as a Keras model: the model gives what sklearn's own predict
gives, on every kind of row a table sends (gaps, unseen and missing category
codes, values exactly on a split threshold), and survives saving.

Tolerances are float32's: the model sums leaf values in float32 where sklearn
uses float64, but every row must reach the same leaves.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lockgate.models.architectures import load_keras_model
from lockgate.models.forest import (
    FALLBACK_ITERATIONS,
    ensemble_config,
    estimator_outputs,
    fit_forest,
    float32_floor,
    forest_model,
    native_categorical_mask,
    register_forest_layer,
)

LAYOUT = {"numeric": [0, 1, 3], "categorical": [2, 4, 5], "cardinalities": [8, 12, 300], "width": 6}
UNSEEN_IN_TRAINING = 7  # a known code of column 2 that no training row has
CASES = {"binary": ("classification", 2), "multiclass": ("classification", 4), "regression": ("regression", 1)}


def synthetic_table(n: int, seed: int, task: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaN gaps, a few category columns (one too large to be
    native) and a target that depends on all of them, gaps included."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, LAYOUT["width"]), dtype="float32")
    for j, column in enumerate(LAYOUT["numeric"]):
        x[:, column] = rng.normal(size=n) * (1 + j)
        x[rng.random(n) < 0.15, column] = np.nan
    # Few distinct values: sklearn splits at their float64 midpoints, which
    # float32 often cannot hold (with many values, at data points, which it can).
    x[:, 3] = np.where(np.isnan(x[:, 3]), np.nan, rng.normal(size=150).astype("float32")[rng.integers(0, 150, n)] * 3)
    x[:, 2] = rng.integers(2, UNSEEN_IN_TRAINING, n)
    x[rng.random(n) < 0.1, 2] = 0  # missing
    x[:, 4] = rng.integers(2, 12, n)
    x[:, 5] = rng.integers(2, 300, n)
    effect = np.array([0.4, 0.0, 0.5, -1.0, 1.5, 0.3, -0.7, 2.0])[x[:, 2].astype(int)]
    score = (
        np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 1]) + effect + (x[:, 4] % 3) * 0.6
        + np.isnan(x[:, 3]) * 1.2 + 0.004 * x[:, 5]
    )
    noisy = score + rng.normal(size=n) * (0.3 if task == "regression" else 0.5)
    if task == "regression":
        return x, noisy.astype("float64")
    return x, np.digitize(noisy, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])).astype("int64")


def awkward_rows(x: np.ndarray) -> np.ndarray:
    """Held-out rows plus what serving sends that training never had."""
    rows = x.copy()
    rows[:20, 2] = UNSEEN_IN_TRAINING
    rows[20:40, 2] = 1  # the contract's "unseen" code
    rows[40:50, 2] = 0  # missing
    rows[50:60, 4] = 1
    rows[60:70] = np.nan  # every number missing (and category columns NaN too)
    rows[70:80, 5] = 299  # ordinal code above every training value
    rows[80:85, 2] = -1.0  # nonsense codes: treated as unknown, like sklearn does
    rows[85:90, 2] = 3.5
    return rows


def assert_same_outputs(got: np.ndarray, want: np.ndarray, task: str) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    if task == "regression":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.fixture(scope="module", params=list(CASES))
def forest(request):
    task, n_classes = CASES[request.param]
    x, y = synthetic_table(1400, 0, task, n_classes)
    fit = fit_forest(x[:800], y[:800], x[800:1000], y[800:1000], LAYOUT, task, n_classes, seed=0)
    model = forest_model(fit, LAYOUT, task, n_classes)
    return {"task": task, "n_classes": n_classes, "fit": fit, "model": model, "x_test": awkward_rows(x[1000:])}


def test_model_gives_sklearn_outputs(forest):
    model, fit, task = forest["model"], forest["fit"], forest["task"]
    x = forest["x_test"]
    got = np.asarray(model.predict_on_batch(x))
    assert_same_outputs(got, estimator_outputs(fit.estimator, x, task, forest["n_classes"]), task)
    assert model.output.shape[1] == (1 if task == "regression" else forest["n_classes"])
    assert not model.trainable_weights


def test_rows_exactly_on_thresholds_go_where_sklearn_sends_them(forest):
    """A value equal to a float32 threshold, and the next float32 above it,
    must fall on the same side as in sklearn's float64 comparison."""
    config = ensemble_config(forest["fit"].estimator, forest["task"], forest["n_classes"])
    splits = {
        (feature, threshold)
        for features, thresholds, rows, count in zip(
            config["feature"], config["threshold"], config["category_row"], config["leaf_count"]
        )
        for feature, threshold, row in list(zip(features, thresholds, rows))[: count - 1]
        if row == 0 and np.isfinite(threshold)
    }
    assert len(splits) > 20
    sklearn_thresholds = [
        node["num_threshold"]
        for iteration in forest["fit"].estimator._predictors
        for predictor in iteration
        for node in predictor.nodes
        if not node["is_leaf"] and not node["is_categorical"]
    ]
    assert any(float(np.float32(t)) > t for t in sklearn_thresholds)  # rounding to nearest would flip rows
    base = forest["x_test"][100:104]
    rows = []
    for feature, threshold in sorted(splits):
        for value in (np.float32(threshold), np.nextafter(np.float32(threshold), np.float32(np.inf))):
            edited = base.copy()
            edited[:, feature] = value
            rows.append(edited)
    x = np.concatenate(rows)
    got = np.asarray(forest["model"].predict_on_batch(x))
    assert_same_outputs(got, estimator_outputs(forest["fit"].estimator, x, forest["task"], forest["n_classes"]), forest["task"])


def test_saved_model_loads_with_the_same_outputs(forest, tmp_path):
    import keras

    path = tmp_path / "forest.keras"
    forest["model"].save(path)
    register_forest_layer()
    loaded = keras.models.load_model(path)
    x = forest["x_test"]
    expected = np.asarray(forest["model"].predict_on_batch(x))
    np.testing.assert_array_equal(np.asarray(loaded.predict_on_batch(x)), expected)
    np.testing.assert_array_equal(np.asarray(load_keras_model(path).predict_on_batch(x)), expected)  # the pipeline's loader


def test_fit_reports_early_stopping_and_refits_on_all_rows(forest):
    fit = forest["fit"]
    assert 1 <= fit.iterations < 500
    assert fit.estimator.max_iter == fit.iterations and not fit.estimator.early_stopping
    assert fit.estimator.n_iter_ <= fit.iterations
    width = 1 if forest["task"] == "regression" else forest["n_classes"]
    assert fit.validation_outputs.shape == (200, width)
    assert fit.seconds > 0


def test_categories_split_natively_unless_too_many():
    assert native_categorical_mask(LAYOUT).tolist() == [False, False, True, False, True, False]


def test_class_missing_from_training_still_has_its_column():
    x, y = synthetic_table(900, 1, "classification", 3)
    train = y[:600] != 2
    x_train, y_train = x[:600][train], y[:600][train]
    fit = fit_forest(x_train, y_train, x[600:750], y[600:750], LAYOUT, "classification", 4, seed=0)
    assert fit.validation_outputs.shape == (150, 4)
    assert np.all(fit.validation_outputs[:, 2:] == 0)  # the early-stopped model never saw class 2 (nor 3)
    np.testing.assert_allclose(fit.validation_outputs.sum(axis=1), 1.0, atol=1e-6)
    model = forest_model(fit, LAYOUT, "classification", 4)
    got = np.asarray(model.predict_on_batch(x[750:]))
    assert got.shape == (150, 4) and np.all(got[:, 3] == 0) and got[:, 2].max() > 0.5  # the refit saw class 2
    assert_same_outputs(got, estimator_outputs(fit.estimator, x[750:], "classification", 4), "classification")


def test_single_class_gives_it_all_the_probability():
    x, _ = synthetic_table(200, 2, "classification", 2)
    y = np.ones(200, dtype="int64")
    fit = fit_forest(x[:150], y[:150], x[150:], y[150:], LAYOUT, "classification", 2, seed=0)
    got = np.asarray(forest_model(fit, LAYOUT, "classification", 2).predict_on_batch(x))
    np.testing.assert_allclose(got, np.tile([0.0, 1.0], (200, 1)), atol=1e-6)


@pytest.mark.parametrize("n_val", [1, 0])
def test_tiny_or_empty_validation_split(n_val):
    x, y = synthetic_table(300, 3, "regression", 1)
    fit = fit_forest(x[:200], y[:200], x[200 : 200 + n_val], y[200 : 200 + n_val], LAYOUT, "regression", 1, seed=0)
    assert fit.validation_outputs.shape == (n_val, 1)
    if n_val == 0:
        assert fit.iterations == FALLBACK_ITERATIONS
    model = forest_model(fit, LAYOUT, "regression", 1)
    assert_same_outputs(np.asarray(model.predict_on_batch(x[250:])), estimator_outputs(fit.estimator, x[250:], "regression", 1), "regression")


def test_balanced_class_weight_reaches_the_classifier():
    x, y = synthetic_table(400, 4, "classification", 2)
    fit = fit_forest(x[:300], y[:300], x[300:], y[300:], LAYOUT, "classification", 2, seed=0, class_weight="balanced")
    assert fit.estimator.class_weight == "balanced"


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer"])
def test_real_table_has_sklearns_accuracy(dataset):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    data = getattr(datasets, f"load_{dataset}")()
    x, y = data.data.astype("float32"), data.target.astype("int64")
    n_classes = int(y.max()) + 1
    layout = {"numeric": list(range(x.shape[1])), "categorical": [], "cardinalities": [], "width": x.shape[1]}
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, random_state=0, stratify=y_rest)
    fit = fit_forest(x_train, y_train, x_val, y_val, layout, "classification", n_classes, seed=0)
    outputs = np.asarray(forest_model(fit, layout, "classification", n_classes).predict_on_batch(x_test))
    expected = fit.estimator.predict(x_test)
    np.testing.assert_array_equal(outputs.argmax(axis=1), expected)
    assert (outputs.argmax(axis=1) == y_test).mean() == (expected == y_test).mean() > 0.85
    assert_same_outputs(outputs, estimator_outputs(fit.estimator, x_test, "classification", n_classes), "classification")


def test_thresholds_round_down_to_float32():
    t = 0.1  # not a float32: its nearest float32 is above it
    assert float32_floor(t) < t and np.float32(float32_floor(t)) == np.nextafter(np.float32(t), np.float32(-1))
    assert float32_floor(0.5) == 0.5
    assert float32_floor(1e39) == float(np.finfo(np.float32).max)
    assert float32_floor(-1e39) == -np.inf
    assert float32_floor(np.inf) == np.inf


def test_importing_the_module_does_not_import_keras():
    code = "import sys, lockgate.models.forest; sys.exit('keras' in sys.modules or 'tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_column_with_no_value_in_the_training_rows_is_fitted_and_ignored():
    """A sparse column can be all gaps in the training rows; scikit-learn
    cannot bin that, so it is fitted as a constant, which no tree splits on."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3)).astype("float32")
    x[:, 1] = np.nan
    y = (x[:, 0] > 0).astype("int64")
    layout = {"numeric": [0, 1, 2], "categorical": [], "cardinalities": [], "width": 3}
    fitted = fit_forest(x[:200], y[:200], x[200:], y[200:], layout, "classification", 2, seed=0)
    model = forest_model(fitted, layout, "classification", 2)
    later = x[200:].copy()
    later[:, 1] = rng.normal(size=100)  # values now: still ignored
    np.testing.assert_allclose(
        model.predict_on_batch(later), estimator_outputs(fitted.estimator, np.where(np.isnan(x[200:]), 0, x[200:]), "classification", 2),
        atol=1e-5,
    )

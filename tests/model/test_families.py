"""Each family's model: it learns its task, takes data as users have it, and
survives a save and reload unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.families import family_for
from lockgate.models.architectures import build_model, load_keras_model, predict_outputs
from lockgate.scoring.metrics import regression_metrics
from lockgate.serving.requests import requests_for
from lockgate.training.fit import fit
from tasks.validate import validate_task


def _train(source: str, target: str | None, **training):
    snapshot = read_snapshot(validate_task.fn(source, target).snapshot)
    settings = get_settings().training.model_copy(update=training)
    outcome = fit(snapshot, settings)
    holdout = split_for(snapshot.y, settings)["holdout"]
    return snapshot, outcome.model, snapshot.x[holdout], snapshot.y[holdout]


@pytest.mark.parametrize("architecture", ["bag", "lstm", "transformer"])
def test_text_model_reads_token_ids_of_raw_strings(reviews_csv, tmp_path, architecture):
    snapshot, model, x, y = _train(str(reviews_csv), "sentiment", epochs=12, architecture=architecture)
    assert x.dtype == np.int32 and model.inputs[0].dtype == "int32"  # tokenised before the model
    assert model.layers[1].name == "embed"
    accuracy = float(np.mean(predict_outputs(model, x).argmax(axis=1) == y))
    assert accuracy >= 0.85, f"{architecture}: {accuracy:.3f}"
    clear = ["A great and wonderful film, superb cast.", "Awful, boring and dull: a terrible plot."]
    ids = requests_for(snapshot.meta).text_input(clear, snapshot.meta, 10, 1000)  # as the service reads them
    labels = [snapshot.class_names[i] for i in predict_outputs(model, ids).argmax(axis=1)]
    assert labels == ["positive", "negative"]
    path = tmp_path / "text.keras"
    model.save(path)
    np.testing.assert_allclose(predict_outputs(load_keras_model(path), x), predict_outputs(model, x), atol=1e-6)


@pytest.mark.parametrize("architecture", ["mlp", "linear"])
def test_regression_predicts_in_target_units(diabetes_csv, architecture):
    snapshot, model, x, y = _train(str(diabetes_csv), "target", epochs=80, architecture=architecture)
    predicted = predict_outputs(model, x)
    assert predicted.shape == (len(x), 1)
    metrics = regression_metrics(y, predicted[:, 0])
    # Better than always predicting the mean, in the target's own units.
    assert metrics["r2"] >= 0.3 and metrics["rmse"] < 0.85 * metrics["mean_predictor_rmse"], metrics
    assert abs(float(predicted.mean()) - float(y.mean())) < 0.25 * float(y.std())


def test_cifar_style_images_with_augmentation(colour_images_npz):
    snapshot, model, x, y = _train(str(colour_images_npz), None, epochs=6, augment=True)
    assert model.name == "lockgate_image_cifar"
    # Augmentation is for training only: the saved and served model has none.
    assert not any(layer.name.startswith("augment_") for layer in model.layers)
    first, second = predict_outputs(model, x), predict_outputs(model, x)
    np.testing.assert_array_equal(first, second)
    assert float(np.mean(first.argmax(axis=1) == y)) >= 0.9


def _meta(family: str, input_shape: list[int], **fields) -> DatasetMeta:
    return DatasetMeta(name="d", family=family, target="label", feature_columns=[], input_shape=input_shape, **fields)


def test_architecture_follows_the_data_or_settings():
    assert family_for("image").architecture(_meta("image", [8, 8, 1]), "auto") == "small_cnn"
    assert family_for("image").architecture(_meta("image", [28, 28, 1]), "auto") == "mnist"
    assert family_for("image").architecture(_meta("image", [32, 32, 3]), "auto") == "cifar"
    assert family_for("text").architecture(_meta("text", []), "auto") == "tfidf"
    assert family_for("text").candidates(_meta("text", []), "auto") == ("tfidf", "lstm")
    assert family_for("regression").architecture(_meta("regression", [3]), "linear") == "linear"
    with pytest.raises(ValueError, match="does not fit text data; choose one of tfidf, lstm, bag, transformer"):
        family_for("text").architecture(_meta("text", []), "cifar")


def test_a_text_column_in_a_table_is_read_by_the_network(tmp_path):
    """The label hides in the words of a free-text column (the numbers are
    noise): a network that reads the words learns it; without them it could
    not beat a coin."""
    rng = np.random.default_rng(0)
    n = 600
    label = rng.integers(0, 2, n)
    words = np.array(["smooth landing on runway", "engine struck on climb", "bird seen near the gear"])
    filler = [f"w{i}" for i in range(60)]  # so each remark is its own sentence, as in a real log
    remarks = [f"{words[rng.integers(0, 3)]} {' '.join(rng.choice(filler, 3))} {'smoke' if y else 'calm'} reported"
               for y in label]
    frame = pd.DataFrame({"remarks": remarks, "noise": rng.normal(size=n), "label": np.where(label, "yes", "no")})
    path = tmp_path / "remarks.csv"
    frame.to_csv(path, index=False)
    snapshot, model, x, y = _train(str(path), "label", epochs=15, architecture="mlp")
    assert snapshot.meta.table_contract().column("remarks").role == "text"
    accuracy = float((predict_outputs(model, x).argmax(axis=1) == y).mean())
    assert accuracy >= 0.95, accuracy
    reloaded = load_keras_model(_saved(model, tmp_path))
    np.testing.assert_allclose(predict_outputs(reloaded, x), predict_outputs(model, x), atol=1e-6)


def test_balanced_class_weights_raise_the_rare_class_recall(tmp_path):
    """On a 95/5 table with a weak signal the plain network answers the
    majority; weighting each class by n / (classes x its count) makes the
    rare class count, and its recall rises (at some cost in accuracy)."""
    from lockgate.training.fit import class_weights

    assert class_weights(np.array([0] * 95 + [1] * 5), 2) == {0: 100 / 190, 1: 100 / 10}
    rng = np.random.default_rng(1)
    n = 2000
    rare = rng.uniform(size=n) < 0.05
    frame = pd.DataFrame({"signal": rng.normal(size=n) + 1.2 * rare, "noise": rng.normal(size=n),
                          "label": np.where(rare, "rare", "common")})
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    recall = {}
    for weighting in ("none", "balanced"):
        snapshot, model, x, y = _train(str(path), "label", epochs=15, architecture="mlp", class_weight=weighting)
        rare_index = snapshot.class_names.index("rare")
        predicted = predict_outputs(model, x).argmax(axis=1)
        recall[weighting] = float((predicted[y == rare_index] == rare_index).mean())
    assert recall["none"] < 0.2 and recall["balanced"] > 0.4, recall


def _saved(model, folder):
    path = folder / "model.keras"
    model.save(path)
    return path


def test_mnist_architecture_on_28_by_28_images():
    from lockgate.core.settings import TrainingSettings

    meta = _meta("image", [28, 28, 1], pixel_scale=255.0, class_names=list("0123456789"))
    x = np.random.default_rng(0).uniform(0, 255, (16, 28, 28, 1)).astype("float32")
    model = build_model(family_for("image"), meta, x, np.arange(16) % 10, TrainingSettings())
    assert model.name == "lockgate_image_mnist" and predict_outputs(model, x).shape == (16, 10)

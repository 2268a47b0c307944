"""The model family follows from the data (or settings), and each family's
bad data is stopped at validation with a message that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings
from lockgate.data.datasets import DataLoadError, load_source, read_snapshot
from tasks.validate import validate_task


def _failures(summary) -> str:
    return " | ".join(f"{c.name}: {c.message}" for c in summary.blocking_failures)


def test_families_are_recognised(reviews_csv, reviews_folder, diabetes_csv, wine_csv, colour_images_npz):
    assert load_source(str(reviews_csv), "sentiment").family == "text"
    assert load_source(str(reviews_folder)).family == "text"
    assert load_source(str(diabetes_csv), "target").family == "regression"
    assert load_source(str(wine_csv), "target").family == "tabular"
    assert load_source(str(colour_images_npz)).family == "image"


def test_settings_decide_between_classes_and_values(wine_csv, diabetes_csv):
    assert load_source(str(wine_csv), "target", TrainingSettings(family="regression")).family == "regression"
    assert load_source(str(diabetes_csv), "target", TrainingSettings(family="tabular")).family == "tabular"
    with pytest.raises(DataLoadError, match="settings ask for the text family, but digits holds image data"):
        load_source("digits", None, TrainingSettings(family="text"))


def test_text_column_can_be_named_among_other_columns(tmp_path, reviews_csv):
    frame = pd.read_csv(reviews_csv)
    frame["stars"] = np.arange(len(frame)) % 5
    path = tmp_path / "with_stars.csv"
    frame.to_csv(path, index=False)
    assert load_source(str(path), "sentiment").family == "tabular"  # ambiguous: not guessed
    named = load_source(str(path), "sentiment", TrainingSettings(text_column="review"))
    assert named.family == "text" and named.feature_columns == ["review"]


def test_text_passes_and_snapshots_token_ids_with_the_raw_strings(reviews_csv, reviews_folder):
    summary = validate_task.fn(str(reviews_csv), "sentiment")
    assert summary.success and summary.family == "text", _failures(summary)
    meta = json.loads((Path(summary.snapshot) / "meta.json").read_text())
    assert meta["text_column"] == "review" and meta["class_names"] == ["negative", "positive"]
    vocabulary = meta["vocabulary"]
    assert vocabulary["words"] and vocabulary["sequence_length"] == meta["input_shape"][0]
    with np.load(Path(summary.snapshot) / "data.npz") as archive:
        assert archive["x"].dtype == np.int32 and archive["x"].shape[1] == vocabulary["sequence_length"]
    snapshot = read_snapshot(summary.snapshot)
    assert "." in snapshot.texts(np.arange(3))[0]  # the texts as written, to tokenise with another vocabulary
    folder = validate_task.fn(str(reviews_folder))
    assert folder.success and folder.family == "text" and folder.rows == 200


def test_regression_passes_with_float_targets(diabetes_csv):
    summary = validate_task.fn(str(diabetes_csv), "target")
    assert summary.success and summary.family == "regression", _failures(summary)
    meta = json.loads((Path(summary.snapshot) / "meta.json").read_text())
    assert meta["class_names"] == [] and meta["target_stats"]["mean"] == pytest.approx(152.13, abs=0.01)
    with np.load(Path(summary.snapshot) / "data.npz") as archive:
        assert archive["y"].dtype == np.float32


def test_empty_and_missing_texts_are_stopped(tmp_path, reviews_csv):
    frame = pd.read_csv(reviews_csv)
    frame.loc[:9, "review"] = ""
    frame.loc[10:14, "review"] = None
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "sentiment")
    assert not summary.success
    text = _failures(summary)
    assert "null values" in text and "review" in text


def test_imdb_unlabelled_folder_is_not_a_class(tmp_path, reviews_folder):
    import shutil

    copy = shutil.copytree(reviews_folder, tmp_path / "aclImdb-train")
    (copy / "unsup").mkdir()
    (copy / "unsup" / "0_0.txt").write_text("An unlabelled review of some film.")
    data = load_source(str(copy))
    assert set(data.frame["label"]) == {"neg", "pos"} and len(data.frame) == 200


def test_unreadable_text_files_are_named(tmp_path, reviews_folder):
    import shutil

    copy = shutil.copytree(reviews_folder, tmp_path / "reviews")
    (copy / "pos" / "broken.txt").write_bytes(b"\xff\xfe\x00bad")
    summary = validate_task.fn(str(copy))
    assert not summary.success
    assert "pos/broken.txt: not UTF-8 text" in _failures(summary)


def test_infinite_or_textual_regression_targets_are_stopped(tmp_path, diabetes_csv):
    frame = pd.read_csv(diabetes_csv)
    frame.loc[3, "target"] = np.inf
    path = tmp_path / "inf.csv"
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "target", None)
    assert not summary.success and "infinite values in column(s) 'target'" in _failures(summary)

    frame = pd.read_csv(diabetes_csv)
    frame["target"] = frame["target"].astype(str)
    frame.loc[5, "target"] = "unknown"
    path = tmp_path / "text_target.csv"
    frame.to_csv(path, index=False)
    settings = _regression_settings()
    summary = validate_task.fn(str(path), "target", None, settings)
    assert not summary.success and "'target' is not numeric" in _failures(summary)


def test_a_champion_of_another_family_is_not_challenged(diabetes_csv, wine_csv):
    reference = DatasetMeta(name="earlier", family="tabular", target="target", feature_columns=[],
                            class_names=["0", "1"], input_shape=[0])
    summary = validate_task.fn(str(diabetes_csv), "target", reference)
    assert not summary.success
    assert "champion was trained on tabular data, this is regression data" in _failures(summary)


def _regression_settings():
    from lockgate.core.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training.family = "regression"
    return settings


def test_imdb_word_ids_become_text():
    from lockgate.data.datasets import imdb_texts

    index = {"the": 1, "film": 2, "was": 3, "superb": 4}  # ids as keras.datasets.imdb.get_word_index gives them
    texts, labels = imdb_texts([[1, 4, 5, 6, 7], [1, 2, 9999]], [1, 0], index)
    assert texts.tolist() == ["the film was superb", ""]  # start, unknown and unindexed ids dropped
    assert labels.tolist() == ["positive", "negative"]


# The keras.datasets loaders download tens of megabytes on first use. The tests
# stand in for the download (they run offline, and must not download on a
# runner that is online): one returns arrays shaped as the real data sets are,
# one fails as a machine without the internet does.
_SHAPES = {"mnist": ((28, 28), 255), "cifar10": ((32, 32, 3), 255)}


def _fake_download(name: str, rows: int = 60):
    rng = np.random.default_rng(0)
    if name == "imdb":
        return ((np.array([[1, 4, 5], [1, 6, 7]] * (rows // 2), dtype=object), np.array([1, 0] * (rows // 2))), None)
    shape, top = _SHAPES[name]
    labels = np.arange(rows) % 10
    return ((rng.integers(0, top + 1, (rows, *shape)).astype("uint8"), labels[:, None] if name == "cifar10" else labels),
            None)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imdb"])
def test_keras_loaders_turn_the_download_into_a_data_set(name, monkeypatch):
    import keras

    module = getattr(keras.datasets, name)
    monkeypatch.setattr(module, "load_data", lambda: _fake_download(name))
    if name == "imdb":
        monkeypatch.setattr(module, "get_word_index", lambda: {"great": 1, "film": 2, "dull": 3, "plot": 4})
    data = load_source(name)
    assert len(data.frame) == 60
    if name == "imdb":
        assert data.family == "text" and set(data.frame[data.text_column]) == {"great film", "dull plot"}
    else:
        assert data.family == "image" and data.pixel_scale == 255.0
        assert data.x.shape == (60, *(_SHAPES[name][0] + ((1,) if name == "mnist" else ())))


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imdb"])
def test_keras_loaders_without_the_internet_say_why(name, monkeypatch):
    import keras

    def offline():
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", offline)
    with pytest.raises(DataLoadError) as error:
        load_source(name)
    assert f"could not load {name} through keras.datasets (it downloads on first use)" in str(error.value)
    assert "Network is unreachable" in str(error.value)

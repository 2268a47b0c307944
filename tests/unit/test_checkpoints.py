"""Per-epoch checkpoints that are always whole (lockgate/training/checkpoints.py): a
training that dies at any point of writing one resumes from the last whole
epoch, and ends where an uninterrupted training ends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lockgate.training import checkpoints
from lockgate.training.checkpoints import checkpoint_weights, resumable_epoch


class Died(Exception):
    """Stands for the process being killed at that point: a real kill would
    take this test's process with it (tests/integration/test_scale_out.py
    kills real training processes)."""


@pytest.fixture(scope="module")
def wine(wine_csv):
    from lockgate.data.datasets import read_snapshot
    from tasks.validate import validate_task

    return read_snapshot(validate_task.fn(str(wine_csv), "target").snapshot)


@pytest.fixture
def training(settings):
    training = settings.training.model_copy(update={"epochs": 6, "early_stopping_patience": 50})
    training.architecture, training.batch_size = "linear", 16
    return training


def recorder():
    """Weights after each epoch, and the weights a run starts from (after
    the checkpoint is restored: fit runs the caller's callbacks last)."""
    import keras

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.after_epoch, self.at_start = {}, None

        def on_train_begin(self, logs=None):
            self.at_start = self.model.get_weights()

        def on_epoch_end(self, epoch, logs=None):
            self.after_epoch[epoch + 1] = self.model.get_weights()

    return Record()


def test_a_death_between_the_weights_and_the_metadata_resumes_from_the_last_whole_epoch(
        wine, training, tmp_path, monkeypatch):
    from lockgate.training.fit import fit

    written = checkpoints.atomic_write_text

    def die_before_naming_epoch_four(path, text):
        if json.loads(text)["epoch"] == 4:
            raise Died
        written(path, text)

    monkeypatch.setattr(checkpoints, "atomic_write_text", die_before_naming_epoch_four)
    first = recorder()
    with pytest.raises(Died):
        fit(wine, training, backup_dir=tmp_path / "backup", callbacks=[first])
    # Epoch 4's weights are whole on disk, but nothing names them yet.
    assert (tmp_path / "backup" / "epoch-4.weights.h5").is_file()
    assert resumable_epoch(tmp_path / "backup") == 3
    assert checkpoint_weights(tmp_path / "backup").name == "epoch-3.weights.h5"

    monkeypatch.setattr(checkpoints, "atomic_write_text", written)
    second = recorder()
    resumed = fit(wine, training, backup_dir=tmp_path / "backup", callbacks=[second])
    assert resumed.resumed_from_epoch == 3 and len(resumed.history["loss"]) == 3
    # Exactly epoch 3's weights: with Keras's own checkpoint, epoch 4's weights
    # beside metadata saying 3 had a retried rank train epoch 4 twice.
    for restored, after_three in zip(second.at_start, first.after_epoch[3]):
        np.testing.assert_array_equal(restored, after_three)
    assert not (tmp_path / "backup").exists(), "the checkpoint is removed once training ends"


def test_a_death_while_the_weights_are_written_leaves_the_last_checkpoint(wine, training, tmp_path, monkeypatch):
    import keras

    from lockgate.training.fit import fit

    save = keras.Model.save_weights

    def die_halfway_through_epoch_three(model, filepath, overwrite=True, **kwargs):
        if "epoch-3." in str(filepath):
            with open(filepath, "wb") as half:
                half.write(b"\x89HDF\r\n")
            raise Died
        return save(model, filepath, overwrite=overwrite, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", die_halfway_through_epoch_three)
    with pytest.raises(Died):
        fit(wine, training, backup_dir=tmp_path / "backup")
    assert resumable_epoch(tmp_path / "backup") == 2
    assert checkpoint_weights(tmp_path / "backup").name == "epoch-2.weights.h5"
    monkeypatch.setattr(keras.Model, "save_weights", save)
    resumed = fit(wine, training, backup_dir=tmp_path / "backup")
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 6
    assert not list((tmp_path).glob("**/*.partial.weights.h5"))


def test_metadata_naming_a_missing_file_is_no_checkpoint(tmp_path):
    (tmp_path / "training_metadata.json").write_text(json.dumps({"epoch": 5, "weights": "epoch-5.weights.h5"}))
    assert resumable_epoch(tmp_path) == 0 and checkpoint_weights(tmp_path) is None
    (tmp_path / "training_metadata.json").write_text("{not json")
    assert resumable_epoch(tmp_path) == 0
    assert resumable_epoch(tmp_path / "absent") == 0


def test_early_stopping_s_best_epoch_survives_a_resume(tmp_path):
    """Resumed, early stopping goes on from what it had seen: the best score,
    its epoch and weights, and the epochs already waited."""
    import keras

    from lockgate.training.checkpoints import whole_checkpoints

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")

    def model():
        keras.utils.set_random_seed(0)
        built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        built.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return built

    class DieAfterEpochFour(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                raise Died

    class StateAtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.state = (stopping.best, stopping.best_epoch, stopping.wait, stopping.best_weights)

    # Validation against the opposite targets: the better it fits, the worse
    # it scores, so the best epoch is the first and then it waits.
    val = (x, -y)
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True)
    with pytest.raises(Died):
        model().fit(x, y, epochs=8, verbose=0, validation_data=val,
                    callbacks=[stopping, whole_checkpoints(tmp_path, stopping), DieAfterEpochFour()])
    before = (stopping.best, stopping.best_epoch, stopping.wait, [w.copy() for w in stopping.best_weights])
    assert before[2] > 0, "the best epoch should be behind it, or this shows nothing"

    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True)
    start = StateAtStart()
    model().fit(x, y, epochs=8, verbose=0, validation_data=val,
                callbacks=[stopping, whole_checkpoints(tmp_path, stopping), start])
    best, best_epoch, wait, weights = start.state
    assert (best, best_epoch, wait) == pytest.approx(before[:3])
    for restored, saved in zip(weights, before[3]):
        np.testing.assert_array_equal(restored, saved)

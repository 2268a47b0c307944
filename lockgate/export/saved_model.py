"""The TensorFlow SavedModel: a format of its own, and what every TFLite
conversion starts from, so it is written at most once per export."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.export.base import (
    ExportFormat,
    ExportUnavailable,
    Predict,
    Produced,
    Sources,
    describe_exception,
    plain_input,
    remove,
)


class SavedModelSource:
    """The SavedModel every TFLite conversion starts from, written at most once:
    at `target` when that format was asked for (`keep`), otherwise in a
    temporary folder that is removed afterwards."""

    def __init__(self, model: Any, target: Path, keep: bool, cleanup: contextlib.ExitStack):
        self._model = model
        self._target = target
        self._keep = keep
        self._cleanup = cleanup
        self._path: Path | None = None
        self._error: BaseException | None = None

    def path(self) -> Path:
        if self._path is not None:
            return self._path
        if self._error is not None:
            raise ExportUnavailable(
                f"converting needs a SavedModel, which could not be written: {describe_exception(self._error)}"
            )
        if self._keep:
            target = self._target
        else:
            scratch = Path(tempfile.mkdtemp(prefix=".saved_model-", dir=self._target.parent))
            self._cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            target = scratch / "saved_model"
        remove(target)
        try:
            self._model.export(str(target), format="tf_saved_model", verbose=False)
        except Exception as exc:
            self._error = exc
            raise
        self._path = target
        return target


@dataclass(frozen=True)
class SavedModelFormat(ExportFormat):
    def produce(self, model: Any, target: Path, sources: Sources) -> Produced:
        """The shared SavedModel, which is written at `target` when this format is asked for."""
        return Produced(sources.saved_model())

    def load(self, path: Path, threads: int | None = None) -> Predict:
        import tensorflow as tf  # deferred: only the export check loads a SavedModel

        loaded = tf.saved_model.load(str(path))

        def predict(x: np.ndarray) -> np.ndarray:
            outputs = loaded.serve(tf.constant(plain_input(x)))
            if isinstance(outputs, dict):
                outputs = next(iter(outputs.values()))
            return np.asarray(outputs)

        return predict


SAVED_MODEL = SavedModelFormat(name="saved_model", artifact="saved_model")

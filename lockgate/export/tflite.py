"""TensorFlow Lite, in three variants that differ only by converter options:
dynamic-range, float16 and full-integer (int8) quantisation. One class, three
registered instances."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator
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
    trim,
)

log = logging.getLogger("lockgate.export")

TFLITE_CHUNK = 256


@dataclass(frozen=True)
class TFLiteFormat(ExportFormat):
    float16: bool = False  # float16 weights
    int8: bool = False  # integer inputs, outputs and ops, calibrated on representative examples
    check_chunk: int = TFLITE_CHUNK

    def produce(self, model: Any, target: Path, sources: Sources) -> Produced:
        remove(target)
        target.write_bytes(self._convert(sources.saved_model(), sources.x_representative))
        return Produced(target)

    def load(self, path: Path, threads: int | None = None) -> Predict:
        return _TFLiteRunner(Path(path).read_bytes())

    def _convert(self, saved_model: Path, x_representative: np.ndarray) -> bytes:
        """The TFLite file's bytes. Models the builtin ops cannot express (an
        LSTM's tensor lists, string ops) are converted again with TF Select
        ops, which a runtime can only run with the Flex delegate."""
        import tensorflow as tf  # deferred: only exporting converts, and the ONNX service never imports TensorFlow

        def converter() -> Any:
            conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if self.float16:
                conv.target_spec.supported_types = [tf.float16]
            if self.int8:
                conv.representative_dataset = _representative_dataset(x_representative)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            return conv

        try:
            return converter().convert()
        except Exception as builtins_error:
            if self.int8:
                raise
            log.info("export %s: builtin ops are not enough (%s); trying TF Select ops", self.name,
                     trim(describe_exception(builtins_error), 200))
            conv = converter()
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
            conv._experimental_lower_tensor_list_ops = False
            try:
                return conv.convert()
            except Exception:
                raise builtins_error from None


def _representative_dataset(x: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Calibration examples for full-integer quantisation, one at a time."""

    def examples() -> Iterator[list[np.ndarray]]:
        for row in x:
            yield [np.asarray(row, dtype="float32")[None, ...]]

    return examples


class _TFLiteRunner:
    """A TFLite interpreter that takes a batch of any size, quantising int8
    inputs and dequantising int8 outputs with the tensors' own parameters."""

    def __init__(self, content: bytes):
        import tensorflow as tf  # deferred: only the export check runs TFLite files

        self._content = content
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its deprecation
            self._interpreter = tf.lite.Interpreter(model_content=content)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1
        self._resize(1)  # allocating is where missing ops show up

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        shape = [batch, *[int(d) for d in self._input["shape"][1:]]]
        with self._flex_ops_explained():
            self._interpreter.resize_tensor_input(self._input["index"], shape)
            self._interpreter.allocate_tensors()
        self._batch = batch

    @contextlib.contextmanager
    def _flex_ops_explained(self) -> Iterator[None]:
        """TF Select ops fail when tensors are prepared (on allocating or on
        the first invoke): say so in words."""
        try:
            yield
        except RuntimeError as exc:
            if "Select TensorFlow op" in str(exc) or "Flex" in str(exc):
                raise ExportUnavailable(self._flex_reason()) from exc
            raise

    def _flex_reason(self) -> str:
        ops = sorted({m.decode() for m in re.findall(rb"Flex([A-Z][A-Za-z0-9]*)", self._content)})
        listed = f" ({', '.join(ops)})" if ops else ""
        return (
            f"the TFLite file was produced but needs the Flex delegate for TF Select ops{listed}, "
            "which this TFLite runtime lacks: parity could not be checked, so it is not shipped"
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._resize(len(x))
        self._interpreter.set_tensor(self._input["index"], self._quantise(x))
        with self._flex_ops_explained():
            self._interpreter.invoke()
        return self._dequantise(self._interpreter.get_tensor(self._output["index"]))

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._input["dtype"])
        if dtype.kind in "SOU":
            return plain_input(x)
        scale, zero_point = self._input["quantization"]
        if dtype.kind in "iu" and scale:
            info = np.iinfo(dtype)
            quantised = np.round(np.asarray(x, dtype="float32") / scale + zero_point)
            return np.clip(quantised, info.min, info.max).astype(dtype)
        return np.asarray(x, dtype=dtype)

    def _dequantise(self, y: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output["quantization"]
        if np.dtype(self._output["dtype"]).kind in "iu" and scale:
            return (y.astype("float32") - zero_point) * scale
        return np.array(y, dtype="float32")


TFLITE_DYNAMIC = TFLiteFormat(name="tflite_dynamic", artifact="model_dynamic_range.tflite")
TFLITE_FLOAT16 = TFLiteFormat(name="tflite_float16", artifact="model_float16.tflite", float16=True)
TFLITE_INT8 = TFLiteFormat(name="tflite_int8", artifact="model_int8.tflite", int8=True, needs_representative_input=True)

"""ONNX, through tf2onnx, run by onnxruntime: the one export a Bento serves.

`onnx_predict` is the single onnxruntime adapter, used both by the export
check and by the service, so the check runs the model as it will be served.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
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
    remove,
    text,
)

log = logging.getLogger("lockgate.export")


@dataclass(frozen=True)
class OnnxFormat(ExportFormat):
    def produce(self, model: Any, target: Path, sources: Sources) -> Produced:
        remove(target)
        return Produced(target, tuple(_convert(model, target)))

    def load(self, path: Path, threads: int | None = None) -> Predict:
        return onnx_predict(path, threads)

    def load_produced(self, produced: Produced) -> Predict:
        """A file tf2onnx wrote while reporting ops it could not convert
        usually does not load: say which ops."""
        try:
            return self.load(produced.path)
        except Exception as exc:
            if not produced.unconverted_ops:
                raise
            missing = re.search(r"No Op registered for \w+", str(exc))
            refusal = missing.group(0) if missing else describe_exception(exc)
            raise ExportUnavailable(
                f"tf2onnx could not convert TensorFlow ops {', '.join(produced.unconverted_ops)}; the file it wrote "
                f"does not load in onnxruntime ({refusal})"
            ) from exc


def onnx_predict(path: Path, threads: int | None = None) -> Predict:
    """An onnxruntime session on the CPU as a function of a batch, giving
    float32 outputs of shape (n, outputs). With `threads`, the session runs
    sequentially on that many intra-op threads (as the service does, one
    session per worker); without, onnxruntime's defaults."""
    import onnxruntime as ort  # deferred: a worker served by Keras, and exporting without ONNX, never load it

    if threads is None:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    name = feed.name

    if feed.type == "tensor(string)":

        def predict_texts(x: np.ndarray) -> np.ndarray:
            batch = np.asarray([text(v) for v in x], dtype=object)
            return np.asarray(session.run(None, {name: batch})[0], dtype="float32").reshape(len(x), -1)

        return predict_texts

    # Text models take token ids; everything else numbers as float.
    dtype = {"tensor(double)": "float64", "tensor(int32)": "int32", "tensor(int64)": "int64"}.get(feed.type, "float32")

    def predict(x: np.ndarray) -> np.ndarray:
        output = session.run(None, {name: np.asarray(x, dtype=dtype)})[0]
        return np.asarray(output, dtype="float32").reshape(len(x), -1)

    return predict


def _convert(model: Any, target: Path) -> list[str]:
    """Keras' tf2onnx export. tf2onnx logs the ops it cannot convert and may
    still write a file; those ops are returned to explain a load failure."""
    with _tf2onnx_errors() as errors, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.export(str(target), format="onnx", verbose=False)
        except Exception as exc:
            ops = _unconvertible_ops(errors)
            if ops:
                raise ExportUnavailable(
                    f"converting failed: tf2onnx could not convert TensorFlow ops {', '.join(ops)} "
                    f"({describe_exception(exc)})"
                ) from exc
            raise
    ops = _unconvertible_ops(errors)
    if ops:
        log.warning("export onnx: tf2onnx could not convert %s", ", ".join(ops))
        return ops
    extra = _onnx_inputs(target)[len(model.inputs) :]
    if extra:
        # tf2onnx turns tensors the model captured (a Normalization layer's
        # adapted mean and variance) into graph inputs with no values, so the
        # file needs them at every call. Freezing the graph first keeps them
        # as constants.
        log.info("export onnx: %d captured tensors became inputs (%s); converting a frozen graph instead",
                 len(extra), ", ".join(extra[:3]))
        _convert_frozen(model, target)
    return []


def _onnx_inputs(path: Path) -> list[str]:
    """The graph inputs an ONNX file needs fed (initializers excluded)."""
    import onnx  # deferred: only exporting reads ONNX graphs; the service needs onnxruntime alone

    graph = onnx.load(str(path), load_external_data=False).graph
    initialized = {tensor.name for tensor in graph.initializer}
    return [value.name for value in graph.input if value.name not in initialized]


def _convert_frozen(model: Any, target: Path) -> None:
    """tf2onnx on the model's call with every variable and captured tensor
    folded into constants."""
    import tensorflow as tf  # deferred: only exporting converts, and the ONNX service never imports TensorFlow
    import tf2onnx  # deferred: the converter, needed only when a frozen graph is converted
    from tensorflow.python.framework.convert_to_constants import (  # deferred: TensorFlow, as above
        convert_variables_to_constants_v2,
    )

    specs = [
        tf.TensorSpec(tensor.shape, tensor.dtype, name=f"input_{i}") for i, tensor in enumerate(model.inputs)
    ]

    @tf.function(input_signature=specs)
    def call(*inputs: Any) -> Any:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    frozen = convert_variables_to_constants_v2(call.get_concrete_function())
    target.unlink(missing_ok=True)
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    with _tf2onnx_errors() as errors, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_logger.setLevel(logging.ERROR)  # tf2onnx calls TF1 freezing APIs, each announcing its deprecation
        try:
            tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(),
                input_names=[t.name for t in frozen.inputs],
                output_names=[t.name for t in frozen.outputs],
                output_path=str(target),
            )
        finally:
            tf_logger.setLevel(tf_level)
    ops = _unconvertible_ops(errors)
    if ops:
        raise ExportUnavailable(f"converting failed: tf2onnx could not convert TensorFlow ops {', '.join(ops)}")


@contextlib.contextmanager
def _tf2onnx_errors() -> Iterator[list[str]]:
    """Collect tf2onnx's error log lines (kept out of the pipeline's own log)."""
    collected: list[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                collected.append(record.getMessage())

    logger = logging.getLogger("tf2onnx")
    handler = Collector()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield collected
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _unconvertible_ops(messages: list[str]) -> list[str]:
    """Op types named in tf2onnx's error lines, in the order first seen."""
    ops: list[str] = []
    patterns = (
        r"Tensorflow op \[[^:\]]*: (\w+)\] is not supported",
        r"Unsupported ops: Counter\(\{([^}]*)\}\)",
        r"OP=(\w+)",
    )
    for message in messages:
        for pattern in patterns:
            for match in re.findall(pattern, message):
                for op in re.findall(r"\w+", match):
                    if op not in ops and not op.isdigit():
                        ops.append(op)
    return ops


ONNX = OnnxFormat(name="onnx", artifact="model.onnx", runtime="onnx", serve_lock="requirements-serve.lock")

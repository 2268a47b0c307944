"""Export a trained Keras model to serving formats, and check each export.

A converter can succeed and still change what the model predicts (quantisation,
an op that is lowered differently, a string op that is dropped). So nothing is
trusted: every artifact is loaded back with its own runtime, run on the whole
holdout and compared with the Keras model. Only an export whose predictions
agree is "passed"; one that disagrees is "failed_parity"; one that could not be
produced, loaded or run is "unavailable", with the reason in plain words. One
failing format never stops the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.families import family_for
from lockgate.models import predict_outputs
from lockgate.records import ExportResult
from lockgate.settings import ExportSettings

log = logging.getLogger("lockgate.export")

TFLITE_FORMATS = ("tflite_dynamic", "tflite_float16", "tflite_int8")
ARTIFACT_NAMES = {
    "saved_model": "saved_model",
    "tflite_dynamic": "model_dynamic_range.tflite",
    "tflite_float16": "model_float16.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
REASON_LIMIT = 400
TFLITE_CHUNK = 256
RUNTIME_CHUNK = 512

Predict = Callable[[np.ndarray], np.ndarray]


class ExportUnavailable(Exception):
    """An export that cannot be checked, with a reason that needs no rewording."""


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #


def export_model(
    model: Any,
    family: str,
    out_dir: Path,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    x_representative: np.ndarray,
    settings: ExportSettings,
    reference_outputs: np.ndarray | None = None,
) -> list[ExportResult]:
    """Produce every format in `settings.formats` under `out_dir` and check each
    on the holdout against the Keras model's outputs (computed here unless
    `reference_outputs` are given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if reference_outputs is None:
        reference_outputs = predict_outputs(model, x_holdout)
    model = float32_model(model)
    results: list[ExportResult] = []
    with contextlib.ExitStack() as cleanup:
        saved_model = _SavedModelSource(model, out_dir, keep="saved_model" in settings.formats, cleanup=cleanup)
        for fmt in settings.formats:
            started = time.perf_counter()
            result = _export_one(
                fmt, model, family, out_dir, saved_model, x_holdout, y_holdout, x_representative,
                reference_outputs, settings,
            )
            log.info(
                "export %s: %s in %.1f s%s", fmt, result.status, time.perf_counter() - started,
                f" ({result.reason})" if result.reason else "",
            )
            results.append(result)
    return results


def float32_model(model: Any) -> Any:
    """The model itself, or, when it computes in float16 (mixed precision, as
    GPU training does), a copy with the same weights that computes in float32.
    TFLite has no float16 builtins for most ops, and CPU runtimes gain nothing
    from float16 arithmetic; parity is still judged against the original."""
    if not _uses_mixed_precision(model):
        return model
    import keras

    with tempfile.TemporaryDirectory(prefix="lockgate-float32-") as folder:
        mixed, plain = Path(folder) / "mixed.keras", Path(folder) / "float32.keras"
        model.save(mixed)
        with zipfile.ZipFile(mixed) as source, zipfile.ZipFile(plain, "w") as target:
            for item in source.infolist():
                data = source.read(item.filename)
                if item.filename == "config.json":
                    data = json.dumps(_float32_policies(json.loads(data))).encode()
                target.writestr(item, data)
        copy = keras.models.load_model(plain, compile=False)
    log.info("exporting a float32 copy of the mixed-precision model")
    return copy


def _uses_mixed_precision(model: Any) -> bool:
    layers = [model, *getattr(model, "layers", [])]
    return any(str(getattr(getattr(layer, "dtype_policy", None), "name", "")).startswith("mixed_") for layer in layers)


def _float32_policies(config: Any) -> Any:
    """A Keras config with every mixed-precision dtype policy set to float32."""
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    if not isinstance(config, dict):
        return config
    if "DTypePolicy" in str(config.get("class_name", "")) and str(
        config.get("config", {}).get("name", "")
    ).startswith("mixed_"):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {key: _float32_policies(value) for key, value in config.items()}


def keras_reference(model: Any, x: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    """The Keras model's outputs on `x` and its median single-example latency (ms)."""
    outputs = predict_outputs(model, x)
    latency = median_latency_ms(lambda one: predict_outputs(model, one), x[:1], repeats)
    return outputs, latency


def folder_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def median_latency_ms(predict: Predict, one_example: np.ndarray, repeats: int) -> float:
    """Median wall time of `repeats` single-example calls, after one warm-up call."""
    predict(one_example)
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        predict(one_example)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


# --------------------------------------------------------------------------- #
# Parity
# --------------------------------------------------------------------------- #


def judge_parity(
    fmt: str,
    family: str,
    keras_outputs: np.ndarray,
    export_outputs: np.ndarray,
    y_holdout: np.ndarray,
    settings: ExportSettings,
) -> ExportResult:
    """Compare an export's holdout outputs with the Keras model's.

    Classification: share of examples with the same predicted label.
    Regression: share of examples within `regression_tolerance` times the
    holdout target's standard deviation of the Keras value."""
    expected = np.asarray(keras_outputs, dtype="float64").reshape(len(keras_outputs), -1)
    observed = np.asarray(export_outputs, dtype="float64").reshape(len(export_outputs), -1)
    n = len(expected)
    if observed.shape != expected.shape:
        return ExportResult(
            format=fmt, status="failed_parity",
            reason=f"outputs have shape {observed.shape}; the Keras model's have {expected.shape}",
        )
    if n == 0:
        return ExportResult(format=fmt, status="failed_parity", reason="no holdout examples to compare on")
    non_finite = int((~np.isfinite(observed)).sum())
    if non_finite:
        return ExportResult(
            format=fmt, status="failed_parity",
            reason=f"{non_finite} of {observed.size} outputs on {n} holdout examples are not finite (NaN or inf)",
        )
    max_abs_difference = float(np.abs(observed - expected).max())
    required = settings.min_label_agreement
    if family_for(family).task == "classification":
        agreement = float(np.mean(observed.argmax(axis=1) == expected.argmax(axis=1)))
        measure = "labels agree"
    else:
        std = float(np.std(np.asarray(y_holdout, dtype="float64")))
        scale = std if np.isfinite(std) and std > 0 else 1.0
        tolerance = settings.regression_tolerance * scale
        agreement = float(np.mean(np.abs(observed - expected).max(axis=1) <= tolerance))
        measure = f"predictions lie within {tolerance:.4g} ({settings.regression_tolerance:g} x the target's std)"
    shown, needed = _percentages(agreement, required)
    if agreement >= required:
        return ExportResult(
            format=fmt, status="passed", agreement=agreement, max_abs_difference=max_abs_difference,
        )
    return ExportResult(
        format=fmt,
        status="failed_parity",
        reason=f"{measure} on {shown} of {n} holdout examples; at least {needed} is required",
        agreement=agreement,
        max_abs_difference=max_abs_difference,
    )


def _percentages(value: float, required: float) -> tuple[str, str]:
    """Both as percentages, with enough decimals that they do not look equal."""
    for decimals in (1, 2, 3, 4):
        shown, needed = f"{value:.{decimals}%}", f"{required:.{decimals}%}"
        if shown != needed or value == required:
            return shown, needed
    return shown, needed


# --------------------------------------------------------------------------- #
# One format
# --------------------------------------------------------------------------- #


class _SavedModelSource:
    """The SavedModel every TFLite conversion starts from, written at most once:
    under `out_dir/saved_model` when that format was asked for, otherwise in a
    temporary folder that is removed afterwards."""

    def __init__(self, model: Any, out_dir: Path, keep: bool, cleanup: contextlib.ExitStack):
        self._model = model
        self._out_dir = out_dir
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
            target = self._out_dir / ARTIFACT_NAMES["saved_model"]
        else:
            scratch = Path(tempfile.mkdtemp(prefix=".saved_model-", dir=self._out_dir))
            self._cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            target = scratch / "saved_model"
        _remove(target)
        try:
            self._model.export(str(target), format="tf_saved_model", verbose=False)
        except Exception as exc:
            self._error = exc
            raise
        self._path = target
        return target


def _export_one(
    fmt: str,
    model: Any,
    family: str,
    out_dir: Path,
    saved_model: _SavedModelSource,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    x_representative: np.ndarray,
    keras_outputs: np.ndarray,
    settings: ExportSettings,
) -> ExportResult:
    """Convert, load, run and judge one format; never raises."""
    if fmt == "tflite_int8" and not family_for(family).int8_quantisation:
        return ExportResult(
            format=fmt, status="unavailable",
            reason=f"full-integer (int8) quantisation is offered for image models only; this is a {family} model",
        )
    path: Path | None = None
    stage = "converting"
    try:
        path, unconverted_ops = _produce(fmt, model, out_dir, saved_model, x_representative)
        stage = "loading"
        predict = _load(fmt, path, unconverted_ops)
        stage = "running"
        outputs = _in_chunks(predict, x_holdout, TFLITE_CHUNK if fmt in TFLITE_FORMATS else RUNTIME_CHUNK)
        latency = median_latency_ms(predict, x_holdout[:1], settings.latency_repeats)
    except ExportUnavailable as exc:
        return _unavailable(fmt, str(exc), path)
    except Exception as exc:
        log.debug("export %s failed while %s", fmt, stage, exc_info=True)
        return _unavailable(fmt, f"{stage} failed: {describe_exception(exc)}", path)
    judged = judge_parity(fmt, family, keras_outputs, outputs, y_holdout, settings)
    return judged.model_copy(update={"path": str(path), "size_bytes": folder_size(path), "latency_ms_p50": latency})


def _unavailable(fmt: str, reason: str, path: Path | None) -> ExportResult:
    """An unchecked export; the file is named when one was written."""
    exists = path is not None and path.exists()
    return ExportResult(
        format=fmt,
        status="unavailable",
        reason=_trim(reason),
        path=str(path) if exists else None,
        size_bytes=folder_size(path) if exists else None,
    )


def _produce(
    fmt: str, model: Any, out_dir: Path, saved_model: _SavedModelSource, x_representative: np.ndarray
) -> tuple[Path, list[str]]:
    """Write one format; return its path and any ops the converter reported
    it could not convert although it wrote a file."""
    if fmt == "saved_model":
        return saved_model.path(), []
    if fmt not in ARTIFACT_NAMES:
        raise ExportUnavailable(f"unknown export format {fmt!r}")
    target = out_dir / ARTIFACT_NAMES[fmt]
    _remove(target)
    if fmt == "onnx":
        return target, _convert_onnx(model, target)
    target.write_bytes(_convert_tflite(fmt, saved_model.path(), x_representative))
    return target, []


def _load(fmt: str, path: Path, unconverted_ops: list[str]) -> Predict:
    if fmt == "saved_model":
        return _load_saved_model(path)
    if fmt == "onnx":
        return _load_onnx(path, unconverted_ops)
    return _TFLiteRunner(path.read_bytes())


# --------------------------------------------------------------------------- #
# SavedModel
# --------------------------------------------------------------------------- #


def _load_saved_model(path: Path) -> Predict:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = loaded.serve(tf.constant(_plain_input(x)))
        if isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        return np.asarray(outputs)

    return predict


# --------------------------------------------------------------------------- #
# TensorFlow Lite
# --------------------------------------------------------------------------- #


def _convert_tflite(fmt: str, saved_model: Path, x_representative: np.ndarray) -> bytes:
    """Dynamic-range, float16 or full-integer TFLite. Models the builtin ops
    cannot express (an LSTM's tensor lists, string ops) are converted again
    with TF Select ops, which a runtime can only run with the Flex delegate."""
    import tensorflow as tf

    def converter() -> Any:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if fmt == "tflite_float16":
            conv.target_spec.supported_types = [tf.float16]
        if fmt == "tflite_int8":
            conv.representative_dataset = _representative_dataset(x_representative)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        return conv

    try:
        return converter().convert()
    except Exception as builtins_error:
        if fmt == "tflite_int8":
            raise
        log.info("export %s: builtin ops are not enough (%s); trying TF Select ops", fmt,
                 _trim(describe_exception(builtins_error), 200))
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
        import tensorflow as tf

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
            return _plain_input(x)
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


# --------------------------------------------------------------------------- #
# ONNX
# --------------------------------------------------------------------------- #


def _convert_onnx(model: Any, target: Path) -> list[str]:
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
        _convert_onnx_frozen(model, target)
    return []


def _onnx_inputs(path: Path) -> list[str]:
    """The graph inputs an ONNX file needs fed (initializers excluded)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initialized = {tensor.name for tensor in graph.initializer}
    return [value.name for value in graph.input if value.name not in initialized]


def _convert_onnx_frozen(model: Any, target: Path) -> None:
    """tf2onnx on the model's call with every variable and captured tensor
    folded into constants."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

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


def _load_onnx(path: Path, unconverted: list[str]) -> Predict:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if not unconverted:
            raise
        missing = re.search(r"No Op registered for \w+", str(exc))
        refusal = missing.group(0) if missing else describe_exception(exc)
        raise ExportUnavailable(
            f"tf2onnx could not convert TensorFlow ops {', '.join(unconverted)}; the file it wrote "
            f"does not load in onnxruntime ({refusal})"
        ) from exc
    feed = session.get_inputs()[0]

    def predict(x: np.ndarray) -> np.ndarray:
        if feed.type == "tensor(string)":
            batch = np.asarray([_text(v) for v in x], dtype=object)
        else:
            batch = np.asarray(x, dtype="float64" if feed.type == "tensor(double)" else "float32")
        return np.asarray(session.run(None, {feed.name: batch})[0])

    return predict


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


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def describe_exception(exc: BaseException) -> str:
    """Exception type and its first meaningful line. TensorFlow converter
    messages are MLIR dumps: their `error:` lines are kept, without locations."""
    text = str(exc)
    errors = []
    for line in text.splitlines():
        if "error:" not in line:
            continue
        message = _strip_location(line.split("error:", 1)[1].strip())
        if message and message not in errors:
            errors.append(message)
    if errors:
        detail = "; ".join(errors)
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = lines[0] if lines else repr(exc)
    return _trim(f"{type(exc).__name__}: {detail}")


def _strip_location(message: str) -> str:
    """Drop a leading MLIR `loc(...)` (nested brackets) and the colon after it."""
    if not message.startswith("loc("):
        return message
    depth = 0
    for i, char in enumerate(message):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return message[i + 1 :].lstrip(":").strip()
    return message


def _trim(text: str, limit: int = REASON_LIMIT) -> str:
    text = " ".join(text.replace("\\n", " ").split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _in_chunks(predict: Predict, x: np.ndarray, size: int) -> np.ndarray:
    """`predict` over `x` in chunks, as float32 of shape (n, outputs)."""
    parts = []
    for start in range(0, len(x), size):
        out = np.asarray(predict(x[start : start + size]), dtype="float32")
        parts.append(out.reshape(len(out), -1))
    if not parts:
        return np.zeros((0, 0), dtype="float32")
    return np.concatenate(parts)


def _plain_input(x: np.ndarray) -> np.ndarray:
    """Strings as UTF-8 bytes in an object array, numbers as float32."""
    x = np.asarray(x)
    if x.dtype.kind in "USO":
        return np.asarray([_text(v).encode("utf-8") for v in x.reshape(-1)], dtype=object).reshape(x.shape)
    return x.astype("float32", copy=False)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

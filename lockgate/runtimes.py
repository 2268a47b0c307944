"""Serving runtimes: which one serves a model, and how each is run.

The exports that passed parity answer like the Keras model and are far
cheaper per call (onnxruntime runs a small CNN or MLP in tens of
microseconds), and onnxruntime needs neither TensorFlow nor Keras, so a
service on it starts in a fraction of the time. The choice is made once,
when the model is packaged, and recorded with it (`ServedMeta.runtime`); the
service and the packaging step's served check both load what is recorded
here, so the check covers the runtime that actually serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np

from lockgate.records import ExportReport, ModelCalls, RuntimeName, ServedMeta, ServedRuntime

Predict = Callable[[np.ndarray], np.ndarray]

# How the service calls each runtime unless settings say otherwise: what was
# fastest for single-example JSON at 32 connections on 2 cores (wrk). onnx,
# one worker, requests/s: batched on a thread 3,360, batched inline 3,000,
# alone inline 2,920, alone on a thread 2,160; with a model call of tens of
# microseconds there is little to amortise, and the thread lets the call
# overlap the next requests' parsing. keras: batched 2,400-3,000 against
# 1,400 alone (a call costs about a millisecond). docs/benchmarks.md has the rest.
AUTO_CALLS: dict[RuntimeName, ModelCalls] = {
    "onnx": ModelCalls(batching=True, model_calls="thread",
                       reason="the onnx default: batched on the model thread, measured fastest for it"),
    "keras": ModelCalls(batching=True, model_calls="thread",
                        reason="the keras default: batched on the model thread, measured fastest for it"),
}

# Export formats a runtime can serve, and the runtime that serves each.
SERVABLE_EXPORTS: dict[str, RuntimeName] = {"onnx": "onnx"}


def choose_runtime(
    exports: ExportReport | None, shipped: dict[str, str], allowed: Literal["auto", "keras"] = "auto"
) -> ServedRuntime:
    """The fastest runtime whose export passed parity, by the export check's
    single-example latency; the Keras model when none did (or `allowed` says
    so). `shipped` maps each export format to its file in the model folder."""
    keras = ServedRuntime(
        name="keras", file="model.keras", latency_ms_p50=exports.keras_latency_ms_p50 if exports else None,
        reason="the Keras model",
    )
    if allowed == "keras":
        return keras.model_copy(update={"reason": "the Keras model, as settings ask (serving.runtime=keras)"})
    if exports is None:
        return keras.model_copy(update={"reason": "the Keras model: no export was checked"})
    candidates = [
        ServedRuntime(
            name=SERVABLE_EXPORTS[result.format], file=shipped[result.format], latency_ms_p50=result.latency_ms_p50,
            reason=f"the {result.format} export, which passed parity (agreement {result.agreement or 0:.3f})",
        )
        for result in exports.passed()
        if result.format in SERVABLE_EXPORTS and result.format in shipped
    ]
    if not candidates:
        failed = [r.format for r in exports.results if r.format in SERVABLE_EXPORTS]
        why = f"the {', '.join(failed)} export did not pass parity" if failed else "no servable export was produced"
        return keras.model_copy(update={"reason": f"the Keras model: {why}"})
    fastest = min(candidates, key=lambda c: c.latency_ms_p50 if c.latency_ms_p50 is not None else float("inf"))
    if keras.latency_ms_p50 is not None and fastest.latency_ms_p50 is not None and keras.latency_ms_p50 < fastest.latency_ms_p50:
        return keras.model_copy(update={"reason": f"the Keras model: faster than the {fastest.name} export"})
    return fastest


def model_calls(runtime: RuntimeName, batching: Literal["auto"] | bool = "auto",
                where: Literal["auto", "inline", "thread"] = "auto") -> ModelCalls:
    """How the service calls `runtime`: the settings' choice, or where they
    say "auto", the runtime's default."""
    auto = AUTO_CALLS[runtime]
    if batching == "auto" and where == "auto":
        return auto
    return ModelCalls(
        batching=auto.batching if batching == "auto" else batching,
        model_calls=auto.model_calls if where == "auto" else where,
        reason=f"as settings ask (serving.batching={batching}, serving.model_calls={where})",
    )


def load_runtime(folder: str | Path, meta: ServedMeta, threads: int = 1) -> Predict:
    """The served model of a Bento model folder as a function of a batch,
    traced or initialised once on the family's warm-up input."""
    from lockgate.families import family_for

    path = Path(folder) / meta.runtime.file
    predict = _onnx(path, threads) if meta.runtime.name == "onnx" else _keras(path)
    predict(family_for(meta.family).warm_up_input(meta))
    return predict


def _onnx(path: Path, threads: int) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = "float64" if feed.type == "tensor(double)" else "float32"
    name = feed.name

    def predict(x: np.ndarray) -> np.ndarray:
        output = session.run(None, {name: np.asarray(x, dtype=dtype)})[0]
        return np.asarray(output, dtype="float32").reshape(len(x), -1)

    return predict


def _keras(path: Path) -> Predict:
    from lockgate.models import load_keras_model, model_input

    model = load_keras_model(path)

    def predict(x: np.ndarray) -> np.ndarray:
        output = np.asarray(model.predict_on_batch(model_input(x)), dtype="float32")
        return output.reshape(len(x), -1)

    return predict


def runtime_outputs(folder: str | Path, meta: ServedMeta, x: np.ndarray, chunk: int = 512) -> np.ndarray:
    """What the recorded runtime answers for `x` in this process, in chunks."""
    predict = load_runtime(folder, meta)
    return np.concatenate([predict(x[i : i + chunk]) for i in range(0, len(x), chunk)])

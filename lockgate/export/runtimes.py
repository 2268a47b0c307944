"""Serving runtimes: which one serves a model, and how each is run.

The exports that passed parity answer like the Keras model and are far
cheaper per call (onnxruntime runs a small CNN or MLP in tens of
microseconds), and onnxruntime needs neither TensorFlow nor Keras, so a
service on it starts in a fraction of the time. The choice is made once,
when the model is packaged, and recorded with it (`ServedMeta.runtime`); the
service and the packaging step's served check both load what is recorded
here, through the same format's `load` the export check ran, so the check
covers the runtime that actually serves. Which formats a runtime serves, and
its locked requirements, are declared by the formats (`FORMATS`) and the
Keras model (`KERAS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from lockgate.core.records import ExportReport, ModelCalls, RuntimeName, ServedMeta, ServedRuntime
from lockgate.export import FORMATS
from lockgate.export.base import ExportFormat, Predict
from lockgate.export.keras import KERAS

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


def servable_exports() -> dict[str, ExportFormat]:
    """The registered export formats a runtime can serve, by format name."""
    return {name: fmt for name, fmt in FORMATS.items() if fmt.runtime}


def serving_runtimes() -> dict[str, ExportFormat]:
    """Each runtime a Bento can serve on, with the format it runs: the Keras
    model's own, and each servable export's."""
    return {KERAS.runtime: KERAS} | {fmt.runtime: fmt for fmt in servable_exports().values()}


def serve_locks() -> dict[str, str]:
    """The locked requirements of each runtime, for the Bento it serves in."""
    return {runtime: fmt.serve_lock for runtime, fmt in serving_runtimes().items() if fmt.serve_lock}


def choose_runtime(
    exports: ExportReport | None, shipped: dict[str, str], allowed: Literal["auto", "keras"] = "auto"
) -> ServedRuntime:
    """The fastest runtime whose export passed parity, by the export check's
    single-example latency; the Keras model when none did (or `allowed` says
    so). `shipped` maps each export format to its file in the model folder."""
    keras = ServedRuntime(
        name=KERAS.runtime, file=KERAS.artifact,
        latency_ms_p50=exports.keras_latency_ms_p50 if exports else None, reason="the Keras model",
    )
    if allowed == "keras":
        return keras.model_copy(update={"reason": "the Keras model, as settings ask (serving.runtime=keras)"})
    if exports is None:
        return keras.model_copy(update={"reason": "the Keras model: no export was checked"})
    servable = servable_exports()
    candidates = [
        ServedRuntime(
            name=servable[result.format].runtime, file=shipped[result.format], latency_ms_p50=result.latency_ms_p50,
            reason=f"the {result.format} export, which passed parity (agreement {result.agreement or 0:.3f})",
        )
        for result in exports.passed()
        if result.format in servable and result.format in shipped
    ]
    if not candidates:
        failed = [r.format for r in exports.results if r.format in servable]
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


def load_runtime(folder: str | Path, meta: ServedMeta, threads: int = 1, *, warm_up: np.ndarray) -> Predict:
    """The served model of a Bento model folder as a function of a batch,
    traced or initialised once on `warm_up` (one input of the model's family)."""
    fmt = serving_runtimes()[meta.runtime.name]
    predict = fmt.load(Path(folder) / meta.runtime.file, threads)
    predict(warm_up)
    return predict


def runtime_outputs(
    folder: str | Path, meta: ServedMeta, x: np.ndarray, chunk: int = 512, *, warm_up: np.ndarray
) -> np.ndarray:
    """What the recorded runtime answers for `x` in this process, in chunks."""
    predict = load_runtime(folder, meta, warm_up=warm_up)
    return np.concatenate([predict(x[i : i + chunk]) for i in range(0, len(x), chunk)])

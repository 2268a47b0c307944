"""Export a trained Keras model to serving formats, and check each export.

A converter can succeed and still change what the model predicts (quantisation,
an op that is lowered differently, a string op that is dropped). So nothing is
trusted: every artifact is loaded back with its own runtime, run on the whole
holdout and compared with the Keras model (lockgate/export/parity.py). Only an
export whose predictions agree is "passed"; one that disagrees is
"failed_parity"; one that could not be produced, loaded or run is
"unavailable", with the reason in plain words. One failing format never stops
the others.

Each format is one module declaring an `ExportFormat` (lockgate/export/base.py);
adding a format means one new module and one line in `FORMATS`. Which runtime
serves a packaged model is in lockgate/export/runtimes.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.records import ExportResult
from lockgate.core.settings import ExportSettings
from lockgate.export.base import (
    ExportFormat,
    ExportUnavailable,
    Produced,
    Sources,
    describe_exception,
    folder_size,
    trim,
)
from lockgate.export.keras import float32_model, keras_outputs, keras_reference
from lockgate.export.onnx import ONNX
from lockgate.export.parity import in_chunks, judge_parity, median_latency_ms
from lockgate.export.saved_model import SAVED_MODEL, SavedModelSource
from lockgate.export.tflite import TFLITE_DYNAMIC, TFLITE_FLOAT16, TFLITE_INT8

log = logging.getLogger("lockgate.export")

FORMATS: dict[str, ExportFormat] = {
    f.name: f for f in (SAVED_MODEL, TFLITE_DYNAMIC, TFLITE_FLOAT16, TFLITE_INT8, ONNX)
}


def format_for(name: str) -> ExportFormat:
    """The export format called `name`, as settings and export results name it."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown export format {name!r}; known: {', '.join(FORMATS)}") from None


def export_model(
    model: Any,
    family: str,
    out_dir: Path,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    x_representative: np.ndarray,
    settings: ExportSettings,
    reference_outputs: np.ndarray | None = None,
    *,
    task: str,
    int8_quantisation: bool,
) -> list[ExportResult]:
    """Produce every format in `settings.formats` under `out_dir` and check each
    on the holdout against the Keras model's outputs (computed here unless
    `reference_outputs` are given).

    `task` ("classification" or "regression") decides how parity is judged;
    `int8_quantisation` says whether the model's family offers full-integer
    quantisation (a representative input range); `family` names it in reasons.
    An unknown format name raises ValueError before anything is produced."""
    formats = [format_for(name) for name in settings.formats]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if reference_outputs is None:
        reference_outputs = keras_outputs(model, x_holdout)
    model = float32_model(model)
    results: list[ExportResult] = []
    with contextlib.ExitStack() as cleanup:
        saved_model = SavedModelSource(
            model, out_dir / SAVED_MODEL.artifact, keep=SAVED_MODEL.name in settings.formats, cleanup=cleanup
        )
        sources = Sources(saved_model=saved_model.path, x_representative=x_representative)
        for fmt in formats:
            started = time.perf_counter()
            result = _export_one(
                fmt, model, family, out_dir, sources, x_holdout, y_holdout, reference_outputs, settings,
                task, int8_quantisation,
            )
            log.info(
                "export %s: %s in %.1f s%s", fmt.name, result.status, time.perf_counter() - started,
                f" ({result.reason})" if result.reason else "",
            )
            results.append(result)
    return results


def _export_one(
    fmt: ExportFormat,
    model: Any,
    family: str,
    out_dir: Path,
    sources: Sources,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    reference_outputs: np.ndarray,
    settings: ExportSettings,
    task: str,
    int8_quantisation: bool,
) -> ExportResult:
    """Convert, load, run and judge one format; never raises."""
    if fmt.needs_representative_input and not int8_quantisation:
        return ExportResult(
            format=fmt.name, status="unavailable",
            reason=f"full-integer (int8) quantisation is offered for image models only; this is a {family} model",
        )
    path: Path | None = None
    stage = "converting"
    try:
        produced: Produced = fmt.produce(model, out_dir / fmt.artifact, sources)
        path = produced.path
        stage = "loading"
        predict = fmt.load_produced(produced)
        stage = "running"
        outputs = in_chunks(predict, x_holdout, fmt.check_chunk)
        latency = median_latency_ms(predict, x_holdout[:1], settings.latency_repeats)
    except ExportUnavailable as exc:
        return _unavailable(fmt.name, str(exc), path)
    except Exception as exc:
        log.debug("export %s failed while %s", fmt.name, stage, exc_info=True)
        return _unavailable(fmt.name, f"{stage} failed: {describe_exception(exc)}", path)
    judged = judge_parity(fmt.name, task, reference_outputs, outputs, y_holdout, settings)
    return judged.model_copy(update={"path": str(path), "size_bytes": folder_size(path), "latency_ms_p50": latency})


def _unavailable(fmt: str, reason: str, path: Path | None) -> ExportResult:
    """An unchecked export; the file is named when one was written."""
    exists = path is not None and path.exists()
    return ExportResult(
        format=fmt,
        status="unavailable",
        reason=trim(reason),
        path=str(path) if exists else None,
        size_bytes=folder_size(path) if exists else None,
    )


__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportUnavailable",
    "describe_exception",
    "export_model",
    "float32_model",
    "folder_size",
    "format_for",
    "judge_parity",
    "keras_reference",
    "median_latency_ms",
    "Produced",
    "Sources",
]

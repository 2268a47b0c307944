"""Scoring models on a holdout: metrics by the family's task, in-process
latency, and the champion's outputs on the same rows."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.exporting import median_latency_ms
from lockgate.families import family_for
from lockgate.models import predict_outputs, register_custom_layers
from lockgate.records import ChampionRef


def score(family: str, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Metrics, per-class table and point predictions, by the family's task."""
    return family_for(family).score(y_true, outputs, class_names)


def measure_latency(model: Any, x: np.ndarray, repeats: int = 30) -> dict[str, float]:
    """Median single-example latency and full-batch throughput, in-process."""
    latency = median_latency_ms(lambda one: predict_outputs(model, one), x[:1], repeats)
    started = time.perf_counter()
    predict_outputs(model, x)
    batch_seconds = time.perf_counter() - started
    return {
        "latency_ms_p50": latency,
        "throughput_per_s": float(len(x) / batch_seconds) if batch_seconds > 0 else 0.0,
    }


def load_champion(champion: ChampionRef) -> Any:
    """The champion's Keras model, from the tracking store MLflow points at."""
    import mlflow.tensorflow

    register_custom_layers()
    return mlflow.tensorflow.load_model(champion.uri)


def champion_outputs(champion: ChampionRef, x: np.ndarray, names: list[str]) -> np.ndarray:
    """The champion's outputs on `x`; class probabilities are re-ordered into
    the classes `names` of the data at hand (a class it never saw gets 0)."""
    raw = predict_outputs(load_champion(champion), x)
    return family_for(champion.data_meta.family).align_outputs(raw, list(champion.data_meta.class_names), names)


def saved_size_bytes(model: Any) -> int:
    """Bytes of the model saved as a .keras file."""
    with tempfile.TemporaryDirectory(prefix="lockgate-size-") as folder:
        saved = Path(folder) / "model.keras"
        model.save(saved)
        return saved.stat().st_size

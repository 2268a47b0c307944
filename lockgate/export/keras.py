"""The Keras model itself: the reference every export is judged against, the
float32 copy exports are made from, and the runtime that serves a model no
export could (it is not an export format, so it is not in `FORMATS`).

Every Bento holds this module, but lockgate/models/architectures.py only a Bento served by
Keras, so `_models` imports it when first needed, never when this loads.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.export.base import ExportFormat, Predict, Produced, Sources, remove
from lockgate.export.parity import median_latency_ms

log = logging.getLogger("lockgate.export")


@dataclass(frozen=True)
class KerasModelFile(ExportFormat):
    def produce(self, model: Any, target: Path, sources: Sources) -> Produced:
        remove(target)
        model.save(target)
        return Produced(target)

    def load(self, path: Path, threads: int | None = None) -> Predict:
        models = _models()
        model = models.load_keras_model(path)

        def predict(x: np.ndarray) -> np.ndarray:
            output = np.asarray(model.predict_on_batch(models.model_input(x)), dtype="float32")
            return output.reshape(len(x), -1)

        return predict


KERAS = KerasModelFile(name="keras", artifact="model.keras", runtime="keras", serve_lock="requirements-serve-keras.lock")


def keras_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The Keras model's outputs on `x`, as float32 of shape (n, outputs)."""
    return _models().predict_outputs(model, x)


def keras_reference(model: Any, x: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    """The Keras model's outputs on `x` and its median single-example latency (ms)."""
    outputs = keras_outputs(model, x)
    latency = median_latency_ms(lambda one: keras_outputs(model, one), x[:1], repeats)
    return outputs, latency


def float32_model(model: Any) -> Any:
    """The model itself, or, when it computes in float16 (mixed precision, as
    GPU training does), a copy with the same weights that computes in float32.
    TFLite has no float16 builtins for most ops, and CPU runtimes gain nothing
    from float16 arithmetic; parity is still judged against the original."""
    if not _uses_mixed_precision(model):
        return model
    import keras  # deferred: the ONNX service never imports Keras

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


def _models() -> Any:
    """lockgate.models.architectures: loading, input conversion and prediction of Lockgate's Keras models."""
    # deferred: lockgate/models/architectures.py ships only in Bentos served by Keras; an ONNX Bento lacks it
    import lockgate.models.architectures

    return lockgate.models.architectures

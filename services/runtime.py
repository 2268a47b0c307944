"""The served model: loading, input validation at the edge, and prediction.

Free of BentoML so it can be tested directly; the service class is a thin
typed layer over it. Every rejection is a RequestError with an HTTP status
and a message that names the problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.keras"
META_FILE = "lockgate.json"


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ModelRuntime:
    model: Any
    meta: dict

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelRuntime":
        import keras

        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        model = keras.models.load_model(folder / MODEL_FILE)
        runtime = cls(model=model, meta=meta)
        runtime.predict(np.zeros((1, *meta["input_shape"]), dtype="float32"))  # trace once, before traffic
        return runtime

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def identity(self) -> dict[str, str]:
        return {
            "name": self.meta["model_name"],
            "version": str(self.meta["model_version"]),
            "run_id": self.meta["run_id"],
            "bento_model": self.meta.get("bento_model", ""),
        }

    def to_array(self, instances: Any, max_rows: int) -> np.ndarray:
        """Nested lists of numbers -> float32 array of the model's input shape."""
        if not isinstance(instances, list):
            raise RequestError(422, "'instances' must be a list of examples")
        if not instances:
            raise RequestError(422, "'instances' is empty: send at least one example")
        if len(instances) > max_rows:
            raise RequestError(413, f"{len(instances)} examples in one request; the limit is {max_rows}")
        try:
            array = np.asarray(instances, dtype="float64")
        except (ValueError, TypeError) as exc:
            raise RequestError(
                422, f"'instances' must be numbers in equally sized nested lists of shape [n, {self._shape_text()}] ({exc})"
            ) from None
        return self.check_array(array)

    def check_array(self, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind not in "fiu":
            raise RequestError(422, f"examples must be numeric, got dtype {array.dtype}")
        shape = self.input_shape
        if array.shape[1:] != shape:
            if array.ndim == 2 and array.shape[1] == math.prod(shape):
                array = array.reshape((len(array), *shape))
            else:
                raise RequestError(
                    422, f"each example must have shape [{self._shape_text()}], got [{', '.join(map(str, array.shape[1:]))}]"
                )
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
            raise RequestError(422, f"{bad} example(s) contain NaN or infinite values")
        if self.meta["kind"] == "image":
            scale = float(self.meta["pixel_scale"])
            low, high = float(array.min()), float(array.max())
            if low < 0 or high > scale:
                raise RequestError(422, f"pixel values must lie in [0, {scale:g}]; got values from {low:g} to {high:g}")
        return array.astype("float32")

    def records_to_array(self, records: Any, max_rows: int) -> np.ndarray:
        """JSON objects keyed by column name -> the feature matrix of a table model."""
        if self.meta["kind"] != "tabular":
            raise RequestError(422, "this model takes images: use /predict with arrays or /predict_image")
        if not isinstance(records, list) or not records:
            raise RequestError(422, "'records' must be a non-empty list of objects")
        if len(records) > max_rows:
            raise RequestError(413, f"{len(records)} records in one request; the limit is {max_rows}")
        columns = list(self.meta["feature_columns"])
        rows = []
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise RequestError(422, f"record {i} is not an object keyed by column name")
            missing = [c for c in columns if c not in record]
            unknown = [k for k in record if k not in columns]
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing columns {missing[:10]}")
                if unknown:
                    parts.append(f"unknown columns {unknown[:10]}")
                raise RequestError(422, f"record {i}: " + "; ".join(parts))
            row = []
            for c in columns:
                value = record[c]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise RequestError(422, f"record {i}: column '{c}' must be a number, got {value!r}"[:300])
                row.append(value)
            rows.append(row)
        return self.check_array(np.asarray(rows, dtype="float64"))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(x, training=False), dtype="float32")

    def respond(self, proba: np.ndarray) -> dict[str, Any]:
        names = self.class_names
        return {
            "model": self.identity(),
            "classes": names,
            "labels": [names[i] for i in proba.argmax(axis=1)],
            "probabilities": np.round(proba, 6).tolist(),
        }

    def _shape_text(self) -> str:
        return ", ".join(map(str, self.input_shape))

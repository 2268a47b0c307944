"""The served model's contract: input validation at the edge, and answers.

Free of BentoML so it can be tested directly; the service classes are a thin
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


def load_model(folder: str | Path) -> Any:
    """The Keras model of a Bento model folder, traced once before traffic."""
    from lockgate.models import load_keras_model, model_input

    folder = Path(folder)
    model = load_keras_model(folder / MODEL_FILE)
    meta = json.loads((folder / META_FILE).read_text())
    if meta["kind"] == "text":
        warm_up = np.array(["warm up"])
    else:
        warm_up = np.zeros((1, *meta["input_shape"]), dtype="float32")
    model.predict_on_batch(model_input(warm_up))
    return model


# Which endpoint takes which family's requests, for messages that point the way.
ENDPOINTS = {
    "image": "/predict with arrays, or /predict_image",
    "tabular": "/predict_records, or /predict with arrays",
    "regression": "/predict_records, or /predict with arrays",
    "text": "/predict_text with a list of strings",
}


@dataclass
class ModelSpec:
    """What a request must look like for one model, and how answers look."""

    meta: dict

    @classmethod
    def from_folder(cls, folder: str | Path, bento_model: str = "") -> "ModelSpec":
        meta = json.loads((Path(folder) / META_FILE).read_text())
        meta["bento_model"] = bento_model
        return cls(meta=meta)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def contract(self):
        """A table model's data contract (roles, categories), if it has one."""
        if not self.meta.get("contract"):
            return None
        if "_contract" not in self.__dict__:
            from lockgate.families.tables import TableContract

            self.__dict__["_contract"] = TableContract.from_dict(self.meta["contract"])
        return self.__dict__["_contract"]

    def wrong_endpoint(self) -> RequestError:
        return RequestError(422, f"this is a {self.kind} model: use {ENDPOINTS[self.kind]}")

    def identity(self) -> dict[str, str]:
        return {
            "name": self.meta["model_name"],
            "version": str(self.meta["model_version"]),
            "run_id": self.meta["run_id"],
            "bento_model": self.meta.get("bento_model", ""),
        }

    def describe(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "model": self.identity(),
            "kind": meta["kind"],
            "task": "regression" if meta["kind"] == "regression" else "classification",
            "endpoints": ENDPOINTS[meta["kind"]],
            "input_shape": meta["input_shape"],
            "text_column": meta.get("text_column"),
            "feature_columns": self.contract.source_columns if self.contract else meta.get("feature_columns", []),
            "record_schema": self.record_schema(),
            "classes": meta["class_names"],
            "pixel_scale": meta.get("pixel_scale"),
            "metrics": meta.get("metrics", {}),
            "data_hash": meta.get("data_hash"),
        }

    def record_schema(self) -> dict[str, Any] | None:
        """JSON Schema of one record of /predict_records, from the contract."""
        from lockgate.families.tables import record_schema

        return record_schema(self.contract) if self.contract else None

    def to_array(self, instances: Any, max_rows: int) -> np.ndarray:
        """Nested lists of numbers -> float32 array of the model's input shape.
        For a table with a contract, each instance is a row of raw values in
        the order of its feature columns, encoded as /predict_records does."""
        if self.kind == "text":
            raise self.wrong_endpoint()
        if self.contract is not None:
            columns = self.contract.source_columns
            if not isinstance(instances, list):
                raise RequestError(422, "'instances' must be a list of rows")
            rows = []
            for i, row in enumerate(instances[: max_rows + 1]):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise RequestError(422, f"instance {i} must be a list of {len(columns)} values, in the order {columns[:20]}")
                rows.append(dict(zip(columns, row)))
            return self.records_to_array(rows, max_rows) if rows else self.records_to_array(instances, max_rows)
        if not isinstance(instances, list):
            raise RequestError(422, "'instances' must be a list of examples")
        if not instances:
            raise RequestError(422, "'instances' is empty: send at least one example")
        if len(instances) > max_rows:
            raise RequestError(413, f"{len(instances)} examples in one request; the limit is {max_rows}")
        try:
            array = np.asarray(instances)
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise RequestError(
                422, f"'instances' must be equally sized nested lists of numbers, shape [n, {self._shape_text()}]"
            ) from None
        if array.dtype.kind not in "fiub":
            kind = "text" if array.dtype.kind in "US" else "mixed or non-numeric values"
            raise RequestError(422, f"examples must be numbers, got {kind} (dtype {array.dtype})")
        return self.check_array(array.astype("float64"))

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
        with np.errstate(over="ignore"):
            as_float32 = array.astype("float32")
        if not np.isfinite(as_float32).all():
            bad = int((~np.isfinite(as_float32)).reshape(len(array), -1).any(axis=1).sum())
            raise RequestError(422, f"{bad} example(s) contain NaN, infinite or out-of-float32-range values")
        if self.meta["kind"] == "image":
            scale = float(self.meta["pixel_scale"])
            low, high = float(array.min()), float(array.max())
            if low < 0 or high > scale:
                raise RequestError(422, f"pixel values must lie in [0, {scale:g}]; got values from {low:g} to {high:g}")
        return as_float32

    def image_to_array(self, content: bytes) -> np.ndarray:
        """One uploaded PNG/JPEG, prepared exactly as the training images were."""
        from lockgate.preprocessing import load_image_file

        if self.kind != "image":
            raise self.wrong_endpoint()
        if not content:
            raise RequestError(422, "the uploaded image is empty")
        height, width, channels = self.input_shape
        try:
            array = load_image_file(content, (height, width), channels, float(self.meta["pixel_scale"]))
        except ValueError as exc:
            raise RequestError(415, f"upload a PNG or JPEG image: {exc}") from None
        return array[np.newaxis]

    def records_to_array(self, records: Any, max_rows: int) -> np.ndarray:
        """JSON objects keyed by column name -> the feature matrix of a table model."""
        if self.kind not in ("tabular", "regression"):
            raise self.wrong_endpoint()
        if not isinstance(records, list) or not records:
            raise RequestError(422, "'records' must be a non-empty list of objects")
        if len(records) > max_rows:
            raise RequestError(413, f"{len(records)} records in one request; the limit is {max_rows}")
        if self.contract is not None:
            from lockgate.families.tables import RecordError, encode, records_frame

            try:
                return encode(records_frame(records, self.contract), self.contract)
            except RecordError as exc:
                raise RequestError(422, str(exc)) from None
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

    def texts_to_array(self, texts: Any, max_rows: int, max_chars: int) -> np.ndarray:
        """A list of strings -> the string array a text model tokenises itself."""
        if self.kind != "text":
            raise self.wrong_endpoint()
        if not isinstance(texts, list) or not texts:
            raise RequestError(422, "'texts' must be a non-empty list of strings")
        if len(texts) > max_rows:
            raise RequestError(413, f"{len(texts)} texts in one request; the limit is {max_rows}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RequestError(422, f"text {i} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise RequestError(422, f"text {i} is empty")
            if len(text) > max_chars:
                raise RequestError(413, f"text {i} has {len(text)} characters; the limit is {max_chars}")
        return np.asarray(texts, dtype=str)

    def respond(self, outputs: np.ndarray) -> dict[str, Any]:
        if self.kind == "regression":
            return {"model": self.identity(), "target": self.meta.get("target"),
                    "predictions": [round(float(v), 6) for v in outputs[:, 0]]}
        proba = outputs
        names = self.class_names
        return {
            "model": self.identity(),
            "classes": names,
            "labels": [names[i] for i in proba.argmax(axis=1)],
            "probabilities": np.round(proba, 6).tolist(),
        }

    def _shape_text(self) -> str:
        return ", ".join(map(str, self.input_shape))

"""The served model's contract: input validation at the edge, and answers.

Free of BentoML so it can be tested directly; the service classes are a thin
typed layer over it. Every rejection is a RequestError with an HTTP status
and a message that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.contract import TableContract
from lockgate.core.records import ServedMeta
from lockgate.serving.requests import RequestError, Requests, answer, record_schema, requests_for

__all__ = ["ModelSpec", "RequestError"]


@dataclass
class ModelSpec:
    """What a request must look like for one model, and how answers look; the
    model's kind of input reads each endpoint's requests."""

    meta: ServedMeta

    @classmethod
    def from_folder(cls, folder: str | Path, bento_model: str = "") -> "ModelSpec":
        meta = ServedMeta.read(folder)
        return cls(meta=meta.model_copy(update={"bento_model": bento_model}))

    @property
    def requests(self) -> Requests:
        return requests_for(self.meta)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta.input_shape)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def contract(self) -> TableContract | None:
        """A table model's data contract (roles, categories)."""
        return self.meta.table_contract()

    def identity(self) -> dict[str, str]:
        meta = self.meta
        return {"name": meta.model_name, "version": str(meta.model_version), "run_id": meta.run_id,
                "bento_model": meta.bento_model}

    def describe(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "model": self.identity(),
            "family": meta.family,
            "task": meta.task,
            "endpoints": self.requests.endpoints,
            "input_shape": meta.input_shape,
            "text_column": meta.text_column,
            "feature_columns": self.contract.source_columns if self.contract else meta.feature_columns,
            "record_schema": self.record_schema(),
            "classes": meta.class_names,
            "pixel_scale": meta.pixel_scale,
            "metrics": meta.metrics,
            "data_hash": meta.data_hash,
            "runtime": meta.runtime.model_dump(),
        }

    def record_schema(self) -> dict[str, Any] | None:
        """JSON Schema of one record of /predict_records, from the contract."""
        contract = self.contract
        if contract is None:
            return None
        return record_schema(contract)

    def to_array(self, instances: Any, max_rows: int) -> np.ndarray:
        """/predict: nested lists of numbers (images), or rows of raw values in
        the order of a table's columns."""
        return self.requests.array_input(instances, self.meta, max_rows)

    def binary_to_array(self, array: np.ndarray, max_rows: int, max_chars: int) -> np.ndarray:
        """/predict_npy: one decoded .npy array, checked as /predict's rows are."""
        return self.requests.binary_input(array, self.meta, max_rows, max_chars)

    def image_to_array(self, content: bytes) -> np.ndarray:
        return self.requests.image_input(content, self.meta)

    def records_to_array(self, records: Any, max_rows: int) -> np.ndarray:
        return self.requests.records_input(records, self.meta, max_rows)

    def texts_to_array(self, texts: Any, max_rows: int, max_chars: int) -> np.ndarray:
        return self.requests.text_input(texts, self.meta, max_rows, max_chars)

    def respond(self, outputs: np.ndarray) -> dict[str, Any]:
        return {"model": self.identity()} | answer(outputs, self.meta)

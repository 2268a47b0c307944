"""A client for the service's binary route: a batch goes out as one `.npy`
file and the model's outputs come back as one, so large batches skip JSON
both ways.

    from lockgate.serving.client import predict_npy
    answer = predict_npy("http://127.0.0.1:3000", x, key="change-me")
    answer.outputs.argmax(axis=1), answer.model["version"]
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

NPY_TYPE = "application/x-npy"


@dataclass(frozen=True)
class ArrayAnswer:
    outputs: np.ndarray  # class probabilities (n, classes), or predicted values (n, 1)
    model: dict[str, str]  # name, version, run_id, bento_model
    classes: list[str]  # empty for regression
    runtime: str  # onnx or keras

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.outputs.argmax(axis=1)] if self.classes else []


class ServiceError(RuntimeError):
    """The service refused the batch; the message is its own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def encode(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(x), allow_pickle=False)
    return buffer.getvalue()


def predict_npy(url: str, x: np.ndarray, key: str | None = None, timeout: float = 60.0, client=None) -> ArrayAnswer:
    """POST `x` (a batch of the model's inputs; strings for text models) to
    `url`/predict_npy. Pass an `httpx.Client` to reuse its connections."""
    # deferred: the HTTP client loads only where a served model is called
    import httpx

    headers = {"content-type": NPY_TYPE} | ({"authorization": f"Bearer {key}"} if key else {})
    owned = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        response = client.post(url.rstrip("/") + "/predict_npy", content=encode(x), headers=headers)
    finally:
        if owned:
            client.close()
    if response.status_code != 200:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise ServiceError(response.status_code, message)
    h = response.headers
    return ArrayAnswer(
        outputs=np.load(io.BytesIO(response.content), allow_pickle=False),
        model={"name": h["lockgate-model-name"], "version": h["lockgate-model-version"],
               "run_id": h["lockgate-run-id"], "bento_model": h["lockgate-bento-model"]},
        classes=json.loads(h.get("lockgate-classes", "[]")),
        runtime=h.get("lockgate-runtime", ""),
    )

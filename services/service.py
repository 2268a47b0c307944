"""The Lockgate prediction service (BentoML 1.4, class-based API).

Two services in one Bento: ``LockgateService`` is the public edge (auth,
validation, answers with the model's identity) and ``ModelRunner`` holds the
Keras model behind BentoML's adaptive batching. The edge splits a client's
batch into pieces no larger than ``max_batch_size``, so a request of 500 rows
never exceeds the batch limit, and the runner merges pieces from concurrent
clients into full batches.

Serve the champion with ``bentoml serve services.service:LockgateService`` or a
built Bento by its tag. The model is resolved from the Bento store when a
service starts, not at import: ``LOCKGATE_MODEL_TAG``, else the tag baked into
a built Bento, else the champion recorded in the Lockgate workspace.
"""

from __future__ import annotations

import asyncio
import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType
from pydantic import Field

from lockgate.settings import get_settings
from services.middleware import ApiKeyMiddleware, BodyLimitMiddleware, MetadataGetMiddleware, RequestLogMiddleware
from services.runtime import ModelSpec, RequestError, load_model

BAKED_TAG_FILE = Path(__file__).with_name("bento_model.json")

# Read once when the service module loads; these shape the servers themselves.
_serving = get_settings().serving
BATCHING = os.environ.get("LOCKGATE_BATCHING", "true").lower() not in {"0", "false", "no"}


def resolve_model_tag() -> str:
    """Which Bento model to serve."""
    tag = os.environ.get("LOCKGATE_MODEL_TAG")
    if tag:
        return tag
    if BAKED_TAG_FILE.is_file():
        return json.loads(BAKED_TAG_FILE.read_text())["tag"]
    pointer = get_settings().home / "champion.json"
    if pointer.is_file():
        return json.loads(pointer.read_text())["bento_model"]
    raise RuntimeError(
        "no model to serve: run `lockgate run` to promote a champion, or set LOCKGATE_MODEL_TAG to a Bento model tag"
    )


def _http_error(error: RequestError) -> BentoMLException:
    return BentoMLException(error.message, error_code=HTTPStatus(error.status))


@bentoml.service(name="lockgate-model", workers=1, traffic={"timeout": _serving.request_timeout_s})
class ModelRunner:
    """Holds the model; concurrent calls are merged into batches."""

    def __init__(self) -> None:
        self.bento_model = bentoml.models.get(resolve_model_tag())
        self.model = load_model(self.bento_model.path)

    @bentoml.api(batchable=BATCHING, max_batch_size=_serving.max_batch_size, max_latency_ms=_serving.max_latency_ms)
    def infer(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(x, training=False), dtype="float32")


@bentoml.service(name="lockgate", workers=1, traffic={"timeout": _serving.request_timeout_s})
class LockgateService:
    runner = bentoml.depends(ModelRunner)

    def __init__(self) -> None:
        self.settings = get_settings().serving
        bento_model = bentoml.models.get(resolve_model_tag())
        self.spec = ModelSpec.from_folder(bento_model.path, str(bento_model.tag))
        self.predictions = _prediction_counter()

    async def _answer(self, x: np.ndarray) -> dict[str, Any]:
        size = self.settings.max_batch_size
        pieces = [x[i : i + size] for i in range(0, len(x), size)]
        outputs = await asyncio.gather(*(self.runner.to_async.infer(piece) for piece in pieces))
        answer = self.spec.respond(np.concatenate([np.asarray(o) for o in outputs]))
        version = answer["model"]["version"]
        for label in answer["labels"]:
            self.predictions.labels(label=label, model_version=version).inc()
        return answer

    @bentoml.api(route="/predict")
    async def predict(
        self, instances: list[Any] = Field(description="examples as nested lists of numbers, shape [n, *input_shape]")
    ) -> dict[str, Any]:
        """Class probabilities and labels for a batch of arrays."""
        try:
            x = self.spec.to_array(instances, self.settings.max_rows_per_request)
        except RequestError as error:
            raise _http_error(error) from None
        return await self._answer(x)

    @bentoml.api(route="/predict_records")
    async def predict_records(
        self, records: list[dict[str, Any]] = Field(description="rows as objects keyed by column name")
    ) -> dict[str, Any]:
        """Predictions for table rows given as JSON objects (tabular models)."""
        try:
            x = self.spec.records_to_array(records, self.settings.max_rows_per_request)
        except RequestError as error:
            raise _http_error(error) from None
        return await self._answer(x)

    @bentoml.api(route="/predict_image")
    async def predict_image(
        self, image: Annotated[Path, ContentType("image/*")] = Field(description="a PNG or JPEG file")
    ) -> dict[str, Any]:
        """Prediction for one uploaded image, resized and scaled as in training (image models)."""
        try:
            x = self.spec.image_to_array(Path(image).read_bytes())
        except RequestError as error:
            raise _http_error(error) from None
        return await self._answer(x)

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """The served model: identity, input schema, labels and metrics at promotion."""
        return self.spec.describe()


def _prediction_counter() -> Any:
    """Created on first use, after BentoML has set up multiprocess metrics."""
    global _PREDICTIONS
    if _PREDICTIONS is None:
        from prometheus_client import Counter

        _PREDICTIONS = Counter(
            "lockgate_predictions", "Predictions served, by predicted label and model version",
            labelnames=["label", "model_version"],
        )
    return _PREDICTIONS


_PREDICTIONS: Any = None

LockgateService.add_asgi_middleware(RequestLogMiddleware)
LockgateService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=_serving.max_body_bytes)
LockgateService.add_asgi_middleware(ApiKeyMiddleware)
LockgateService.add_asgi_middleware(MetadataGetMiddleware)

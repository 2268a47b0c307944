"""The Lockgate prediction service (BentoML 1.4, class-based API).

The edge authenticates, validates and answers with the model's identity; the
model sits behind adaptive batching in the same process (services/batching.py),
which merges concurrent requests into batches of at most ``max_batch_size``
rows and splits a client's large batch into pieces of that size.

Serve the champion with ``bentoml serve services.service:LockgateService`` or a
built Bento by its tag. The model is resolved from the Bento store when the
service starts, not at import: ``LOCKGATE_MODEL_TAG``, else the tag baked into
a built Bento, else the champion recorded in the Lockgate workspace.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
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


def _served_record_schema() -> dict[str, Any]:
    """The record schema of the model this process will serve, for the OpenAPI
    page (BentoML builds it from the class, so it must be known when the module
    loads). Empty when no model can be resolved yet, e.g. in unit tests."""
    try:
        spec = ModelSpec.from_folder(bentoml.models.get(resolve_model_tag()).path)
        schema = spec.record_schema()
    except Exception:  # no champion yet, no store: the generic schema stays
        return {}
    return {"items": schema} if schema else {}


def _http_error(error: RequestError) -> BentoMLException:
    return BentoMLException(error.message, error_code=HTTPStatus(error.status))


@bentoml.service(name="lockgate", workers=1, traffic={"timeout": _serving.request_timeout_s})
class LockgateService:
    def __init__(self) -> None:
        from services.batching import AdaptiveBatcher

        self.settings = get_settings().serving
        bento_model = bentoml.models.get(resolve_model_tag())
        self.spec = ModelSpec.from_folder(bento_model.path, str(bento_model.tag))
        model = load_model(bento_model.path)
        self.predictions, batch_sizes = _metrics()
        from lockgate.models import model_input

        self.batcher = AdaptiveBatcher(
            lambda x: np.asarray(model.predict_on_batch(model_input(x)), dtype="float32"),
            max_batch_size=self.settings.max_batch_size,
            max_latency_ms=self.settings.max_latency_ms,
            enabled=BATCHING,
            on_batch=batch_sizes.observe,
        )

    async def _answer(self, prepare: Callable[[], np.ndarray]) -> dict[str, Any]:
        """Validate with `prepare` (a RequestError becomes its 4xx), predict, count."""
        from services.batching import Overloaded

        try:
            x = prepare()
        except RequestError as error:
            raise _http_error(error) from None
        try:
            probabilities = await self.batcher.submit(x)
        except Overloaded as error:
            raise BentoMLException(str(error), error_code=HTTPStatus.SERVICE_UNAVAILABLE) from None
        answer = self.spec.respond(probabilities)
        version = answer["model"]["version"]
        for label in answer.get("labels", ["value"] * len(probabilities)):
            self.predictions.labels(label=label, model_version=version).inc()
        return answer

    @bentoml.api(route="/predict")
    async def predict(
        self, instances: list[Any] = Field(description="examples as nested lists of numbers, shape [n, *input_shape]")
    ) -> dict[str, Any]:
        """Class probabilities and labels (or predicted values) for a batch of arrays."""
        return await self._answer(lambda: self.spec.to_array(instances, self.settings.max_rows_per_request))

    @bentoml.api(route="/predict_records")
    async def predict_records(
        self,
        records: list[dict[str, Any]] = Field(
            description="rows as objects keyed by column name; null (or leaving a column out) is a missing value",
            json_schema_extra=_served_record_schema(),
        ),
    ) -> dict[str, Any]:
        """Predictions for table rows given as JSON objects (tabular models)."""
        return await self._answer(lambda: self.spec.records_to_array(records, self.settings.max_rows_per_request))

    @bentoml.api(route="/predict_text")
    async def predict_text(
        self, texts: list[Any] = Field(description="texts to classify, as written (the model tokenises them)")
    ) -> dict[str, Any]:
        """Class probabilities and labels for raw texts (text models)."""
        return await self._answer(
            lambda: self.spec.texts_to_array(texts, self.settings.max_rows_per_request, self.settings.max_text_chars)
        )

    @bentoml.api(route="/predict_image")
    async def predict_image(
        self, image: Path = Field(description="a PNG or JPEG file")
    ) -> dict[str, Any]:
        """Prediction for one uploaded image, resized and scaled as in training (image models).

        Any declared content type is read: what decides is whether the bytes
        are a PNG or JPEG image, and anything else gets a 415 naming them."""
        return await self._answer(lambda: self.spec.image_to_array(Path(image).read_bytes()))

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """The served model: identity, input schema, labels and metrics at promotion."""
        return self.spec.describe()


def _metrics() -> tuple[Any, Any]:
    """Created on first use, after BentoML has set up multiprocess metrics."""
    global _METRICS
    if _METRICS is None:
        from prometheus_client import Counter, Histogram

        _METRICS = (
            Counter("lockgate_predictions", "Predictions served, by predicted label and model version",
                    labelnames=["label", "model_version"]),
            Histogram("lockgate_batch_size", "Rows per model call after adaptive batching",
                      buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
        )
    return _METRICS


_METRICS: tuple[Any, Any] | None = None

LockgateService.add_asgi_middleware(RequestLogMiddleware)
LockgateService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=_serving.max_body_bytes)
LockgateService.add_asgi_middleware(ApiKeyMiddleware)
LockgateService.add_asgi_middleware(MetadataGetMiddleware)

"""The Lockgate prediction service (BentoML 1.4, class-based API).

The edge (services/edge.py) authenticates, limits, logs and serves the binary
route; the endpoints validate through the model's family and answer with the
model's identity. The model sits behind adaptive batching in the same process
(services/batching.py), which merges concurrent requests into batches of at
most ``max_batch_size`` rows and splits a client's large batch into pieces of
that size.

What runs the model is the runtime recorded with it when it was packaged
(lockgate/export/runtimes.py): onnxruntime where the ONNX export passed parity, else
Keras. On onnxruntime nothing of TensorFlow, Keras, Prefect, MLflow or Great
Expectations is imported, so a worker starts in about a second.

Serve the champion with ``bentoml serve services.service:LockgateService`` or a
built Bento by its tag. The model is resolved from the Bento store when the
service starts, not at import: ``serving.model_tag`` (``LOCKGATE_MODEL_TAG``),
else the tag baked into a built Bento, else the champion recorded in the
Lockgate workspace.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

import bentoml
import numpy as np
import orjson
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field
from starlette.responses import Response

from lockgate.core.settings import get_settings
from lockgate.export.runtimes import load_runtime, model_calls
from lockgate.serving.model_card import read_card
from lockgate.serving.traffic import TrafficLog, checked_labels, model_vocabulary, traffic_folder
from services.batching import AdaptiveBatcher, Overloaded
from services.edge import Edge, serve_binary_with, serve_card
from services.listening import spread_connections
from services.request_timeout import cancel_timers_of_answered_requests
from services.runtime import ModelSpec, RequestError

BAKED_TAG_FILE = Path(__file__).with_name("bento_model.json")

# Read once when the service module loads; these shape the servers themselves.
_serving = get_settings().serving


def resolve_model_tag() -> str:
    """Which Bento model to serve."""
    tag = get_settings().serving.model_tag
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


class ModelIdentity(BaseModel):
    name: str
    version: str
    run_id: str
    bento_model: str


class Answer(BaseModel):
    """An answer: classifiers give `classes`, `labels` and `probabilities`,
    regressions `target` and `predictions`; the other keys are left out."""

    model: ModelIdentity
    classes: list[str] | None = None
    labels: list[str] | None = None
    probabilities: list[list[float]] | None = None
    target: str | None = None
    predictions: list[float] | None = None
    request_id: str | None = Field(None, description="send true labels for this request to /feedback with it")


class FeedbackAnswer(BaseModel):
    accepted: int


class JSONAnswer(Response):
    """The answer rendered once by orjson. BentoML passes a Response through
    as it is, so no schema is looked at and nothing is validated again per
    request; the endpoints' `Answer` annotations type the OpenAPI page."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _http_error(error: RequestError) -> BentoMLException:
    return BentoMLException(error.message, error_code=HTTPStatus(error.status))


@bentoml.service(
    name="lockgate",
    workers=_serving.worker_count(),
    traffic={"timeout": _serving.request_timeout_s},
    # The edge writes one JSON line per request; BentoML's own access log would be a second.
    logging={"access": {"enabled": False}},
    # An OpenTelemetry span per request took a third of a worker's time on
    # /livez and lived as long as the request's timer (above); BentoML traces
    # no URL it is told to exclude, and "/" is in every one.
    tracing={} if _serving.tracing else {"excluded_urls": ["/"]},
)
class LockgateService:
    def __init__(self) -> None:
        self.settings = get_settings().serving
        bento_model = bentoml.models.get(resolve_model_tag())
        self.spec = ModelSpec.from_folder(bento_model.path, str(bento_model.tag))
        meta = self.spec.meta
        predict = load_runtime(bento_model.path, meta, self.settings.runtime_threads,
                               warm_up=self.spec.requests.warm_up_input(meta))
        self.calls = model_calls(meta.runtime.name, self.settings.batching, self.settings.model_calls)
        self.predictions, batch_sizes = _metrics()
        self.batcher = AdaptiveBatcher(
            predict,
            max_batch_size=self.settings.max_batch_size,
            max_latency_ms=self.settings.max_latency_ms,
            enabled=self.calls.batching,
            inline=self.calls.model_calls == "inline",
            on_batch=batch_sizes.observe,
        )
        identity = self.spec.identity()
        self.traffic = TrafficLog(
            traffic_folder(get_settings().home, meta.model_name), meta, str(meta.model_version),
            self.settings.traffic_sample, model_vocabulary(bento_model.path),
            self.settings.traffic_max_bytes, self.settings.traffic_keep_files,
        )
        self.binary_headers = [
            (b"lockgate-model-name", identity["name"].encode()),
            (b"lockgate-model-version", identity["version"].encode()),
            (b"lockgate-run-id", identity["run_id"].encode()),
            (b"lockgate-bento-model", identity["bento_model"].encode()),
            (b"lockgate-runtime", meta.runtime.name.encode()),
            (b"lockgate-classes", orjson.dumps(meta.class_names)),
        ]
        serve_binary_with(self._answer_binary)
        serve_card(read_card(bento_model.path))
        # What is loaded now lives as long as the worker: out of the collector's
        # sight, so a full collection (about 40 ms over BentoML's objects) does
        # not stall every request in flight.
        gc.collect()
        gc.freeze()
        # What a request allocates dies by reference count, not in cycles, so
        # the collector may run far less often than Python's default; and each
        # request's timeout timer now dies with its answer instead of living
        # the whole timeout (services/request_timeout.py), so what a
        # collection walks stays small.
        gc.set_threshold(*self.settings.gc_thresholds)
        cancel_timers_of_answered_requests()
        self.listening = spread_connections(
            bentoml.server_context.worker_index, self.settings.worker_count(), self.settings.socket_per_worker)

    async def _outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs through the batcher, counted by label."""
        try:
            outputs = await self.batcher.submit(x)
        except Overloaded as error:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, str(error)) from None
        version = self.spec.meta.model_version
        names = self.spec.meta.class_names
        counts = Counter(outputs.argmax(axis=1).tolist()) if names else {None: len(outputs)}
        for index, count in counts.items():
            label = names[index] if index is not None else "value"
            self.predictions.labels(label=label, model_version=version).inc(count)
        return outputs

    async def _answer(self, endpoint: str, prepare: Callable[[], np.ndarray]) -> JSONAnswer:
        """Validate with `prepare` (a RequestError becomes its 4xx), predict,
        log the request for the monitor when it is sampled, answer."""
        try:
            x = prepare()
            outputs = await self._outputs(x)
        except RequestError as error:
            raise _http_error(error) from None
        answer = self.spec.respond(outputs)
        request_id = self.traffic.record(endpoint, x, outputs)
        if request_id:
            answer["request_id"] = request_id
        return JSONAnswer(answer)

    async def _answer_binary(self, array: np.ndarray) -> tuple[np.ndarray, list[tuple[bytes, bytes]]]:
        x = self.spec.binary_to_array(array, self.settings.max_rows_per_request, self.settings.max_text_chars)
        outputs = await self._outputs(x)
        request_id = self.traffic.record("/predict_npy", x, outputs)
        if request_id:
            return outputs, [*self.binary_headers, (b"lockgate-request-id", request_id.encode())]
        return outputs, self.binary_headers

    @bentoml.api(route="/predict")
    async def predict(
        self, instances: list[Any] = Field(description="examples as nested lists of numbers, shape [n, *input_shape]")
    ) -> Answer:
        """Class probabilities and labels (or predicted values) for a batch of arrays."""
        return await self._answer("/predict", lambda: self.spec.to_array(instances, self.settings.max_rows_per_request))

    @bentoml.api(route="/predict_records")
    async def predict_records(
        self,
        records: list[dict[str, Any]] = Field(
            description="rows as objects keyed by column name; null (or leaving a column out) is a missing value",
            json_schema_extra=_served_record_schema(),
        ),
    ) -> Answer:
        """Predictions for table rows given as JSON objects (tabular models)."""
        return await self._answer(
            "/predict_records", lambda: self.spec.records_to_array(records, self.settings.max_rows_per_request))

    @bentoml.api(route="/predict_text")
    async def predict_text(
        self, texts: list[Any] = Field(description="texts to classify, as written (the service tokenises them with the model's vocabulary)")
    ) -> Answer:
        """Class probabilities and labels for raw texts (text models)."""
        return await self._answer(
            "/predict_text", lambda: self.spec.texts_to_array(texts, self.settings.max_rows_per_request, self.settings.max_text_chars)
        )

    @bentoml.api(route="/predict_image")
    async def predict_image(
        self, image: Path = Field(description="a PNG or JPEG file")
    ) -> Answer:
        """Prediction for one uploaded image, resized and scaled as in training (image models).

        Any declared content type is read: what decides is whether the bytes
        are a PNG or JPEG image, and anything else gets a 415 naming them."""
        return await self._answer("/predict_image", lambda: self.spec.image_to_array(Path(image).read_bytes()))

    @bentoml.api(route="/feedback")
    def feedback(
        self, labels: list[Any] = Field(
            description="true labels for answered requests: objects {request_id, row (0 for a request's first row), label}")
    ) -> FeedbackAnswer:
        """True labels as they arrive, for the monitor's live accuracy (or error)."""
        try:
            checked = checked_labels(labels, self.spec.meta, self.settings.max_labels_per_request)
        except RequestError as error:
            raise _http_error(error) from None
        self.traffic.record_labels(checked)
        return JSONAnswer({"accepted": len(checked)})

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """The served model: identity, runtime, input schema, labels and metrics at promotion."""
        return JSONAnswer(self.spec.describe() | {"serving": self.calls.model_dump() | {
            "workers": self.settings.worker_count(), "max_batch_size": self.settings.max_batch_size,
            "listening_on": self.listening}})


def _metrics() -> tuple[Any, Any]:
    """Created on first use, after BentoML has set up multiprocess metrics."""
    global _METRICS
    if _METRICS is None:
        # deferred: metrics are registered when the service starts, not at import
        from prometheus_client import Counter as PrometheusCounter
        from prometheus_client import Histogram

        _METRICS = (
            PrometheusCounter("lockgate_predictions", "Predictions served, by predicted label and model version",
                              labelnames=["label", "model_version"]),
            Histogram("lockgate_batch_size", "Rows per model call after adaptive batching",
                      buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
        )
    return _METRICS


_METRICS: tuple[Any, Any] | None = None

LockgateService.add_asgi_middleware(Edge, max_bytes=_serving.max_body_bytes)

"""The Lockgate prediction service (BentoML 1.4, class-based API).

Serve the champion from the repository with
``bentoml serve services.service:LockgateService``, or a built Bento by tag.
The model is resolved from the Bento store when the service starts, never at
import time: ``LOCKGATE_MODEL_TAG``, else the tag baked into a built Bento,
else the champion recorded in the Lockgate workspace.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field

from services.runtime import RequestError
from services.security import ApiKeyMiddleware

BAKED_TAG_FILE = Path(__file__).with_name("bento_model.json")


def resolve_model_tag() -> str:
    """Which Bento model to serve."""
    tag = os.environ.get("LOCKGATE_MODEL_TAG")
    if tag:
        return tag
    if BAKED_TAG_FILE.is_file():
        return json.loads(BAKED_TAG_FILE.read_text())["tag"]
    from lockgate.settings import get_settings

    pointer = get_settings().home / "champion.json"
    if pointer.is_file():
        return json.loads(pointer.read_text())["bento_model"]
    raise RuntimeError(
        "no model to serve: run `lockgate run` to promote a champion, or set LOCKGATE_MODEL_TAG to a Bento model tag"
    )


def _http_error(error: RequestError) -> BentoMLException:
    return BentoMLException(error.message, error_code=HTTPStatus(error.status))


@bentoml.service(name="lockgate", traffic={"timeout": 30}, workers=1)
class LockgateService:
    def __init__(self) -> None:
        from lockgate.settings import get_settings
        from services.runtime import ModelRuntime

        self.settings = get_settings().serving
        self.bento_model = bentoml.models.get(resolve_model_tag())
        self.runtime = ModelRuntime.from_folder(self.bento_model.path)
        self.runtime.meta["bento_model"] = str(self.bento_model.tag)

    @bentoml.api(route="/predict")
    def predict(self, instances: list[Any] = Field(description="examples as nested lists of numbers")) -> dict:
        """Class probabilities and labels for a batch of arrays."""
        try:
            x = self.runtime.to_array(instances, self.settings.max_rows_per_request)
        except RequestError as error:
            raise _http_error(error) from None
        return self.runtime.respond(self.runtime.predict(x))

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict:
        """The served model: name, version, run, input schema, labels, metrics."""
        meta = self.runtime.meta
        return {
            "model": self.runtime.identity(),
            "kind": meta["kind"],
            "input_shape": meta["input_shape"],
            "feature_columns": meta.get("feature_columns", []),
            "classes": meta["class_names"],
            "pixel_scale": meta.get("pixel_scale"),
            "metrics": meta.get("metrics", {}),
            "data_hash": meta.get("data_hash"),
        }


LockgateService.add_asgi_middleware(ApiKeyMiddleware)

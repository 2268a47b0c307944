"""The service's edge without a server: request validation and middleware."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pandas as pd
import pytest

from lockgate.core.contract import infer_contract
from lockgate.core.records import ServedMeta
from services import edge
from services.edge import Edge, key_is_valid, presented_key
from services.runtime import ModelSpec, RequestError


@pytest.fixture(autouse=True)
def _settings_as_the_environment_is_now(monkeypatch):
    """An Edge reads its keys from settings when it is made; here settings are
    read afresh each time, so a test can change the environment between Edges."""
    from lockgate.core.settings import LockgateSettings
    from services import edge

    monkeypatch.setattr(edge, "get_settings", LockgateSettings)


def _table_contract() -> dict:
    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "y": np.linspace(5, 9, 20), "t": ["a", "b"] * 10})
    return infer_contract(frame, "t").to_dict()


IMAGE_META = ServedMeta(name="d", family="image", target="label", input_shape=[8, 8, 1], pixel_scale=16.0,
                        class_names=["a", "b"], feature_columns=[], model_name="m", model_version="3", run_id="r" * 32)
TABLE_META = IMAGE_META.model_copy(update={"family": "tabular", "inputs": "tables", "input_shape": [2], "feature_columns": ["x", "y"],
                                           "contract": _table_contract()})
TEXT_META = IMAGE_META.model_copy(update={"family": "text", "inputs": "texts", "input_shape": [], "text_column": "review",
                                          "class_names": ["neg", "pos"]})
VALUE_META = TABLE_META.model_copy(update={"family": "regression", "task": "regression", "class_names": [], "target": "price"})


def _status(call) -> tuple[int, str]:
    with pytest.raises(RequestError) as error:
        call()
    return error.value.status, error.value.message


def test_arrays_are_checked_and_flat_images_reshaped():
    spec = ModelSpec(IMAGE_META)
    assert spec.to_array([[0] * 64], 10).shape == (1, 8, 8, 1)
    assert _status(lambda: spec.to_array([[0] * 63], 10))[0] == 422
    assert _status(lambda: spec.to_array([[0] * 64] * 11, 10)) == (413, "11 examples in one request; the limit is 10")
    assert _status(lambda: spec.to_array([[17] * 64], 10))[0] == 422
    assert _status(lambda: spec.to_array([["1"] * 64], 10))[1].startswith("examples must be numbers")
    assert "NaN" in _status(lambda: spec.to_array([[float("nan")] * 64], 10))[1]


def test_texts_are_strings_within_limits():
    spec = ModelSpec(TEXT_META)
    array = spec.texts_to_array(["fine film", "dull"], 10, 100)
    assert array.dtype.kind == "U" and array.tolist() == ["fine film", "dull"]
    assert _status(lambda: spec.texts_to_array([], 10, 100)) == (422, "'texts' must be a non-empty list of strings")
    assert _status(lambda: spec.texts_to_array(["ok", 3], 10, 100)) == (422, "text 1 must be a string, got int")
    assert _status(lambda: spec.texts_to_array(["  "], 10, 100)) == (422, "text 0 is empty")
    assert _status(lambda: spec.texts_to_array(["x" * 101], 10, 100)) == (413, "text 0 has 101 characters; the limit is 100")
    assert _status(lambda: spec.texts_to_array(["a"] * 11, 10, 100))[0] == 413


def test_each_family_points_to_its_own_endpoint():
    assert _status(lambda: ModelSpec(TEXT_META).to_array([[1.0]], 10)) == (
        422, "this is a text model: use /predict_text with a list of strings")
    assert "use /predict_records" in _status(lambda: ModelSpec(VALUE_META).texts_to_array(["a"], 10, 100))[1]
    assert "use /predict with arrays" in _status(lambda: ModelSpec(IMAGE_META).records_to_array([{"x": 1}], 10))[1]
    assert ModelSpec(VALUE_META).records_to_array([{"x": 1, "y": 2}], 10).shape == (1, 2)


def test_regression_answers_values_not_labels():
    answer = ModelSpec(VALUE_META).respond(np.array([[101.5], [99.25]], dtype="float32"))
    assert answer["predictions"] == [101.5, 99.25] and answer["target"] == "price"
    assert "labels" not in answer and answer["model"]["version"] == "3"


def test_records_must_match_the_columns():
    spec = ModelSpec(TABLE_META)
    assert spec.records_to_array([{"x": 1, "y": 2.5}], 10).tolist() == [[1.0, 2.5]]
    gap = spec.records_to_array([{"x": 1}], 10)  # an absent column is a gap, as null is: the model imputes it
    assert gap[0, 0] == 1.0 and np.isnan(gap[0, 1])
    assert "unknown column(s) ['z']" in _status(lambda: spec.records_to_array([{"x": 1, "y": 2, "z": 3}], 10))[1]
    assert "must be a number" in _status(lambda: spec.records_to_array([{"x": True, "y": 2}], 10))[1]
    assert spec.to_array([[1, None]], 10).shape == (1, 2)
    assert "instance 0 must be a list of 2 values" in _status(lambda: spec.to_array([[1]], 10))[1]


def test_images_are_decoded_resized_and_scaled():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 30, 3), 255, dtype="uint8")).save(buffer, format="JPEG")
    array = ModelSpec(IMAGE_META).image_to_array(buffer.getvalue())
    assert array.shape == (1, 8, 8, 1)
    assert array.max() == pytest.approx(16.0, abs=0.2)
    assert _status(lambda: ModelSpec(IMAGE_META).image_to_array(b"GIF89a broken"))[0] == 415
    assert _status(lambda: ModelSpec(TABLE_META).image_to_array(buffer.getvalue()))[0] == 422


def test_answers_carry_the_model_identity():
    answer = ModelSpec(IMAGE_META.model_copy(update={"bento_model": "m:v3"})).respond(np.array([[0.2, 0.8]], dtype="float32"))
    assert answer["labels"] == ["b"]
    assert answer["model"] == {"name": "m", "version": "3", "run_id": "r" * 32, "bento_model": "m:v3"}


def test_key_parsing_and_comparison():
    assert presented_key([(b"Authorization", b"Bearer abc")]) == "abc"
    assert presented_key([(b"x-api-key", b" abc ")]) == "abc"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert key_is_valid("abc", ["old", "abc"]) and not key_is_valid("ab", ["abc"]) and not key_is_valid(None, ["a"])


async def _ok(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(app, path: str, method: str = "POST", **kwargs) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_api_keys_at_the_edge(monkeypatch):
    monkeypatch.setenv("LOCKGATE_API_KEYS", "k1, k2")
    monkeypatch.delenv("LOCKGATE_ALLOW_ANONYMOUS", raising=False)
    app = Edge(_ok, max_bytes=1000)
    assert _call(app, "/predict").status_code == 401
    assert _call(app, "/predict", headers={"X-API-Key": "k2"}).status_code == 200
    assert _call(app, "/livez").status_code == 200
    monkeypatch.setenv("LOCKGATE_API_KEYS", "")
    refused = _call(Edge(_ok, max_bytes=1000), "/predict", headers={"X-API-Key": ""})
    assert refused.status_code == 401 and "no API keys are configured" in refused.json()["error"]
    monkeypatch.setenv("LOCKGATE_ALLOW_ANONYMOUS", "true")
    assert _call(Edge(_ok, max_bytes=1000), "/predict").status_code == 200


def test_body_limit_declared_and_streamed(monkeypatch):
    monkeypatch.setenv("LOCKGATE_ALLOW_ANONYMOUS", "true")
    app = Edge(_ok, max_bytes=100)
    assert _call(app, "/predict", content=b"x" * 50).status_code == 200
    assert _call(app, "/predict", content=b"x" * 101).status_code == 413

    async def chunks():
        for _ in range(5):
            yield b"x" * 40

    assert _call(app, "/predict", content=chunks()).status_code == 413


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_binary_route_takes_npy_and_names_what_is_wrong(monkeypatch):
    monkeypatch.setenv("LOCKGATE_ALLOW_ANONYMOUS", "true")
    spec = ModelSpec(IMAGE_META)

    async def doubled(array):  # the service's handler checks through the family the same way
        x = spec.binary_to_array(array, 10, 100)
        return x.reshape(len(x), -1)[:, :2] * 2, [(b"lockgate-model-version", b"3")]

    monkeypatch.setattr(edge, "_binary_handler", doubled)
    app = Edge(_ok, max_bytes=10_000)
    npy = {"content-type": "application/x-npy"}
    answer = _call(app, "/predict_npy", content=_npy(np.ones((3, 8, 8, 1), dtype="float32")), headers=npy)
    assert answer.status_code == 200 and answer.headers["lockgate-model-version"] == "3"
    assert np.load(io.BytesIO(answer.content)).tolist() == [[2.0, 2.0]] * 3
    as_json = _call(app, "/predict_npy", content=_npy(np.ones((1, 64))), headers={"content-type": "application/json"})
    assert as_json.status_code == 415 and "application/x-npy" in as_json.json()["error"]
    garbage = _call(app, "/predict_npy", content=b"not an array", headers=npy)
    assert garbage.status_code == 400 and ".npy" in garbage.json()["error"]
    pickled = _call(app, "/predict_npy", content=_pickled_npy(), headers=npy)
    assert pickled.status_code == 400, pickled.text
    wrong = _call(app, "/predict_npy", content=_npy(np.ones((1, 7), dtype="float32")), headers=npy)
    assert wrong.status_code == 422 and "shape [8, 8, 1]" in wrong.json()["error"]
    too_many = _call(app, "/predict_npy", content=_npy(np.zeros((11, 64), dtype="float32")), headers=npy)
    assert too_many.status_code == 413 and "the limit is 10" in too_many.json()["error"]
    huge = _call(app, "/predict_npy", content=_npy(np.zeros((100, 64), dtype="float32")), headers=npy)
    assert huge.status_code == 413 and "over the limit" in huge.json()["error"]


def _pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _get(app, path: str, **kwargs) -> httpx.Response:
    return _call(app, path, "GET", **kwargs)


def test_model_card_by_get_as_html_or_markdown_behind_the_keys(monkeypatch):
    from lockgate.serving.model_card import ServedCard

    monkeypatch.setenv("LOCKGATE_API_KEYS", "k1")
    monkeypatch.delenv("LOCKGATE_ALLOW_ANONYMOUS", raising=False)
    key = {"X-API-Key": "k1"}
    monkeypatch.setattr(edge, "_card", None)
    app = Edge(_ok, max_bytes=1000)
    missing = _get(app, "/model_card", headers=key)
    assert missing.status_code == 404 and "without a model card" in missing.json()["error"]
    monkeypatch.setattr(edge, "_card", ServedCard(html=b"<h1>Model card: m v3</h1>", markdown=b"# Model card: m v3\n"))
    page = _get(app, "/model_card", headers=key)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == "<h1>Model card: m v3</h1>"
    for extra in ({"params": {"format": "markdown"}}, {"headers": key | {"Accept": "text/markdown"}}):
        text = _get(app, "/model_card", **({"headers": key} | extra))
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/markdown")
        assert text.text == "# Model card: m v3\n"
    assert _get(app, "/model_card").status_code == 401

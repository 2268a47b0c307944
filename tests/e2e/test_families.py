"""End to end, one run per model family: the flow validates, trains, gates,
exports, registers and packages; then the packaged Bento, served with
`bentoml serve`, answers a request of that family's own type over HTTP."""

from __future__ import annotations

import io
import os
import tempfile
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest

from lockgate import bento_server

pytestmark = pytest.mark.e2e

KEY = "family-key-" + uuid.uuid4().hex


def _run(data: str, target: str | None, epochs: int, **training):
    import mlflow

    from flows.training import training_pipeline
    from lockgate.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training = settings.training.model_copy(update={"epochs": epochs, **training})
    name = f"family-{uuid.uuid4().hex[:6]}"
    result = training_pipeline(data=data, target=target, model_name=name, settings=settings)
    assert result.status == "promoted", result.gate
    exports = {r.format: r for r in result.exports.results}
    assert exports["saved_model"].status == "passed", exports["saved_model"].reason
    client = mlflow.MlflowClient()
    version = client.get_model_version(name, result.registered.version)
    assert version.tags["export.saved_model"] == "passed"
    logged = {a.path for a in client.list_artifacts(result.run_id, "exports")}
    assert "exports/saved_model" in logged and "exports/report.json" in logged
    for fmt, export in exports.items():
        assert export.status in ("passed", "failed_parity", "unavailable")
        if export.shipped:
            assert export.agreement >= settings.export.min_label_agreement and export.size_bytes > 0
            assert version.tags[f"export.{fmt}"] == "passed"
        else:
            assert export.reason, f"{fmt} was not shipped and must say why"
            assert version.tags[f"export.{fmt}"].startswith(export.status)
    assert result.package.verified_examples > 0  # served and compared inside the flow
    return result, exports


def _ask(bento: str, route: str, **request):
    env = os.environ | {"LOCKGATE_API_KEYS": KEY}
    with tempfile.TemporaryFile() as log:
        server, base = bento_server.start(bento, env, log, timeout=120)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
                return client.post(route, **request)
        finally:
            bento_server.stop(server)


def test_text_family(prefect_harness, reviews_csv):
    result, exports = _run(str(reviews_csv), "sentiment", epochs=12)
    assert result.validation.family == "text" and result.evaluation.metrics["accuracy"] >= 0.85
    assert exports["onnx"].status == "unavailable" and "String" in exports["onnx"].reason
    texts = ["A wonderful, moving film with a superb cast.", "Dull and tedious; the plot was awful."]
    answer = _ask(result.package.bento_tag, "/predict_text", json={"texts": texts})
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == ["positive", "negative"]


def test_regression_family(prefect_harness, diabetes_csv):
    result, exports = _run(str(diabetes_csv), "target", epochs=80)
    metrics = result.evaluation.metrics
    assert result.validation.family == "regression" and result.gate.metric == "rmse"
    assert metrics["r2"] >= 0.3 and metrics["rmse"] < metrics["mean_predictor_rmse"]
    assert exports["tflite_int8"].status == "unavailable"
    assert exports["onnx"].status == "passed" and exports["tflite_dynamic"].agreement is not None
    rows = pd.read_csv(diabetes_csv).drop(columns="target").head(5).to_dict(orient="records")
    answer = _ask(result.package.bento_tag, "/predict_records", json={"records": rows})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 5 and all(25 <= p <= 350 for p in predictions)


def test_cifar_style_image_family(prefect_harness, colour_images_npz):
    from PIL import Image

    from lockgate.samples import make_colour_images

    result, exports = _run(str(colour_images_npz), None, epochs=8, augment=True)
    assert result.evaluation.metrics["accuracy"] >= 0.9
    assert {"tflite_dynamic", "tflite_float16", "tflite_int8", "onnx"} <= set(exports)
    assert exports["onnx"].status == "passed" and exports["tflite_float16"].status == "passed"
    images, labels = make_colour_images(rows=3, seed=99)
    png = io.BytesIO()
    Image.fromarray(images[2].astype("uint8")).save(png, format="PNG")
    answer = _ask(result.package.bento_tag, "/predict_image", files={"image": ("shape.png", png.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == [labels[2]]


def test_tabular_classification_family(prefect_harness, wine_csv, wine_frame):
    result, exports = _run(str(wine_csv), "target", epochs=40)
    assert result.validation.family == "tabular" and result.evaluation.metrics["accuracy"] >= 0.85
    rows = wine_frame.drop(columns="target").tail(6)
    answer = _ask(result.package.bento_tag, "/predict_records", json={"records": rows.to_dict(orient="records")})
    assert answer.status_code == 200, answer.text
    agree = np.mean(np.array(answer.json()["labels"]) == wine_frame["target"].tail(6).astype(str).to_numpy())
    assert agree >= 5 / 6

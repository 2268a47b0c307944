"""End to end, one run per model family: the flow validates, trains, gates,
exports (every format, each checked on the holdout), registers and packages;
the packaging step serves the built lean Bento with `bentoml serve` and checks
its answers on the holdout, on the runtime it serves, through the family's own
endpoint. Then `lockgate serve --bento TAG` serves the same Bento and answers
a user's request of that family's own type."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from tests.pipelines import Champion, pipeline_settings, promote
from tests.services.conftest import describe, lockgate_serve


def _checked(champion: Champion):
    """The run's exports and its served check, as the registry and the run record them."""
    import mlflow

    result, settings = champion.result, champion.settings
    exports = {r.format: r for r in result.exports.results}
    assert set(exports) == {"saved_model", "tflite_dynamic", "tflite_float16", "tflite_int8", "onnx"}
    assert exports["saved_model"].status == "passed", exports["saved_model"].reason
    client = mlflow.MlflowClient()
    version = client.get_model_version(champion.name, result.registered.version)
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
    assert result.package.verified_examples > 0 and result.package.max_abs_difference <= 1e-3
    return result, exports


def _runtime(client, result) -> str:
    """The runtime the served Bento names, once it is known to serve this run's model."""
    metadata = client.get("/metadata").json()
    assert metadata["model"]["bento_model"] == result.package.model_tag
    return metadata["runtime"]["name"]


def test_text_family(text_champion, tmp_path):
    result, exports = _checked(text_champion)
    assert result.validation.family == "text" and result.evaluation.metrics["accuracy"] >= 0.85
    # Tokenised before the graph: ONNX converts it, passes parity and serves it.
    assert exports["onnx"].status == "passed", exports["onnx"].reason
    texts = ["A wonderful, moving film with a superb cast.", "Dull and tedious; the plot was awful."]
    with lockgate_serve(result.package.bento_tag, tmp_path / "serve.log") as client:
        answer = client.post("/predict_text", json={"texts": texts})
        assert _runtime(client, result) == "onnx"  # the service tokenises, onnxruntime answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == ["positive", "negative"]


def test_regression_family(prefect_harness, diabetes_csv, tmp_path):
    champion = promote(str(diabetes_csv), "target", "diabetes", pipeline_settings(80, exports=True, verify_bento=True))
    result, exports = _checked(champion)
    metrics = result.evaluation.metrics
    assert result.validation.family == "regression" and result.gate.metric == "mse"
    assert metrics["r2"] >= 0.3 and metrics["rmse"] < metrics["mean_predictor_rmse"]
    assert exports["tflite_int8"].status == "unavailable"
    assert exports["onnx"].status == "passed" and exports["tflite_dynamic"].agreement is not None
    served = describe(champion)
    with lockgate_serve(result.package.bento_tag, tmp_path / "serve.log") as client:
        answer = client.post("/predict_records", json={"records": served.records(5)})
        assert _runtime(client, result) == "onnx"
    assert answer.status_code == 200, answer.text
    predictions = np.asarray(answer.json()["predictions"])
    # The model's own values, in the target's units (not standardised ones).
    np.testing.assert_allclose(predictions, served.expected[:5, 0], rtol=1e-5)
    target = pd.read_csv(diabetes_csv)["target"]
    assert abs(predictions.mean() - target.mean()) < target.std()


def test_cifar_style_image_family(prefect_harness, colour_images_npz, tmp_path):
    from PIL import Image

    from lockgate.data.samples import make_colour_images

    settings = pipeline_settings(8, exports=True, verify_bento=True, augment=True)
    result, exports = _checked(promote(str(colour_images_npz), None, "shapes", settings))
    assert result.evaluation.metrics["accuracy"] >= 0.9
    assert exports["onnx"].status == "passed" and exports["tflite_float16"].status == "passed"
    images, labels = make_colour_images(rows=3, seed=99)
    png = io.BytesIO()
    Image.fromarray(images[2].astype("uint8")).save(png, format="PNG")
    with lockgate_serve(result.package.bento_tag, tmp_path / "serve.log") as client:
        answer = client.post("/predict_image", files={"image": ("shape.png", png.getvalue(), "image/png")})
        assert _runtime(client, result) == "onnx"
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == [labels[2]]


def test_tabular_classification_family(wine_champion, wine_frame, tmp_path):
    result, _ = _checked(wine_champion)
    assert result.validation.family == "tabular" and result.evaluation.metrics["accuracy"] >= 0.85
    rows = wine_frame.drop(columns="target").tail(6)
    with lockgate_serve(result.package.bento_tag, tmp_path / "serve.log") as client:
        answer = client.post("/predict_records", json={"records": rows.to_dict(orient="records")})
        assert _runtime(client, result) == "onnx"
    assert answer.status_code == 200, answer.text
    agree = np.mean(np.array(answer.json()["labels"]) == wine_frame["target"].tail(6).astype(str).to_numpy())
    assert agree >= 5 / 6

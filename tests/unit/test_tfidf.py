"""TF-IDF with logistic regression as a Keras model over token ids: it
answers exactly as the scikit-learn model it was fitted as, exports with
parity, and its explanations start at its "embed" layer."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.core.settings import ExportSettings
from lockgate.explaining.attributions import gradient_function, integrated_gradients
from lockgate.explaining.inputs import gradient_start
from lockgate.export import export_model
from lockgate.models.architectures import load_keras_model, predict_outputs
from lockgate.models.tfidf import STRENGTHS, fit_tfidf, tfidf_features, tfidf_model
from tests.unit.test_text_models import text_data  # noqa: F401 - the shared fixture


@pytest.fixture(scope="module")
def fitted(text_data):  # noqa: F811
    meta, x, y = text_data
    fit = fit_tfidf(x[:80], y[:80], x[80:], y[80:], meta.vocabulary.size, 2)
    return meta, x, y, fit, tfidf_model(fit, x.shape[1], "probabilities", "lockgate_text_tfidf")


def test_the_keras_model_answers_as_the_fitted_logistic_regression(fitted):
    from sklearn.linear_model import LogisticRegression

    meta, x, y, fit, model = fitted
    assert fit.strength in STRENGTHS and set(fit.scores) == set(STRENGTHS)
    features = tfidf_features(x, fit.word_idf, fit.pair_idf)
    reference = LogisticRegression(C=fit.strength, max_iter=2000).fit(features, y)  # refitted on all rows, as fit_tfidf does
    np.testing.assert_allclose(predict_outputs(model, x), reference.predict_proba(features), atol=1e-5)
    assert float((predict_outputs(model, x).argmax(axis=1) == y).mean()) >= 0.95


def test_a_missing_class_gets_no_probability(text_data):  # noqa: F811
    meta, x, y = text_data
    fit = fit_tfidf(x[:80], y[:80], x[80:], y[80:], meta.vocabulary.size, 3)  # class 2 never seen
    out = predict_outputs(tfidf_model(fit, x.shape[1], "probabilities", "m"), x)
    assert out.shape == (len(x), 3) and out[:, 2].max() < 1e-9


def test_it_saves_exports_with_parity_and_is_explained_completely(fitted, tmp_path):
    import keras

    meta, x, y, fit, model = fitted
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(predict_outputs(load_keras_model(tmp_path / "m.keras"), x), predict_outputs(model, x))
    settings = ExportSettings(latency_repeats=5, representative_examples=50, formats=["onnx", "tflite_dynamic"])
    results = {r.format: r for r in export_model(model, "text", tmp_path / "exports", x[:60], y[:60], x[:10], settings,
                                                task="classification", int8_quantisation=False)}
    assert results["onnx"].status == "passed", results["onnx"].reason
    assert results["tflite_dynamic"].status == "passed", results["tflite_dynamic"].reason
    body = keras.Model([model.inputs[0], model.get_layer("embed").output], model.output)
    embedded = model.get_layer("embed")(x)
    np.testing.assert_allclose(np.asarray(body([keras.ops.convert_to_tensor(x), embedded])), predict_outputs(model, x),
                               atol=1e-6)
    start = gradient_start("texts", model, x, meta)
    result = integrated_gradients(gradient_function(start.call), start.x, start.baseline,
                                  predict_outputs(model, x).argmax(axis=1), context=start.context)
    assert result.complete_share == 1.0

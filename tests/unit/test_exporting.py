"""Exports are checked against the Keras model, and failures are reported, not raised.

Tiny models, trained for a few epochs: parity is about the converters, not
about how good the model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lockgate.core.records import ExportResult
from lockgate.core.settings import ExportSettings
from lockgate.export import (
    FORMATS,
    ExportFormat,
    Produced,
    describe_exception,
    export_model,
    float32_model,
    judge_parity,
    keras_reference,
)

ALL_FORMATS = ["saved_model", "tflite_dynamic", "tflite_float16", "tflite_int8", "onnx"]


def fast_export_settings(**changes) -> ExportSettings:
    return ExportSettings(latency_repeats=5, representative_examples=100, **changes)


def by_format(results: list[ExportResult]) -> dict[str, ExportResult]:
    return {r.format: r for r in results}


@pytest.fixture(scope="module")
def digits_exports(tmp_path_factory) -> dict[str, ExportResult]:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = digits.images.astype("float32")[..., None]  # (n, 8, 8, 1), pixels 0..16
    y = digits.target.astype("int64")
    x_train, x_holdout, y_train, y_holdout = train_test_split(x, y, test_size=360, random_state=0, stratify=y)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    h = keras.layers.Rescaling(1.0 / 16)(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    # Confident predictions, so that a label flip means a real difference, not a near-tie.
    model.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    out_dir = tmp_path_factory.mktemp("digits") / "exports"
    results = export_model(
        model, "image", out_dir, x_holdout, y_holdout, x_train[:100], fast_export_settings(formats=ALL_FORMATS),
        task="classification", int8_quantisation=True,
    )
    return by_format(results)


@pytest.mark.parametrize("fmt", ["saved_model", "tflite_dynamic", "tflite_float16", "onnx"])
def test_image_float_formats_pass_parity(digits_exports, fmt):
    result = digits_exports[fmt]
    assert result.status == "passed", result.reason
    assert result.shipped
    assert result.agreement >= 0.995
    assert result.size_bytes > 0 and Path(result.path).exists()
    assert result.latency_ms_p50 > 0
    # Float formats are exact to rounding; float16 weights and dynamic-range
    # int8 weights move probabilities by about 5e-4 and 3e-2 on this model.
    tolerance = {"saved_model": 1e-4, "onnx": 1e-4, "tflite_float16": 2e-3, "tflite_dynamic": 0.05}[fmt]
    assert result.max_abs_difference < tolerance


def test_image_int8_is_produced_and_checked(digits_exports):
    int8 = digits_exports["tflite_int8"]
    # Full-integer quantisation of a confident classifier keeps every label;
    # its uint8 outputs move probabilities by about 0.04 here.
    assert int8.status == "passed" and int8.shipped, int8.reason
    assert int8.agreement >= 0.995 and int8.max_abs_difference < 0.1
    variables = Path(digits_exports["saved_model"].path) / "variables"
    float_weights = sum(f.stat().st_size for f in variables.rglob("*") if f.is_file())
    assert 0 < int8.size_bytes < float_weights


@pytest.fixture(scope="module")
def diabetes_exports(tmp_path_factory) -> dict[str, ExportResult]:
    import keras
    from sklearn.datasets import load_diabetes

    keras.utils.set_random_seed(0)
    x, y = load_diabetes(return_X_y=True)
    x, y = x.astype("float32"), y.astype("float32")
    x_train, y_train, x_holdout, y_holdout = x[:-100], y[:-100], x[-100:], y[-100:]
    inputs = keras.Input(shape=(x.shape[1],), name="features")
    norm = keras.layers.Normalization()
    norm.adapt(x_train)
    h = keras.layers.Dense(16, activation="relu")(norm(inputs))
    outputs = keras.layers.Dense(1)(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    out_dir = tmp_path_factory.mktemp("diabetes") / "exports"
    results = export_model(
        model, "regression", out_dir, x_holdout, y_holdout, x_train, fast_export_settings(formats=ALL_FORMATS),
        task="regression", int8_quantisation=False,
    )
    return by_format(results)


def test_regression_exports_pass_and_int8_is_image_only(diabetes_exports):
    for fmt in ("saved_model", "tflite_dynamic", "tflite_float16", "onnx"):
        result = diabetes_exports[fmt]
        assert result.status == "passed", f"{fmt}: {result.reason}"
        assert result.agreement >= 0.995 and result.size_bytes > 0 and result.latency_ms_p50 > 0
    int8 = diabetes_exports["tflite_int8"]
    assert int8.status == "unavailable"
    assert "image models only" in int8.reason
    assert int8.path is None


def test_label_disagreement_is_reported_not_shipped():
    rng = np.random.default_rng(0)
    keras_outputs = rng.dirichlet(np.ones(3), size=200).astype("float32")
    exported = keras_outputs.copy()
    exported[:20] = np.roll(exported[:20], 1, axis=1)  # 10% of rows: a different label
    changed = keras_outputs[:20].argmax(axis=1) != exported[:20].argmax(axis=1)
    assert changed.all()
    result = judge_parity("tflite_int8", "classification", keras_outputs, exported, np.zeros(200), ExportSettings())
    assert result.status == "failed_parity" and not result.shipped
    assert result.agreement == pytest.approx(0.9)
    assert "90.0% of 200 holdout examples" in result.reason
    assert "99.5% is required" in result.reason


def test_regression_parity_uses_a_tolerance_of_the_target_spread():
    keras_outputs = np.linspace(0, 100, 100, dtype="float32")[:, None]
    y = np.linspace(0, 100, 100)  # std about 29: tolerance about 0.29
    settings = ExportSettings()
    close = judge_parity("onnx", "regression", keras_outputs, keras_outputs + 0.1, y, settings)
    assert close.status == "passed" and close.max_abs_difference == pytest.approx(0.1, abs=1e-5)
    far = judge_parity("onnx", "regression", keras_outputs, keras_outputs + 1.0, y, settings)
    assert far.status == "failed_parity" and far.agreement == 0.0
    assert "0.0% of 100 holdout examples" in far.reason


def test_non_finite_outputs_fail_parity():
    keras_outputs = np.full((10, 2), 0.5, dtype="float32")
    exported = keras_outputs.copy()
    exported[3, 1] = np.nan
    result = judge_parity("tflite_float16", "classification", keras_outputs, exported, np.zeros(10), ExportSettings())
    assert result.status == "failed_parity"
    assert "not finite" in result.reason


def test_converter_messages_are_cut_to_their_errors():
    dump = (
        '<unknown>:0: error: loc(callsite(fused["TensorListReserve:", "lstm/TensorArrayV2"] at '
        'fused["StatefulPartitionedCall:", "x"])): \'tf.TensorListReserve\' op requires element_shape to be static\n'
        '<unknown>:0: note: loc(fused["StatefulPartitionedCall:", "x"]): called from\n'
    )
    text = describe_exception(RuntimeError(dump))
    assert text == "RuntimeError: 'tf.TensorListReserve' op requires element_shape to be static"


def test_mixed_precision_model_is_exported_as_a_float32_copy():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input(shape=(4,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", dtype="float32")(hidden))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    copy = float32_model(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert model.layers[1].dtype_policy.name == "mixed_float16"  # the original is left alone
    np.testing.assert_allclose(copy.predict_on_batch(x), model.predict_on_batch(x), atol=1e-2)
    plain_inputs = keras.Input(shape=(4,))
    plain = keras.Model(plain_inputs, keras.layers.Dense(3)(plain_inputs))
    assert float32_model(plain) is plain


@pytest.fixture(scope="module")
def text_exports(tmp_path_factory) -> dict[str, ExportResult]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    good, bad = ["good", "great", "lovely", "superb"], ["bad", "awful", "poor", "dull"]
    filler = ["the", "film", "was", "really", "quite", "a", "plot"]
    sentences, labels = [], []
    for i in range(80):
        words = [*rng.choice(filler, 4), rng.choice(good if i % 2 else bad)]
        rng.shuffle(words)
        sentences.append(" ".join(words))
        labels.append(i % 2)
    x, y = np.array(sentences), np.array(labels, dtype="int64")
    vectorise = keras.layers.TextVectorization(max_tokens=40, output_sequence_length=8)
    vectorise.adapt(tf.data.Dataset.from_tensor_slices(x).batch(16))
    inputs = keras.Input(shape=(), dtype="string", name="text")
    h = keras.layers.Embedding(40, 8)(vectorise(inputs))
    h = keras.layers.Bidirectional(keras.layers.LSTM(8))(h)
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, shuffle=False, verbose=0)
    outputs, latency = keras_reference(model, x[:40], repeats=3)
    assert outputs.shape == (40, 2) and latency > 0
    out_dir = tmp_path_factory.mktemp("text") / "exports"
    formats = ["saved_model", "tflite_dynamic", "tflite_int8", "onnx"]
    results = export_model(
        model, "text", out_dir, x[:40], y[:40], x[:10], fast_export_settings(formats=formats),
        reference_outputs=outputs, task="classification", int8_quantisation=False,
    )
    return by_format(results)


def test_text_model_reports_unsupported_formats_without_raising(text_exports):
    assert text_exports["saved_model"].status == "passed", text_exports["saved_model"].reason

    onnx = text_exports["onnx"]
    assert onnx.status == "unavailable" and not onnx.shipped
    assert "tf2onnx could not convert" in onnx.reason
    assert "StringSplitV2" in onnx.reason and "StaticRegexReplace" in onnx.reason

    tflite = text_exports["tflite_dynamic"]
    assert tflite.status == "unavailable" and not tflite.shipped
    assert tflite.reason.startswith("the TFLite file was produced but needs the Flex delegate")
    assert "TensorListReserve" in tflite.reason and "not shipped" in tflite.reason
    assert tflite.size_bytes and tflite.size_bytes > 0  # produced, just not runnable here

    assert "image models only" in text_exports["tflite_int8"].reason


def test_export_markdown_lists_keras_first_and_every_format(digits_exports):
    from lockgate.core.records import ExportReport
    from lockgate.orchestration.reporting import export_markdown

    report = ExportReport(
        run_id="abc", keras_size_bytes=123_456, keras_latency_ms_p50=1.5, examples=360,
        results=list(digits_exports.values()),
    )
    markdown = export_markdown(report)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| format | status |")
    assert rows[1].startswith("| keras |")
    assert len(rows) == 2 + len(ALL_FORMATS)


# --------------------------------------------------------------------------- #
# Adding a format: one class and one line in FORMATS
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class KerasCopy(ExportFormat):
    """A test-only format: the model saved again as a .keras file, run by Keras."""

    def produce(self, model, target, sources):
        model.save(target)
        return Produced(target)

    def load(self, path, threads=None):
        import keras

        loaded = keras.models.load_model(path)
        return lambda x: loaded.predict_on_batch(x)


@dataclass(frozen=True)
class ReversedCopy(KerasCopy):
    """The same, with a converter bug: the classes come out in reverse order."""

    def load(self, path, threads=None):
        predict = super().load(path)
        return lambda x: predict(x)[:, ::-1]


def test_a_new_format_is_one_class_and_one_line_and_is_checked_like_the_others(monkeypatch, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(8, "relu")(inputs)))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)

    monkeypatch.setitem(FORMATS, "keras_copy", KerasCopy(name="keras_copy", artifact="copy.keras"))
    monkeypatch.setitem(FORMATS, "keras_reversed", ReversedCopy(name="keras_reversed", artifact="reversed.keras"))
    results = by_format(export_model(
        model, "tabular", tmp_path, x[:100], y[:100], x[:10],
        fast_export_settings(formats=["keras_copy", "keras_reversed"]), task="classification", int8_quantisation=False,
    ))

    copy = results["keras_copy"]
    assert copy.status == "passed" and copy.shipped, copy.reason
    assert copy.agreement == 1.0 and copy.max_abs_difference < 1e-5
    assert Path(copy.path) == tmp_path / "copy.keras" and copy.size_bytes > 0 and copy.latency_ms_p50 > 0
    reversed_ = results["keras_reversed"]
    assert reversed_.status == "failed_parity" and not reversed_.shipped
    assert "labels agree on" in reversed_.reason and reversed_.agreement < 0.1


def test_an_unknown_format_is_refused_before_anything_is_produced(tmp_path):
    out_dir = tmp_path / "exports"
    with pytest.raises(ValueError, match=r"unknown export format 'onnx2'; known: saved_model, tflite_dynamic, "):
        export_model(
            object(), "image", out_dir, np.zeros((1, 2)), np.zeros(1), np.zeros((1, 2)),
            fast_export_settings(formats=["saved_model", "onnx2"]), reference_outputs=np.zeros((1, 2)),
            task="classification", int8_quantisation=True,
        )
    assert not out_dir.exists()


def test_parity_refuses_a_family_name_for_a_task():
    with pytest.raises(ValueError, match="unknown task 'image'"):
        judge_parity("onnx", "image", np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1), ExportSettings())

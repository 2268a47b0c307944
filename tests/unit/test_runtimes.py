"""Which runtime serves a model: the fastest that passed parity, typed and recorded."""

from __future__ import annotations

from lockgate.core.records import ExportReport, ExportResult, ServedMeta
from lockgate.export.runtimes import choose_runtime

SHIPPED = {"onnx": "exports/model.onnx", "saved_model": "exports/saved_model", "tflite_float16": "exports/m.tflite"}


def _report(onnx: str = "passed", keras_ms: float = 0.9, onnx_ms: float = 0.05) -> ExportReport:
    return ExportReport(run_id="r", keras_size_bytes=1, keras_latency_ms_p50=keras_ms, examples=10, results=[
        ExportResult(format="saved_model", status="passed", agreement=1.0, latency_ms_p50=0.5),
        ExportResult(format="tflite_float16", status="passed", agreement=1.0, latency_ms_p50=0.01),
        ExportResult(format="onnx", status=onnx, agreement=1.0 if onnx == "passed" else 0.9, latency_ms_p50=onnx_ms),
    ])


def test_onnx_serves_where_it_passed():
    runtime = choose_runtime(_report(), SHIPPED)
    assert (runtime.name, runtime.file, runtime.latency_ms_p50) == ("onnx", "exports/model.onnx", 0.05)
    assert "passed parity" in runtime.reason


def test_keras_serves_when_onnx_failed_or_is_turned_off():
    failed = choose_runtime(_report(onnx="failed_parity"), {k: v for k, v in SHIPPED.items() if k != "onnx"})
    assert (failed.name, failed.file) == ("keras", "model.keras") and "onnx export did not pass" in failed.reason
    assert choose_runtime(None, {}).name == "keras"
    assert choose_runtime(_report(), SHIPPED, "keras").name == "keras"


def test_keras_serves_when_it_is_faster():
    assert choose_runtime(_report(keras_ms=0.01, onnx_ms=0.05), SHIPPED).name == "keras"


def test_models_packaged_before_runtimes_were_recorded_are_served_by_keras():
    meta = ServedMeta(name="d", family="image", target="t", feature_columns=[], input_shape=[2], model_name="m",
                      model_version="1", run_id="r")
    assert meta.runtime.name == "keras" and meta.runtime.file == "model.keras"


def test_each_runtime_is_called_as_measured_fastest_unless_settings_say_otherwise():
    from lockgate.export.runtimes import AUTO_CALLS, model_calls

    for runtime in ("onnx", "keras"):
        assert model_calls(runtime) == AUTO_CALLS[runtime]
        assert runtime in model_calls(runtime).reason
    off = model_calls("onnx", batching=False)
    assert (off.batching, off.model_calls) == (False, AUTO_CALLS["onnx"].model_calls)
    assert "serving.batching=False" in off.reason
    inline = model_calls("keras", where="inline")
    assert (inline.batching, inline.model_calls) == (AUTO_CALLS["keras"].batching, "inline")


def test_each_runtime_and_its_lock_come_from_the_formats():
    from lockgate.export.runtimes import servable_exports, serve_locks
    from lockgate.registry.packaging import REPO_ROOT, SERVE_LOCKS

    assert set(servable_exports()) == {"onnx"}
    assert serve_locks() == SERVE_LOCKS == {"onnx": "requirements-serve.lock", "keras": "requirements-serve-keras.lock"}
    assert all((REPO_ROOT / lock).is_file() for lock in SERVE_LOCKS.values())

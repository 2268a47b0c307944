"""One monitor check, from the files a service writes and the reference a
model carries: the newest rows of the served version, labels joined by
request id, live accuracy beside the holdout's, and a figure."""

from __future__ import annotations

import numpy as np

from lockgate.core.records import ServedMeta
from lockgate.core.settings import MonitorSettings
from lockgate.monitoring.monitor import check, served_window
from lockgate.serving.traffic import TrafficLog


def _model(folder, rng):
    meta = ServedMeta(name="v", family="vectors", task="classification", inputs="arrays", target="y",
                      feature_columns=["a", "b"], class_names=["no", "yes"], input_shape=[2],
                      model_name="m", model_version="3", run_id="r")
    meta.write(folder)
    x = rng.normal(size=(600, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    outputs = np.stack([1 - (x[:, 0] > 0), x[:, 0] > 0], axis=1).astype("float32") * 0.8 + 0.1
    (folder / "monitoring").mkdir()
    np.savez(folder / "monitoring" / "reference.npz", features=x, outputs=outputs, y=y,
             holdout=np.arange(600) % 2 == 0)
    return meta


def _serve(meta, traffic, rng, rows, shift=0.0, version="3"):
    log = TrafficLog(traffic, meta.model_copy(update={"model_version": version}), version, sample=1.0)
    ids = []
    for _ in range(rows // 10):
        x = rng.normal(size=(10, 2)).astype("float32")
        x[:, 1] += shift
        outputs = np.stack([1 - (x[:, 0] > 0), x[:, 0] > 0], axis=1).astype("float32") * 0.8 + 0.1
        ids.append((log.record("/predict", x, outputs), x))
    log.flush()
    return log, ids


def test_a_shift_in_the_served_rows_is_found_and_labels_give_live_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    folder, traffic = tmp_path / "model", tmp_path / "traffic"
    folder.mkdir()
    meta = _model(folder, rng)
    _serve(meta, traffic, rng, 500, version="2")  # an older version's rows are left out
    log, ids = _serve(meta, traffic, rng, 400, shift=1.0)
    # Labels for the first 20 requests: the model is right on every row but the first.
    labels = [{"request_id": rid, "row": r, "label": "yes" if x[r, 0] > 0 else "no"} for rid, x in ids[:20]
              for r in range(10)]
    labels[0]["label"] = "no" if labels[0]["label"] == "yes" else "yes"
    log.record_labels(labels)
    log.record_labels([{"request_id": "f" * 32, "row": 0, "label": "yes"}])  # a request that was never logged

    report, figure = check(folder, traffic, MonitorSettings(window_rows=1000, min_rows=200), tmp_path / "figures")
    assert report.tested and report.drifted and report.window_rows == 400
    assert [f.feature for f in report.drifted_features()] == ["b"]
    assert report.live.labelled == 200 and report.live.unmatched == 1
    assert report.live.live == 199 / 200 and report.live.live_low < 0.995 < report.live.live_high
    assert report.live.holdout == 1.0 and report.live.holdout_rows == 300
    assert figure is not None and figure.stat().st_size > 10_000


def test_the_newest_rows_make_the_window_and_too_few_are_not_tested(tmp_path):
    rng = np.random.default_rng(1)
    folder, traffic = tmp_path / "model", tmp_path / "traffic"
    folder.mkdir()
    meta = _model(folder, rng)
    _, ids = _serve(meta, traffic, rng, 300)
    window = served_window(traffic, "3", 100, 2, 2)
    assert len(window.ids) == 100 and window.ids[-1] == (ids[-1][0], 9)  # the newest last
    report, figure = check(folder, traffic, MonitorSettings(window_rows=100, min_rows=200))
    assert not report.tested and not report.drifted and figure is None
    assert "100 rows" in report.headline and "200" in report.headline

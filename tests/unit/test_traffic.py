"""What the service logs of its traffic: the summaries the monitor compares,
the rotating files, sampling, and the labels /feedback accepts."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from lockgate.core.contract import encode, infer_contract
from lockgate.core.records import DatasetMeta
from lockgate.serving.requests import RequestError
from lockgate.serving.traffic import (
    RotatingLog,
    TrafficLog,
    checked_labels,
    input_features,
    output_features,
    summarise_inputs,
    summarise_outputs,
    text_vocabulary,
)


def _table_meta() -> tuple[DatasetMeta, pd.DataFrame]:
    frame = pd.DataFrame({
        "age": [None if i % 4 == 2 else 31.0 + 0.5 * i for i in range(100)],
        "city": ["paris", "lyon", "paris", None] * 25,
        "joined": ["2024-01-03", "2023-06-30", "2022-11-11", "2024-02-29"] * 25,
        "note": ["late payment again", "on time", "", "late late"] * 25,
        "label": ["a", "b"] * 50,
    })
    contract = infer_contract(frame, "label")
    meta = DatasetMeta(name="t", family="tabular", task="classification", inputs="tables", target="label",
                       feature_columns=contract.model_columns(), class_names=["a", "b"],
                       input_shape=[len(contract.model_columns())], contract=contract.to_dict())
    return meta, frame


def test_a_table_row_is_summarised_by_its_columns_roles():
    meta, frame = _table_meta()
    x = encode(frame, meta.table_contract())
    features = input_features(meta)
    summary = summarise_inputs(x, meta)
    assert summary.shape == (len(frame), len(features))
    by_name = {f.name: i for i, f in enumerate(features)}
    roles = {f.name: f.role for f in features}
    assert roles["age"] == "numeric" and roles["city"] == "categorical"
    assert np.isnan(summary[2, by_name["age"]])  # a gap stays a gap
    assert summary[1, by_name["age"]] == 31.5
    city = next(f for f in features if f.name == "city")
    assert city.labels[int(summary[0, by_name["city"]])] == "paris"
    assert city.labels[int(summary[3, by_name["city"]])] == "(missing)"
    if "note.words" in by_name:  # a text column is its word count, unknown share and word rank
        assert summary[0, by_name["note.words"]] == 3
        assert summary[2, by_name["note.words"]] == 0


def test_an_image_is_summarised_by_brightness_contrast_sharpness_and_channels():
    meta = DatasetMeta(name="i", family="image", task="classification", inputs="images", target="label",
                       feature_columns=[], class_names=["a", "b"], input_shape=[8, 8, 3])
    flat = np.zeros((2, 8, 8, 3), dtype="float32")
    flat[1, :, ::2, 0] = 1.0  # stripes in the red channel: sharp, bright in red only
    summary = summarise_inputs(flat, meta)
    names = [f.name for f in input_features(meta)]
    assert summary.shape == (2, len(names))
    row = dict(zip(names, summary[1]))
    assert row["image.channel0"] == pytest.approx(0.5) and row["image.channel1"] == 0.0
    assert row["image.sharpness"] > 0 and summary[0, names.index("image.sharpness")] == 0.0


def test_a_text_is_summarised_against_the_training_words():
    vocabulary = text_vocabulary(["the cat sat", "the dog ran", "a cat ran"])
    assert list(vocabulary)[:3] == ["cat", "ran", "the"]  # most texts first, then alphabetical
    summary = summarise_inputs(np.array(["The cat flew", ""], dtype=object),
                               DatasetMeta(name="x", family="text", task="classification", inputs="texts", target="y",
                                           feature_columns=[], input_shape=[1]), vocabulary)
    assert summary[0, :3].tolist() == [12, 3, pytest.approx(1 / 3)]  # characters, words, unknown share
    assert np.isnan(summary[1, 2])  # no words: no share


def test_outputs_are_the_predicted_class_and_its_confidence():
    meta, _ = _table_meta()
    outputs = np.array([[0.2, 0.8], [0.9, 0.1]], dtype="float32")
    assert [f.name for f in output_features(meta)] == ["prediction.class", "prediction.confidence"]
    assert summarise_outputs(outputs, meta).tolist() == [[1.0, pytest.approx(0.8)], [0.0, pytest.approx(0.9)]]


def test_the_log_rotates_and_keeps_the_newest_files(tmp_path):
    log = RotatingLog(tmp_path, "traffic", max_bytes=200, keep=2)
    for i in range(30):
        log.write({"i": i, "pad": "x" * 40})
    log.close()
    files = sorted(tmp_path.glob("traffic-*.jsonl"))
    assert len(files) == 2
    kept = [json.loads(line)["i"] for f in files for line in f.read_text().splitlines()]
    assert max(kept) == 29 and min(kept) > 0  # the oldest lines went with their file


def test_traffic_is_sampled_and_keeps_no_request_headers(tmp_path):
    meta, frame = _table_meta()
    x = encode(frame.head(3), meta.table_contract())
    outputs = np.full((3, 2), 0.5, dtype="float32")
    off = TrafficLog(tmp_path / "off", meta, "1", sample=0.0)
    assert off.record("/predict_records", x, outputs) is None and not (tmp_path / "off").exists()
    half = TrafficLog(tmp_path / "half", meta, "1", sample=0.5)
    logged = sum(half.record("/predict_records", x, outputs) is not None for _ in range(400))
    assert 140 < logged < 260
    half.flush()
    lines = next((tmp_path / "half").glob("traffic-*.jsonl")).read_text().splitlines()
    assert len(lines) == logged
    line = json.loads(lines[0])
    assert set(line) == {"id", "at", "version", "endpoint", "features", "outputs"}
    assert len(line["features"]) == 3 and line["features"][2][0] is None  # NaN written as null


def test_feedback_labels_are_checked_and_name_the_problem():
    meta, _ = _table_meta()
    good = [{"request_id": "a" * 32, "row": 1, "label": "b"}, {"request_id": "b" * 32, "label": "a"}]
    assert checked_labels(good, meta, 10) == [{"request_id": "a" * 32, "row": 1, "label": "b"},
                                              {"request_id": "b" * 32, "row": 0, "label": "a"}]
    cases = [
        ([], 400, "non-empty list"),
        ([{"request_id": "nope", "label": "a"}], 400, "request_id"),
        ([{"request_id": "a" * 32, "row": -1, "label": "a"}], 400, "row"),
        ([{"request_id": "a" * 32, "label": "c"}], 422, "not one of the model's classes"),
        ([{"request_id": "a" * 32, "label": "a", "secret": 1}], 400, "unknown fields: secret"),
        (good * 6, 413, "limit is 10"),
    ]
    for labels, status, words in cases:
        with pytest.raises(RequestError) as refused:
            checked_labels(labels, meta, 10)
        assert refused.value.status == status and words in refused.value.message
    regression = meta.model_copy(update={"class_names": [], "task": "regression"})
    assert checked_labels([{"request_id": "c" * 32, "label": 3}], regression, 10)[0]["label"] == 3.0
    with pytest.raises(RequestError, match="finite number"):
        checked_labels([{"request_id": "c" * 32, "label": float("nan")}], regression, 10)


def test_queued_requests_are_written_within_the_flush_interval(tmp_path):
    meta, frame = _table_meta()
    log = TrafficLog(tmp_path, meta, "1", sample=1.0, flush_s=0.2)
    contract = meta.table_contract()
    ids = [log.record("/predict_records", encode(frame.head(rows), contract), np.full((rows, 2), 0.5)) for rows in (1, 3)]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list(tmp_path.glob("traffic-*.jsonl")):
        time.sleep(0.05)
    time.sleep(0.3)
    lines = [json.loads(line) for f in tmp_path.glob("traffic-*.jsonl") for line in f.read_text().splitlines()]
    assert [line["id"] for line in lines] == ids
    assert [len(line["features"]) for line in lines] == [1, 3]  # each request's own rows, from one summary call

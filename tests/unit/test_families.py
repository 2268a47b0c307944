"""The family registry, the prediction targets, the served side's kinds of
input, and the typed dataset record."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.core.contract import infer_contract
from lockgate.core.records import DatasetMeta
from lockgate.families import FAMILIES, family_for
from lockgate.families.targets import TARGETS
from lockgate.serving.requests import REQUESTS, requests_for


def test_each_family_is_registered_under_its_own_name_with_a_task():
    assert set(FAMILIES) == {"image", "text", "tabular", "regression"}
    for name, family in FAMILIES.items():
        assert family.name == name and family.task in ("classification", "regression") and family.architectures
        assert family.target is TARGETS[family.task] or type(family.target) is type(TARGETS[family.task])
        assert family.inputs in REQUESTS and family.requests is REQUESTS[family.inputs]
    assert [n for n, f in FAMILIES.items() if f.task == "regression"] == ["regression"]
    assert [n for n, f in FAMILIES.items() if f.int8_quantisation] == ["image"]
    with pytest.raises(ValueError, match="unknown model family 'audio'; known: image, text, tabular, regression"):
        family_for("audio")


def test_metadata_written_before_the_rename_still_loads():
    old = {"name": "wine", "kind": "tabular", "target": "t", "feature_columns": ["a"], "input_shape": [1]}
    assert DatasetMeta.model_validate(old).family == "tabular"


def test_metadata_written_before_the_task_and_inputs_were_stored_gets_them_from_its_family():
    for family in FAMILIES.values():
        old = {"name": "d", "family": family.name, "target": "t", "feature_columns": [], "input_shape": [1]}
        meta = DatasetMeta.model_validate(old)
        assert (meta.task, meta.inputs) == (family.task, family.inputs)


def test_the_champion_is_aligned_to_the_classes_at_hand():
    raw = np.array([[0.1, 0.9], [0.7, 0.3]], dtype="float32")
    aligned = family_for("image").target.align_outputs(raw, champion_names=["cat", "dog"], names=["dog", "cat", "eel"])
    np.testing.assert_allclose(aligned, [[0.9, 0.1, 0.0], [0.3, 0.7, 0.0]])
    np.testing.assert_array_equal(family_for("regression").target.align_outputs(raw[:, :1], [], []), raw[:, :1])


def test_each_kind_of_input_refuses_other_requests_by_pointing_to_its_own():
    text = DatasetMeta(name="d", family="text", target="y", feature_columns=["t"], input_shape=[])
    for call in (lambda r: r.image_input(b"x", text), lambda r: r.records_input([{}], text, 9)):
        with pytest.raises(Exception, match="this is a text model: use /predict_text"):
            call(requests_for(text))
    image = DatasetMeta(name="d", family="image", target="y", feature_columns=[], input_shape=[2, 2, 1])
    with pytest.raises(Exception, match="this is an image model: use /predict with arrays, or /predict_image"):
        requests_for(image).text_input(["a"], image, 9, 9)


def test_the_contract_is_parsed_once_and_again_for_a_new_one():
    import pandas as pd

    frame = pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5] * 5, "c": list("abcde") * 4, "t": [0, 1] * 10})
    meta = DatasetMeta(name="d", family="tabular", target="t", feature_columns=["x", "c"], input_shape=[2],
                       contract=infer_contract(frame, "t").to_dict())
    assert meta.table_contract() is meta.table_contract()
    other = meta.model_copy(update={"contract": infer_contract(frame.drop(columns="c"), "t").to_dict()})
    assert other.table_contract().source_columns == ["x"] and meta.table_contract().source_columns == ["x", "c"]

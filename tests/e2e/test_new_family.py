"""A family added in one module and one registry line makes a full run: it
is recognised when settings name it, validated by its own expectations,
trained with its own architecture, gated, exported, registered, packaged and
served, the Bento answering the holdout on /predict without the family's
module inside it."""

from __future__ import annotations

from lockgate.families import FAMILIES
from tests.pipelines import pipeline_settings, run_pipeline, unique_name
from tests.services.conftest import lockgate_serve
from tests.vector_family import VECTORS


def test_a_family_added_in_one_module_and_one_line_runs_end_to_end(monkeypatch, prefect_harness, wine_csv, wine_frame, tmp_path):
    monkeypatch.setitem(FAMILIES, VECTORS.name, VECTORS)  # the one line that registers it
    settings = pipeline_settings(30, formats=["saved_model", "onnx"], verify_bento=True, family="vectors")
    result = run_pipeline(str(wine_csv), "target", unique_name("vectors"), settings)

    assert result.validation.family == "vectors" and result.status == "promoted", result.gate and result.gate.reasons
    assert result.training.architecture == "dense"
    assert {c.name for c in result.validation.checks} >= {"numbers without gaps"}
    assert result.package.verified_examples > 0 and result.package.max_abs_difference <= 1e-3
    features = wine_frame.drop(columns="target")
    with lockgate_serve(result.package.bento_tag, tmp_path / "serve.log") as client:
        answer = client.post("/predict", json={"instances": features.head(3).to_numpy().tolist()})
        refused = client.post("/predict_records", json={"records": [{"alcohol": 13.0}]})
        described = client.get("/metadata").json()
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["labels"]) == 3 and set(answer.json()["labels"]) <= {"0", "1", "2"}
    assert refused.status_code == 422 and "this is a vectors model: use /predict with arrays" in refused.text
    assert described["family"] == "vectors" and described["task"] == "classification"

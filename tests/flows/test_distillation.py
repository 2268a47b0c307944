"""Distillation: a narrower student learns from the champion's predictions and
goes through the same gates, reported beside its teacher."""

from __future__ import annotations

import numpy as np
import pytest

from flows.training import NoChampionToDistil
from lockgate.core.settings import DistillationSettings
from lockgate.families import family_for
from tests.pipelines import champion_version, pipeline_settings, run_pipeline, unique_name


def test_targets_blend_softened_teacher_with_truth():
    teacher = np.array([[0.9, 0.1], [0.2, 0.8]])
    targets = family_for("image").target.distillation_targets(teacher, np.array([0, 0]), DistillationSettings(temperature=2, alpha=0.5))
    softened = np.sqrt(teacher) / np.sqrt(teacher).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(targets, 0.5 * softened + 0.5 * np.eye(2)[[0, 0]], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    values = family_for("regression").target.distillation_targets(np.array([[10.0], [20.0]]), np.array([12.0, 18.0]),
                                                                  DistillationSettings(alpha=0.25))
    np.testing.assert_allclose(values, [11.5, 18.5])


def test_distillation_needs_a_champion(prefect_harness):
    with pytest.raises(NoChampionToDistil, match="has no champion to distil"):
        run_pipeline("digits", None, unique_name("no-teacher"), pipeline_settings(1), distil=True)


def test_student_is_gated_against_its_teacher(digits_champion):
    import mlflow

    name = digits_champion.name
    teacher_version = champion_version(name)
    teacher_metric = mlflow.MlflowClient().get_run(
        mlflow.MlflowClient().get_model_version(name, teacher_version).run_id
    ).data.metrics["holdout_accuracy"]
    student = run_pipeline("digits", None, name, pipeline_settings(12), distil=True)
    report = student.distillation
    assert report.teacher_version == teacher_version
    assert report.student_parameters < 0.2 * report.teacher_parameters  # width 0.25: far fewer weights
    assert report.student_size_bytes < report.teacher_size_bytes
    assert report.teacher_metric == pytest.approx(teacher_metric, abs=1e-9)
    assert report.student_metric == student.evaluation.metrics["accuracy"] > 0.85
    params = mlflow.MlflowClient().get_run(student.run_id).data.params
    assert params["distilled_from"] == f"models:/{name}/{teacher_version}" and params["distillation.width"] == "0.25"
    # The same gate decides: compared with the teacher on the same holdout.
    assert student.evaluation.champion_version == teacher_version
    assert student.gate.metric == "brier_score"
    assert student.gate.champion == pytest.approx(student.evaluation.champion_metrics["brier_score"])
    assert any(f"champion v{teacher_version}" in reason for reason in student.gate.reasons)

"""Distillation's report: the student beside its teacher (the champion) on
the same holdout, in accuracy (or RMSE), parameters, size and latency. The
student itself is trained by the train step and judged by the usual gates."""

from __future__ import annotations

from pathlib import Path

from lockgate.core.records import (
    ChampionRef,
    DistillationReport,
    EvaluationReport,
    TrainingResult,
)
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.orchestration.reporting import distillation_markdown, publish_markdown
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import client
from lockgate.training.evaluation import load_champion, measure_latency, saved_size_bytes


def compare_with_teacher(
    training: TrainingResult,
    evaluation: EvaluationReport,
    teacher: ChampionRef,
    snapshot_folder: str,
    settings: LockgateSettings | None = None,
) -> DistillationReport:
    settings = settings or get_settings()
    snapshot = read_snapshot(snapshot_folder)
    holdout = snapshot.inputs_for(teacher.data_meta, split_for(snapshot.y, settings.training)["holdout"])
    mlflow_client = client(settings)
    teacher_model = load_champion(teacher)
    metric = "rmse" if evaluation.regression else settings.gate.metric
    report = DistillationReport(
        teacher_version=teacher.version,
        metric=metric,
        higher_is_better=not evaluation.regression,
        teacher_metric=(evaluation.champion_metrics or {}).get(metric, float("nan")),
        student_metric=evaluation.metrics.get(metric, float("nan")),
        teacher_parameters=int(teacher_model.count_params()),
        student_parameters=training.parameters,
        teacher_size_bytes=saved_size_bytes(teacher_model),
        student_size_bytes=Path(training.model_path).stat().st_size,
        teacher_latency_ms_p50=measure_latency(teacher_model, holdout)["latency_ms_p50"],
        student_latency_ms_p50=evaluation.metrics["latency_ms_p50"],
    )
    mlflow_client.log_text(training.run_id, report.model_dump_json(indent=2), "distillation/report.json")
    markdown = distillation_markdown(report)
    mlflow_client.log_text(training.run_id, markdown, "distillation/report.md")
    publish_markdown("distillation", markdown, "Student beside its teacher")
    return report


compare_task = pipeline_task("compare with teacher", timeout_seconds=600)(compare_with_teacher)

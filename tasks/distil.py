"""Distillation's report: the student beside its teacher (the champion) on
the same holdout, in accuracy (or RMSE), parameters, size and latency. The
student itself is trained by the train step and judged by the usual gates."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lockgate.data import read_snapshot, split_for
from lockgate.records import DistillationReport, EvaluationReport, TrainingResult
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import connect
from tasks.champion import ChampionRef
from tasks.evaluate import measure_latency


def compare_with_teacher(
    training: TrainingResult,
    evaluation: EvaluationReport,
    teacher: ChampionRef,
    snapshot_folder: str,
    settings: LockgateSettings | None = None,
) -> DistillationReport:
    import mlflow
    import mlflow.tensorflow

    from lockgate.models import register_custom_layers

    settings = settings or get_settings()
    snapshot = read_snapshot(snapshot_folder)
    holdout = snapshot.inputs_for(teacher.data_meta, split_for(snapshot.y, settings.training)["holdout"])
    connect(settings)
    register_custom_layers()
    teacher_model = mlflow.tensorflow.load_model(teacher.uri)
    with tempfile.TemporaryDirectory(prefix="lockgate-teacher-") as folder:
        saved = Path(folder) / "teacher.keras"
        teacher_model.save(saved)
        teacher_size = saved.stat().st_size
    metric = "rmse" if evaluation.regression else settings.gate.metric
    report = DistillationReport(
        teacher_version=teacher.version,
        metric=metric,
        higher_is_better=not evaluation.regression,
        teacher_metric=(evaluation.champion_metrics or {}).get(metric, float("nan")),
        student_metric=evaluation.metrics.get(metric, float("nan")),
        teacher_parameters=int(teacher_model.count_params()),
        student_parameters=training.parameters,
        teacher_size_bytes=teacher_size,
        student_size_bytes=Path(training.model_path).stat().st_size,
        teacher_latency_ms_p50=measure_latency(teacher_model, holdout)["latency_ms_p50"],
        student_latency_ms_p50=evaluation.metrics["latency_ms_p50"],
    )
    client = mlflow.MlflowClient()
    client.log_text(training.run_id, report.model_dump_json(indent=2), "distillation/report.json")
    client.log_text(training.run_id, distillation_markdown(report), "distillation/report.md")
    from lockgate.reporting import publish_markdown

    publish_markdown("distillation", distillation_markdown(report), "Student beside its teacher")
    return report


def distillation_markdown(report: DistillationReport) -> str:
    def ratio(student: float, teacher: float) -> str:
        return f"{student / teacher:.2f}x" if teacher else "-"

    rows = [
        ("holdout " + report.metric, f"{report.teacher_metric:.4f}", f"{report.student_metric:.4f}", ""),
        ("parameters", f"{report.teacher_parameters:,}", f"{report.student_parameters:,}",
         ratio(report.student_parameters, report.teacher_parameters)),
        ("size (.keras)", f"{report.teacher_size_bytes / 1e3:.1f} kB", f"{report.student_size_bytes / 1e3:.1f} kB",
         ratio(report.student_size_bytes, report.teacher_size_bytes)),
        ("latency p50, 1 example", f"{report.teacher_latency_ms_p50:.2f} ms", f"{report.student_latency_ms_p50:.2f} ms",
         ratio(report.student_latency_ms_p50, report.teacher_latency_ms_p50)),
    ]
    lines = [f"# Distillation of champion v{report.teacher_version}", "",
             "| | teacher | student | student / teacher |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {teacher} | {student} | {r} |" for name, teacher, student, r in rows]
    return "\n".join(lines)


compare_task = pipeline_task("compare with teacher", timeout_seconds=600)(compare_with_teacher)

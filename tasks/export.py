"""Step 5: export the gated model to serving formats, and check every export
on the holdout before it is logged, tagged or shipped."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from lockgate.core.records import ExportReport, ExportResult, TrainingResult
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.export import export_model, folder_size, keras_reference
from lockgate.families import family_for
from lockgate.models.architectures import load_keras_model
from lockgate.orchestration.reporting import export_markdown, publish_markdown
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import client


def export_model_formats(
    training: TrainingResult,
    snapshot_folder: str,
    settings: LockgateSettings | None = None,
) -> ExportReport:
    settings = settings or get_settings()
    snapshot = read_snapshot(snapshot_folder)
    split = split_for(snapshot.y, settings.training)
    x_holdout, y_holdout = snapshot.x[split["holdout"]], snapshot.y[split["holdout"]]
    x_representative = snapshot.x[split["train"][: settings.export.representative_examples]]
    model = load_keras_model(training.model_path)

    out_dir = settings.runs_dir / training.run_id / "exports"
    if out_dir.exists():  # left by an earlier attempt
        shutil.rmtree(out_dir)
    reference, keras_latency = keras_reference(model, x_holdout, settings.export.latency_repeats)
    family = family_for(snapshot.meta.family)
    results = export_model(
        model,
        snapshot.meta.family,
        out_dir,
        x_holdout,
        y_holdout,
        x_representative,
        settings.export,
        reference_outputs=reference,
        task=family.task,
        int8_quantisation=family.int8_quantisation,
    )
    report = ExportReport(
        run_id=training.run_id,
        keras_size_bytes=folder_size(Path(training.model_path)),
        keras_latency_ms_p50=keras_latency,
        examples=len(x_holdout),
        results=results,
    )

    mlflow_client = client(settings)
    for result in report.passed():
        path = Path(str(result.path))
        if path.is_dir():
            mlflow_client.log_artifacts(training.run_id, str(path), artifact_path=f"exports/{result.format}")
        else:
            mlflow_client.log_artifact(training.run_id, str(path), artifact_path=f"exports/{result.format}")
    metrics = [metric for result in results for metric in _metrics(result)]
    if metrics:
        mlflow_client.log_batch(training.run_id, metrics=metrics)
    for result in results:
        mlflow_client.set_tag(training.run_id, f"lockgate.export.{result.format}", result.status)
    mlflow_client.log_text(training.run_id, report.model_dump_json(indent=2), "exports/report.json")
    publish_markdown("model-exports", export_markdown(report), "Exported formats checked against the Keras model")
    return report


def _metrics(result: ExportResult) -> list[Any]:
    # deferred: MLflow takes seconds to import; only the steps that talk to the tracking store need it
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    values = {
        "agreement": result.agreement,
        "max_abs_difference": result.max_abs_difference,
        "size_bytes": result.size_bytes,
        "latency_ms_p50": result.latency_ms_p50,
    }
    return [
        Metric(key=f"export_{result.format}_{name}", value=float(value), timestamp=timestamp, step=0)
        for name, value in values.items()
        if value is not None
    ]


export_task = pipeline_task("export model", timeout_seconds=1800)(export_model_formats)

"""Step 2: train the family's model, resumably, and log it to the MLflow run.

Given a teacher (the champion), it trains a narrower student on the teacher's
softened predictions instead: distillation, judged by the same later gates."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from lockgate.data import read_snapshot
from lockgate.evaluation import champion_outputs
from lockgate.plots import training_curves
from lockgate.records import ChampionRef, TrainingResult
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import client
from lockgate.training import fit, training_processes


def train_model(
    run_id: str, snapshot_folder: str, settings: LockgateSettings | None = None, teacher: ChampionRef | None = None
) -> TrainingResult:
    import keras
    import mlflow

    settings = settings or get_settings()
    keras.utils.disable_interactive_logging()  # progress goes to the run log, not bars
    snapshot = read_snapshot(snapshot_folder)
    mlflow_client = client(settings)
    out_dir = settings.runs_dir / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = settings.checkpoints_dir / run_id
    from lockgate.callbacks import EpochReporter, progress_logger

    teacher_outputs = None
    if teacher is not None:
        every_row = np.arange(len(snapshot.y))
        teacher_outputs = champion_outputs(teacher, snapshot.inputs_for(teacher.data_meta, every_row), snapshot.class_names)
        mlflow_client.log_param(run_id, "distilled_from", teacher.uri)
        for key, value in settings.distillation.model_dump().items():
            mlflow_client.log_param(run_id, f"distillation.{key}", value)
    processes, note = training_processes(snapshot.meta.family, settings.training.workers)
    if note:
        progress_logger().warning(note)
    if processes > 1:
        from lockgate.distributed import fit_across_processes

        # Rank 0 reports each epoch to the MLflow run itself.
        outcome = fit_across_processes(
            snapshot_folder, settings, out_dir / "workers", backup_dir, run_id, teacher_outputs,
            progress=progress_logger().info,
        )
    else:
        callbacks = [EpochReporter(mlflow_client, run_id, settings.training.epochs)]
        outcome = fit(
            snapshot, settings.training, backup_dir=backup_dir, callbacks=callbacks,
            teacher_outputs=teacher_outputs, distillation=settings.distillation,
        )
    model_path = out_dir / "model.keras"
    outcome.model.save(model_path)
    if outcome.history:  # a forest has no epochs to draw
        figure_path = training_curves(outcome.history, out_dir / "training_curves.png", outcome.resumed_from_epoch)
        mlflow_client.log_artifact(run_id, str(figure_path), artifact_path="plots")
    mlflow_client.log_param(run_id, "architecture", outcome.architecture)
    mlflow_client.set_tag(run_id, "lockgate.architecture_choice", outcome.choice[:5000])
    mlflow_client.log_param(run_id, "device", outcome.placement.description[:500])
    mlflow_client.log_param(run_id, "training.processes", processes)
    mlflow_client.log_param(run_id, "training.global_batch", outcome.global_batch)
    mlflow_client.log_metric(run_id, "epochs_run", outcome.epochs_run)
    mlflow_client.log_metric(run_id, "train_seconds", outcome.seconds)
    with mlflow.start_run(run_id=run_id):
        model_uri = _log_model(outcome.model, snapshot.x[:5])
    return TrainingResult(
        run_id=run_id,
        model_path=str(model_path),
        model_uri=model_uri,
        epochs_run=outcome.epochs_run,
        resumed_from_epoch=outcome.resumed_from_epoch,
        parameters=int(outcome.model.count_params()),
        seconds=round(outcome.seconds, 3),
        device=outcome.placement.description + f", keras {keras.__version__}",
        processes=processes,
        global_batch=outcome.global_batch or None,
        note=note,
        architecture=outcome.architecture,
        choice=outcome.choice,
    )


def _log_model(model: Any, example: np.ndarray) -> str:
    """Log with a signature and an input example, naming exact requirements."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    from lockgate.models import predict_outputs

    signature = infer_signature(example, predict_outputs(model, example))
    requirements = [f"keras=={version('keras')}", f"numpy=={version('numpy')}"]
    if keras.backend.backend() == "tensorflow":
        import mlflow.tensorflow

        requirements.append(f"tensorflow-cpu=={version('tensorflow-cpu')}")
        info = mlflow.tensorflow.log_model(
            model, name="model", signature=signature, input_example=example, pip_requirements=requirements
        )
    else:  # the keras flavour cannot write an input example (it crashes)
        import mlflow.keras

        info = mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)
    return info.model_uri


train_task = pipeline_task("train model", timeout_seconds=3600)(train_model)

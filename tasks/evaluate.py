"""Step 3: score the challenger, and the champion, on the same holdout."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from lockgate.data import read_snapshot, split_for
from lockgate.evaluation import champion_outputs, measure_latency
from lockgate.families import family_for
from lockgate.models import load_keras_model, predict_outputs
from lockgate.records import ChampionRef, EvaluationReport, TrainingResult
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import client


def evaluate_model(
    training: TrainingResult,
    snapshot_folder: str,
    champion: ChampionRef | None = None,
    settings: LockgateSettings | None = None,
) -> EvaluationReport:
    settings = settings or get_settings()
    snapshot = read_snapshot(snapshot_folder)
    family = family_for(snapshot.meta.family)
    split = split_for(snapshot.y, settings.training)
    x, y = snapshot.x[split["holdout"]], snapshot.y[split["holdout"]]
    names = snapshot.class_names
    model = load_keras_model(training.model_path)
    outputs = predict_outputs(model, x)
    scored = family.score(y, outputs, names)
    metrics = scored["metrics"] | measure_latency(model, x)
    baseline_outputs, baseline = family.no_skill(snapshot.y[split["train"]], len(y), names)
    baseline_loss = family.example_losses(y, baseline_outputs)
    metrics[f"no_skill_{'mse' if family.task == 'regression' else 'brier_score'}"] = float(baseline_loss.mean())

    champion_metrics, champion_pred, champion_loss = None, None, None
    if champion is not None:
        champion_x = snapshot.inputs_for(champion.data_meta, split["holdout"])
        champion_raw = champion_outputs(champion, champion_x, names)
        champion_scored = family.score(y, champion_raw, names)
        champion_metrics, champion_pred = champion_scored["metrics"], champion_scored["predictions"]
        champion_loss = family.example_losses(y, champion_raw)

    out_dir = settings.runs_dir / training.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = out_dir / "holdout_predictions.npz"
    np.savez(
        predictions,
        y_true=y,
        challenger_pred=scored["predictions"],
        champion_pred=champion_pred if champion_pred is not None else np.array([], dtype=y.dtype),
        challenger_loss=family.example_losses(y, outputs),
        champion_loss=champion_loss if champion_loss is not None else np.array([], dtype="float64"),
        baseline_loss=baseline_loss,
    )
    figure = family.holdout_figure(y, scored, names, out_dir)
    mlflow_client = client(settings)
    mlflow_client.log_batch(
        training.run_id,
        metrics=[_metric(f"holdout_{k}", v) for k, v in metrics.items()]
        + [_metric(f"champion_holdout_{k}", v) for k, v in (champion_metrics or {}).items()],
    )
    mlflow_client.log_artifact(training.run_id, str(figure), artifact_path="plots")
    if scored["per_class"]:
        mlflow_client.log_text(training.run_id, json.dumps(scored["per_class"], indent=2), "evaluation/per_class.json")
    return EvaluationReport(
        run_id=training.run_id,
        family=family.name,
        metrics=metrics,
        per_class=scored["per_class"],
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        predictions_file=str(predictions),
        confusion_matrix_image=str(figure),
        baseline=baseline,
    )


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric

    return Metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=0)


evaluate_task = pipeline_task("evaluate model", timeout_seconds=900)(evaluate_model)


"""Scoring models on a holdout: metrics by the family's task, in-process
latency, and the champion's outputs on the same rows.

`evaluate` is the evaluate step's computation: it scores the challenger (and
the champion) and writes the predictions file and the holdout figure, logging
nothing; its `Evaluation` holds the report, the scores the gate decides from,
and the run record the step logs."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.records import ChampionRef, EvaluationReport, TrainingResult
from lockgate.core.settings import LockgateSettings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.export import median_latency_ms
from lockgate.families import family_for
from lockgate.models.architectures import load_keras_model, predict_outputs, register_custom_layers
from lockgate.registry.tracking import RunRecord
from lockgate.scoring.gate import HoldoutScores, holdout_scores
from lockgate.training.reference import write_reference


def measure_latency(model: Any, x: np.ndarray, repeats: int = 30) -> dict[str, float]:
    """Median single-example latency and full-batch throughput, in-process."""
    latency = median_latency_ms(lambda one: predict_outputs(model, one), x[:1], repeats)
    started = time.perf_counter()
    predict_outputs(model, x)
    batch_seconds = time.perf_counter() - started
    return {
        "latency_ms_p50": latency,
        "throughput_per_s": float(len(x) / batch_seconds) if batch_seconds > 0 else 0.0,
    }


def load_champion(champion: ChampionRef) -> Any:
    """The champion's Keras model, from the tracking store MLflow points at."""
    import mlflow.tensorflow  # deferred: heavy; only a run with a champion loads one

    register_custom_layers()
    return mlflow.tensorflow.load_model(champion.uri)


def champion_outputs(champion: ChampionRef, x: np.ndarray, names: list[str]) -> np.ndarray:
    """The champion's outputs on `x`; class probabilities are re-ordered into
    the classes `names` of the data at hand (a class it never saw gets 0)."""
    raw = predict_outputs(load_champion(champion), x)
    return family_for(champion.data_meta.family).target.align_outputs(raw, list(champion.data_meta.class_names), names)


def saved_size_bytes(model: Any) -> int:
    """Bytes of the model saved as a .keras file."""
    with tempfile.TemporaryDirectory(prefix="lockgate-size-") as folder:
        saved = Path(folder) / "model.keras"
        model.save(saved)
        return saved.stat().st_size


@dataclass(frozen=True)
class Evaluation:
    """The challenger (and the champion) scored on the holdout: the report
    (small: names, paths, numbers), the scores the gate decides from (the
    holdout's arrays, in memory), and the holdout figure."""

    report: EvaluationReport
    scores: HoldoutScores
    figure: Path

    def run_record(self) -> RunRecord:
        """What the evaluate step logs: every metric as holdout_*, the
        champion's as champion_holdout_*, the figure, the per-class table."""
        report = self.report
        metrics = {f"holdout_{k}": v for k, v in report.metrics.items()}
        metrics |= {f"champion_holdout_{k}": v for k, v in (report.champion_metrics or {}).items()}
        texts = {"evaluation/per_class.json": json.dumps(report.per_class, indent=2)} if report.per_class else {}
        artifacts = [(str(self.figure), "plots")]
        if report.monitoring_reference:
            artifacts.append((report.monitoring_reference, None))
        return RunRecord(metrics=metrics, artifacts=artifacts, texts=texts)


def evaluate(
    training: TrainingResult, snapshot_folder: str, champion: ChampionRef | None, settings: LockgateSettings
) -> Evaluation:
    """Score the trained model, and the champion when there is one, on the
    snapshot's holdout split, beside the no-skill baseline. Writes the
    predictions file (holdout_predictions.npz) and the holdout figure under
    the run's folder, with the held-out rows the monitor compares served
    traffic with (lockgate/training/reference.py); logs nothing."""
    snapshot = read_snapshot(snapshot_folder)
    family = family_for(snapshot.meta.family)
    target = family.target
    split = split_for(snapshot.y, settings.training)
    x, y = snapshot.x[split["holdout"]], snapshot.y[split["holdout"]]
    names = snapshot.class_names
    model = load_keras_model(training.model_path)
    outputs = predict_outputs(model, x)
    scored = target.score(y, outputs, names)
    metrics = scored["metrics"] | measure_latency(model, x)
    baseline_outputs, baseline = target.no_skill(snapshot.y[split["train"]], len(y), names)
    baseline_loss = target.example_losses(y, baseline_outputs)
    metrics[f"no_skill_{'mse' if target.name == 'regression' else 'brier_score'}"] = float(baseline_loss.mean())

    champion_metrics, champion_pred, champion_loss = None, None, None
    if champion is not None:
        champion_x = snapshot.inputs_for(champion.data_meta, split["holdout"])
        champion_raw = champion_outputs(champion, champion_x, names)
        champion_scored = target.score(y, champion_raw, names)
        champion_metrics, champion_pred = champion_scored["metrics"], champion_scored["predictions"]
        champion_loss = target.example_losses(y, champion_raw)

    out_dir = settings.runs_dir / training.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions_file = out_dir / "holdout_predictions.npz"
    # The arrays the gate decides from, exactly as the file keeps them.
    predictions = {
        "y_true": y,
        "challenger_pred": scored["predictions"],
        "champion_pred": champion_pred if champion_pred is not None else np.array([], dtype=y.dtype),
        "challenger_loss": target.example_losses(y, outputs),
        "champion_loss": champion_loss if champion_loss is not None else np.array([], dtype="float64"),
        "baseline_loss": baseline_loss,
    }
    np.savez(predictions_file, **predictions)
    figure = target.holdout_figure(y, scored, names, out_dir)
    reference = write_reference(snapshot, split, model, out_dir, settings.monitor.reference_rows, settings.training.seed)
    report = EvaluationReport(
        run_id=training.run_id,
        family=family.name,
        task=family.task,
        metrics=metrics,
        per_class=scored["per_class"],
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        predictions_file=str(predictions_file),
        confusion_matrix_image=str(figure),
        baseline=baseline,
        monitoring_reference=str(reference),
    )
    return Evaluation(report=report, scores=holdout_scores(report, predictions), figure=Path(figure))

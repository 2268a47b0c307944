"""Step 3b: explain the challenger: attributions checked for completeness,
permutation importance for tables, pictures, and its ranking against the
champion's (read from the champion run's recorded explanation)."""

from __future__ import annotations

from lockgate.core.records import ChampionRef, Explanation, TrainingResult
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.explaining.explain import EXPLANATION_FOLDER, EXPLANATION_RECORD, explain
from lockgate.models.architectures import load_keras_model
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import RunRecord, download_json, record


def champion_explanation(champion: ChampionRef | None, settings: LockgateSettings) -> Explanation | None:
    """The champion's recorded explanation, or None where its run has none
    (registered before explanations, or with them turned off)."""
    if champion is None:
        return None
    try:
        return Explanation.model_validate(
            download_json(settings, champion.run_id, f"{EXPLANATION_FOLDER}/{EXPLANATION_RECORD}"))
    except Exception:  # noqa: BLE001 - a missing artifact is reported as "could not tell", not a failed run
        return None


def explain_model(
    training: TrainingResult,
    snapshot_folder: str,
    champion: ChampionRef | None = None,
    settings: LockgateSettings | None = None,
) -> Explanation:
    settings = settings or get_settings()
    snapshot = read_snapshot(snapshot_folder)
    holdout = split_for(snapshot.y, settings.training)["holdout"]
    run_folder = settings.runs_dir / training.run_id
    explained = explain(load_keras_model(training.model_path), snapshot, holdout, settings.explain,
                        settings.training.seed, run_folder, champion_explanation(champion, settings),
                        champion.version if champion else None)
    metrics = {"explanation_seconds": explained.seconds}
    for key in ("steps", "complete_share", "agreement_ndcg", "champion_ndcg"):
        value = getattr(explained, key)
        if value is not None:
            metrics[f"explanation_{key}"] = float(value)
    record(training.run_id, settings, RunRecord(metrics=metrics, artifacts=[(explained.folder, None)]))
    print(f"Explained with {explained.method}" + (f" ({explained.steps} steps, {explained.complete_share:.0%} complete)"
                                                  if explained.steps else "")
          + (f"; {explained.champion_note}" if explained.champion_note else ""))
    return explained


explain_task = pipeline_task("explain model", timeout_seconds=900)(explain_model)

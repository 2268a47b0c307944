"""Step 3: score the challenger, and the champion, on the same holdout.

The step returns the `Evaluation`: the small report for the flow's result,
and the holdout scores the gate step decides from, in memory (numpy arrays,
never serialised: the step's result is not persisted). The predictions file
is still written, for people and tools."""

from __future__ import annotations

from lockgate.core.records import ChampionRef, TrainingResult
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import record
from lockgate.training.evaluation import Evaluation, evaluate


def evaluate_model(
    training: TrainingResult,
    snapshot_folder: str,
    champion: ChampionRef | None = None,
    settings: LockgateSettings | None = None,
) -> Evaluation:
    settings = settings or get_settings()
    evaluation = evaluate(training, snapshot_folder, champion, settings)
    record(training.run_id, settings, evaluation.run_record())
    return evaluation


evaluate_task = pipeline_task("evaluate model", timeout_seconds=900)(evaluate_model)

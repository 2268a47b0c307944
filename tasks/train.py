"""Step 2: train the family's model, resumably, and log it to the MLflow run.

Given a teacher (the champion), it trains a narrower student on the teacher's
softened predictions instead: distillation, judged by the same later gates."""

from __future__ import annotations

from lockgate.core.records import ChampionRef, TrainingResult
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import client, record
from lockgate.training.fit import train


def train_model(
    run_id: str, snapshot_folder: str, settings: LockgateSettings | None = None, teacher: ChampionRef | None = None
) -> TrainingResult:
    # deferred: lockgate.training.callbacks loads keras, which only a training step needs
    from lockgate.training.callbacks import EpochReporter, progress_logger

    settings = settings or get_settings()
    reporter = EpochReporter(client(settings), run_id, settings.training.epochs)  # each epoch, as it ends
    trained = train(run_id, snapshot_folder, settings, teacher, callbacks=[reporter], log=progress_logger())
    model_uri = record(run_id, settings, trained.run_record)
    return trained.result.model_copy(update={"model_uri": model_uri})


train_task = pipeline_task("train model", timeout_seconds=3600)(train_model)

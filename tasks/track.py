"""Open the MLflow run that every later step of one pipeline run writes into.

Keyed by the pipeline run's id: a retried step finds the same MLflow run
instead of starting a second one.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lockgate.core.records import ValidationSummary
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import client, code_version, experiment_client
from lockgate.validation.validate import validation_record


def open_run(
    summary: ValidationSummary,
    model_name: str,
    pipeline_id: str,
    settings: LockgateSettings | None = None,
    data_source: str = "",
    target: str | None = None,
) -> str:
    """The pipeline run's MLflow run; `data_source` and `target` (as the run
    was asked for them) are kept so that a retraining on drift reads the
    same source again."""
    settings = settings or get_settings()
    experiment_id, mlflow_client = experiment_client(settings)
    existing = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`lockgate.pipeline_id` = '{pipeline_id}'", max_results=1
    )
    # A retry finds the run an earlier attempt opened, and completes what that
    # attempt may not have logged (the same values again are no-ops).
    run_id = existing[0].info.run_id if existing else mlflow_client.create_run(
        experiment_id,
        run_name=f"{model_name}-{pipeline_id[:8]}",
        tags={
            "lockgate.pipeline_id": pipeline_id,
            "lockgate.model_name": model_name,
            "lockgate.dataset": summary.dataset,
            "lockgate.data_hash": summary.data_hash or "",
            "lockgate.config_hash": settings.training_fingerprint(),
            "lockgate.code_version": code_version(),
            "lockgate.validation.validate": summary.verdict(),
            # a file as an absolute path: the retraining may run in another folder
            "lockgate.data_source": str(Path(data_source).resolve()) if data_source and Path(data_source).exists() else data_source,
            "lockgate.target": target or "",
        },
    ).info.run_id
    opening = validation_record(summary)
    opening.params |= {f"training.{key}": value for key, value in settings.training.model_dump(mode="json").items()}
    opening.log(mlflow_client, run_id)
    return run_id


open_run_task = pipeline_task("open tracking run", timeout_seconds=120)(open_run)


@contextmanager
def finish_run(run_id: str, settings: LockgateSettings) -> Iterator[None]:
    """Close the MLflow run as FINISHED, or FAILED if a step raised."""
    try:
        yield
    except BaseException:
        _set_status(run_id, settings, "FAILED")
        raise
    _set_status(run_id, settings, "FINISHED")


def _set_status(run_id: str, settings: LockgateSettings, status: str) -> None:
    try:
        client(settings).set_terminated(run_id, status=status)
    except Exception:  # the tracking server may be the thing that failed
        logging.getLogger("lockgate").warning("could not mark MLflow run %s as %s", run_id, status)

"""Hyper-parameter trials: one validated snapshot trained with several learning
rates, each trial a Prefect task. With `deploy.trials_runner: dask` the trials
run in parallel on a Dask cluster (a local one, or the scheduler at
`deploy.dask_address`); otherwise one after another.

Trials only compare; they register nothing. Retrain with the winner through
the gated pipeline (`LOCKGATE_TRAINING__LEARNING_RATE=...`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows.training import ValidationFailed
from lockgate.core.settings import LockgateSettings, TrainingSettings, get_settings
from lockgate.data.datasets import read_snapshot
from lockgate.training.fit import fit_network
from tasks.validate import validate_task


class TrialResult(BaseModel):
    learning_rate: float
    val_accuracy: float
    val_loss: float
    epochs_run: int
    seconds: float
    worker: str  # host:pid of the process that trained it


@task(name="trial", cache_policy=NO_CACHE, persist_result=False)
def run_trial(snapshot_folder: str, training: TrainingSettings) -> TrialResult:
    """Train one configuration of the network and report its best validation
    scores (a learning rate is a network's; a table's forest is not tried)."""
    outcome = fit_network(read_snapshot(snapshot_folder), training)
    return TrialResult(
        learning_rate=training.learning_rate,
        val_accuracy=max(outcome.history["val_accuracy"]),
        val_loss=min(outcome.history["val_loss"]),
        epochs_run=outcome.epochs_run,
        seconds=round(outcome.seconds, 3),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


@flow(name="lockgate-trials", log_prints=True)
def trials_flow(
    data: str, target: str | None, learning_rates: list[float], settings: LockgateSettings
) -> list[TrialResult]:
    """Validate once, then train every learning rate; best first."""
    summary = validate_task(data, target, None, settings)
    if not summary.success:
        raise ValidationFailed(summary)
    futures = [
        run_trial.submit(summary.snapshot, settings.training.model_copy(update={"learning_rate": rate}))
        for rate in learning_rates
    ]
    results = sorted((future.result() for future in futures), key=lambda r: (-r.val_accuracy, r.val_loss))
    for result in results:
        print(f"learning rate {result.learning_rate:g}: val_accuracy {result.val_accuracy:.4f} "
              f"val_loss {result.val_loss:.4f} ({result.epochs_run} epochs on {result.worker})")
    return results


def task_runner_for(settings: LockgateSettings) -> Any:
    """The task runner the settings ask for: Dask for parallel trials, else sequential."""
    if settings.deploy.trials_runner == "dask":
        # deferred: Dask's task runner loads only when trials run on a Dask cluster
        from prefect_dask import DaskTaskRunner

        if settings.deploy.dask_address:
            return DaskTaskRunner(address=settings.deploy.dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            # One thread per worker process: TensorFlow parallelises inside a trial.
            cluster_kwargs={"n_workers": settings.deploy.dask_workers, "threads_per_worker": 1,
                            "processes": True, "dashboard_address": None},
        )
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


def run_trials(
    data: str, learning_rates: list[float], target: str | None = None, settings: LockgateSettings | None = None
) -> list[TrialResult]:
    """Run the trials with the task runner chosen in settings."""
    settings = settings or get_settings()
    return trials_flow.with_options(task_runner=task_runner_for(settings))(data, target, learning_rates, settings)

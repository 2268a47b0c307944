"""Retraining as Prefect deployments: one on a cron schedule, one on demand.

`retrain` is the flow both deployments run. Its parameters are plain, typed
and bounded, so the Prefect server validates them and its UI draws a run form
from them; it turns them into settings and calls the training pipeline.
`register_deployments` is what `lockgate deploy` calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect import flow
from pydantic import Field

from flows.training import training_pipeline
from lockgate.core.records import PipelineResult
from lockgate.core.settings import LockgateSettings, apply_environment, get_settings
from lockgate.families import FAMILIES

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_NAME = "lockgate-retrain"
ENTRYPOINT = "flows/deployments.py:retrain"
SCHEDULED = "scheduled"
ON_DEMAND = "on-demand"

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# The run form's choice of family, from the registry: "auto" or a family's name.
FamilyChoice = Literal[("auto", *FAMILIES)]  # type: ignore[valid-type]


@flow(name=FLOW_NAME, log_prints=True)
def retrain(
    data: Annotated[str, Field(min_length=1)] = "digits",
    target: str | None = None,
    epochs: Annotated[int, Field(ge=1, le=1000)] = 20,
    min_accuracy: Fraction | None = None,
    min_macro_f1: Fraction | None = None,
    score_margin: Annotated[float, Field(ge=0.0, le=2.0)] = 0.03,
    model_name: str | None = None,
    family: FamilyChoice = "auto",
    distil: bool = False,
    force: bool = False,
) -> PipelineResult:
    """Retrain with the given data and thresholds; promote only through the gate.

    Args:
        data: digits, mnist, cifar10, imdb, or a table, .npz file, image or text folder the worker can read
        target: the label column of a table
        epochs: maximum training epochs (early stopping may end sooner)
        min_accuracy: the gate's lowest acceptable holdout accuracy (none by default: a first model must beat no skill)
        min_macro_f1: the gate's lowest acceptable holdout macro-F1 (none by default)
        score_margin: how much worse than the champion's holdout Brier score a challenger's may be (0 to 2)
        model_name: the registered model name (default lockgate-<data set>)
        family: the model family; auto decides from the data
        distil: train a narrower student of the current champion instead
        force: train even if the champion was trained on exactly this data, settings and code
    """
    settings = settings_for_run(epochs, min_accuracy, min_macro_f1, score_margin, family)
    apply_environment(settings)
    return training_pipeline(
        data=data, target=target, model_name=model_name, settings=settings, distil=distil, force=force
    )


def settings_for_run(
    epochs: int, min_accuracy: float | None, min_macro_f1: float | None, score_margin: float, family: str = "auto"
) -> LockgateSettings:
    """The worker's settings with this run's parameters laid over them."""
    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = epochs
    settings.training.family = family
    settings.gate.min_accuracy = min_accuracy
    settings.gate.min_macro_f1 = min_macro_f1
    settings.gate.score_margin = score_margin
    return settings


def register_deployments(settings: LockgateSettings, work_pool: str | None = None) -> dict[str, UUID]:
    """Create or update both deployments on the server in PREFECT_API_URL.

    The flow is deployed from this checkout's folder, so a worker must see the
    code at the same path (the same machine, or the same image).
    """
    pool = work_pool or settings.deploy.work_pool
    source = retrain.from_source(source=str(REPO_ROOT), entrypoint=ENTRYPOINT)
    job_variables: dict[str, Any] = {"image": settings.deploy.image} if settings.deploy.image else {}
    scheduled_parameters = {"data": settings.deploy.schedule_data, "target": settings.deploy.schedule_target,
                            "epochs": settings.training.epochs, "min_accuracy": settings.gate.min_accuracy,
                            "min_macro_f1": settings.gate.min_macro_f1,
                            "score_margin": settings.gate.score_margin}
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.client.schemas.schedules import CronSchedule

    # One run of each deployment at a time; runs that still overlap (the
    # schedule and a UI trigger, or a CLI run) are made safe by the champion's
    # compare-and-swap (lockgate/registry/promotion.py).
    shared: dict[str, Any] = {"work_pool_name": pool, "job_variables": job_variables, "concurrency_limit": 1,
                              "build": False, "push": False, "print_next_steps": False}
    ids = {
        SCHEDULED: source.deploy(
            name=SCHEDULED,
            schedule=CronSchedule(cron=settings.deploy.schedule_cron, timezone=settings.deploy.schedule_timezone),
            parameters=scheduled_parameters,
            description="Retrains on a schedule with the thresholds from settings.",
            tags=["lockgate", "scheduled"],
            **shared,
        ),
        ON_DEMAND: source.deploy(
            name=ON_DEMAND,
            description="Retrains when asked, from the UI's run form, the CLI or CI.",
            tags=["lockgate", "on-demand"],
            **shared,
        ),
    }
    return ids

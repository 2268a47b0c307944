"""Retraining as Prefect deployments: one on a cron schedule, one on demand,
and the monitor on its own schedule with the automation that closes the loop.

`retrain` is the flow both retraining deployments run. Its parameters are
plain, typed and bounded, so the Prefect server validates them and its UI
draws a run form from them; it turns them into settings and calls the
training pipeline. `register_deployments` is what `lockgate deploy` calls.

The loop: the `lockgate-monitor` deployment checks the served champions; a
drift is a `lockgate.drift.detected` event; the automation `RETRAIN_ON_DRIFT`
runs the on-demand deployment on the champion's data source, at most once
per model per cool-down (one bucket per model, `within` the cool-down,
started `schedule_after` the event). The retraining promotes only through
every gate, and its decision is tagged on the drift's MLflow record.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect import flow
from pydantic import Field

from flows.monitor import MONITOR_FLOW, monitor
from flows.training import training_pipeline
from lockgate.core.records import PipelineResult
from lockgate.core.settings import LockgateSettings, apply_environment, get_settings
from lockgate.families import FAMILIES
from tasks.monitor import DRIFT_EVENT, link_retraining_task

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_NAME = "lockgate-retrain"
ENTRYPOINT = "flows/deployments.py:retrain"
MONITOR_ENTRYPOINT = "flows/monitor.py:monitor"
SCHEDULED = "scheduled"
ON_DEMAND = "on-demand"
WATCH = "watch"  # the monitor's scheduled deployment
RETRAIN_ON_DRIFT = "lockgate-retrain-on-drift"

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
    drift_record: str | None = None,
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
        drift_record: the monitor's MLflow run that found the drift this run answers (set by the automation)
    """
    settings = settings_for_run(epochs, min_accuracy, min_macro_f1, score_margin, family)
    if drift_record:
        # The data moved away from the champion's: that is why this run exists, and the
        # monitor has recorded how. Shifted means and category shares are reported, not
        # blocking; every other check of the data, and every gate, still holds.
        settings.validation.drift_severity = "warning"
    apply_environment(settings)
    result = training_pipeline(
        data=data, target=target, model_name=model_name, settings=settings, distil=distil, force=force
    )
    if drift_record:
        # deferred: the run's id is known only inside a Prefect run
        from prefect.runtime import flow_run

        decision = result.gate.headline() if result.gate else (result.note or result.status)
        link_retraining_task(drift_record, str(flow_run.id), result.status, decision, result.run_id, settings)
    return result


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
        WATCH: monitor.from_source(source=str(REPO_ROOT), entrypoint=MONITOR_ENTRYPOINT).deploy(
            name=WATCH,
            schedule=CronSchedule(cron=settings.monitor.schedule_cron, timezone=settings.deploy.schedule_timezone),
            description="Checks every served champion's traffic against its held-out rows; a drift is an event.",
            tags=["lockgate", "monitor"],
            **shared,
        ),
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
    ids[RETRAIN_ON_DRIFT] = register_retraining_automation(ids[ON_DEMAND], settings)
    return ids


def register_retraining_automation(deployment_id: UUID, settings: LockgateSettings) -> UUID:
    """Create (or replace) the automation that retrains a model on its drift
    event: one bucket per model (`for_each` its resource id), firing on the
    first event and ignoring the rest `within` the cool-down."""
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    cooldown = timedelta(minutes=settings.monitor.cooldown_minutes)
    automation = Automation(
        name=RETRAIN_ON_DRIFT,
        description=(f"Retrains a model through every gate when {MONITOR_FLOW} finds drift; "
                     f"at most once per model every {settings.monitor.cooldown_minutes:g} minutes."),
        trigger=EventTrigger(
            expect={DRIFT_EVENT}, match={"prefect.resource.id": "lockgate.model.*"},
            for_each={"prefect.resource.id"}, posture=Posture.Reactive, threshold=1, within=cooldown,
        ),
        actions=[RunDeployment(
            source="selected", deployment_id=deployment_id, schedule_after=timedelta(seconds=settings.monitor.retrain_delay_s),
            parameters={"data": "{{ event.payload.data }}", "target": "{{ event.payload.target }}",
                        "model_name": "{{ event.payload.model_name }}", "epochs": settings.monitor.retrain_epochs,
                        "drift_record": "{{ event.payload.monitor_run_id }}"},
        )],
    )
    try:
        Automation.read(name=RETRAIN_ON_DRIFT).delete()
    except ValueError:  # none yet
        pass
    return automation.create().id

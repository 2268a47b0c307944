"""The gated training pipeline: validate, train, evaluate, explain, gate,
export, register, document, package, promote. The flow only composes steps and decides; the
steps do."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from lockgate.core.records import (
    ChampionRef,
    CheckResult,
    ModelChoice,
    PackagedService,
    PipelineResult,
    RegisteredModel,
    TrainingResult,
    ValidationSummary,
)
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.reporting import pipeline_markdown, publish_markdown, validation_markdown
from tasks.champion import choose_model_task, find_champion_task
from tasks.distil import compare_task
from tasks.document import document_task
from tasks.evaluate import evaluate_task
from tasks.explain import explain_task
from tasks.export import export_task
from tasks.gate import gate_task
from tasks.package import package_task
from tasks.promote import promote_task, withdraw_task
from tasks.register import register_task
from tasks.track import finish_run, open_run_task
from tasks.train import train_task
from tasks.validate import identify_task, validate_task


class NoChampionToDistil(Exception):
    """Distillation needs a champion to learn from."""


class ValidationFailed(Exception):
    """The data did not pass validation; nothing was trained or registered."""

    def __init__(self, summary: ValidationSummary) -> None:
        problems = "; ".join(f"{c.name}: {c.message}" for c in summary.blocking_failures)
        super().__init__(f"validation of {summary.dataset} failed: {problems}")
        self.summary = summary


@flow(name="lockgate-training", log_prints=True)
def training_pipeline(
    data: str = "digits",
    target: str | None = None,
    model_name: str | None = None,
    settings: LockgateSettings | None = None,
    distil: bool = False,
    force: bool = False,
) -> PipelineResult:
    """Train on `data` and promote the model only if it passes every gate.

    With `distil`, the model trained is a narrower student of the current
    champion, learning from its softened predictions; it must pass the same
    gates, against that champion, to replace it. A run on exactly the data,
    settings and code the champion was trained with ends without training,
    unless `force`."""
    settings = settings or get_settings()
    choice = choose_model_task(data, target, model_name, settings)
    print(choice.sentence())
    name = choice.name

    champion = find_champion_task(name, settings)
    if distil and champion is None:
        raise NoChampionToDistil(f"{name} has no champion to distil: promote one with `lockgate run` first")
    if champion is not None and champion.trained_on is not None and not (force or distil):
        identity = identify_task(data, target, champion.data_meta, settings)
        if identity == champion.trained_on:
            return _unchanged(choice, champion, settings)
    summary = validate_task(data, target, champion.data_meta if champion else None, settings)
    publish_markdown("data-validation", validation_markdown(summary), "Data validation report")
    if not summary.success:
        raise ValidationFailed(summary)

    run_id = open_run_task(summary, name, str(flow_run.id or "local"), settings, data, target)
    result = PipelineResult(
        status="rejected", validation=summary, model=choice, run_id=run_id, tracking_uri=settings.tracking_uri
    )
    with finish_run(run_id, settings):
        training = result.training = train_task(run_id, summary.snapshot, settings, champion if distil else None)
        # The holdout scores go to the gate in memory; the flow's result keeps the report.
        evaluation = evaluate_task(training, summary.snapshot, champion, settings)
        result.evaluation = evaluation.report
        if distil:
            result.distillation = compare_task(training, result.evaluation, champion, summary.snapshot, settings)
        if settings.explain.enabled:
            result.explanation = explain_task(training, summary.snapshot, champion, settings)
        result.gate = gate_task(evaluation.report, evaluation.scores, settings, result.explanation)
        if result.gate.promote:
            result.exports = export_task(training, summary.snapshot, settings)
            registered = register_task(training, result.gate, summary, name, settings, result.exports)
            result.card = document_task(registered, training, result.evaluation, result.gate, summary, result.exports,
                                        result.explanation, champion, settings)
            _package_and_promote(result, registered, training, summary, settings)
    publish_markdown("pipeline-summary", pipeline_markdown(result), "Lockgate run summary")
    return result


MAX_REJUDGEMENTS = 5


def _package_and_promote(
    result: PipelineResult, registered: RegisteredModel, training: TrainingResult, summary: ValidationSummary,
    settings: LockgateSettings,
) -> None:
    """Package, verify and promote as one unit: the alias moves only if the
    champion is still the one the challenger was judged against; if another
    run moved it, judge again against the new champion. A version that fails
    or loses is withdrawn (marked, its Bento removed), never left half-made."""
    package = None
    try:
        package = package_task(
            registered, training, result.evaluation, summary.snapshot, summary.data_hash, result.exports, settings,
            result.card,
        )
        outcome = promote_task(registered, package, result.evaluation.champion_version, result.gate, settings)
        for _ in range(MAX_REJUDGEMENTS):
            if outcome.promoted or not result.gate.promote:
                break
            print(f"The champion moved to v{outcome.champion_version} while this run was judged; judging again")
            champion = find_champion_task(registered.name, settings)
            evaluation = evaluate_task(training, summary.snapshot, champion, settings)
            result.evaluation = evaluation.report
            result.gate = gate_task(evaluation.report, evaluation.scores, settings, result.explanation)
            if result.gate.promote:
                outcome = promote_task(registered, package, result.evaluation.champion_version, result.gate, settings)
    except Exception as failure:
        _withdraw(registered, package, f"failed: {type(failure).__name__}: {failure}", settings)
        raise
    if outcome.promoted:
        result.registered, result.package, result.replaced, result.status = registered, package, outcome.replaced, "promoted"
        return
    reason = (f"rejected: {result.gate.headline()}" if not result.gate.promote
              else f"rejected: the champion moved {MAX_REJUDGEMENTS} times while this run was judged")
    _withdraw(registered, package, reason, settings)
    result.withdrawn = registered
    if result.gate.promote:  # judged no worse each time, but never got the alias: say so
        result.gate.promote = False
        result.gate.reasons.append(reason.removeprefix("rejected: "))


def _unchanged(choice: ModelChoice, champion: ChampionRef, settings: LockgateSettings) -> PipelineResult:
    """The champion was trained on exactly this data, settings and code: its
    data passed validation then, and training again would make the same model."""
    identity = champion.trained_on
    note = (f"nothing changed: champion v{champion.version} was trained on exactly this data and configuration "
            f"(data {identity.data_hash[:12]}, settings {identity.config_hash[:12]}, code {identity.code_version}); "
            "--force retrains")
    print(note[:1].upper() + note[1:])
    meta = champion.data_meta
    summary = ValidationSummary(
        dataset=meta.name, family=meta.family, rows=meta.rows, success=True, data_hash=identity.data_hash,
        seen_before=True, reused=True,
        checks=[CheckResult(name="same data as the champion", severity="warning", success=True,
                            message=f"validated when champion v{champion.version} was trained")],
    )
    return PipelineResult(status="unchanged", validation=summary, model=choice, note=note,
                          tracking_uri=settings.tracking_uri)


def _withdraw(registered: RegisteredModel, package: PackagedService | None, reason: str, settings: LockgateSettings) -> None:
    """Mark a version that will not be the champion and remove its Bento; if
    even that fails (the tracking server is down), the version stays without
    the alias, and the run's own error is the one raised."""
    try:
        withdraw_task(registered, package, reason, settings)
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        print(f"Could not mark v{registered.version} as withdrawn ({type(exc).__name__}: {exc}); it is not the champion")

"""Step 7: put the registered version in the Bento store, build a Bento, and
prove the Bento answers like the in-process model before anything is promoted.
"""

from __future__ import annotations

from lockgate.core.records import EvaluationReport, ExportReport, PackagedService, RegisteredModel, TrainingResult
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.packaging import build_bento, served_model_outputs, served_runtime, store_model, verify_bento


def package_model(
    registered: RegisteredModel,
    training: TrainingResult,
    evaluation: EvaluationReport,
    snapshot_folder: str,
    data_hash: str,
    exports: ExportReport | None = None,
    settings: LockgateSettings | None = None,
    card: str | None = None,
) -> PackagedService:
    settings = settings or get_settings()
    model_tag = store_model(
        registered, training, evaluation, snapshot_folder, data_hash, exports, runtime=settings.serving.runtime,
        card=card,
    )
    bento_tag = build_bento(registered, model_tag, data_hash)
    difference = float("nan")
    snapshot = read_snapshot(snapshot_folder)
    holdout = split_for(snapshot.y, settings.training)["holdout"]
    x = snapshot.x[holdout]
    if settings.verify_bento:
        # The Bento must answer as its own runtime does here; that runtime's
        # agreement with the Keras model was checked when it was exported.
        expected = served_model_outputs(model_tag, x)
        raw = snapshot.raw_rows(holdout)
        sent = raw if raw is not None else x
        difference = verify_bento(bento_tag, snapshot.meta, sent, expected, runtime=served_runtime(model_tag).name)
    return PackagedService(
        bento_tag=bento_tag, model_tag=model_tag,
        verified_examples=len(x) if settings.verify_bento else 0, max_abs_difference=difference,
    )


package_task = pipeline_task("package service", timeout_seconds=900)(package_model)

"""Step 6b: the model card of the registered version, from what the run
knows; its Markdown becomes the version's description in MLflow, and the
package step ships the card with the Bento (GET /model_card)."""

from __future__ import annotations

import numpy as np

from lockgate.core.records import (
    ChampionRef,
    EvaluationReport,
    Explanation,
    ExportReport,
    GateDecision,
    RegisteredModel,
    TrainingResult,
    ValidationSummary,
)
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import read_snapshot, split_for
from lockgate.explaining.card import CARD_MARKDOWN, CardFacts, ChampionFacts, holdout_slices, write_card
from lockgate.explaining.importance import ranked
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import RunRecord, client, code_version, record
from lockgate.scoring.metrics import read_predictions


def document_model(
    registered: RegisteredModel,
    training: TrainingResult,
    evaluation: EvaluationReport,
    gate: GateDecision,
    summary: ValidationSummary,
    exports: ExportReport | None = None,
    explanation: Explanation | None = None,
    champion: ChampionRef | None = None,
    settings: LockgateSettings | None = None,
) -> str:
    """Write the card under the run's `card/` folder, log it, and make its
    Markdown the registered version's description; the folder is returned."""
    settings = settings or get_settings()
    snapshot = read_snapshot(summary.snapshot)
    predictions = read_predictions(evaluation.predictions_file)
    y, predicted = predictions["y_true"], predictions["challenger_pred"]
    facts = CardFacts(
        model_name=registered.name, version=registered.version, run_id=registered.run_id,
        code_version=code_version(), training=training, summary=summary, meta=snapshot.meta,
        evaluation=evaluation, gate=gate, exports=exports, explanation=explanation,
        champion=ChampionFacts(champion.version, evaluation.champion_metrics or {}, champion.data_meta)
        if champion else None,
        y_true=y, predicted=predicted, slices=_slices(snapshot, explanation, y, predicted, evaluation, settings),
        confidence=settings.gate.confidence,
    )
    folder = write_card(facts, settings.explain, settings.runs_dir / training.run_id)
    text = (folder / CARD_MARKDOWN).read_text()
    record(training.run_id, settings, RunRecord(artifacts=[(str(folder), None)]))
    client(settings).update_model_version(registered.name, registered.version, description=text)
    return str(folder)


def _slices(snapshot, explanation: Explanation | None, y: np.ndarray, predicted: np.ndarray,
            evaluation: EvaluationReport, settings: LockgateSettings):
    """The holdout by the most important column of a table, or by the
    length of a text; none for images (the per-class table is their slice)."""
    holdout = split_for(snapshot.y, settings.training)["holdout"]
    if snapshot.meta.contract and explanation is not None and explanation.ranking():
        frame = snapshot.raw_rows(holdout)
        top = next((name for name in ranked(explanation.ranking()) if frame is not None and name in frame), None)
        if top is not None:
            return holdout_slices(top, frame[top].to_numpy(dtype=object), y, predicted, evaluation.regression,
                                  settings.gate.confidence)
    if snapshot.meta.inputs == "texts" and snapshot.x.ndim == 2:  # token ids, 0 the padding
        words = (snapshot.x[holdout] > 0).sum(axis=1).astype(float)
        return holdout_slices("words in the text (up to the model's sequence length)", words, y, predicted,
                              evaluation.regression, settings.gate.confidence)
    return []


document_task = pipeline_task("document model", timeout_seconds=300)(document_model)


"""Step 4: the promotion gate. Fails closed, and says why in plain words.

It decides from the holdout scores the evaluate step computed, in memory; the
family of the report picks the rule (here, the one place the gate dispatches)."""

from __future__ import annotations

import json

from lockgate.core.records import EvaluationReport, Explanation, GateDecision
from lockgate.core.settings import GateSettings, LockgateSettings, get_settings
from lockgate.explaining.explain import ranking_warning
from lockgate.families import family_for
from lockgate.orchestration.reporting import gate_markdown, publish_markdown
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import RunRecord, record
from lockgate.scoring.gate import HoldoutScores


def decide(report: EvaluationReport, scores: HoldoutScores, gate: GateSettings) -> GateDecision:
    """The rule of the report's family: its task's thresholds, if any are
    set; then no skill beaten (a first model) or no regression against the
    champion."""
    return family_for(report.family).target.decide(scores, gate)


def gate_model(
    report: EvaluationReport, scores: HoldoutScores, settings: LockgateSettings | None = None,
    explanation: Explanation | None = None,
) -> GateDecision:
    """The rule's decision, with a warning (never a block) where the
    explanation's ranking moved far from the champion's."""
    settings = settings or get_settings()
    decision = decide(report, scores, settings.gate)
    warning = ranking_warning(explanation, settings.explain) if explanation is not None else None
    if warning:
        decision.warnings.append(warning)
    record(report.run_id, settings, RunRecord(
        texts={"gate/decision.json": json.dumps(decision.model_dump(mode="json"), indent=2)},
        tags={
            "lockgate.scoring.gate": "promote" if decision.promote else "reject",
            "lockgate.gate_reasons": "; ".join(decision.reasons)[:5000],
        } | ({"lockgate.gate_warnings": "; ".join(decision.warnings)[:5000]} if decision.warnings else {}),
    ))
    publish_markdown("gate-decision", gate_markdown(decision, report), "Promotion gate decision")
    return decision


gate_task = pipeline_task("gate model", timeout_seconds=300)(gate_model)

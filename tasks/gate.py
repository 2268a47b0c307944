"""Step 4: the promotion gate. Fails closed, and says why in plain words."""

from __future__ import annotations

import json

from lockgate.gate import decide
from lockgate.records import EvaluationReport, GateDecision
from lockgate.reporting import gate_markdown, publish_markdown
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import client


def gate_model(report: EvaluationReport, settings: LockgateSettings | None = None) -> GateDecision:
    settings = settings or get_settings()
    decision = decide(report, settings.gate)
    mlflow_client = client(settings)
    mlflow_client.log_text(report.run_id, json.dumps(decision.model_dump(mode="json"), indent=2), "gate/decision.json")
    mlflow_client.set_tag(report.run_id, "lockgate.gate", "promote" if decision.promote else "reject")
    mlflow_client.set_tag(report.run_id, "lockgate.gate_reasons", "; ".join(decision.reasons)[:5000])
    publish_markdown("gate-decision", gate_markdown(decision, report), "Promotion gate decision")
    return decision


gate_task = pipeline_task("gate model", timeout_seconds=300)(gate_model)

"""The monitor: each served champion's newest traffic against the held-out
rows it carries; a drift is recorded in MLflow, shown as a Prefect artifact
and announced as a `lockgate.drift.detected` event, which the retraining
automation (flows/deployments.py) turns into one gated retraining run per
model per cool-down."""

from __future__ import annotations

import re

from prefect import flow

from lockgate.core.records import MonitorReport
from lockgate.core.settings import get_settings
from lockgate.orchestration.reporting import monitor_markdown, publish_markdown
from tasks.monitor import check_task, emit_drift_task, record_check_task, served_models_task

MONITOR_FLOW = "lockgate-monitor"


@flow(name=MONITOR_FLOW, log_prints=True)
def monitor(model_name: str | None = None) -> list[MonitorReport]:
    """Check one model's champion, or every model whose service logged traffic.

    Args:
        model_name: the registered model to check; none checks every served model
    """
    settings = get_settings()
    names = [model_name] if model_name else served_models_task(settings)
    if not names:
        print(f"No served traffic in {settings.home / 'traffic'}: serve a champion with `lockgate serve` first")
    reports = []
    for name in names:
        report, figure = check_task(name, settings)
        report.run_id = record_check_task(report, figure, settings)
        if report.drifted:
            report.event_id = emit_drift_task(report)
        publish_markdown(f"monitor-{_slug(name)}", monitor_markdown(report), f"Lockgate monitor: {name}")
        print(f"{name} v{report.version}: {report.headline}")
        reports.append(report)
    return reports


def _slug(name: str) -> str:
    """An artifact key: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "model"

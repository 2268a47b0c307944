"""The monitor's steps: check a served champion, record the check in MLflow,
and tell Prefect when it drifted (the event a retraining automation follows)."""

from __future__ import annotations

from lockgate.core.records import MonitorReport
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.monitoring.monitor import check
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.packaging import bento_model_folder
from lockgate.registry.tracking import RunRecord, champion_version, client, experiment_client
from lockgate.serving.traffic import traffic_folder

DRIFT_EVENT = "lockgate.drift.detected"


def model_resource(model_name: str) -> str:
    """The Prefect resource id of a registered model: what automations match and bucket on."""
    return f"lockgate.model.{model_name}"


def served_models(settings: LockgateSettings | None = None) -> list[str]:
    """The models whose service has logged traffic in this workspace."""
    settings = settings or get_settings()
    root = settings.home / "traffic"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def check_champion(model_name: str, settings: LockgateSettings | None = None) -> tuple[MonitorReport, str | None]:
    """Check the champion of `model_name` against its newest traffic."""
    settings = settings or get_settings()
    version = champion_version(settings, model_name)
    if version is None:
        raise LookupError(f"{model_name} has no champion to monitor: promote one with `lockgate run`")
    folder = bento_model_folder(model_name, str(version.version), version.run_id)
    figures = settings.home / "monitor" / model_name
    report, figure = check(folder, traffic_folder(settings.home, model_name), settings.monitor, figures)
    tags = client(settings).get_run(version.run_id).data.tags
    report.data_source = tags.get("lockgate.data_source") or None
    report.target = tags.get("lockgate.target") or None
    return report, str(figure) if figure else None


def record_check(report: MonitorReport, figure: str | None, settings: LockgateSettings | None = None) -> str:
    """One MLflow run per check, in the `<experiment>-monitor` experiment:
    the findings, the figure and the live quality."""
    settings = settings or get_settings()
    monitor_settings = settings.model_copy(update={"experiment_name": f"{settings.experiment_name}-monitor"})
    experiment_id, mlflow_client = experiment_client(monitor_settings)
    run_id = mlflow_client.create_run(
        experiment_id, run_name=f"{report.model_name}-v{report.version}-{report.checked_at}",
        tags={"lockgate.model_name": report.model_name, "lockgate.model_version": report.version,
              "lockgate.drifted": str(report.drifted).lower(), "lockgate.tested": str(report.tested).lower(),
              "mlflow.note.content": report.headline},
    ).info.run_id
    metrics = {"window_rows": report.window_rows, "reference_rows": report.reference_rows,
               "drifted_features": len(report.drifted_features()), "tested_features": len(report.findings)}
    if report.findings:
        metrics["min_p_value"] = min(f.p_value for f in report.findings)
    if report.live and report.live.live is not None:
        metrics |= {f"live_{report.live.metric}": report.live.live, "labelled_rows": report.live.labelled}
    record = RunRecord(metrics=metrics, params={"false_alarm_rate": report.false_alarm_rate},
                       texts={"monitor/report.json": report.model_dump_json(indent=2)},
                       artifacts=[(figure, "monitor")] if figure else [])
    record.log(mlflow_client, run_id)
    mlflow_client.set_terminated(run_id)
    return run_id


def emit_drift(report: MonitorReport) -> str | None:
    """The `lockgate.drift.detected` event: the model and version as the
    resource, the drifted columns and their figures as the payload, with
    what a retraining run needs (the champion's data source and target)."""
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.events import emit_event

    drifted = report.drifted_features()
    event = emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": model_resource(report.model_name),
                  "prefect.resource.name": report.model_name, "lockgate.model.version": report.version},
        related=[{"prefect.resource.id": f"mlflow.run.{report.run_id}", "prefect.resource.role": "monitor-run"}]
        if report.run_id else None,
        payload={
            "model_name": report.model_name, "version": report.version, "headline": report.headline,
            "data": report.data_source, "target": report.target, "monitor_run_id": report.run_id,
            "columns": sorted({f.source for f in drifted}),
            "figures": {f.feature: {"test": f.test, "p_value": f.p_value, "held_out": f.reference, "served": f.window}
                        for f in drifted},
            "window_rows": report.window_rows,
        },
    )
    return str(event.id) if event is not None else None


def link_retraining(monitor_run_id: str, flow_run_id: str, status: str, decision: str,
                    mlflow_run_id: str | None, settings: LockgateSettings | None = None) -> None:
    """Tag the drift record with the retraining it caused and the gate's decision."""
    settings = settings or get_settings()
    mlflow_client = client(settings)
    for key, value in {"lockgate.retraining.flow_run": flow_run_id, "lockgate.retraining.status": status,
                       "lockgate.retraining.decision": decision[:5000],
                       "lockgate.retraining.mlflow_run": mlflow_run_id or ""}.items():
        mlflow_client.set_tag(monitor_run_id, key, value)


served_models_task = pipeline_task("find served models", timeout_seconds=60)(served_models)
check_task = pipeline_task("check served traffic", timeout_seconds=600)(check_champion)
record_check_task = pipeline_task("record monitor check", timeout_seconds=120)(record_check)
emit_drift_task = pipeline_task("emit drift event", timeout_seconds=60)(emit_drift)
link_retraining_task = pipeline_task("link retraining to drift", timeout_seconds=60)(link_retraining)

"""Step 6: register the gated model version in the MLflow registry, once.

Idempotent: a retried task, or a re-run for the same MLflow run, finds the
version already registered from that run instead of making a second one.
"""

from __future__ import annotations

import time

from lockgate.core.faults import DeterministicFailure
from lockgate.core.records import ExportReport, GateDecision, RegisteredModel, TrainingResult, ValidationSummary
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import TABLE_SIGNATURE_TAG, client, code_version


def register_model(
    training: TrainingResult,
    decision: GateDecision,
    summary: ValidationSummary,
    model_name: str,
    settings: LockgateSettings | None = None,
    exports: ExportReport | None = None,
) -> RegisteredModel:
    settings = settings or get_settings()
    if not decision.promote:
        raise DeterministicFailure("refusing to register a model the gate rejected")
    mlflow_client = client(settings)
    tags = {
        "data_hash": summary.data_hash or "",
        "dataset": summary.dataset,
        "validation": summary.verdict(),
        "gate": decision.headline()[:5000],
        "config_hash": settings.training_fingerprint(),
        "code_version": code_version(),
        "run_id": training.run_id,
    }
    for result in exports.results if exports else []:
        tags[f"export.{result.format}"] = result.status if result.shipped else f"{result.status}: {result.reason}"[:5000]
    version = _existing_version(mlflow_client, model_name, training.run_id)
    if version is None:
        _ensure_registered_model(mlflow_client, model_name)
        version = mlflow_client.create_model_version(
            model_name, source=training.model_uri, run_id=training.run_id, tags=tags,
            model_id=_logged_model_id(training.model_uri),
            description=f"Trained on {summary.dataset} ({summary.rows} rows); {decision.headline()[:500]}",
        )
    if summary.table_signature:  # so next month's file of the same table finds this model
        mlflow_client.set_registered_model_tag(model_name, TABLE_SIGNATURE_TAG, summary.table_signature)
    _wait_until_ready(mlflow_client, model_name, str(version.version))
    for key, value in tags.items():  # also completes a version a crash left untagged
        mlflow_client.set_model_version_tag(model_name, str(version.version), key, value)
    return RegisteredModel(
        name=model_name, version=str(version.version), run_id=training.run_id,
        uri=f"models:/{model_name}/{version.version}",
    )


def _logged_model_id(model_uri: str) -> str | None:
    """MLflow 3 logs a model as `models:/<model id>`; a tracking server registers
    such a source only when the request names that model id (SQLite does not check)."""
    return model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None


def _existing_version(client, model_name: str, run_id: str):
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _ensure_registered_model(client, model_name: str) -> None:
    # deferred: MLflow takes seconds to import; only the steps that talk to the tracking store need it
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        try:
            client.create_registered_model(model_name, description="Trained and gated by Lockgate")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def _wait_until_ready(client, model_name: str, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_model_version(model_name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise DeterministicFailure(f"{model_name} v{version} failed to register")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model_name} v{version} still {status} after {timeout:.0f}s")
        time.sleep(0.5)


register_task = pipeline_task("register model", timeout_seconds=300)(register_model)

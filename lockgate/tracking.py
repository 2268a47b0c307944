"""MLflow connection and registry look-ups shared by the steps."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from lockgate.locks import workspace_lock
from lockgate.settings import LockgateSettings

CHAMPION_ALIAS = "champion"
_OPENED: set[str] = set()  # the workspace stores this process has opened (and so migrated)


def connect(settings: LockgateSettings) -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id."""
    import mlflow

    exported = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.tracking_uri)
    # set_tracking_uri also exports the URI to the environment, where a later
    # settings object would mistake it for the user's override of the store.
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if exported is None and settings.tracking_uri not in _OPENED:
        # A process's first client of the workspace's SQLite store creates or
        # migrates its tables; runs started at once on a fresh workspace
        # raced there and all failed. One migrates while the others wait.
        with workspace_lock(settings.home, "mlflow-store"):
            client = mlflow.MlflowClient()
        _OPENED.add(settings.tracking_uri)
    else:
        client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(settings.experiment_name, artifact_location=settings.artifact_location)
    except Exception:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def client(settings: LockgateSettings) -> Any:
    """An MLflow client of the store in `settings`, its experiment made sure of."""
    return experiment_client(settings)[1]


def experiment_client(settings: LockgateSettings) -> tuple[str, Any]:
    """The experiment's id and an MLflow client of its store."""
    import mlflow

    experiment_id = connect(settings)
    return experiment_id, mlflow.MlflowClient()


def model_name_for(settings: LockgateSettings, dataset: str) -> str:
    return settings.model_name or f"lockgate-{dataset}"


TABLE_SIGNATURE_TAG = "lockgate.table_signature"


def models_with_table(settings: LockgateSettings, signature: str) -> list[str]:
    """Registered models whose table has this signature, most recently updated first."""
    found = client(settings).search_registered_models(filter_string=f"tags.`{TABLE_SIGNATURE_TAG}` = '{signature}'")
    return [m.name for m in sorted(found, key=lambda m: m.last_updated_timestamp or 0, reverse=True)]


def registered_model_exists(settings: LockgateSettings, model_name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client(settings).get_registered_model(model_name)
    except MlflowException:
        return False
    return True


def champion_version(settings: LockgateSettings, model_name: str) -> Any | None:
    """The model version the champion alias points at, or None."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    try:
        return mlflow_client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def download_json(settings: LockgateSettings, run_id: str, artifact_path: str) -> dict:
    import mlflow

    connect(settings)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
    return json.loads(Path(local).read_text())


def code_version() -> str:
    """The git commit of the code that ran, or the package version outside git.
    Uncommitted changes add a hash of the diff, so an edit that is not yet
    committed still counts as other code (an unchanged re-run is skipped on it)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=here).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        if sha:
            diff = git("diff", "HEAD")
            return sha + (f"-dirty-{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version

    return f"lockgate-{version('lockgate')}"

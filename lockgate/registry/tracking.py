"""MLflow connection and registry look-ups shared by the steps."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lockgate.core.locks import workspace_lock
from lockgate.core.settings import LockgateSettings

CHAMPION_ALIAS = "champion"
_OPENED: set[str] = set()  # the workspace stores this process has opened (and so migrated)


def connect(settings: LockgateSettings) -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id."""
    import mlflow  # deferred: mlflow is heavy

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
    import mlflow  # deferred: mlflow is heavy

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
    from mlflow.exceptions import MlflowException  # deferred: mlflow is heavy

    try:
        client(settings).get_registered_model(model_name)
    except MlflowException:
        return False
    return True


def champion_version(settings: LockgateSettings, model_name: str) -> Any | None:
    """The model version the champion alias points at, or None."""
    from mlflow.exceptions import MlflowException  # deferred: mlflow is heavy

    mlflow_client = client(settings)
    try:
        return mlflow_client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def download_json(settings: LockgateSettings, run_id: str, artifact_path: str) -> dict:
    import mlflow  # deferred: mlflow is heavy

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
    return f"lockgate-{version('lockgate')}"


# Within MLflow's limits on one log_batch call: 100 params, 100 tags, 1000
# metrics, and 1000 entries in all.
_BATCH_METRICS, _BATCH_PARAMS_OR_TAGS = 800, 100


@dataclass(frozen=True)
class LoggedModel:
    """A Keras model to log as the run's MLflow model: an input example and
    the model's outputs on it give the signature."""

    model: Any
    example: Any  # np.ndarray
    example_outputs: Any  # np.ndarray


@dataclass
class RunRecord:
    """Everything one step records in the run, computed before anything is
    logged: metrics (step 0), params, tags, text files and local files by
    their artifact path, and the model. `log` writes the files first, then
    the values in one batch, so a tag or metric a reader sees implies its
    files are there; a retried step logs the same record again (the same
    values are no-ops)."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> its text
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)  # (local file, artifact folder)
    model: LoggedModel | None = None

    def log(self, client: Any, run_id: str) -> str | None:
        """Log the record into `run_id` with an MLflow client of a connected
        store; the logged model's URI, or None without a model."""
        # deferred: mlflow is heavy, and a process that never logs need not load it
        from mlflow.entities import Metric, Param, RunTag

        for path, text in self.texts.items():
            client.log_text(run_id, text, path)
        for local, folder in self.artifacts:
            if Path(local).is_dir():  # a folder's files, under the folder's own name
                client.log_artifacts(run_id, str(local), artifact_path="/".join(filter(None, [folder, Path(local).name])))
            else:
                client.log_artifact(run_id, str(local), artifact_path=folder)
        now = int(time.time() * 1000)
        metrics = [Metric(key=k, value=float(v), timestamp=now, step=0) for k, v in self.metrics.items()]
        params = [Param(k, str(v)) for k, v in self.params.items()]
        tags = [RunTag(k, str(v)) for k, v in self.tags.items()]
        while metrics or params or tags:
            client.log_batch(
                run_id, metrics=metrics[:_BATCH_METRICS], params=params[:_BATCH_PARAMS_OR_TAGS],
                tags=tags[:_BATCH_PARAMS_OR_TAGS],
            )
            metrics, params, tags = (
                metrics[_BATCH_METRICS:], params[_BATCH_PARAMS_OR_TAGS:], tags[_BATCH_PARAMS_OR_TAGS:]
            )
        return log_keras_model(run_id, self.model) if self.model is not None else None


def record(run_id: str, settings: LockgateSettings, run_record: RunRecord) -> str | None:
    """Log `run_record` into the run, in the store of `settings`; the logged
    model's URI, or None."""
    return run_record.log(client(settings), run_id)


def log_keras_model(run_id: str, logged: LoggedModel) -> str:
    """Log with a signature and an input example, naming exact requirements
    (the store must be connected: `client(settings)` does it)."""
    # deferred: keras and mlflow are heavy, and only training logs a model
    import keras
    import mlflow  # deferred, as keras
    from mlflow.models import infer_signature  # deferred, as keras

    signature = infer_signature(logged.example, logged.example_outputs)
    requirements = [f"keras=={version('keras')}", f"numpy=={version('numpy')}"]
    with mlflow.start_run(run_id=run_id):
        if keras.backend.backend() == "tensorflow":
            import mlflow.tensorflow  # deferred, as keras

            requirements.append(f"tensorflow-cpu=={version('tensorflow-cpu')}")
            info = mlflow.tensorflow.log_model(
                logged.model, name="model", signature=signature, input_example=logged.example,
                pip_requirements=requirements,
            )
        else:  # the keras flavour cannot write an input example (it crashes)
            import mlflow.keras  # deferred, as keras

            info = mlflow.keras.log_model(logged.model, name="model", signature=signature, pip_requirements=requirements)
    return info.model_uri

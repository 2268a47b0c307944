"""The one typed configuration object of Lockgate.

Values come from, in rising priority: defaults, a YAML file (``LOCKGATE_CONFIG``
or ``--config``), and ``LOCKGATE_*`` environment variables (nested fields with
``__``, e.g. ``LOCKGATE_GATE__MIN_ACCURACY=0.9``). Nothing is read or created
at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class TrainingSettings(BaseModel):
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    early_stopping_patience: int = Field(4, ge=1)
    seed: int = 42
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.5)
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # "auto" uses every visible GPU with MirroredStrategy and mixed precision.
    device: Literal["auto", "cpu"] = "auto"
    # Processes that train one model together (data parallelism, Keras on the
    # JAX backend, lockgate.training.distributed). With more than one, `batch_size` is
    # the global batch, shared equally by every process's devices, and the
    # learning rate is used as it is: the training is the one a single
    # process would do on the same global batches. Text models train in one
    # process (their tokeniser needs the TensorFlow backend).
    workers: int = Field(1, ge=1, le=1024)
    # Where the processes run: on this machine, or as a Kubernetes indexed Job
    # (infra/k8s/training-job.yaml; the workspace on a volume every pod mounts).
    launcher: Literal["local", "kubernetes"] = "local"
    worker_timeout_s: int = Field(3600, ge=10)  # the whole training, all processes
    image_size: tuple[int, int] | None = None  # resize folder images to (h, w)
    # The model family (a name in lockgate.families.FAMILIES: image, text,
    # tabular, regression); "auto" decides from the data (images, a text
    # column, a numeric target with many values, else table classification).
    family: str = "auto"
    # "auto" picks per family: a small CNN (digits), "mnist" (28x28x1) or
    # "cifar" (32x32x3) by image size; "lstm" for text; for tables it trains
    # both "mlp" and "forest" (gradient-boosted trees) and keeps the one with
    # the better proper score on the validation split.
    # The family's architectures are its own (`Family.architectures`); one
    # that does not fit the family is refused when the run starts.
    architecture: str = "auto"
    # "balanced" weights each class by n / (classes x its count) in training
    # (networks and forests), so a rare class counts as much as a common one.
    class_weight: Literal["none", "balanced"] = "none"
    augment: bool = False  # random flips/shifts/rotations of training images
    text_column: str | None = None  # default: the table's one text column
    # Tables: a role per column name (numeric, categorical, datetime, text,
    # identifier, constant) or "drop", overriding what is inferred on a model's
    # first run; later runs keep the roles of the champion's contract.
    columns: dict[str, Literal["numeric", "categorical", "datetime", "text", "identifier", "constant", "drop"]] = Field(
        default_factory=dict
    )
    # Integer columns with at most this many distinct values are categories.
    max_integer_categories: int = Field(5, ge=0)
    max_categories: int = Field(1000, ge=1)  # a category column's vocabulary; rarer values share the unseen code
    # Cell values that mean "missing" in a table (compared stripped and in
    # lower case); they are read as gaps, counted and reported.
    missing_tokens: list[str] = Field(
        default_factory=lambda: ["", "na", "n/a", "nan", "null", "none", "<na>", "#n/a", "?", "-", "--", "."]
    )
    max_tokens: int = Field(20_000, ge=100)  # text vocabulary size
    sequence_length: int = Field(200, ge=4)  # tokens kept per text


class ValidationSettings(BaseModel):
    """What blocks data, and what is only reported.

    A model's first run has no reference, so findings about the data's
    quality (sparse columns, skew, many categories) are warnings, and only
    data that cannot be learnt from blocks. A retrain is validated against the
    champion's data contract, the way a schema works: a significant *change*
    blocks, naming the column and both figures."""

    min_rows: int = Field(50, ge=1)
    max_null_fraction: float = Field(0.0, ge=0, le=1)  # texts and images
    # Rows whose label is missing are left out of training and evaluation and
    # reported; above this share of the rows they block.
    max_missing_label_share: float = Field(0.5, ge=0, le=1)
    # Table features: a share of missing values that blocks, by default and
    # by column name. None by default: sparse columns are normal in real data
    # (often "not applicable"), and the model sees their gaps through a
    # missing indicator; columns emptier than `sparse_column_share` are warned about.
    max_missing_share: float | None = Field(None, ge=0, le=1)
    missing_share: dict[str, float] = Field(default_factory=dict)
    sparse_column_share: float = Field(0.5, ge=0, le=1)
    # Retrain: a column's missing share may rise this much (0.05 = 5 points)
    # above the champion's data; a rise blocks only when it is also larger
    # than the two samples' sizes can explain (a z of `change_z`), so 0% ->
    # 20% blocks and 12.1% -> 12.4% does not.
    missing_share_tolerance: float = Field(0.05, ge=0, le=1)
    # Retrain: a known category's share of the rows may move this much.
    category_share_tolerance: float = Field(0.10, ge=0, le=1)
    change_z: float = Field(3.5, gt=0)
    # Rows whose category the champion never saw: above this share of a
    # column, a check fails with `unseen_category_severity`.
    max_unseen_category_share: float = Field(0.05, ge=0, le=1)
    unseen_category_severity: Literal["blocking", "warning"] = "blocking"
    max_duplicate_fraction: float = Field(0.1, ge=0, le=1)
    min_class_fraction: float = Field(0.02, ge=0, le=1)
    # A feature's mean may move this many champion standard deviations.
    max_mean_shift_std: float = Field(0.5, gt=0)
    # Mean shifts and category shares moved since the champion's data.
    drift_severity: Literal["blocking", "warning"] = "blocking"
    max_classes: int = Field(100, ge=2)


class GateSettings(BaseModel):
    """Absolute thresholds, then the comparison with the champion.

    `comparison="proper_score"` (the default) compares per-example losses on
    the same holdout rows (Brier score for classifiers, squared error for
    regression) with a paired t-interval; `"metric"` compares the holdout's
    accuracy or macro-F1 (RMSE for regression) with a paired bootstrap, which
    needs thousands of rows to resolve a margin of one point. See
    lockgate/scoring/gate.py for the argument."""

    comparison: Literal["proper_score", "metric"] = "proper_score"
    # The challenger's mean Brier score may exceed the champion's by at most
    # this much (classification, proper_score comparison). A confidently
    # wrong answer costs up to 2, a right one 0; 0.03 is about one and a half
    # confidently wrong answers more per hundred rows. A tighter margin needs
    # more rows to pass an equal challenger (bench/gate_power.py: 0.02 passes
    # one 68% of the time on 360 rows, 0.03 94%).
    score_margin: float = Field(0.03, ge=0, le=2)
    # What to do when the holdout is too small to resolve the margin (the
    # smallest difference it detects at `power` exceeds the margin):
    # "non_inferiority" applies the same rule anyway (its false-promotion rate
    # still holds; only a clearly better challenger passes), "improvement"
    # promotes only a significantly better challenger, "refuse" rejects and
    # says how many rows would resolve it. Every decision states its power.
    underpowered: Literal["non_inferiority", "improvement", "refuse"] = "non_inferiority"
    power: float = Field(0.8, gt=0.5, lt=1)
    # The metric comparison judges classification on `metric`, regression on RMSE.
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    # Absolute floors, off unless set: a first model is judged against no
    # skill instead (always answering the training rows' class shares, or
    # their mean), which adapts to the table; a fixed macro-F1 floor rejected
    # models as good as gradient boosting on imbalanced tables.
    min_accuracy: float | None = Field(None, ge=0, le=1)
    min_macro_f1: float | None = Field(None, ge=0, le=1)
    # Regression thresholds, also off unless set: R^2 on the holdout, and an RMSE ceiling.
    min_r2: float | None = Field(None, le=1)
    max_rmse: float | None = Field(None, gt=0)
    # Regression: the challenger's RMSE may exceed the champion's by at most
    # this fraction of the champion's RMSE, at the interval's bound (the
    # proper-score comparison turns it into a margin on the mean squared error).
    rmse_margin_fraction: float = Field(0.02, ge=0)
    # Metric comparison: the challenger may be worse than the champion by at
    # most this much, judged on the lower bound of a paired bootstrap interval.
    regression_margin: float = Field(0.01, ge=0, le=1)
    bootstrap_samples: int = Field(2000, ge=100)
    # The metric comparison's two-sided bootstrap interval.
    confidence: float = Field(0.95, gt=0.5, lt=1)
    # The proper-score comparison's one-sided bound: a challenger at the
    # margin passes at most about 1 - score_confidence of the time. 0.96, not
    # 0.95: per-row Brier differences are skewed, and on 36 rows a 95% t bound
    # promoted a challenger just beyond the margin 5.5% of the time (6,000
    # simulated holdouts); 96% kept it at 4.5%.
    score_confidence: float = Field(0.96, gt=0.5, lt=1)


class ExportSettings(BaseModel):
    """Formats produced after the gate; each must agree with the Keras model."""

    # Names in lockgate.export.FORMATS; exporting rejects an unknown one before producing any.
    formats: list[str] = ["saved_model", "tflite_dynamic", "tflite_float16", "tflite_int8", "onnx"]
    min_label_agreement: float = Field(0.995, ge=0, le=1)
    # Regression: an export agrees on an example when it is within this
    # fraction of the holdout target's standard deviation of the Keras value.
    regression_tolerance: float = Field(0.01, gt=0)
    representative_examples: int = Field(200, ge=1)  # full-integer calibration
    latency_repeats: int = Field(50, ge=1)


class DistillationSettings(BaseModel):
    """A smaller student trained on the champion's softened predictions."""

    width: float = Field(0.25, gt=0, le=1)  # student layers' width, relative to the teacher architecture's
    temperature: float = Field(2.0, gt=0)  # softens the teacher's probabilities
    alpha: float = Field(0.7, ge=0, le=1)  # weight of the teacher's labels against the true ones


class ServingSettings(BaseModel):
    # Also read from LOCKGATE_API_KEYS, LOCKGATE_ALLOW_ANONYMOUS and
    # LOCKGATE_MODEL_TAG, the names the service documents (see _ServingNames).
    api_keys: SecretStr = SecretStr("")  # comma-separated, so keys rotate
    allow_anonymous: bool = False
    # The Bento model to serve; None: the one baked into a built Bento, else the champion.
    model_tag: str | None = None
    # Service worker processes, each with its own model; None: one per CPU core.
    workers: int | None = Field(None, ge=1)
    # Which runtime a Bento serves, decided when it is packaged: "auto" is the
    # fastest whose export passed parity (ONNX where it did), "keras" the Keras model.
    runtime: Literal["auto", "keras"] = "auto"
    # onnxruntime threads per worker; one per worker keeps workers off each other's cores.
    runtime_threads: int = Field(1, ge=1)
    # Merge concurrent requests into shared model calls: True, False, or
    # "auto", what measured faster for the served runtime (lockgate/runtimes.py).
    batching: Literal["auto"] | bool = "auto"
    # Where the model runs: "inline" on the event loop, "thread" on a thread
    # of its own, or "auto", what measured faster for the served runtime.
    model_calls: Literal["auto", "inline", "thread"] = "auto"
    max_batch_size: int = Field(64, ge=1)
    max_latency_ms: int = Field(1000, ge=1)  # a hard cap: later answers get 503
    max_rows_per_request: int = Field(1024, ge=1)
    max_text_chars: int = Field(100_000, ge=1)  # per text, for text models
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    request_timeout_s: int = Field(30, ge=1)
    # BentoML's OpenTelemetry span per request (for an exporter in BENTOML_CONFIG).
    tracing: bool = False
    # Each worker's garbage-collector thresholds (generations 0, 1, 2), set
    # once its model is loaded; see LockgateService for why not the defaults.
    gc_thresholds: tuple[int, int, int] = (50_000, 2, 100)
    # One listening socket per worker (SO_REUSEPORT), so connections opened
    # at once are spread evenly over the workers (services/listening.py).
    socket_per_worker: bool = True
    # Share of answered requests logged for the monitor (0 turns it off):
    # each row's summary and the model's outputs, never headers or keys
    # (lockgate/serving/traffic.py). Each worker keeps its newest files.
    traffic_sample: float = Field(1.0, ge=0.0, le=1.0)
    traffic_max_bytes: int = Field(64 * 1024 * 1024, ge=4096)
    traffic_keep_files: int = Field(8, ge=1)
    max_labels_per_request: int = Field(10_000, ge=1)  # /feedback

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


class DeploySettings(BaseModel):
    """Where and when the pipeline runs once a team puts it on servers."""

    work_pool: str = "lockgate"
    # Standard cron, evaluated by the Prefect server in `schedule_timezone`.
    schedule_cron: str = "0 3 * * 1"
    schedule_timezone: str = "UTC"
    schedule_data: str = "digits"
    schedule_target: str | None = None
    # A container image for container work pools (Kubernetes); a process pool needs none.
    # Also the image of the training pods when training.launcher is "kubernetes".
    image: str | None = None
    namespace: str = "default"  # of the training pods
    # The volume that holds the workspace (LOCKGATE_HOME), mounted by the flow's pod and every training pod.
    workspace_claim: str = "lockgate-workspace"
    # How hyper-parameter trials run: one after another, or on a Dask cluster
    # (a local one with `dask_workers` processes, or the scheduler at `dask_address`).
    trials_runner: Literal["sequential", "dask"] = "sequential"
    dask_workers: int = Field(2, ge=1)
    dask_address: str | None = None


class MonitorSettings(BaseModel):
    """What the monitor compares, how often it may cry wolf, and how the
    retraining it triggers is paced."""

    # The chance that a window drawn from the champion's own data is called
    # drifted: a family-wise rate over every column of the window (Holm).
    false_alarm_rate: float = Field(0.01, gt=0.0, lt=0.5)
    window_rows: int = Field(1000, ge=10)  # the newest logged rows a check compares
    min_rows: int = Field(200, ge=10)  # fewer than this: the monitor says it cannot tell
    reference_rows: int = Field(10_000, ge=100)  # held-out rows kept with a model to compare with
    schedule_cron: str = "*/30 * * * *"  # the lockgate-monitor deployment's schedule
    # One retraining per model per cool-down, however many drift events come.
    cooldown_minutes: float = Field(360.0, ge=0.0)
    retrain_delay_s: int = Field(0, ge=0)  # the retraining run is scheduled this long after the event
    retrain_epochs: int = Field(20, ge=1, le=1000)


class ExplainSettings(BaseModel):
    """Attributions and the model card of every run (lockgate.explaining)."""

    enabled: bool = True
    examples: int = Field(100, ge=1)  # holdout examples explained by integrated gradients
    tolerance: float = Field(0.01, gt=0, lt=1)  # completeness: |sum - (f(x) - f(b))| within this share of |f(x) - f(b)|
    complete_share: float = Field(0.99, gt=0, le=1)  # ... on at least this share of the examples
    start_steps: int = Field(16, ge=1)
    max_steps: int = Field(16384, ge=2)  # only the examples that still fail the check get more
    permutation_rows: int = Field(2000, ge=10)  # holdout rows shuffled for permutation importance
    permutation_repeats: int = Field(5, ge=1)
    ranking_warning_ndcg: float = Field(0.9, ge=0, le=1)  # below this against the champion: a gate warning
    intended_use: str = (
        "Predicting the label of new examples drawn like the training data, as an aid to people "
        "who review its answers; not for decisions about people without such a review."
    )
    out_of_scope: str = "Data unlike the training data (the monitor's drift checks say when served data moves)."


class LockgateSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOCKGATE_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Path(".lockgate")
    config: Path | None = None
    model_name: str | None = None  # default: "lockgate-<dataset>"
    experiment_name: str = "lockgate"
    training: TrainingSettings = TrainingSettings()
    validation: ValidationSettings = ValidationSettings()
    gate: GateSettings = GateSettings()
    export: ExportSettings = ExportSettings()
    distillation: DistillationSettings = DistillationSettings()
    serving: ServingSettings = ServingSettings()
    deploy: DeploySettings = DeploySettings()
    monitor: MonitorSettings = MonitorSettings()
    explain: ExplainSettings = ExplainSettings()
    verify_bento: bool = True
    telemetry: bool = False
    # Where `lockgate run` reports its runs when PREFECT_API_URL is not set:
    # "local" finds the workspace's long-lived Prefect server, or starts one
    # and leaves it up (`lockgate server stop` ends it); "ephemeral" starts
    # Prefect's temporary server inside every run.
    prefect_server: Literal["local", "ephemeral"] = "local"

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ServingNames(settings_cls), _YamlSource(settings_cls))

    # Workspace layout: everything Lockgate writes lives under `home`.
    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Artifacts sit beside the SQLite store; a remote server decides its own."""
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return None
        return (self.mlflow_dir / "artifacts").as_uri()

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.serving.api_keys.get_secret_value().split(",") if k.strip()]

    def training_fingerprint(self) -> str:
        """A hash of everything that changes what a training run produces."""
        payload = {
            "training": self.training.model_dump(mode="json"),
            "gate": self.gate.model_dump(mode="json"),
            "validation": self.validation.model_dump(mode="json"),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class _ServingNames(PydanticBaseSettingsSource):
    """The short environment names of the service's own settings, which
    `bentoml serve` passes to its workers as they are; the nested names
    (LOCKGATE_SERVING__API_KEYS) win where both are set."""

    NAMES = {"LOCKGATE_API_KEYS": "api_keys", "LOCKGATE_ALLOW_ANONYMOUS": "allow_anonymous",
             "LOCKGATE_MODEL_TAG": "model_tag"}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {field: os.environ[name] for name, field in self.NAMES.items() if name in os.environ}
        return {"serving": found} if found else {}


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by LOCKGATE_CONFIG, when there is one."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("LOCKGATE_CONFIG")
        if not path:
            return {}
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"LOCKGATE_CONFIG names {file}, which does not exist")
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{file} must hold a mapping of settings, not {type(data).__name__}")
        return data


@lru_cache(maxsize=1)
def get_settings() -> LockgateSettings:
    return LockgateSettings()


def reset_settings() -> None:
    get_settings.cache_clear()


def apply_environment(settings: LockgateSettings) -> None:
    """Point every library at the workspace and turn their telemetry off.

    Explicit environment values (MLFLOW_TRACKING_URI, PREFECT_API_URL,
    BENTOML_HOME, ...) win over the embedded defaults.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    defaults = {
        "BENTOML_HOME": str(settings.bentoml_home),
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    if not settings.telemetry:
        defaults.update(
            {
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "BENTOML_DO_NOT_TRACK": "true",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "GX_ANALYTICS_ENABLED": "false",
            }
        )
    for key, value in defaults.items():
        os.environ.setdefault(key, value)

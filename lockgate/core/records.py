"""Small typed records that steps hand to each other.

They hold names, paths, ids and numbers, never models or arrays, so Prefect
can persist them and each step can be tested alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from lockgate.core.contract import TableContract
from lockgate.core.tokens import TextVocabulary

# A model family's name (lockgate.families.FAMILIES), what it predicts
# (lockgate.families.targets) and the kind of input its requests carry
# (lockgate.serving.requests.REQUESTS).
FamilyName = str
TaskName = Literal["classification", "regression"]
# Records written before the task and the kind of input were stored name only
# the family; these are what the families of that time predicted and read.
_RECORDED_BEFORE: dict[str, tuple[TaskName, str]] = {
    "image": ("classification", "images"), "text": ("classification", "texts"),
    "tabular": ("classification", "tables"), "regression": ("regression", "tables"),
}
Severity = Literal["blocking", "warning"]
# What runs a served model: onnxruntime on the ONNX export, or Keras itself.
RuntimeName = Literal["onnx", "keras"]


class DatasetMeta(BaseModel):
    """What a snapshot knows of its data, and what a champion and a served
    model keep of the data they were trained on."""

    # NaN statistics (a column with no numbers) survive a round trip to JSON.
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="constants")

    name: str
    family: FamilyName
    task: TaskName
    inputs: str  # the kind of request input (lockgate.serving.requests)
    target: str
    feature_columns: list[str]
    class_names: list[str] = Field(default_factory=list)  # empty for regression
    input_shape: list[int]
    pixel_scale: float = 1.0
    text_column: str | None = None
    target_stats: dict[str, float] | None = None  # regression: the target's mean, std, min, max
    rows: int = 0
    contract: dict[str, Any] | None = None  # tables: TableContract.to_dict()
    model_columns: list[str] | None = None  # tables: the encoded columns the model reads
    vocabulary: TextVocabulary | None = None  # text: the words its ids stand for (lockgate/core/tokens.py)
    data_hash: str = ""
    profile: dict[str, dict[str, float]] = Field(default_factory=dict)  # what drift is measured on
    # The parsed contract, with the dict it was parsed from: the service reads
    # it on every request, and a copy with another `contract` parses again.
    _parsed_contract: tuple[Any, Any] = PrivateAttr(default=(None, None))

    @model_validator(mode="before")
    @classmethod
    def _family_was_kind(cls, values: Any) -> Any:
        """Models registered before the rename keep working as champions."""
        if isinstance(values, dict) and "family" not in values and "kind" in values:
            values = {**values, "family": values["kind"]}
        if isinstance(values, dict) and ("task" not in values or "inputs" not in values):
            task, inputs = _RECORDED_BEFORE.get(values.get("family", ""), (None, None))
            values = {"task": task, "inputs": inputs, **values}
        return values

    def table_contract(self) -> TableContract | None:
        if not self.contract:
            return None
        source, parsed = self._parsed_contract
        if source is not self.contract:
            parsed = TableContract.from_dict(self.contract)
            self._parsed_contract = (self.contract, parsed)
        return parsed


class ServedRuntime(BaseModel):
    """Which runtime serves a Bento model, chosen when it is packaged: the
    fastest that passed its parity check (lockgate/export/runtimes.py)."""

    name: RuntimeName = "keras"
    file: str = "model.keras"  # in the Bento model folder
    latency_ms_p50: float | None = None  # one example, in process, as measured by the export check
    reason: str = "the Keras model (no runtime was recorded with this model)"


class ModelCalls(BaseModel):
    """How the service calls its model: batched or one request at a time, on
    the event loop or on a thread of its own (lockgate/export/runtimes.py)."""

    batching: bool
    model_calls: Literal["inline", "thread"]
    reason: str


class ServedMeta(DatasetMeta):
    """A Bento model's `lockgate.json`: its data, and which model it is."""

    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="constants", protected_namespaces=())

    model_name: str
    model_version: str
    run_id: str
    metrics: dict[str, float] = Field(default_factory=dict)
    exports: dict[str, str] = Field(default_factory=dict)  # format -> path in the model folder
    runtime: ServedRuntime = Field(default_factory=ServedRuntime)
    bento_model: str = ""

    FILE: ClassVar[str] = "lockgate.json"

    @classmethod
    def read(cls, folder: str | Path) -> ServedMeta:
        """The record kept in a Bento model's folder."""
        return cls.model_validate_json((Path(folder) / cls.FILE).read_text())

    def write(self, folder: str | Path) -> None:
        (Path(folder) / self.FILE).write_text(self.model_dump_json(indent=2))


class CheckResult(BaseModel):
    name: str
    severity: Severity
    success: bool
    message: str


class ValidationSummary(BaseModel):
    dataset: str
    family: FamilyName | None
    rows: int
    success: bool
    checks: list[CheckResult]
    data_docs: str | None = None
    snapshot: str | None = None  # folder holding data.npz and meta.json
    data_hash: str | None = None
    seen_before: bool = False
    # Tables: one line per column (role, type, gaps, categories or range) and
    # the signature that recognises the model's table under another file name.
    contract: list[str] | None = None
    table_signature: str | None = None
    # True when this exact data was validated before against the same suite
    # (same settings, champion and code): the earlier result was reused.
    reused: bool = False

    @property
    def blocking_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "blocking"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "warning"]

    def verdict(self) -> str:
        if not self.success:
            return f"FAILED ({len(self.blocking_failures)} blocking, {len(self.warnings)} warnings)"
        if self.warnings:
            return f"passed with {len(self.warnings)} warnings"
        return f"passed ({len(self.checks)} checks)"


class TrainingResult(BaseModel):
    run_id: str
    model_path: str  # the .keras file in the workspace
    model_uri: str  # the MLflow logged model
    epochs_run: int
    resumed_from_epoch: int = 0
    parameters: int
    seconds: float
    device: str
    processes: int = 1  # that trained this model together
    global_batch: int | None = None
    note: str | None = None  # what training could not do as configured, and why
    architecture: str = ""  # e.g. mlp, forest, small_cnn
    choice: str = ""  # why that architecture: asked for, the default, or chosen on the validation split


class EvaluationReport(BaseModel):
    run_id: str
    family: FamilyName
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    predictions_file: str  # npz: y_true, challenger_pred, champion_pred (labels or values), per-row losses
    confusion_matrix_image: str | None = None
    # What the no-skill baseline answers (its per-row losses are in the predictions file).
    baseline: str = "the no-skill baseline"
    task: TaskName
    # The folder of held-out rows summarised as the service summarises requests.
    monitoring_reference: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _task_from_family(cls, values: Any) -> Any:
        """Reports written before the task was stored."""
        if isinstance(values, dict) and "task" not in values:
            values = {**values, "task": _RECORDED_BEFORE.get(values.get("family", ""), (None, None))[0]}
        return values

    @property
    def regression(self) -> bool:
        """Metrics are rmse/mae/r2 and predictions are values."""
        return self.task == "regression"


class Explanation(BaseModel):
    """Why a model answers as it does: integrated gradients on a sample of
    holdout examples (with their completeness check), permutation importance
    for tables, the two rankings' agreement, pictures, and the change of
    ranking against the champion's. Importances are by feature name."""

    examples: int = 0  # holdout examples explained by integrated gradients
    method: str = ""  # what the importances below come from, in words
    integrated_gradients: str = ""  # "" when they applied; else why not
    steps: int | None = None  # the most trapezoid intervals an example needed to pass the completeness check
    tolerance: float = 0.01  # allowed |sum - (f(x) - f(b))|, relative to |f(x) - f(b)|
    complete_share: float | None = None  # examples whose attributions passed the check
    max_relative_error: float | None = None
    baseline: str = ""  # the integrated gradients' baseline, in words
    importance: dict[str, float] = Field(default_factory=dict)  # mean |attribution| per feature (top ones)
    permutation: dict[str, float] = Field(default_factory=dict)  # holdout loss rise per shuffled feature
    permutation_spread: dict[str, float] = Field(default_factory=dict)
    agreement_ndcg: float | None = None  # integrated gradients ranked against permutation importance
    agreement_spearman: float | None = None
    champion_version: str | None = None
    champion_ndcg: float | None = None  # this model's ranking against the champion's
    champion_note: str = ""  # how the champion comparison was made, or why it could not be
    champion_top: list[str] = Field(default_factory=list)  # the champion's most important features
    pictures: list[str] = Field(default_factory=list)  # files, logged under explanation/
    folder: str | None = None  # the run's explanation folder (explanation.json, pictures)
    seconds: float = 0.0

    def ranking(self) -> dict[str, float]:
        """The importances rankings are compared on: permutation importance
        where there is one (any model, so champions of other architectures
        compare), else the attributions."""
        return self.permutation or self.importance


class NoSkillComparison(BaseModel):
    """A first model against the no-skill baseline on the same holdout rows:
    mean per-row proper score (lower is better) of each, and the one-sided
    bound on how much better the model is."""

    score: str  # brier_score or mse
    baseline: str  # what the baseline answers, in words
    model_score: float
    baseline_score: float
    improvement_low: float  # baseline minus model, one-sided lower bound
    detectable: float  # the smallest improvement the holdout detects at the stated power


class GateDecision(BaseModel):
    promote: bool
    metric: str
    higher_is_better: bool = True
    challenger: float
    champion: float | None = None
    difference_ci: tuple[float, float] | None = None  # challenger minus champion
    reasons: list[str] = Field(default_factory=list)
    # The comparison's power: the allowed margin, the smallest difference the
    # holdout detects, and whether the margin was resolved (detectable <= margin).
    margin: float | None = None
    detectable: float | None = None
    resolved: bool | None = None
    # A first model's comparison with no skill (None once there is a champion).
    no_skill: NoSkillComparison | None = None
    # Figures that show imbalance beside accuracy (classification): balanced
    # accuracy, the majority class's share, and each class's recall.
    imbalance: dict[str, float] = Field(default_factory=dict)
    # What a reviewer should look at, though it does not block (e.g. the
    # attribution ranking moved far from the champion's).
    warnings: list[str] = Field(default_factory=list)

    def headline(self) -> str:
        return ("PROMOTE" if self.promote else "REJECT") + ": " + "; ".join(self.reasons)


ExportStatus = Literal["passed", "failed_parity", "unavailable"]


class ExportResult(BaseModel):
    """One export format, checked against the Keras model on the holdout."""

    format: str  # a name in lockgate.export.FORMATS
    status: ExportStatus
    reason: str = ""  # why it failed or could not be produced; empty when passed
    path: str | None = None  # file or folder in the run's workspace
    size_bytes: int | None = None
    # Share of holdout examples whose predicted label matches the Keras model's
    # (regression: whose prediction lies within the tolerance of it).
    agreement: float | None = None
    max_abs_difference: float | None = None
    latency_ms_p50: float | None = None  # one example, in-process

    @property
    def shipped(self) -> bool:
        return self.status == "passed"


class ExportReport(BaseModel):
    run_id: str
    keras_size_bytes: int
    keras_latency_ms_p50: float
    examples: int  # holdout examples each export was compared on
    results: list[ExportResult] = Field(default_factory=list)

    def passed(self) -> list[ExportResult]:
        return [r for r in self.results if r.shipped]


class RegisteredModel(BaseModel):
    name: str
    version: str
    run_id: str
    uri: str


class TrainingIdentity(BaseModel):
    """What decides what a training run produces: the data's content hash, the
    settings' fingerprint and the code version."""

    data_hash: str
    config_hash: str
    code_version: str

    def differences(self, other: TrainingIdentity) -> list[str]:
        """The parts that differ, in words; empty when the two are the same."""
        return [
            f"{label} {mine[:12]} -> {theirs[:12]}"
            for label, mine, theirs in (
                ("data", self.data_hash, other.data_hash),
                ("settings", self.config_hash, other.config_hash),
                ("code", self.code_version, other.code_version),
            )
            if mine != theirs
        ]


class ChampionRef(RegisteredModel):
    """The registered version behind the champion alias."""

    data_meta: DatasetMeta  # schema, labels and feature profile of its training data
    trained_on: TrainingIdentity | None = None  # None for versions registered without the tags


class PromotionOutcome(BaseModel):
    """A compare-and-swap of the champion alias: moved only if the champion was
    still the one the challenger was judged against."""

    promoted: bool
    champion_version: str | None  # the champion after the attempt
    replaced: str | None = None  # the champion it replaced, when promoted


class PackagedService(BaseModel):
    bento_tag: str
    model_tag: str
    verified_examples: int
    max_abs_difference: float


class DistillationReport(BaseModel):
    """A distilled student beside its teacher, on the same holdout."""

    teacher_version: str
    metric: str
    higher_is_better: bool
    teacher_metric: float
    student_metric: float
    teacher_parameters: int
    student_parameters: int
    teacher_size_bytes: int
    student_size_bytes: int
    teacher_latency_ms_p50: float
    student_latency_ms_p50: float


class ModelChoice(BaseModel):
    """Which registered model a run trains, and why that one."""

    name: str
    how: Literal["named", "file name", "recognised", "new"]
    detail: str = ""
    champion_version: str | None = None

    def sentence(self) -> str:
        target = f"{self.name} champion v{self.champion_version}" if self.champion_version else f"{self.name} (no champion yet)"
        because = {
            "named": "named in the command or settings",
            "file name": "the model of data files with this name",
            "recognised": f"recognised by its table: {self.detail}",
            "new": "a new model; to retrain an existing one, pass --model-name NAME",
        }[self.how]
        return f"Challenging {target}: {because}."


class PipelineResult(BaseModel):
    status: Literal["promoted", "rejected", "validation_failed", "unchanged"]
    validation: ValidationSummary
    model: ModelChoice | None = None
    run_id: str | None = None
    evaluation: EvaluationReport | None = None
    gate: GateDecision | None = None
    registered: RegisteredModel | None = None
    package: PackagedService | None = None
    exports: ExportReport | None = None
    distillation: DistillationReport | None = None
    training: TrainingResult | None = None
    explanation: Explanation | None = None
    card: str | None = None  # the registered version's model card (Markdown file)
    tracking_uri: str = ""
    # The champion this run replaced (promoted), or the version it registered
    # and then withdrew (rejected after the champion moved, or a later step failed).
    replaced: str | None = None
    withdrawn: RegisteredModel | None = None
    # Why nothing was trained (status "unchanged").
    note: str | None = None


class FeatureFinding(BaseModel):
    """One monitored feature's test, served window against held-out rows."""

    feature: str
    source: str  # the column or input it summarises, or "prediction"
    test: str  # e.g. "Kolmogorov-Smirnov", "chi-square", "missing share"
    statistic: float
    p_value: float
    drifted: bool  # rejected after the family-wise (Holm) correction
    reference: str  # the held-out rows, in words
    window: str  # the served rows, in words


class LiveQuality(BaseModel):
    """The model on the served rows whose true labels came back, beside the
    same measure on its holdout, each with a 95% interval."""

    metric: Literal["accuracy", "rmse"]
    labelled: int  # served rows with a label
    unmatched: int  # labels for requests that were not logged (sampled out, or older files)
    live: float | None = None
    live_low: float | None = None
    live_high: float | None = None
    holdout: float | None = None
    holdout_low: float | None = None
    holdout_high: float | None = None
    holdout_rows: int = 0

    def sentence(self) -> str:
        if self.live is None:
            return f"no labels yet for the served rows ({self.unmatched} labels for requests not logged)"
        return (f"live {self.metric} {self.live:.4g} [{self.live_low:.4g}, {self.live_high:.4g}] on {self.labelled} "
                f"labelled rows; holdout {self.holdout:.4g} [{self.holdout_low:.4g}, {self.holdout_high:.4g}] "
                f"on {self.holdout_rows}")


class MonitorReport(BaseModel):
    """One check of a served champion: its latest traffic against its held-out rows."""

    model_name: str
    version: str
    checked_at: str  # ISO time, UTC
    tested: bool  # False: too few served rows, or no reference; `reason` says which
    drifted: bool
    headline: str
    false_alarm_rate: float
    window_rows: int
    reference_rows: int
    findings: list[FeatureFinding] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # "feature: why it was not tested"
    live: LiveQuality | None = None
    data_source: str | None = None  # what the champion was trained on, for the retraining run
    target: str | None = None
    run_id: str | None = None  # the MLflow run that records this check
    event_id: str | None = None  # the lockgate.drift.detected event, when drift was found

    def drifted_features(self) -> list[FeatureFinding]:
        return [f for f in self.findings if f.drifted]

"""Small typed records that steps hand to each other.

They hold names, paths, ids and numbers, never models or arrays, so Prefect
can persist them and each step can be tested alone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DatasetKind = Literal["image", "tabular"]
Severity = Literal["blocking", "warning"]


class CheckResult(BaseModel):
    name: str
    severity: Severity
    success: bool
    message: str


class ValidationSummary(BaseModel):
    dataset: str
    kind: DatasetKind | None
    rows: int
    success: bool
    checks: list[CheckResult]
    data_docs: str | None = None
    snapshot: str | None = None  # folder holding data.npz and meta.json
    data_hash: str | None = None
    seen_before: bool = False

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


class EvaluationReport(BaseModel):
    run_id: str
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    predictions_file: str  # npz with y_true, challenger and champion probabilities
    confusion_matrix_image: str | None = None


class GateDecision(BaseModel):
    promote: bool
    metric: str
    challenger: float
    champion: float | None = None
    difference_ci: tuple[float, float] | None = None
    reasons: list[str] = Field(default_factory=list)

    def headline(self) -> str:
        return ("PROMOTE" if self.promote else "REJECT") + ": " + "; ".join(self.reasons)


class RegisteredModel(BaseModel):
    name: str
    version: str
    run_id: str
    uri: str


class PackagedService(BaseModel):
    bento_tag: str
    model_tag: str
    verified_examples: int
    max_abs_difference: float


class PipelineResult(BaseModel):
    status: Literal["promoted", "rejected", "validation_failed"]
    validation: ValidationSummary
    run_id: str | None = None
    evaluation: EvaluationReport | None = None
    gate: GateDecision | None = None
    registered: RegisteredModel | None = None
    package: PackagedService | None = None
    tracking_uri: str = ""

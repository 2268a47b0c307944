"""Pipeline runs for tests: the real flow, with the slow optional steps on only
where a test is about them.

The export battery (five formats, each checked on the holdout) and the served
Bento check (`bentoml serve`, then the holdout over HTTP) are the two slowest
steps after training. They run in full in tests/e2e and for the session's
wine champion; the other runs keep a SavedModel export and skip the served
check, since nothing they assert depends on either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from lockgate.core.records import PipelineResult
from lockgate.core.settings import LockgateSettings


def pipeline_settings(
    epochs: int, *, exports: bool = False, verify_bento: bool = False, formats: list[str] | None = None, **training: Any
) -> LockgateSettings:
    """A copy of the session's settings for one run: every export format with
    `exports`, else `formats` (default: the SavedModel only)."""
    from lockgate.core.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training = settings.training.model_copy(update={"epochs": epochs, **training})
    export = {"latency_repeats": 5} | ({} if exports else {"formats": formats or ["saved_model"]})
    settings.export = settings.export.model_copy(update=export)
    settings.verify_bento = verify_bento
    return settings


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def run_pipeline(data: str, target: str | None, name: str, settings: LockgateSettings, **options: Any) -> PipelineResult:
    from flows.training import training_pipeline

    return training_pipeline(data=data, target=target, model_name=name, settings=settings, **options)


@dataclass(frozen=True)
class Champion:
    """A model promoted once per test session and shared by the tests that
    only read it or challenge it under its own name."""

    name: str
    settings: LockgateSettings
    result: PipelineResult
    data: str
    target: str | None


def promote(data: str, target: str | None, prefix: str, settings: LockgateSettings) -> Champion:
    name = unique_name(prefix)
    result = run_pipeline(data, target, name, settings)
    assert result.status == "promoted", result.gate
    return Champion(name, settings, result, data, target)


def champion_version(name: str) -> str | None:
    from lockgate.core.settings import get_settings
    from lockgate.registry.tracking import champion_version as lookup

    version = lookup(get_settings(), name)
    return str(version.version) if version else None


def model_versions(name: str) -> list[Any]:
    import mlflow

    return mlflow.MlflowClient().search_model_versions(f"name = '{name}'")

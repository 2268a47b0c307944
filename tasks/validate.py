"""Step 1: read the data, validate it with Great Expectations, snapshot it.

Blocking failures stop the flow before any training; warnings are reported.
The validation itself is lockgate.validation.validate's; the run opened next records
its summary (tasks/track.py).
"""

from __future__ import annotations

from lockgate.core.records import DatasetMeta, TrainingIdentity, ValidationSummary
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.validation.validate import identify, validate


def validate_data(
    source: str,
    target: str | None = None,
    reference: DatasetMeta | None = None,
    settings: LockgateSettings | None = None,
) -> ValidationSummary:
    """Validate `source`; on success its snapshot folder and hash are in the summary.

    `reference` is the champion's training-data meta (schema, labels, profile).
    """
    return validate(source, target, reference, settings or get_settings())


def identify_data(
    source: str, target: str | None, reference: DatasetMeta | None, settings: LockgateSettings | None = None
) -> TrainingIdentity | None:
    """What a training run on `source` would be trained on (data, settings and
    code); None when the data cannot be read (validation says why)."""
    return identify(source, target, reference, settings or get_settings())


validate_task = pipeline_task("validate data", timeout_seconds=600)(validate_data)
identify_task = pipeline_task("identify data", timeout_seconds=600)(identify_data)

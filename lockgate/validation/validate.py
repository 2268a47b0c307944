"""Validating data before anything is trained on it: the Great Expectations
suite, the checks it has no expectation for, and a table's contract; then a
snapshot of data that passed.

Blocking failures stop the flow before any training; warnings are reported.
A source that cannot even be read is a blocking failure too, with the reason.
Validating exactly the same data against exactly the same suite again reuses
the earlier result (the validation cache, keyed on content). Logs nothing:
the run opened for the data records its summary (`validation_record`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lockgate.core.locks import atomic_write_text, workspace_lock
from lockgate.core.records import CheckResult, DatasetMeta, TrainingIdentity, ValidationSummary
from lockgate.core.settings import LockgateSettings
from lockgate.data.datasets import DataLoadError, LoadedData, dataset_name, load_source, snapshot_digest, write_snapshot
from lockgate.families import family_for
from lockgate.registry.tracking import RunRecord, code_version
from lockgate.validation.expectations import build_expectations, describe_failure
from lockgate.validation.table_checks import ContractLimits, check_against_contract, validation_frame

log = logging.getLogger("lockgate.validate")


def validate(
    source: str, target: str | None, reference: DatasetMeta | None, settings: LockgateSettings
) -> ValidationSummary:
    """Validate `source`; on success its snapshot folder and hash are in the summary.

    `reference` is the champion's training-data meta (schema, labels, profile).
    """
    name = dataset_name(source)
    try:
        data = load_source(source, target, settings.training)
    except DataLoadError as exc:
        check = CheckResult(name="readable data", severity="blocking", success=False, message=str(exc))
        return ValidationSummary(dataset=name, family=None, rows=0, success=False, checks=[check])

    if reference is not None and reference.family != data.family:
        check = CheckResult(
            name="same model family as the champion", severity="blocking", success=False,
            message=f"the champion was trained on {reference.family} data, this is {data.family} data "
            "(use another model name for a new family)",
        )
        return ValidationSummary(dataset=data.name, family=data.family, rows=len(data.frame), success=False, checks=[check])
    if data.is_table:
        data.decide_roles(settings.training, reference)
    if data.family == "text" and data.target in data.frame.columns and data.text_column in data.frame.columns:
        data.decide_vocabulary(settings.training)
    digest = _content_digest(data)
    cache = _cached_result_path(digest, reference, settings) if digest is not None else None
    reused = _reuse(cache) if cache is not None else None
    if reused is not None:
        return reused
    checks = _run_suite(data, reference, settings)
    checks += _extra_checks(data, settings)
    if data.contract is not None:
        checks += _contract_checks(data, reference, settings)
    success = not any(c.severity == "blocking" and not c.success for c in checks)
    docs = _data_docs_index(settings)
    summary = ValidationSummary(
        dataset=data.name,
        family=data.family,
        rows=len(data.frame),
        success=success,
        checks=checks,
        data_docs=str(docs) if docs.exists() else None,
    )
    if data.contract is not None:
        summary.contract = data.contract.describe()
        summary.table_signature = data.contract.signature()
    if success:
        folder, digest, seen = write_snapshot(data, settings.snapshots_dir, digest)
        summary.snapshot, summary.data_hash, summary.seen_before = str(folder), digest, seen
        if cache is not None:
            atomic_write_text(cache, summary.model_dump_json(indent=2))
    return summary


def identify(
    source: str, target: str | None, reference: DatasetMeta | None, settings: LockgateSettings
) -> TrainingIdentity | None:
    """What a training run on `source` would be trained on: the content hash of
    its snapshot, the settings' fingerprint and the code version. Cheap (no
    validation suite); None when the data cannot be read (validation says why)."""
    try:
        data = load_source(source, target, settings.training)
    except DataLoadError:
        return None
    if reference is not None and reference.family != data.family:
        return None
    if data.is_table:
        data.decide_roles(settings.training, reference)
    if data.family == "text" and data.target in data.frame.columns and data.text_column in data.frame.columns:
        data.decide_vocabulary(settings.training)
    digest = _content_digest(data)
    if digest is None:
        return None
    return TrainingIdentity(data_hash=digest, config_hash=settings.training_fingerprint(), code_version=code_version())


def validation_record(summary: ValidationSummary) -> RunRecord:
    """What the run opened for validated data records of it: the snapshot's
    meta.json, the table's column roles (readable in the MLflow UI), the
    summary, and the data set's name and rows."""
    texts = {"data/contract.txt": "\n".join(summary.contract) + "\n"} if summary.contract else {}
    texts["validation/summary.json"] = json.dumps(summary.model_dump(mode="json"), indent=2)
    return RunRecord(
        texts=texts,
        artifacts=[(str(Path(summary.snapshot) / "meta.json"), "data")],
        params={"dataset": summary.dataset, "rows": summary.rows},
    )


def _content_digest(data: LoadedData) -> str | None:
    """The snapshot hash of data not yet validated; None where the data is too
    broken to hash (a missing label column, unreadable files): the suite then
    runs and says what is wrong."""
    if data.problems:
        return None
    try:
        return snapshot_digest(data)
    except Exception:  # noqa: BLE001 - validation reports the cause
        return None


def _cached_result_path(digest: str, reference: DatasetMeta | None, settings: LockgateSettings) -> Path:
    """Where the result of validating exactly this data against exactly this
    suite is kept: keyed on the data's content hash, the validation settings,
    the champion's data profile (the suite compares with it) and the code."""
    key = {
        "data": digest,
        "validation": settings.validation.model_dump(mode="json"),
        "reference": reference.model_dump(mode="json") if reference is not None else None,
        "code": code_version(),
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return settings.home / "cache" / "validation" / f"{name}.json"


def _reuse(cache: Path) -> ValidationSummary | None:
    """The earlier passing result, when its snapshot is still on disk."""
    if not cache.is_file():
        return None
    try:
        summary = ValidationSummary.model_validate_json(cache.read_text())
    except ValueError:
        return None
    if not summary.snapshot or not (Path(summary.snapshot) / "meta.json").is_file():
        return None
    return summary.model_copy(update={"reused": True, "seen_before": True})


def _data_docs_index(settings: LockgateSettings) -> Path:
    return settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _contract_checks(data: LoadedData, reference: DatasetMeta | None, settings: LockgateSettings) -> list[CheckResult]:
    champion = reference.table_contract() if reference is not None else None
    rules = settings.validation
    limits = ContractLimits(
        missing_share_tolerance=rules.missing_share_tolerance, category_share_tolerance=rules.category_share_tolerance,
        change_z=rules.change_z, max_unseen_share=rules.max_unseen_category_share,
        unseen_blocking=rules.unseen_category_severity == "blocking", shift_blocking=rules.drift_severity == "blocking",
        sparse_share=rules.sparse_column_share, max_categories=settings.training.max_categories,
    )
    findings = check_against_contract(data.frame, data.contract, champion, limits)
    return [
        CheckResult(name=f.name, severity="blocking" if f.blocking else "warning", success=f.success, message=f.message)
        for f in findings
    ]


def _validation_frame(data: LoadedData) -> pd.DataFrame:
    frame = validation_frame(data.frame, data.contract) if data.contract is not None else data.frame.copy()
    if data.target in frame.columns and not data.is_regression:
        labels = frame[data.target]
        # Labels are compared as text, so 3 and "3" are the same class.
        frame[data.target] = labels.where(labels.isna(), labels.astype(str)).astype(object)
    return frame


def _run_suite(data: LoadedData, reference: DatasetMeta | None, settings: LockgateSettings) -> list[CheckResult]:
    """Run the suite in the workspace's Great Expectations project. A file
    context is not safe for two runs at once (the second finds the suite
    "changed since it was last saved"), so runs take turns; each holds the
    lock for about a second."""
    with workspace_lock(settings.home, "great-expectations"):
        return _run_suite_alone(data, reference, settings)


def _run_suite_alone(data: LoadedData, reference: DatasetMeta | None, settings: LockgateSettings) -> list[CheckResult]:
    # deferred: great_expectations is heavy, and only a suite run needs it
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction  # deferred, as gx

    settings.gx_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(settings.gx_dir))
    _quiet_progress_bars(context)
    expectations = build_expectations(family_for(data.family), data, settings.validation, reference)
    suite_name = f"{data.name}-{data.family}"
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    source = context.data_sources.add_or_update_pandas(name="lockgate")
    try:
        asset = source.get_asset(data.name)
    except LookupError:
        asset = source.add_dataframe_asset(name=data.name)
    try:
        batch = asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        batch = asset.add_batch_definition_whole_dataframe("whole")
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": _validation_frame(data)})
    checks: list[CheckResult] = []
    for run_result in outcome.run_results.values():
        for result in run_result.results:
            config = result.expectation_config
            severity = "blocking" if str(config.severity.value) == "critical" else "warning"
            name = (config.meta or {}).get("check", config.type)
            exception = result.exception_info if isinstance(result.exception_info, dict) else None
            failed = not result.success
            message = describe_failure(config, result.result or {}, exception) if failed else "ok"
            if failed and config.type == "expect_column_values_to_be_in_type_list":
                message = _with_non_numeric_examples(message, data.frame, config.kwargs.get("column"))
            checks.append(CheckResult(name=name, severity=severity, success=not failed, message=message))
    return _collapse_missing_target(checks, data.target)


def _with_non_numeric_examples(message: str, frame: pd.DataFrame, column: str | None) -> str:
    if column not in frame.columns:
        return message
    values = frame[column]
    bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
    if bad.empty:
        return message
    head = message.split("; sample values")[0]
    return f"{head}; e.g. {', '.join(repr(v) for v in bad.unique()[:5])} in {len(bad)} rows"


def _collapse_missing_target(checks: list[CheckResult], target: str) -> list[CheckResult]:
    """When the label column is missing, one message says so, not five."""
    missing = f"column '{target}' is missing"
    if not any(c.message == missing and not c.success for c in checks):
        return checks
    kept, said = [], False
    for check in checks:
        if check.message == missing:
            if said:
                continue
            said = True
            check = check.model_copy(update={"name": "label column present"})
        kept.append(check)
    return kept


def _extra_checks(data: LoadedData, settings: LockgateSettings) -> list[CheckResult]:
    """Checks Great Expectations has no expectation for."""
    checks: list[CheckResult] = []
    checks += _reading_checks(data, settings)
    if data.problems:
        shown = "; ".join(data.problems[:5]) + (f" (+{len(data.problems) - 5} more)" if len(data.problems) > 5 else "")
        what = "decodable images" if data.family == "image" else "readable files"
        checks.append(CheckResult(name=what, severity="blocking", success=False, message=shown))
    numeric = [c for c in data.feature_columns + [data.target] if c in data.frame.columns
               and pd.api.types.is_numeric_dtype(data.frame[c]) and data.is_table]
    if data.contract is not None:
        numeric = [c.name for c in data.contract.used if c.role == "numeric"] + [data.target] * data.is_regression
    infinite = [c for c in numeric if c in data.frame.columns
                and np.isinf(pd.to_numeric(data.frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)).any()]
    if infinite:
        checks.append(CheckResult(
            name="finite values", severity="blocking", success=False,
            message="infinite values in column(s) " + ", ".join(repr(c) for c in infinite[:10]),
        ))
    if data.target in data.frame.columns and len(data.frame) and not data.is_regression:
        shares = data.frame[data.target].astype(str).value_counts(normalize=True)
        rare = shares[shares < settings.validation.min_class_fraction]
        checks.append(
            CheckResult(
                name="class balance",
                severity="warning",
                success=rare.empty,
                message="ok"
                if rare.empty
                else "rare classes: " + ", ".join(f"'{k}' {v:.1%}" for k, v in rare.items()),
            )
        )
        counts = data.frame[data.target].astype(str).value_counts()
        tiny = counts[counts < 2]
        if not tiny.empty and len(counts) >= 2:
            checks.append(
                CheckResult(
                    name="examples per class",
                    severity="blocking",
                    success=False,
                    message="classes with a single example cannot be split for evaluation: "
                    + ", ".join(repr(k) for k in tiny.index[:10]),
                )
            )
    return checks


def _reading_checks(data: LoadedData, settings: LockgateSettings) -> list[CheckResult]:
    """What reading a table found: rows left out for a missing label (they
    block only above `max_missing_label_share`), and cells that mean "missing"."""
    checks = []
    if data.unlabelled_rows:
        total = data.unlabelled_rows + len(data.frame)
        share = data.unlabelled_rows / total
        limit = settings.validation.max_missing_label_share
        blocking = share > limit
        checks.append(CheckResult(
            name="rows with a label", severity="blocking" if blocking else "warning", success=False,
            message=f"{data.unlabelled_rows} of {total} rows ({share:.1%}) have no '{data.target}' and are left out of "
            "training and evaluation" + (f"; more than the {limit:.0%} allowed (validation.max_missing_label_share)"
                                          if blocking else ""),
        ))
    if data.missing_tokens:
        parts = []
        for column, tokens in list(data.missing_tokens.items())[:10]:
            shown = ", ".join(f"{n} {token!r}" if token else f"{n} blank"
                              for token, n in sorted(tokens.items(), key=lambda kv: -kv[1])[:4])
            parts.append(f"'{column}': {shown}")
        more = f" (+{len(data.missing_tokens) - 10} more columns)" if len(data.missing_tokens) > 10 else ""
        checks.append(CheckResult(
            name="values that mean missing", severity="warning", success=False,
            message="read as gaps: " + "; ".join(parts) + more + " (training.missing_tokens)",
        ))
    return checks


def _quiet_progress_bars(context: object) -> None:
    try:  # deferred, as in _run_suite_alone (which has loaded it by now)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # type: ignore[attr-defined]
    except Exception:  # cosmetic only
        log.debug("could not turn GE progress bars off", exc_info=True)

"""The data-validation suite, kept as code and built for the data set's kind.

Each expectation carries a severity: CRITICAL ones block the flow before
training, WARNING ones are reported and let it go on. When a champion exists,
its training-data profile adds schema and distribution checks, so a dropped
column or a shifted distribution is caught before a model is trained on it.
"""

from __future__ import annotations

from typing import Any

from great_expectations import expectations as gxe
from great_expectations.expectations.metadata_types import FailureSeverity

from lockgate.families.tables import TableContract
from lockgate.settings import ValidationSettings

NUMERIC_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "Int8", "Int16", "Int32", "Int64",
    "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64", "bool", "boolean",
]  # fmt: skip

BLOCKING = FailureSeverity.CRITICAL
WARNING = FailureSeverity.WARNING


def _meta(check: str, severity: FailureSeverity) -> dict[str, Any]:
    return {"meta": {"check": check}, "severity": severity}


def build_expectations(
    kind: str,
    target: str,
    feature_columns: list[str],
    settings: ValidationSettings,
    pixel_scale: float = 1.0,
    reference: dict | None = None,
    contract: TableContract | None = None,
) -> list[gxe.Expectation]:
    """All expectations for one data set; `reference` is the champion's meta,
    `contract` a table's roles (whose columns may be categories and gaps)."""
    suite: list[gxe.Expectation] = [
        gxe.ExpectColumnToExist(column=target, **_meta("label column present", BLOCKING)),
        gxe.ExpectTableRowCountToBeBetween(min_value=settings.min_rows, **_meta("enough rows", BLOCKING)),
        gxe.ExpectColumnValuesToNotBeNull(column=target, **_meta("labels not null", BLOCKING)),
    ]
    if kind == "regression":
        suite += [
            gxe.ExpectColumnValuesToBeInTypeList(column=target, type_list=NUMERIC_TYPES, **_meta("numeric target", BLOCKING)),
            gxe.ExpectColumnUniqueValueCountToBeBetween(column=target, min_value=2, **_meta("target varies", BLOCKING)),
        ]
    else:
        suite.append(
            gxe.ExpectColumnUniqueValueCountToBeBetween(
                column=target, min_value=2, max_value=settings.max_classes, **_meta("label count", BLOCKING)
            )
        )
    if kind in ("tabular", "regression") and contract is not None:
        suite += _contract_expectations(feature_columns, contract, settings)
    elif kind in ("tabular", "regression"):
        suite += _tabular_expectations(feature_columns, settings)
    elif kind == "text":
        suite += _text_expectations(feature_columns[0], settings)
    else:
        suite += _image_expectations(pixel_scale, settings)
    if reference:
        suite += _champion_expectations(kind, target, reference, settings)
    return suite


def _tabular_expectations(columns: list[str], settings: ValidationSettings) -> list[gxe.Expectation]:
    suite: list[gxe.Expectation] = [
        gxe.ExpectTableColumnCountToBeBetween(min_value=2, **_meta("at least one feature column", BLOCKING)),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=columns,
            mostly=1.0 - settings.max_duplicate_fraction,
            **_meta("duplicate rows", WARNING),
        ),
    ]
    for col in columns:
        suite.append(
            gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES, **_meta("numeric features", BLOCKING))
        )
        suite.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=col, mostly=1.0 - settings.max_null_fraction, **_meta("features not null", BLOCKING)
            )
        )
    return suite


def _contract_expectations(
    columns: list[str], contract: TableContract, settings: ValidationSettings
) -> list[gxe.Expectation]:
    """A mixed table: gaps allowed per column up to the settings' share."""
    suite: list[gxe.Expectation] = [
        gxe.ExpectTableColumnCountToBeBetween(min_value=2, **_meta("at least one feature column", BLOCKING)),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=columns, mostly=1.0 - settings.max_duplicate_fraction, **_meta("duplicate rows", WARNING)
        ),
    ]
    for spec in contract.used:
        allowed = settings.missing_share.get(spec.name, settings.max_missing_share)
        suite.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=spec.name, mostly=1.0 - allowed, **_meta("missing values within limits", BLOCKING)
            )
        )
    return suite


def _text_expectations(column: str, settings: ValidationSettings) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnToExist(column=column, **_meta("text column present", BLOCKING)),
        gxe.ExpectColumnValuesToNotBeNull(
            column=column, mostly=1.0 - settings.max_null_fraction, **_meta("texts not null", BLOCKING)
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=column, min_value=1, mostly=1.0 - settings.max_null_fraction, **_meta("texts not empty", BLOCKING)
        ),
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=column, min_value=1.0 - settings.max_duplicate_fraction, **_meta("duplicate texts", WARNING)
        ),
    ]


def _image_expectations(pixel_scale: float, settings: ValidationSettings) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="pixel_mean", **_meta("pixels are finite", BLOCKING)),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0, **_meta("pixel range", BLOCKING)),
        gxe.ExpectColumnValuesToBeBetween(
            column="pixel_max", max_value=pixel_scale, **_meta("pixel range", BLOCKING)
        ),
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="image_hash", min_value=1.0 - settings.max_duplicate_fraction, **_meta("duplicate images", WARNING)
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="pixel_std", min_value=1e-9, mostly=0.99, **_meta("blank images", WARNING)
        ),
    ]


def _champion_expectations(
    kind: str, target: str, reference: dict, settings: ValidationSettings
) -> list[gxe.Expectation]:
    drift = BLOCKING if settings.drift_severity == "blocking" else WARNING
    suite: list[gxe.Expectation] = []
    if kind != "regression":
        suite.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=target, value_set=list(reference["class_names"]), **_meta("labels known to the champion", BLOCKING)
            )
        )
    if kind in ("tabular", "regression"):
        suite.append(
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(reference["feature_columns"]) + [reference["target"]],
                exact_match=True,
                **_meta("same columns as the champion's data", BLOCKING),
            )
        )
    elif kind == "text":
        suite.append(
            gxe.ExpectColumnToExist(column=reference["text_column"], **_meta("same text column as the champion's", BLOCKING))
        )
    else:
        shape = "x".join(str(d) for d in reference["input_shape"])
        suite.append(
            gxe.ExpectColumnValuesToBeInSet(column="shape", value_set=[shape], **_meta("same image shape as the champion's", BLOCKING))
        )
    for col, stats in reference.get("profile", {}).items():
        spread = max(stats["std"], 1e-6 * abs(stats["mean"]), 1e-9)
        band = settings.max_mean_shift_std * spread
        suite.append(
            gxe.ExpectColumnMeanToBeBetween(
                column=col,
                min_value=stats["mean"] - band,
                max_value=stats["mean"] + band,
                **_meta("feature mean close to the champion's data", drift),
            )
        )
        if kind in ("tabular", "regression"):
            margin = 0.1 * (stats["max"] - stats["min"]) + 1e-9
            suite.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col,
                    min_value=stats["min"] - margin,
                    max_value=stats["max"] + margin,
                    mostly=0.99,
                    **_meta("values within the champion's range", WARNING),
                )
            )
    return suite


def describe_failure(config: Any, result: dict, exception: dict | None) -> str:
    """A sentence that names the problem of one failed expectation."""
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    where = f"column '{column}'" if column else "the table"
    text = _exception_text(exception)
    if text is not None:
        if column and (column in text or "not found" in text.lower()):
            return f"column '{column}' is missing"
        return f"{where}: check could not run ({text.splitlines()[0][:200] if text else 'error'})"
    kind = config.type
    observed = result.get("observed_value")
    if kind == "expect_column_to_exist":
        return f"column '{column}' is missing"
    if kind == "expect_table_row_count_to_be_between":
        return f"only {observed} rows; at least {kwargs.get('min_value')} are needed"
    if kind == "expect_table_column_count_to_be_between":
        return f"only {observed} columns: a table needs the label and at least one feature"
    if kind == "expect_column_unique_value_count_to_be_between":
        if observed is not None and observed < 2:
            return f"{where} has {observed} distinct label(s): at least 2 classes are needed"
        return f"{where} has {observed} distinct labels, more than {kwargs.get('max_value')} (is it a class label?)"
    if kind == "expect_table_columns_to_match_set":
        details = result.get("details", {}).get("mismatched", {})
        parts = []
        if details.get("missing"):
            parts.append(f"missing columns {sorted(details['missing'])}")
        if details.get("unexpected"):
            parts.append(f"unexpected columns {sorted(details['unexpected'])}")
        return "columns differ from the champion's training data: " + ("; ".join(parts) or str(observed))
    if kind == "expect_column_values_to_be_in_type_list":
        return f"{where} is not numeric (dtype {observed}); sample values {_sample(result)}"
    if kind == "expect_column_mean_to_be_between":
        return (
            f"{where} mean {_num(observed)} is outside [{_num(kwargs.get('min_value'))}, "
            f"{_num(kwargs.get('max_value'))}] (distribution shifted from the champion's data)"
        )
    count = result.get("unexpected_count")
    percent = result.get("unexpected_percent")
    if kind == "expect_column_value_lengths_to_be_between":
        return f"{where} has {count} empty values ({_num(percent)}%)"
    if kind in ("expect_column_values_to_not_be_null",):
        mostly = kwargs.get("mostly")
        allowed = f"; at most {1 - float(mostly):.0%} may be missing" if mostly is not None and float(mostly) < 1 else ""
        return f"{where} has {count} null values ({_num(percent)}%){allowed}"
    if kind == "expect_column_values_to_be_in_set":
        return f"{where} has {count} values outside {sorted(map(str, kwargs.get('value_set', [])))[:20]}: {_sample(result)}"
    if kind == "expect_column_values_to_be_between":
        bounds = f"[{_num(kwargs.get('min_value'))}, {_num(kwargs.get('max_value'))}]"
        return f"{where} has {count} values outside {bounds} ({_num(percent)}%): {_sample(result)}"
    if kind in ("expect_compound_columns_to_be_unique", "expect_column_proportion_of_unique_values_to_be_between"):
        if percent is not None:
            return f"{_num(percent)}% of rows are duplicates"
        return f"only {_num(100 * (observed or 0))}% of {'images' if column == 'image_hash' else 'values'} are distinct"
    return f"{where}: {kind} failed (observed {observed})"


def _exception_text(exception: dict | None) -> str | None:
    """GE records an exception either flat or keyed by the metric that raised it."""
    if not exception:
        return None
    entries = [exception] if "raised_exception" in exception or "exception_message" in exception else [
        v for v in exception.values() if isinstance(v, dict)
    ]
    for entry in entries:
        if entry.get("raised_exception") or entry.get("exception_message") or entry.get("exception_traceback"):
            return str(entry.get("exception_message") or entry.get("exception_traceback") or "")
    return None


def _sample(result: dict) -> str:
    values = result.get("partial_unexpected_list") or []
    return ", ".join(repr(v) for v in values[:5]) or "-"


def _num(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)

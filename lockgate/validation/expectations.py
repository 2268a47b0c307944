"""The data-validation suite, kept as code and built by the data's family.

Each expectation carries a severity: CRITICAL ones block the flow before
training, WARNING ones are reported and let it go on. When a champion exists,
its training-data profile adds schema and distribution checks, so a dropped
column or a shifted distribution is caught before a model is trained on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import ValidationSettings
from lockgate.families.checks import BLOCKING, check

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data.datasets import LoadedData
    from lockgate.families import Family

def build_expectations(
    family: "Family", data: "LoadedData", settings: ValidationSettings, reference: DatasetMeta | None = None
) -> list["gxe.Expectation"]:
    """All expectations for one data set: the target's, then the family's for
    its features; with a champion (`reference`, its data's meta), its schema
    and the drift from its data."""
    from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

    suite: list[gxe.Expectation] = [
        gxe.ExpectColumnToExist(column=data.target, **check("label column present", BLOCKING)),
        gxe.ExpectTableRowCountToBeBetween(min_value=settings.min_rows, **check("enough rows", BLOCKING)),
        gxe.ExpectColumnValuesToNotBeNull(column=data.target, **check("labels not null", BLOCKING)),
    ]
    suite += family.target.expectations(data.target, settings, reference)
    suite += family.feature_expectations(data, settings)
    if reference is not None:
        suite += family.schema_expectations(reference)
        suite += family.drift_expectations(reference, settings)
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
    expectation = config.type
    observed = result.get("observed_value")
    if expectation == "expect_column_to_exist":
        return f"column '{column}' is missing"
    if expectation == "expect_table_row_count_to_be_between":
        return f"only {observed} rows; at least {kwargs.get('min_value')} are needed"
    if expectation == "expect_table_column_count_to_be_between":
        return f"only {observed} columns: a table needs the label and at least one feature"
    if expectation == "expect_column_unique_value_count_to_be_between":
        if observed is not None and observed < 2:
            return f"{where} has {observed} distinct label(s): at least 2 classes are needed"
        return f"{where} has {observed} distinct labels, more than {kwargs.get('max_value')} (is it a class label?)"
    if expectation == "expect_table_columns_to_match_set":
        details = result.get("details", {}).get("mismatched", {})
        parts = []
        if details.get("missing"):
            parts.append(f"missing columns {sorted(details['missing'])}")
        if details.get("unexpected"):
            parts.append(f"unexpected columns {sorted(details['unexpected'])}")
        return "columns differ from the champion's training data: " + ("; ".join(parts) or str(observed))
    if expectation == "expect_column_values_to_be_in_type_list":
        return f"{where} is not numeric (dtype {observed}); sample values {_sample(result)}"
    if expectation == "expect_column_mean_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        centre = f" around the champion's mean {_num((low + high) / 2)}" if low is not None and high is not None else ""
        return (
            f"{where} mean {_num(observed)} is outside [{_num(low)}, {_num(high)}]{centre} "
            "(distribution shifted from the champion's data; validation.max_mean_shift_std)"
        )
    count = result.get("unexpected_count")
    percent = result.get("unexpected_percent")
    if expectation == "expect_column_value_lengths_to_be_between":
        return f"{where} has {count} empty values ({_num(percent)}%)"
    if expectation in ("expect_column_values_to_not_be_null",):
        mostly = kwargs.get("mostly")
        allowed = f"; at most {1 - float(mostly):.0%} may be missing" if mostly is not None and float(mostly) < 1 else ""
        return f"{where} has {count} null values ({_num(percent)}%){allowed}"
    if expectation == "expect_column_values_to_be_in_set":
        return f"{where} has {count} values outside {sorted(map(str, kwargs.get('value_set', [])))[:20]}: {_sample(result)}"
    if expectation == "expect_column_values_to_be_between":
        bounds = f"[{_num(kwargs.get('min_value'))}, {_num(kwargs.get('max_value'))}]"
        return f"{where} has {count} values outside {bounds} ({_num(percent)}%): {_sample(result)}"
    if expectation in ("expect_compound_columns_to_be_unique", "expect_column_proportion_of_unique_values_to_be_between"):
        if percent is not None:
            return f"{_num(percent)}% of rows are duplicates"
        return f"only {_num(100 * (observed or 0))}% of {'images' if column == 'image_hash' else 'values'} are distinct"
    return f"{where}: {expectation} failed (observed {observed})"


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

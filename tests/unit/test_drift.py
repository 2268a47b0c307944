"""The monitor's drift tests: identical data never flagged, the shifts the
monitor is for found at 1,000 rows, too few rows said rather than passed, and
the family-wise false-alarm rate held on windows with no drift."""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, fisher_exact

from lockgate.monitoring.drift import drift_tests, fisher_p_values
from lockgate.serving.traffic import MonitoredFeature

CITIES = ("(missing)", "(unseen)", "paris", "lyon", "nice", "lille")
FEATURES = [
    MonitoredFeature("income", "numeric", "income"),
    MonitoredFeature("age", "numeric", "age"),
    MonitoredFeature("city", "categorical", "city", CITIES),
    MonitoredFeature("children", "numeric", "children"),  # few values: tested as categories
]


def _rows(rng: np.random.Generator, n: int, *, income_shift: float = 0.0, city_shares=(0.4, 0.3, 0.2, 0.1),
          age_gaps: float = 0.05) -> np.ndarray:
    income = rng.normal(50.0 + 10.0 * income_shift, 10.0, n)
    age = rng.gamma(4.0, 10.0, n)
    age[rng.random(n) < age_gaps] = np.nan
    city = rng.choice([2, 3, 4, 5], size=n, p=city_shares).astype("float64")
    children = rng.poisson(1.5, n).astype("float64")
    return np.stack([income, age, city, children], axis=1)


def test_identical_data_is_never_flagged():
    reference = _rows(np.random.default_rng(0), 2000)
    result = drift_tests(FEATURES, reference, reference.copy())
    assert result.tested and not result.drifted
    assert {f.feature for f in result.features} == {"income", "age", "city", "children"}
    assert all(f.p_value == 1.0 for f in result.features)
    assert result.headline() == "no drift found in 4 features at a 1% false-alarm rate"


def test_half_a_standard_deviation_on_one_column_is_found_at_1000_rows():
    rng = np.random.default_rng(1)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, income_shift=0.5))
    assert result.drifted
    assert [(f.feature, f.test) for f in result.drifted_features()] == [("income", "KS")]
    assert result.headline().startswith("drift in 1 of 4 features: income (KS p=")
    finding = result.drifted_features()[0]
    assert finding.reference_summary.startswith("mean 50") and finding.window_summary.startswith("mean 55")


def test_ten_points_of_a_category_moved_are_found_at_1000_rows():
    rng = np.random.default_rng(2)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, city_shares=(0.3, 0.4, 0.2, 0.1)))
    assert [f.feature for f in result.drifted_features()] == ["city"]
    rejected = {f.test for f in result.features if f.drifted}
    assert rejected <= {"share of 'paris'", "share of 'lyon'"} and rejected
    finding = result.drifted_features()[0]  # the share that moved, then the others
    assert 0.07 < abs(finding.statistic) < 0.13
    assert all(f"'{city}'" in finding.reference_summary + finding.window_summary for city in CITIES[2:])


def test_a_rise_in_missing_values_is_its_own_finding():
    rng = np.random.default_rng(3)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, age_gaps=0.15))
    assert [(f.feature, f.test) for f in result.drifted_features()] == [("age", "missing share")]
    assert result.drifted_features()[0].window_summary.endswith("15% missing")


def test_too_few_served_rows_are_not_tested_and_the_reason_is_given():
    rng = np.random.default_rng(4)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 150, income_shift=3.0), min_rows=200)
    assert not result.tested and not result.drifted and not result.features
    assert "only 150 rows" in result.reason and "200" in result.reason
    assert result.headline().startswith("not tested: only 150 rows")


def test_a_category_never_seen_in_the_reference_is_found():
    rng = np.random.default_rng(5)
    window = _rows(rng, 1000)
    window[:40, 2] = 1  # the contract's code for a category training never saw
    result = drift_tests(FEATURES, _rows(rng, 3000), window)
    assert [f.feature for f in result.drifted_features()] == ["city"]
    assert any(f.drifted and "'(unseen)'" in f.test + f.window_summary for f in result.features)


def test_constant_and_single_category_features_are_skipped_with_a_reason():
    features = [MonitoredFeature("version", "numeric", "version"), MonitoredFeature("country", "categorical", "country",
                                                                                    ("(missing)", "(unseen)", "fr"))]
    rows = np.tile([[3.0, 2.0]], (300, 1))
    result = drift_tests(features, rows, rows.copy())
    assert not result.tested and not result.drifted
    assert dict(result.skipped) == {"version": "constant: 3 in every row of both samples",
                                    "country": "constant: 'fr' in every row of both samples"}
    assert "no feature could be tested" in result.reason


def test_share_tests_are_fishers_exact_test():
    rng = np.random.default_rng(6)
    for _ in range(300):
        window_rows, reference_rows = int(rng.integers(1, 3000)), int(rng.integers(1, 10_000))
        in_window = int(rng.integers(0, window_rows + 1))
        share = rng.choice([in_window / window_rows, rng.random()])  # close calls and far ones
        in_reference = int(rng.binomial(reference_rows, share))
        ours = fisher_p_values(np.array([in_window]), np.array([in_window + in_reference]), window_rows,
                               window_rows + reference_rows)[0]
        scipys = fisher_exact([[in_window, window_rows - in_window], [in_reference, reference_rows - in_reference]]).pvalue
        # Only far tails are left out: at most 1e-30 of probability, never added.
        table = (in_window, window_rows, in_reference, reference_rows)
        assert np.isclose(ours, scipys, rtol=1e-6, atol=1e-30) and ours <= scipys * (1 + 1e-6), table


MIXED = [
    MonitoredFeature("normal", "numeric", "normal"),
    MonitoredFeature("skewed_with_gaps", "numeric", "skewed_with_gaps"),
    MonitoredFeature("rounded", "numeric", "rounded"),  # ties, more than 20 values: KS
    MonitoredFeature("count", "numeric", "count"),  # few values: tested as categories
    MonitoredFeature("binary", "categorical", "binary", ("(missing)", "(unseen)", "no", "yes")),
    MonitoredFeature("colour", "categorical", "colour", ("(missing)", "(unseen)", "red", "green", "blue")),
    MonitoredFeature("town", "categorical", "town", ("(missing)", "(unseen)", *(f"t{i}" for i in range(30)))),
    MonitoredFeature("rare", "categorical", "rare", ("(missing)", "(unseen)", "common", "rare")),
    MonitoredFeature("prediction.class", "categorical", "prediction", ("a", "b", "c")),
    MonitoredFeature("prediction.confidence", "numeric", "prediction"),
]
TOWNS = 1 / np.arange(1, 31) / (1 / np.arange(1, 31)).sum()  # Zipf: many rare towns, pooled


def _mixed_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    skewed = rng.lognormal(0.0, 1.0, n)
    skewed[rng.random(n) < 0.1] = np.nan
    codes = np.stack([
        rng.choice([2, 3], n, p=[0.85, 0.15]), rng.choice([0, 2, 3, 4], n, p=[0.02, 0.5, 0.3, 0.18]),
        rng.choice(np.arange(2, 32), n, p=TOWNS), rng.choice([2, 3], n, p=[0.97, 0.03]),
        rng.choice([0, 1, 2], n, p=[0.6, 0.3, 0.1]),
    ], axis=1).astype("float64")
    numbers = np.stack([rng.normal(0, 1, n), skewed, np.round(rng.normal(40, 10, n)), rng.poisson(2.0, n)], axis=1)
    return np.concatenate([numbers, codes, rng.beta(5, 2, (n, 1))], axis=1)


def test_the_family_wise_false_alarm_rate_holds_on_small_windows():
    """300 windows of 200 rows with no drift, 10 features of every kind, each
    window against a fresh 1,000-row reference: at a 1% rate about 3 are
    flagged, and 10 or more would happen by chance about once in 1,000 runs
    (a test per feature without the family's correction flags about 30)."""
    rng = np.random.default_rng(7)
    windows = 300
    flagged = sum(drift_tests(MIXED, _mixed_rows(rng, 1000), _mixed_rows(rng, 200), 0.01).drifted
                  for _ in range(windows))
    assert binom.sf(9, windows, 0.01) < 0.002
    assert flagged <= 9, f"{flagged} of {windows} windows without drift flagged"

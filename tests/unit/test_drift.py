"""The monitor's drift tests: identical data never flagged, the shifts the
monitor is for found, too few rows said, and the family-wise false-alarm
rate held on windows drawn from the reference's own distribution."""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

from lockgate.monitoring.drift import drift_tests
from lockgate.serving.traffic import MonitoredFeature

FEATURES = [
    MonitoredFeature("income", "numeric", "income"),
    MonitoredFeature("age", "numeric", "age"),
    MonitoredFeature("city", "categorical", "city", ("(missing)", "(unseen)", "paris", "lyon", "nice", "lille")),
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
    assert min(f.p_value for f in result.features) > 0.99


def test_half_a_standard_deviation_on_one_column_is_found_at_1000_rows():
    rng = np.random.default_rng(1)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, income_shift=0.5))
    assert result.drifted
    assert [f.feature for f in result.drifted_features()] == ["income"]
    assert "income" in result.headline() and "Kolmogorov-Smirnov" in result.headline()


def test_ten_points_of_a_category_moved_are_found_at_1000_rows():
    rng = np.random.default_rng(2)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, city_shares=(0.3, 0.4, 0.2, 0.1)))
    assert [f.feature for f in result.drifted_features()] == ["city"]
    finding = result.drifted_features()[0]
    assert finding.test == "chi-square" and "'paris'" in finding.reference_summary


def test_a_rise_in_missing_values_is_its_own_finding():
    rng = np.random.default_rng(3)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 1000, age_gaps=0.15))
    assert [(f.feature, f.test) for f in result.drifted_features()] == [("age", "missing share")]


def test_too_few_served_rows_are_not_tested_and_the_reason_is_given():
    rng = np.random.default_rng(4)
    result = drift_tests(FEATURES, _rows(rng, 3000), _rows(rng, 50, income_shift=3.0), min_rows=200)
    assert not result.tested and not result.drifted
    assert "50 served rows" in result.reason and "200" in result.reason


def test_the_family_wise_false_alarm_rate_holds_on_small_windows():
    """300 windows of 200 rows from the reference's distribution, each against
    a fresh reference of 1,000 rows: the share flagged must be consistent with
    at most the stated 1% (the exact one-sided 99% lower bound of the observed
    share below 1%)."""
    rng = np.random.default_rng(5)
    windows = 300
    flagged = sum(drift_tests(FEATURES, _rows(rng, 1000), _rows(rng, 200), 0.01).drifted for _ in range(windows))
    lower = beta.ppf(0.01, flagged, windows - flagged + 1) if flagged else 0.0
    assert lower < 0.01, f"{flagged} of {windows} null windows flagged"

"""forgelab.core.stats against rliable 1.2.0 and scipy.

rliable does not import with pandas 3, so its numbers were computed once in a throwaway venv
and are recorded here with the command that made them:

    python3 -m venv /tmp/rlvenv
    /tmp/rlvenv/bin/pip install "rliable==1.2.0" "pandas<3" "arch<8" numpy scipy
    # (resolved: pandas 2.3.3, arch 7.2.0, numpy 2.4.6, scipy 1.17.1)
    np.random.seed(0)
    rly.get_interval_estimates({"A": A[:, None], "B": B[:, None], "T": T},
        lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x),
                            metrics.aggregate_mean(x)]), reps=50000)
    np.random.seed(0)
    rly.get_interval_estimates({"A,B": (A[:, None], B[:, None]), "T,U": (T, U)},
        lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=50000)

rliable's ``aggregate_median`` is the median over tasks of per-task means (the "median
human-normalised score"), not the median over seeds that forgelab reports, so the median is
checked against NumPy instead. Interval ends come from random resamples, so they are compared
within 2% of the data's range (the Monte-Carlo spread of 10,000 resamples is about 0.5%).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from forgelab.core import stats

A = np.array([500.0, 500.0, 487.3, 212.4, 500.0, 451.0, 133.2, 500.0, 478.9, 390.5])
B = np.array([320.1, 500.0, 275.8, 410.0, 188.4, 500.0, 455.2, 301.7, 150.3, 398.9])
T = np.array([[0.91, 0.42], [0.85, 0.10], [0.33, 0.57], [0.97, 0.61], [0.72, 0.05]])  # runs x tasks
U = np.array([[0.80, 0.40], [0.66, 0.22], [0.45, 0.30], [0.99, 0.35], [0.52, 0.12]])

# rliable 1.2.0 output, reps=50000 (see the module docstring): (point, low, high)
RLIABLE_IQM = {"A": (467.95, 335.8333333333333, 497.8833333333334),
               "B": (360.2833333333333, 260.0, 445.75),
               "T": (0.5833333333333333, 0.3583333333333334, 0.7266666666666666)}
RLIABLE_MEAN = {"A": (415.33000000000004, 329.06, 484.83000000000004),
                "B": (350.04, 276.79974999999996, 420.93999999999994),
                "T": (0.5529999999999999, 0.404, 0.6889999999999998)}
RLIABLE_POI = {"A,B": (0.66, 0.41, 0.9), "T,U": (0.6, 0.30000000000000004, 0.9)}
DATA = {"A": A, "B": B, "T": list(T.T)}


def _close(ours, theirs, data) -> None:
    span = float(np.ptp(np.concatenate([np.ravel(d) for d in data])))
    assert ours[0] == pytest.approx(theirs[0], abs=1e-9)
    assert ours[1] == pytest.approx(theirs[1], abs=0.02 * span)
    assert ours[2] == pytest.approx(theirs[2], abs=0.02 * span)


@pytest.mark.parametrize("name", ["A", "B", "T"])
def test_iqm_and_mean_intervals_match_rliable(name):
    data = DATA[name]
    _close(stats.stratified_bootstrap_ci(data, "iqm"), RLIABLE_IQM[name], data)
    _close(stats.stratified_bootstrap_ci(data, "mean"), RLIABLE_MEAN[name], data)


def test_probability_of_improvement_matches_rliable():
    _close(stats.probability_of_improvement(A, B), RLIABLE_POI["A,B"], [0, 1])
    _close(stats.probability_of_improvement(list(T.T), list(U.T)), RLIABLE_POI["T,U"], [0, 1])
    # swapping the sides gives the complement
    assert stats.probability_of_improvement(B, A)[0] == pytest.approx(1 - 0.66)


def test_iqm_is_scipy_trim_mean_and_median_is_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 4, 5, 7, 10, 13):
        x = rng.normal(size=n)
        assert stats.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))
        assert stats.median(x) == pytest.approx(np.median(x))
    assert stats.stratified_bootstrap_ci(A, "median")[0] == np.median(A)


def test_bootstrap_is_reproducible_and_seeded():
    first = stats.stratified_bootstrap_ci(B, "iqm", seed=0)
    assert stats.stratified_bootstrap_ci(B, "iqm", seed=0) == first
    assert stats.stratified_bootstrap_ci(B, "iqm", seed=1) != first
    lo, hi = first[1], first[2]
    assert lo < first[0] < hi


def test_bootstrap_is_stratified_by_task():
    # Task 0 is all zeros and task 1 all ones: any resample within tasks keeps the mean at
    # exactly 0.5, while pooling the runs would not.
    est, lo, hi = stats.stratified_bootstrap_ci([np.zeros(3), np.ones(3)], "mean")
    assert (est, lo, hi) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("x,y", [
    (A, B),
    ([1.0, 5.0, 3.0], [2.0, 4.0, 6.0, 8.0, 0.5]),          # small, no ties: exact
    ([3.0, 1.0, 2.0, 9.0], [10.0, 11.0, 12.0]),            # complete separation
    ([1.0, 2.0, 2.0, 3.0, 7.0, 7.0], [2.0, 3.0, 4.0, 7.0]),  # ties: asymptotic
    (list(range(12)), [x + 0.5 for x in range(3, 15)]),    # larger, no ties
])
def test_mann_whitney_matches_scipy(x, y):
    u, p = stats.mann_whitney_u(x, y)
    expected = scipy.stats.mannwhitneyu(x, y, alternative="two-sided")
    assert u == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    for method in ("asymptotic",):
        u, p = stats.mann_whitney_u(x, y, method=method)
        ref = scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method=method)
        assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_mann_whitney_exact_matches_scipy_exact():
    x, y = [0.3, 1.2, 5.5, 2.2, 9.1, 4.4], [3.3, 0.1, 7.7, 6.6, 8.8, 10.5, 2.9]
    ref = scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
    assert stats.mann_whitney_u(x, y, method="exact")[1] == pytest.approx(ref.pvalue, rel=1e-12)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (7, 20), (1, 1)])
def test_wilson_interval(k, n):
    # the closed form against its definition: the p where |k/n - p| = z sqrt(p(1-p)/n)
    lo, hi = stats.wilson_interval(k, n)
    z = stats.Z95
    for bound in ([lo] if k > 0 else []) + ([hi] if k < n else []):
        assert abs(k / n - bound) == pytest.approx(z * np.sqrt(bound * (1 - bound) / n))
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert (lo == 0.0) == (k == 0) and (hi == 1.0) == (k == n)
    # the textbook value for 3/10: (0.1078, 0.6032)
    if (k, n) == (3, 10):
        assert (round(lo, 4), round(hi, 4)) == (0.1078, 0.6032)

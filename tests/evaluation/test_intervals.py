"""Confidence intervals of the task metrics (diffax.evaluation.intervals).

Oracles: scipy's Wilson interval (``binomtest(...).proportion_ci(method="wilson")``, an
independent implementation); for the bootstrap, the normal-theory interval of a mean
(``mean -+ 1.96 s / sqrt(n)``), which the percentile bootstrap of a mean matches up to its
Monte-Carlo error and an O(1/n) bias.
"""

import numpy as np
import pytest
from scipy import stats

from diffax.evaluation.intervals import bootstrap_interval, wilson_interval
from diffax.evaluation.metrics import auroc


@pytest.mark.parametrize("k, n", [(0, 10), (9, 100), (75, 100), (100, 100), (226, 300)])
def test_wilson_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n, digits=12) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_rejects_bad_counts():
    for k, n in ((5, 4), (-1, 4), (0, 0)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(k, n)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 4, level=1.0)


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=400)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    lo, hi = bootstrap_interval(np.mean, x, num_resamples=4000, seed=0)
    # Monte-Carlo error of a 2.5% quantile of 4000 resamples: about 0.04 half-widths.
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_bootstrap_is_reproducible_and_pairs_the_arrays():
    rng = np.random.default_rng(2)
    a = rng.normal(size=50)
    assert bootstrap_interval(np.mean, a, seed=3) == bootstrap_interval(np.mean, a, seed=3)
    # Paired arrays: the statistic of (a, a) resampled together is always exactly 0.
    assert bootstrap_interval(lambda u, v: np.mean(u - v), a, a) == (0.0, 0.0)


def test_stratified_bootstrap_keeps_both_classes():
    rng = np.random.default_rng(4)
    labels = np.array([1] * 3 + [0] * 97)  # few positives: unstratified resamples lose them
    scores = rng.normal(size=100) + labels
    lo, hi = bootstrap_interval(auroc, scores, labels, strata=labels, num_resamples=500)
    assert 0.0 <= lo <= auroc(scores, labels) <= hi <= 1.0
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_interval(auroc, scores, labels, num_resamples=500)


def test_bootstrap_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="first"):
        bootstrap_interval(np.mean, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="strata"):
        bootstrap_interval(np.mean, np.zeros(3), strata=[0, 1])

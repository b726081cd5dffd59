"""bench.stats: finite-only summaries, bootstrap CI and paired tests against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from bench.errors import BenchError
from bench.stats import bootstrap_ci, mean_finite, paired_test, spread


def test_mean_and_spread_ignore_non_finite():
    v = np.array([1.0, 2.0, np.nan, 3.0, np.inf, -np.inf])
    assert mean_finite(v) == 2.0
    assert spread(v) == pytest.approx(1.0)
    assert np.isnan(mean_finite([np.nan, np.inf])) and np.isnan(mean_finite([]))
    assert np.isnan(spread([5.0, np.nan]))


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    v = np.random.default_rng(0).normal(0.3, 1.0, 200)
    lo, hi = bootstrap_ci(np.r_[v, np.nan, np.inf])
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(np.r_[v, np.nan, np.inf])
    assert (lo, hi) != bootstrap_ci(v, seed=1)
    # roughly the normal-theory interval
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    narrow = bootstrap_ci(v, ci=0.5)
    assert lo < narrow[0] < narrow[1] < hi
    assert bootstrap_ci([2.0]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([np.nan])))


def test_bootstrap_ci_chunks_long_inputs():
    v = np.random.default_rng(1).random(5000)
    lo, hi = bootstrap_ci(v, n_boot=1000)  # 5e6 indices: split into chunks
    assert lo < v.mean() < hi


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 40)
    b = a - 0.5 + rng.normal(0, 0.5, 40)
    a_nan = np.r_[a, np.nan, 1.0]
    b_nan = np.r_[b, 2.0, np.inf]
    res = paired_test(a_nan, b_nan)
    assert res["n"] == 40
    assert res["mean_diff"] == pytest.approx(np.mean(a - b))
    assert res["t_p"] == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
    assert res["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(a, b).pvalue)


def test_paired_test_degenerate_cases():
    one = paired_test([1.0, np.nan], [0.5, 2.0])
    assert one["n"] == 1 and one["mean_diff"] == 0.5 and np.isnan(one["t_p"]) and np.isnan(one["wilcoxon_p"])
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["mean_diff"] == 0.0 and np.isnan(same["t_p"]) and np.isnan(same["wilcoxon_p"])
    empty = paired_test([], [])
    assert empty["n"] == 0 and np.isnan(empty["mean_diff"])
    shifted = paired_test([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])  # constant nonzero difference
    assert shifted["mean_diff"] == 1.0 and shifted["t_p"] == 0.0 and 0 < shifted["wilcoxon_p"] <= 1


def test_stats_errors():
    with pytest.raises(BenchError, match=r"values must be a 1-d array \(n,\), got shape \(2, 2\)"):
        mean_finite(np.zeros((2, 2)))
    with pytest.raises(BenchError, match="values must be numeric, got dtype <U1"):
        spread(["a", "b"])
    with pytest.raises(BenchError, match="n_boot must be an integer >= 1"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(BenchError, match=r"ci must be in \(0, 1\)"):
        bootstrap_ci([1.0, 2.0], ci=95)
    with pytest.raises(BenchError, match=r"a \(3,\) and b \(2,\) must be paired"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])

"""Summary statistics over per-sample metric values: means, spreads, CIs and paired tests.

Non-finite values (NaN from undefined correlations, +inf from identical PSNR pairs) are left
out everywhere, matching audioldm_eval, which skips infinite PSNR values.
"""

from __future__ import annotations

import warnings

import numpy as np

from bench.errors import BenchError


def _vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise BenchError(f"{name} must be a 1-d array (n,), got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise BenchError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _finite(values, name: str = "values") -> np.ndarray:
    arr = _vector(values, name)
    return arr[np.isfinite(arr)]


def mean_finite(values) -> float:
    """Mean of the finite entries of values (n,); NaN when there are none."""
    arr = _finite(values)
    return float(arr.mean()) if arr.size else float("nan")


def spread(values) -> float:
    """Sample standard deviation (ddof=1) of the finite entries of values (n,); NaN for fewer than 2."""
    arr = _finite(values)
    return float(arr.std(ddof=1)) if arr.size >= 2 else float("nan")


def bootstrap_ci(values, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of the finite entries of values (n,): -> (lo, hi).

    Resamples with replacement n_boot times from np.random.default_rng(seed); (NaN, NaN) when no
    value is finite. Deterministic for a given seed.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise BenchError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not (isinstance(ci, (int, float, np.floating)) and 0.0 < ci < 1.0):
        raise BenchError(f"ci must be in (0, 1), got {ci!r}")
    arr = _finite(values)
    if arr.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_boot))
    # Chunks bound the index matrix to ~2**22 entries for long value vectors.
    chunk = max(1, (1 << 22) // arr.size)
    for start in range(0, int(n_boot), chunk):
        stop = min(int(n_boot), start + chunk)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_test(a, b) -> dict:
    """Paired comparison of a (n,) and b (n,) over the pairs where both are finite.

    Returns dict(n, mean_diff = mean(a - b), t_p = scipy.stats.ttest_rel p, wilcoxon_p =
    scipy.stats.wilcoxon p (two-sided; zero differences dropped, scipy's default)).
    Both p-values are NaN when n < 2 or every difference is zero; mean_diff is NaN when n == 0.
    Constant nonzero differences give t_p = 0 (t is infinite).
    """
    from scipy import stats

    x = _vector(a, "a")
    y = _vector(b, "b")
    if x.shape != y.shape:
        raise BenchError(f"a {x.shape} and b {y.shape} must be paired: same shape (n,)")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    diff = x - y
    out = {"n": n, "mean_diff": float(diff.mean()) if n else float("nan"), "t_p": float("nan"), "wilcoxon_p": float("nan")}
    if n < 2 or np.all(diff == 0):
        return out
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Constant nonzero differences make t infinite (p = 0); scipy warns, the value stands.
        warnings.simplefilter("ignore", RuntimeWarning)
        out["t_p"] = float(stats.ttest_rel(x, y).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(x, y).pvalue)
    return out

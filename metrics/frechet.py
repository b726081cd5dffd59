"""Frechet distance between Gaussians fitted to two embedding sets (FD with PANNs, FAD with VGGish).

FD = |mu_a - mu_b|^2 + tr S_a + tr S_b - 2 tr sqrt(S_a S_b), means and covariances (ddof 1) in
float64. tr sqrt(S_a S_b) is computed as sum_k sqrt(lambda_k) over the eigenvalues of the
symmetric matrix sqrt(S_a) S_b sqrt(S_a) (same eigenvalues as S_a S_b), clipped at 0, with
sqrt(S_a) from eigh with clipped eigenvalues. Both clips also zero eigenvalues below
D * machine-eps * the largest one: rounding noise, whose square roots would otherwise add up.
Unlike scipy.linalg.sqrtm this stays real and exact for singular covariances, e.g. fewer clips
than dimensions.

The estimate is biased upwards by O(1/N): only compare sets of equal size, or use ``fad_inf``.
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError


def _check_set(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise BenchError(f"{name} must be (N, D) embeddings with N >= 2, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise BenchError(f"{name} {arr.shape} contains NaN or inf")
    return arr


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = _check_set(a, "a")
    b = _check_set(b, "b")
    if a.shape[1] != b.shape[1]:
        raise BenchError(f"a {a.shape} and b {b.shape} must have the same embedding size D")
    return a, b


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False, ddof=1))


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    # Eigenvalues that are zero in exact arithmetic come out as +-eps * largest; their square
    # roots (~1e-8 each) would add up over many null directions (N < D), so they become 0.
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def _fd_from_stats(mu_a, cov_a, sqrt_a, mu_b, cov_b) -> float:
    middle = sqrt_a @ cov_b @ sqrt_a
    middle = (middle + middle.T) / 2.0  # symmetric in exact arithmetic; eigvalsh wants it so
    tr_sqrt = np.sqrt(_clip_eigenvalues(np.linalg.eigvalsh(middle))).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to a (N, D) and b (M, D); N, M >= 2, any D.

    Returns a float64 >= 0 up to rounding. See the module docstring for the formula.
    """
    a, b = _check_pair(a, b)
    mu_a, cov_a = _gaussian(a)
    mu_b, cov_b = _gaussian(b)
    return _fd_from_stats(mu_a, cov_a, _psd_sqrt(cov_a), mu_b, cov_b)


def fad_inf(
    a: np.ndarray,
    b: np.ndarray,
    n_sizes: int = 10,
    min_size: int | None = None,
    n_boot: int = 1,
    seed: int = 0,
    *,
    subsample_ref: bool = False,
) -> dict:
    """Extrapolated FD at infinitely many reconstructions (FAD-inf / FID-inf).

    a: (N, D) reference embeddings (the stimuli), b: (M, D) embeddings of the reconstructions.
    Following Chong & Forsyth (2020, FID-inf) as adapted to audio by Gui et al. (2024, "Adapting
    Frechet Audio Distance"): FD is computed between a and random subsets of b at ``n_sizes``
    sizes spaced evenly in 1/n from ``min_size`` (default max(2, M // 5)) to M, then
    FD(n) = fad_inf + slope / n is fitted by least squares and the intercept reported.

    Subsets are drawn WITHOUT replacement (rng = np.random.default_rng(seed)); ``n_boot`` subsets
    per size are averaged. A random subset of an i.i.d. sample is itself i.i.d., so the fit
    extrapolates to the population FD, whereas resampling with replacement (fadtk) would
    extrapolate to the FD of the full set of M, keeping its 1/M bias.

    The reference set's own 1/N bias is only removed with ``subsample_ref=True``: then a is
    subsampled alongside b, at round(n * N / M) rows, so both biases shrink as 1/n. Use it when
    the reference is as small as the reconstruction set (the usual paired case).

    Returns dict(fad_inf, slope, r2, sizes (list of int), values (list of mean FD per size)).
    Sizes that coincide after rounding are kept once (min_size and M always remain).
    """
    a, b = _check_pair(a, b)
    for name, value, lowest in (("n_sizes", n_sizes, 2), ("n_boot", n_boot, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise BenchError(f"{name} must be an integer >= {lowest}, got {value!r}")
    m = b.shape[0]
    if min_size is None:
        min_size = max(2, m // 5)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or not 2 <= min_size < m:
        raise BenchError(f"min_size must be an integer with 2 <= min_size < len(b) = {m}, got {min_size!r}")
    sizes = np.unique(np.round(1.0 / np.linspace(1.0 / min_size, 1.0 / m, int(n_sizes))).astype(int))
    if subsample_ref:
        ref_sizes = np.round(sizes * a.shape[0] / m).astype(int)
        if ref_sizes.min() < 2:
            raise BenchError(f"subsample_ref: a {a.shape} is too small for min_size {min_size} of b {b.shape}")

    rng = np.random.default_rng(seed)
    if not subsample_ref:
        mu_a, cov_a = _gaussian(a)
        sqrt_a = _psd_sqrt(cov_a)  # the costly eigh, done once
    values = []
    for k, n in enumerate(sizes):
        fds = []
        for _ in range(int(n_boot)):
            mu_b, cov_b = _gaussian(b[rng.permutation(m)[:n]])
            if subsample_ref:
                mu_a, cov_a = _gaussian(a[rng.permutation(a.shape[0])[: ref_sizes[k]]])
                sqrt_a = _psd_sqrt(cov_a)
            fds.append(_fd_from_stats(mu_a, cov_a, sqrt_a, mu_b, cov_b))
        values.append(float(np.mean(fds)))

    x = 1.0 / sizes
    y = np.asarray(values)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([intercept, slope])
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1.0 - residual @ residual / total) if total > 0 else float("nan")
    return {
        "fad_inf": float(intercept),
        "slope": float(slope),
        "r2": r2,
        "sizes": [int(s) for s in sizes],
        "values": values,
    }

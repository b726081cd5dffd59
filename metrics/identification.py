"""Pairwise identification accuracy (bdpy semantics), for any set of predicted / true features."""

from __future__ import annotations

import warnings

import numpy as np

from bench.errors import BenchError

# Correlations that differ by less than this are rounding noise (BLAS sums in different orders),
# so they are treated as ties, i.e. failures.
_TIE_TOL = 1e-12


def _standardise_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to zero mean and unit norm, and a mask of rows with zero variance."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    flat = norm <= 1e-12 * np.maximum(np.abs(x).max(axis=1), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = x / norm[:, None]
    z[flat] = np.nan
    return z, flat


def pairwise_identification(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """For each i, the fraction of j != i with corr(pred_i, true_j) < corr(pred_i, true_i).

    pred, true: (n, d) with n >= 2, d >= 2 -> (n,) float64 in [0, 1]; chance is 0.5.
    (n, ...) inputs are flattened to (n, d) first.
    Ties count as failures (differences below 1e-12 count as ties, so duplicated rows fail
    regardless of rounding). A zero-variance row has no correlation: result i is NaN when
    pred_i or true_i is constant, and a constant true_j counts as a failure for every i
    (a warning is issued in both cases).
    """
    p = np.asarray(pred)
    t = np.asarray(true)
    if p.ndim < 2 or p.shape != t.shape:
        raise BenchError(f"pred {p.shape} and true {t.shape} must both be (n, d) with the same shape")
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    n, d = p.shape
    if n < 2 or d < 2:
        raise BenchError(f"pred and true must be (n, d) with n >= 2 and d >= 2, got shape {p.shape}")
    p = p.astype(np.float64)
    t = t.astype(np.float64)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise BenchError(f"pred and true {p.shape} must be finite (found NaN or inf)")

    zp, flat_p = _standardise_rows(p)
    zt, flat_t = _standardise_rows(t)
    corr = zp @ zt.T  # (n, n): corr[i, j] = corr(pred_i, true_j)
    own = np.diag(corr).copy()
    # NaN compares as False, so a constant true_j is a failure for every i.
    wins = corr < (own[:, None] - _TIE_TOL)
    np.fill_diagonal(wins, False)
    result = wins.sum(axis=1) / (n - 1)
    undefined = flat_p | flat_t
    if np.any(undefined):
        warnings.warn(
            f"pairwise_identification: {int(flat_p.sum())} pred rows and {int(flat_t.sum())} true rows "
            "have zero variance; their pairs have no correlation",
            RuntimeWarning,
            stacklevel=2,
        )
    result[undefined] = np.nan
    return result

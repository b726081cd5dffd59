"""Paired mel-spectrogram metrics: PCC and PSNR per sample (audioldm_eval conventions).

Both take the mel of the reconstruction and of the stimulus, (n, ...) arrays of one shape,
usually ``bench.audio.eval_mel`` output (n, 64, T) in [0, 1]. Lengths are not aligned here:
a shape mismatch raises, and the caller decides how to cut.
"""

from __future__ import annotations

import warnings

import numpy as np

from bench.errors import BenchError


def _paired(rec_mel, ref_mel) -> tuple[np.ndarray, np.ndarray]:
    """Both as (n, features) float64; BenchError on shape mismatch or non-finite values."""
    rec = np.asarray(rec_mel)
    ref = np.asarray(ref_mel)
    if rec.shape != ref.shape:
        raise BenchError(
            f"rec_mel {rec.shape} and ref_mel {ref.shape} must have the same shape (n, ...); "
            "cut both to the shorter time length first"
        )
    if rec.ndim < 2 or rec.shape[0] == 0 or rec[0].size < 2:
        raise BenchError(f"rec_mel and ref_mel must be (n, ...) with n >= 1 and at least 2 values per sample, got shape {rec.shape}")
    shape = rec.shape
    rec = rec.reshape(shape[0], -1).astype(np.float64)
    ref = ref.reshape(shape[0], -1).astype(np.float64)
    if not (np.all(np.isfinite(rec)) and np.all(np.isfinite(ref))):
        raise BenchError(f"rec_mel and ref_mel {shape} must be finite (found NaN or inf)")
    return rec, ref


def pcc(rec_mel: np.ndarray, ref_mel: np.ndarray) -> np.ndarray:
    """Pearson r per sample over the flattened mel: (n, ...) x2 -> (n,) float64.

    A sample whose reconstruction or reference has (numerically) zero variance gets NaN and a
    warning: r is undefined there, and NaN keeps it out of ``bench.stats.mean_finite``.
    """
    rec, ref = _paired(rec_mel, ref_mel)
    # Rounding leaves tiny residuals around a constant: a std below 1e-12 of the sample's
    # largest magnitude counts as zero variance.
    tol_rec = 1e-12 * np.abs(rec).max(axis=1)
    tol_ref = 1e-12 * np.abs(ref).max(axis=1)
    rec = rec - rec.mean(axis=1, keepdims=True)
    ref = ref - ref.mean(axis=1, keepdims=True)
    ss_rec = np.einsum("ij,ij->i", rec, rec)
    ss_ref = np.einsum("ij,ij->i", ref, ref)
    size = rec.shape[1]
    flat = (np.sqrt(ss_rec / size) <= tol_rec) | (np.sqrt(ss_ref / size) <= tol_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.einsum("ij,ij->i", rec, ref) / np.sqrt(ss_rec * ss_ref)
    r = np.clip(r, -1.0, 1.0)
    if np.any(flat):
        warnings.warn(
            f"pcc: {int(flat.sum())} of {len(r)} samples have zero variance; their correlation is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        r[flat] = np.nan
    return r


def psnr(rec_mel: np.ndarray, ref_mel: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """10 log10(data_range^2 / MSE) per sample: (n, ...) x2 -> (n,) float64.

    Identical pairs (MSE == 0) give +inf; audioldm_eval skips those when averaging, and so does
    ``bench.stats.mean_finite``. Inputs are not clipped to the data range.
    """
    if not (isinstance(data_range, (int, float, np.integer, np.floating)) and np.isfinite(data_range) and data_range > 0):
        raise BenchError(f"data_range must be a positive finite number, got {data_range!r}")
    rec, ref = _paired(rec_mel, ref_mel)
    mse = np.mean((rec - ref) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(float(data_range) ** 2 / mse)

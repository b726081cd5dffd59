"""Paired KL divergence between classifier outputs (PANNs Cnn14 logits), audioldm_eval convention."""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError

EPS = 1e-6
KINDS = ("softmax", "sigmoid")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)  # avoids overflow in exp
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only, so no overflow either way
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def kl_divergence(ref_logits: np.ndarray, rec_logits: np.ndarray, kind: str = "softmax") -> np.ndarray:
    """Per-pair KL(reference || reconstruction) of (n, C) logits -> (n,) float64.

    As audioldm_eval's ``calculate_kl``, where the reported number is
    ``F.kl_div((p + 1e-6).log(), q, reduction="sum") / n``, i.e. the mean over pairs of

        KL_i = sum_c q_ic (log q_ic - log(p_ic + 1e-6)),   with 0 log 0 = 0,

    q = probabilities of the reference (stimulus), p = of the reconstruction.
    kind="softmax": q = softmax(ref_logits), p = softmax(rec_logits) over the C classes.
    kind="sigmoid": q = sigmoid(ref_logits), p = sigmoid(rec_logits) per class, summed with the
    same formula (no 1 - q terms; not a normalised divergence and can be slightly negative).
    Averaging the returned values gives audioldm_eval's figure; computed in float64.
    """
    from scipy.special import xlogy

    if kind not in KINDS:
        raise BenchError(f"kind must be one of {KINDS}, got {kind!r}")
    ref = np.asarray(ref_logits)
    rec = np.asarray(rec_logits)
    if ref.ndim != 2 or ref.shape != rec.shape or ref.shape[0] == 0:
        raise BenchError(f"ref_logits {ref.shape} and rec_logits {rec.shape} must both be (n, C) with the same shape")
    ref = ref.astype(np.float64)
    rec = rec.astype(np.float64)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(rec))):
        raise BenchError(f"ref_logits and rec_logits {ref.shape} must be finite (found NaN or inf)")
    prob = _softmax if kind == "softmax" else _sigmoid
    q = prob(ref)
    p = prob(rec)
    return np.sum(xlogy(q, q) - q * np.log(p + EPS), axis=1)

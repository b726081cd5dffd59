"""Array metrics against references: scipy, closed forms, brute-force loops, torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from bench.errors import BenchError
from metrics.frechet import fad_inf, frechet_distance
from metrics.identification import pairwise_identification
from metrics.kl import kl_divergence
from metrics.probes import ProbeResult, cv_folds, svm_probe
from metrics.spectral import pcc, psnr


def _rng(seed=0):
    return np.random.default_rng(seed)


# --- spectral -------------------------------------------------------------------------------


def test_pcc_matches_scipy_pearsonr():
    ref = _rng().random((5, 8, 13)).astype(np.float32)
    rec = (ref + 0.3 * _rng(1).random(ref.shape)).astype(np.float32)
    r = pcc(rec, ref)
    assert r.shape == (5,) and r.dtype == np.float64
    expected = [scipy.stats.pearsonr(rec[i].ravel().astype(float), ref[i].ravel().astype(float))[0] for i in range(5)]
    np.testing.assert_allclose(r, expected, rtol=1e-10)


def test_pcc_zero_variance_gives_nan_with_warning():
    ref = _rng().random((3, 4, 5))
    rec = ref.copy()
    rec[1] = 0.7
    with pytest.warns(RuntimeWarning, match="1 of 3 samples have zero variance"):
        r = pcc(rec, ref)
    assert np.isnan(r[1]) and np.allclose(r[[0, 2]], 1.0)


def test_psnr_closed_form_and_infinity():
    ref = _rng().random((4, 6, 7))
    rec = ref + 0.1
    rec[2] = ref[2]
    p = psnr(rec, ref)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p[[0, 1, 3]], 10 * np.log10(1 / 0.01))
    assert p[2] == np.inf
    np.testing.assert_allclose(psnr(rec, ref, data_range=2.0)[0], 10 * np.log10(4 / 0.01))


def test_spectral_errors():
    a = np.zeros((2, 64, 100))
    with pytest.raises(BenchError, match=r"rec_mel \(2, 64, 100\) and ref_mel \(2, 64, 98\) must have the same shape"):
        pcc(a, a[..., :98])
    with pytest.raises(BenchError, match="at least 2 values per sample"):
        pcc(np.zeros(5), np.zeros(5))
    with pytest.raises(BenchError, match="must be finite"):
        psnr(np.full((1, 3), np.nan), np.zeros((1, 3)))
    with pytest.raises(BenchError, match="data_range must be a positive finite number"):
        psnr(a, a, data_range=0)


# --- identification -------------------------------------------------------------------------


def _brute_identification(pred, true):
    n = len(pred)
    c = np.array([[np.corrcoef(pred[i], true[j])[0, 1] for j in range(n)] for i in range(n)])
    return np.array([np.sum(c[i, np.arange(n) != i] < c[i, i]) / (n - 1) for i in range(n)])


def test_identification_matches_brute_force_and_perfect_is_one():
    true = _rng().standard_normal((30, 20))
    pred = true + 2.0 * _rng(1).standard_normal(true.shape)
    np.testing.assert_allclose(pairwise_identification(pred, true), _brute_identification(pred, true))
    assert np.all(pairwise_identification(true, true) == 1.0)
    # (n, ...) is flattened
    flat = pairwise_identification(pred.reshape(30, 4, 5), true.reshape(30, 4, 5))
    np.testing.assert_array_equal(flat, pairwise_identification(pred, true))


def test_identification_shuffled_is_chance():
    true = _rng().standard_normal((300, 40))
    pred = true[_rng(1).permutation(300)]
    assert abs(pairwise_identification(pred, true).mean() - 0.5) < 0.05


def test_identification_ties_count_as_failures():
    true = _rng().standard_normal((6, 10))
    true[3] = true[0]  # duplicated candidate: always ties with the correct one
    acc = pairwise_identification(true, true)
    np.testing.assert_allclose(acc[[0, 3]], 4 / 5)
    np.testing.assert_allclose(acc[[1, 2, 4, 5]], 1.0)


def test_identification_zero_variance_rows():
    true = _rng().standard_normal((5, 8))
    pred = true.copy()
    pred[1] = 3.0
    true[2] = 0.0
    with pytest.warns(RuntimeWarning, match="1 pred rows and 1 true rows have zero variance"):
        acc = pairwise_identification(pred, true)
    assert np.isnan(acc[1]) and np.isnan(acc[2])
    np.testing.assert_allclose(acc[[0, 3, 4]], 3 / 4)  # the constant candidate counts as a failure


def test_identification_errors():
    with pytest.raises(BenchError, match=r"pred \(3, 4\) and true \(3, 5\) must both be \(n, d\)"):
        pairwise_identification(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(BenchError, match=r"pred \(3,\) and true \(3,\) must both be \(n, d\)"):
        pairwise_identification(np.zeros(3), np.zeros(3))
    with pytest.raises(BenchError, match="n >= 2 and d >= 2"):
        pairwise_identification(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(BenchError, match="must be finite"):
        pairwise_identification(np.full((3, 4), np.inf), np.zeros((3, 4)))


# --- probes ---------------------------------------------------------------------------------


def _blobs(n_per_class=30, d=6, seed=0):
    rng = _rng(seed)
    labels = np.repeat([0, 1, 2], n_per_class)
    centers = 10.0 * rng.standard_normal((3, d))
    return centers[labels] + rng.standard_normal((len(labels), d)), labels


def test_svm_probe_separable_data():
    x, y = _blobs()
    res = svm_probe(x, y)
    assert isinstance(res, ProbeResult)
    assert res.accuracy == pytest.approx(1.0) and res.n_splits == 5 and res.fold_accuracies.shape == (5,)
    assert res.chance == pytest.approx(1 / 3)
    assert svm_probe(x, y, seed=3, kernel="linear").accuracy == pytest.approx(1.0)
    np.testing.assert_array_equal(svm_probe(x.reshape(len(x), 3, 2), y).fold_accuracies, res.fold_accuracies)
    noise = svm_probe(_rng(5).standard_normal(x.shape), y)
    assert noise.accuracy < 0.6


def test_svm_probe_groups_never_split():
    x, y = _blobs(n_per_class=24)
    groups = np.arange(len(y)) // 3  # 3 windows per stimulus, 8 stimuli per class
    folds, used = cv_folds(y, groups, n_splits=5, seed=0)
    assert used == 5
    seen = np.zeros(len(y), int)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        seen[test] += 1
    assert np.all(seen == 1)
    res = svm_probe(x, y, groups=groups)
    assert res.n_splits == 5 and res.accuracy == pytest.approx(1.0)
    first = svm_probe(x + _rng(9).standard_normal(x.shape) * 8, y, groups=groups, seed=4)
    again = svm_probe(x + _rng(9).standard_normal(x.shape) * 8, y, groups=groups, seed=4)
    np.testing.assert_array_equal(first.fold_accuracies, again.fold_accuracies)


def test_svm_probe_reduces_splits_for_small_classes():
    x, y = _blobs(n_per_class=10)
    y = y.copy()
    y[:7] = 3  # class 0 keeps 3 members
    with pytest.warns(UserWarning, match="reduced n_splits from 5 to 3"):
        res = svm_probe(x, y)
    assert res.n_splits == 3 and res.fold_accuracies.shape == (3,)
    groups = np.arange(len(y)) // 2  # class 0 now spans groups 3 and 4 only (indices 7..9)
    with pytest.warns(UserWarning, match="reduced n_splits from 5 to 2"):
        assert cv_folds(y, groups)[1] == 2


def test_svm_probe_errors():
    x, y = _blobs(n_per_class=4)
    with pytest.raises(BenchError, match=r"features must be \(n, d\) with n >= 2"):
        svm_probe(x[0], y)
    with pytest.raises(BenchError, match="features .* contain NaN or inf"):
        svm_probe(np.full_like(x, np.nan), y)
    with pytest.raises(BenchError, match=r"labels must be \(n,\) = \(12,\)"):
        svm_probe(x, y[:5])
    with pytest.raises(BenchError, match="at least 2 classes"):
        svm_probe(x, np.zeros(len(x)))
    with pytest.raises(BenchError, match="a class has fewer than 2 members"):
        svm_probe(x, np.r_[y[:-1], 7])
    with pytest.raises(BenchError, match="a class has fewer than 2 distinct groups"):
        svm_probe(x, y, groups=y)
    with pytest.raises(BenchError, match="n_splits must be an integer >= 2"):
        cv_folds(y, n_splits=1)
    with pytest.raises(BenchError, match=r"labels must be \(n,\), got shape"):
        cv_folds(y[None])
    with pytest.raises(BenchError, match=r"groups must be \(n,\) like labels"):
        cv_folds(y, groups=y[:3])


# --- Frechet distance -----------------------------------------------------------------------


def _fd_sqrtm(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_matches_sqrtm_reference():
    a = _rng().standard_normal((200, 8)) @ _rng(1).standard_normal((8, 8))
    b = _rng(2).standard_normal((150, 8)) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(_fd_sqrtm(a, b), rel=1e-8)


def test_frechet_identical_sets_is_zero():
    a = _rng().standard_normal((50, 16))
    assert abs(frechet_distance(a, a)) < 1e-9


def test_frechet_diagonal_closed_form():
    # Hadamard columns are orthogonal and zero-mean, so the sample covariances are exactly diagonal.
    h = scipy.linalg.hadamard(8)[:, 1:4].astype(float)
    sa, sb = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.2, 0.5])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = h * sa + mu_a, h * sb + mu_b
    va, vb = sa**2 * 8 / 7, sb**2 * 8 / 7
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_fewer_samples_than_dimensions():
    a = _rng().standard_normal((5, 20))
    b = _rng(1).standard_normal((7, 20)) + 0.5
    # tr sqrt(Sa Sb) = nuclear norm of Xa Xb^T / sqrt((Na - 1)(Nb - 1)) for centred data matrices.
    xa, xb = a - a.mean(0), b - b.mean(0)
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(4 * 6)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb) - 2 * cross
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd == pytest.approx(expected, rel=1e-9)


def test_frechet_errors():
    with pytest.raises(BenchError, match=r"a must be \(N, D\) embeddings with N >= 2, got shape \(1, 4\)"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(BenchError, match=r"a \(5, 4\) and b \(5, 3\) must have the same embedding size D"):
        frechet_distance(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(BenchError, match="b .* contains NaN or inf"):
        frechet_distance(np.zeros((5, 4)), np.full((5, 4), np.nan))


def test_fad_inf_recovers_the_intercept():
    d = 16
    mu = np.zeros(d)
    mu[0] = 1.0  # population FD = |mu|^2 = 1
    a = _rng().standard_normal((40_000, d))  # large reference: its own bias is negligible
    b = _rng(1).standard_normal((1_000, d))
    b = b - b.mean(0) + mu  # exact set mean: removes the noise term linear in the mean error
    res = fad_inf(a, b, n_sizes=8, min_size=100, n_boot=20, seed=0)
    assert res["sizes"][0] == 100 and res["sizes"][-1] == 1000 and len(res["sizes"]) == 8
    assert res["values"][0] > res["values"][-1] > 1.0  # biased upwards, more so for small n
    assert abs(res["fad_inf"] - 1.0) < 0.06 and res["values"][0] - 1.0 > 0.5
    assert res["slope"] > 0 and res["r2"] > 0.9
    assert fad_inf(a, b, n_sizes=8, min_size=100, n_boot=20, seed=0) == res  # deterministic


def test_fad_inf_subsample_ref_removes_both_biases():
    d = 16
    a = _rng().standard_normal((1_000, d))
    b = _rng(1).standard_normal((1_000, d))  # same distribution: population FD is 0
    fixed_ref = fad_inf(a, b, min_size=100, n_boot=3)
    both = fad_inf(a, b, min_size=100, n_boot=3, subsample_ref=True)
    assert abs(both["fad_inf"]) < 0.03 < fixed_ref["fad_inf"]


def test_fad_inf_errors():
    a, b = _rng().standard_normal((50, 3)), _rng(1).standard_normal((20, 3))
    with pytest.raises(BenchError, match="n_sizes must be an integer >= 2"):
        fad_inf(a, b, n_sizes=1)
    with pytest.raises(BenchError, match="n_boot must be an integer >= 1"):
        fad_inf(a, b, n_boot=0)
    with pytest.raises(BenchError, match=r"min_size must be an integer with 2 <= min_size < len\(b\) = 20"):
        fad_inf(a, b, min_size=20)
    with pytest.raises(BenchError, match="subsample_ref: a .* is too small"):
        fad_inf(a[:4], b, min_size=5, subsample_ref=True)


# --- KL -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_kl_matches_torch_kl_div(kind):
    torch = pytest.importorskip("torch")
    ref = 3 * _rng().standard_normal((6, 527))
    rec = 3 * _rng(1).standard_normal((6, 527))
    ours = kl_divergence(ref, rec, kind=kind)
    r, p = torch.from_numpy(ref), torch.from_numpy(rec)
    prob = (lambda z: z.softmax(dim=1)) if kind == "softmax" else torch.sigmoid
    per_pair = torch.nn.functional.kl_div((prob(p) + 1e-6).log(), prob(r), reduction="none").sum(dim=1)
    np.testing.assert_allclose(ours, per_pair.numpy(), rtol=1e-10, atol=1e-12)
    # audioldm_eval's reported number is the batch sum over n
    audioldm = torch.nn.functional.kl_div((prob(p) + 1e-6).log(), prob(r), reduction="sum") / len(ref)
    assert ours.mean() == pytest.approx(float(audioldm), rel=1e-10)


def test_kl_identical_is_near_zero_and_stable_for_large_logits():
    ref = 50 * _rng().standard_normal((3, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kl = kl_divergence(ref, ref)
        kl_sig = kl_divergence(ref, ref, kind="sigmoid")
    assert np.all(np.abs(kl) < 1e-4) and np.all(np.isfinite(kl_sig))


def test_kl_errors():
    x = np.zeros((2, 5))
    with pytest.raises(BenchError, match="kind must be one of"):
        kl_divergence(x, x, kind="logits")
    with pytest.raises(BenchError, match=r"ref_logits \(2, 5\) and rec_logits \(2, 4\) must both be \(n, C\)"):
        kl_divergence(x, x[:, :4])
    with pytest.raises(BenchError, match="must be finite"):
        kl_divergence(x, np.full_like(x, np.nan))

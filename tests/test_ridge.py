"""bench.ridge: RidgeGCV against sklearn and a brute-force GCV, SelectiveRidge against fastl2lir.

Small arrays only; the paper-size timings live in benchmarks/test_bench_ridge.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.ridge import RidgeGCV, SelectiveRidge


def _data(n=120, V=30, m=4, seed=0, offset=True):
    """X (n, V) with uneven scales and means, Y (n, m) partly explained by the first 8 (or V) voxels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, V)) * rng.uniform(0.5, 3.0, V)
    if offset:
        X += rng.uniform(-5.0, 20.0, V)
    k = min(8, V)
    Y = X[:, :k] @ rng.standard_normal((k, m)) + 3.0 * rng.standard_normal((n, m)) + 2.0
    return X.astype(np.float32), Y.astype(np.float32)


def _sklearn_ridge_original_units(X, Y, alpha):
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    X64 = X.astype(np.float64)
    sc = StandardScaler().fit(X64)
    sk = Ridge(alpha=alpha).fit(sc.transform(X64), Y.astype(np.float64))
    coef = sk.coef_.T / sc.scale_[:, None]
    return coef, sk.intercept_ - sc.mean_ @ coef


def _brute_force_gcv(X, Y, alphas, standardize=True):
    """GCV_j(alpha) = ||(I - H) y_j||^2 / n / (1 - tr(H)/n)^2 with the explicit n x n hat matrix."""
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    n, V = X.shape
    Xc = X - X.mean(0)
    if standardize:
        Xc = Xc / X.std(0)
    out = []
    for a in alphas:
        H = np.full((n, n), 1.0 / n) + Xc @ np.linalg.solve(Xc.T @ Xc + a * np.eye(V), Xc.T)
        R = Y - H @ Y
        out.append((R**2).sum(0) / n / (1.0 - np.trace(H) / n) ** 2)
    return np.array(out)  # (n_alphas, m)


# ----------------------------------------------------------------------------------------------
# RidgeGCV


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float64", 1e-9)])
def test_ridgegcv_fixed_alpha_matches_sklearn(dtype, tol):
    X, Y = _data()
    model = RidgeGCV(alphas=(10.0,), dtype=dtype).fit(X, Y)
    coef, intercept = _sklearn_ridge_original_units(X, Y, 10.0)
    assert model.coef_.shape == (30, 4) and model.intercept_.shape == (4,)
    assert model.alpha_ == 10.0 and model.n_features_in_ == 30
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=tol * np.abs(coef).max())
    # The intercept absorbs mean(X) . coef, so compare it on the predictions' scale.
    np.testing.assert_allclose(model.intercept_, intercept, rtol=tol, atol=tol * np.abs(Y).max())


def test_ridgegcv_scores_match_brute_force_gcv():
    X, Y = _data(n=60, V=20, m=3, seed=1)
    alphas = (0.1, 1.0, 10.0, 100.0, 1000.0)
    ref = _brute_force_gcv(X, Y, alphas)
    per = RidgeGCV(alphas=alphas, alpha_per_target=True, dtype="float64").fit(X, Y)
    np.testing.assert_allclose(per.gcv_scores_, ref, rtol=1e-8)
    np.testing.assert_array_equal(per.alpha_, np.asarray(alphas)[ref.argmin(0)])
    shared = RidgeGCV(alphas=alphas, dtype="float64").fit(X, Y)
    np.testing.assert_allclose(shared.gcv_scores_, ref.mean(1), rtol=1e-8)
    assert shared.alpha_ == alphas[int(ref.mean(1).argmin())]
    # float32 picks the same alpha and nearly the same scores.
    f32 = RidgeGCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(f32.gcv_scores_, ref, rtol=1e-3)
    np.testing.assert_array_equal(f32.alpha_, per.alpha_)


def test_ridgegcv_unstandardized_matches_brute_force_and_sklearn():
    from sklearn.linear_model import Ridge

    X, Y = _data(n=50, V=10, m=2, seed=2)
    alphas = (1.0, 30.0, 1000.0)
    model = RidgeGCV(alphas=alphas, standardize_X=False, alpha_per_target=True, dtype="float64").fit(X, Y)
    ref = _brute_force_gcv(X, Y, alphas, standardize=False)
    np.testing.assert_allclose(model.gcv_scores_, ref, rtol=1e-8)
    for j in range(2):
        sk = Ridge(alpha=model.alpha_[j]).fit(X.astype(np.float64), Y[:, j].astype(np.float64))
        np.testing.assert_allclose(model.coef_[:, j], sk.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(model.intercept_[j], sk.intercept_, rtol=1e-8)


@pytest.mark.parametrize("standardize", [True, False])
def test_ridgegcv_dual_equals_primal_when_voxels_outnumber_samples(standardize):
    """n < V (Brain2Music: 4,800 x ~60k): 'auto' takes the kernel form; same GCV, alphas and weights."""
    X, Y = _data(n=40, V=120, m=5, seed=7)
    X[:, 3] = 2.5  # a constant column: weight 0 in both forms
    alphas = (0.1, 10.0, 1e3, 1e5)
    for per_target in (False, True):
        kw = dict(alphas=alphas, alpha_per_target=per_target, standardize_X=standardize, dtype="float64")
        dual = RidgeGCV(**kw).fit(X, Y)
        primal = RidgeGCV(solver="primal", **kw).fit(X, Y)
        assert dual.solver_ == "dual" and primal.solver_ == "primal"
        np.testing.assert_allclose(dual.gcv_scores_, primal.gcv_scores_, rtol=1e-7)
        np.testing.assert_array_equal(dual.alpha_, primal.alpha_)
        np.testing.assert_allclose(dual.coef_, primal.coef_, rtol=0, atol=1e-9 * np.abs(primal.coef_).max())
        np.testing.assert_allclose(dual.intercept_, primal.intercept_, rtol=1e-8, atol=1e-10)
        assert np.all(dual.coef_[3] == 0)
    ref = _brute_force_gcv(np.delete(X, 3, axis=1), Y, alphas, standardize=standardize)  # constant: no effect
    np.testing.assert_allclose(RidgeGCV(alphas=alphas, alpha_per_target=True, standardize_X=standardize,
                                        dtype="float64").fit(X, Y).gcv_scores_, ref, rtol=1e-7)
    f32 = RidgeGCV(alphas=alphas, standardize_X=standardize).fit(X, Y)
    f64 = RidgeGCV(alphas=alphas, standardize_X=standardize, dtype="float64").fit(X, Y)
    assert f32.solver_ == "dual" and f32.alpha_ == f64.alpha_
    np.testing.assert_allclose(f32.predict(X), f64.predict(X), rtol=1e-3, atol=1e-3 * np.abs(Y).max())
    with pytest.raises(BenchError, match="solver must be"):
        RidgeGCV(solver="svd").fit(X, Y)


def test_ridgegcv_alpha_per_target_follows_signal():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 15)).astype(np.float32)
    Y = np.stack([rng.standard_normal(200), X @ rng.standard_normal(15)], 1).astype(np.float32)
    Y[:, 1] += 0.05 * rng.standard_normal(200).astype(np.float32)
    model = RidgeGCV(alpha_per_target=True).fit(X, Y)
    assert model.alpha_.shape == (2,) and model.gcv_scores_.shape == (7, 2)
    assert model.alpha_[0] >= 1e3 and model.alpha_[1] == 1.0  # noise -> strong shrinkage; signal -> least


def test_ridgegcv_predict_chunks_and_inputs_untouched():
    X, Y = _data(n=70, V=12, m=3, seed=4)
    X0, Y0 = X.copy(), Y.copy()
    big = RidgeGCV(chunk_rows=4096).fit(X, Y)
    small = RidgeGCV(chunk_rows=7).fit(X, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    assert big.alpha_ == small.alpha_
    np.testing.assert_allclose(small.coef_, big.coef_, rtol=1e-4, atol=1e-5)
    pred = small.predict(X)
    assert pred.shape == (70, 3) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, X @ small.coef_ + small.intercept_, rtol=1e-5, atol=1e-4)
    # torch tensors and float64 arrays are accepted as well.
    t = RidgeGCV().fit(torch.from_numpy(X), Y.astype(np.float64))
    np.testing.assert_allclose(t.coef_, big.coef_, rtol=1e-4, atol=1e-5)


def test_ridgegcv_constant_column_gets_zero_weight():
    X, Y = _data(n=40, V=6, m=2, seed=5)
    X[:, 2] = 3.25
    model = RidgeGCV().fit(X, Y)
    assert np.isfinite(model.coef_).all() and np.isfinite(model.intercept_).all()
    assert np.all(model.coef_[2] == 0)
    ref = RidgeGCV(alphas=(model.alpha_,)).fit(np.delete(X, 2, axis=1), Y)
    np.testing.assert_allclose(np.delete(model.coef_, 2, axis=0), ref.coef_, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# SelectiveRidge vs fastl2lir


def _fastl2lir(X, Y, alpha, n_feat):
    fastl2lir = pytest.importorskip("fastl2lir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastl2lir.FastL2LiR().fit(X, Y, alpha, n_feat)  # float64 by default
    return model.W, model.b.ravel()


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float64", 1e-9)])
def test_selective_ridge_matches_fastl2lir(dtype, tol):
    X, Y = _data(n=150, V=40, m=6, seed=6)
    X[:, 5] = 1.5  # zero variance: correlation 0, never selected
    W, b = _fastl2lir(X, Y, 10.0, 12)
    model = SelectiveRidge(alpha=10.0, n_feat=12, dtype=dtype, chunk_outputs=4).fit(X, Y)
    assert model.coef_.shape == (40, 6) and model.intercept_.shape == (6,)
    assert model.selected_.shape == (12, 6)
    assert np.abs(model.coef_ - W).max() < tol
    assert np.abs(model.intercept_ - b).max() < tol
    for j in range(6):
        assert set(model.selected_[:, j]) == set(np.flatnonzero(W[:, j]))
    assert 5 not in model.selected_  # so the Gram covers only the union of the selections (< V voxels)
    np.testing.assert_allclose(model.predict(X), X @ W + b, rtol=1e-5, atol=1e-3)


def test_selective_ridge_many_thread_path_matches(monkeypatch):
    """Machines with >= 4 torch threads gather and solve with torch's batched ops: same result."""
    import bench.ridge as R

    X, Y = _data(n=150, V=40, m=6, seed=6)
    few = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4).fit(X, Y)
    monkeypatch.setattr(R, "_few_threads", lambda: False)
    many = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4).fit(X, Y)
    np.testing.assert_array_equal(many.selected_, few.selected_)
    np.testing.assert_allclose(many.coef_, few.coef_, rtol=0, atol=1e-5 * np.abs(few.coef_).max())


@pytest.mark.parametrize("offset", [3.0, 0.2])
def test_selective_ridge_gram_over_a_small_union_matches_fastl2lir(offset):
    """Outputs driven by a few voxels of many (real fMRI: ~60k voxels): the selections' union is small.
    offset 3: raw voxels, centred before the Gram; 0.2 (mean within one SD): the uncentred Gram is corrected."""
    rng = np.random.default_rng(8)
    X = (rng.standard_normal((120, 400)) + offset).astype(np.float32)
    Y = (X[:, :15] @ rng.standard_normal((15, 5)) + 0.1 * rng.standard_normal((120, 5))).astype(np.float32)
    W, b = _fastl2lir(X, Y, 20.0, 8)
    model = SelectiveRidge(alpha=20.0, n_feat=8, dtype="float32").fit(X, Y)
    assert len(np.unique(model.selected_)) < 40
    assert np.abs(model.coef_ - W).max() < 1e-4 * max(1.0, np.abs(W).max())
    assert np.abs(model.intercept_ - b).max() < 1e-4 * max(1.0, np.abs(b).max())


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_selective_ridge_output_blocks_match_fastl2lir(offset):
    """Many outputs (Park et al.'s 53,760 conv5_3 units) are selected and solved a block at a time over one Gram of
    all voxels: same coefficients as fastl2lir and as the one-block fit, with raw (offset) or centred voxels."""
    X, Y = _data(n=150, V=40, m=23, seed=9)
    X = X + np.float32(offset)
    W, b = _fastl2lir(X, Y, 10.0, 12)
    blocked = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4, chunk_select=5).fit(X, Y)
    whole = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4).fit(X, Y)
    np.testing.assert_array_equal(blocked.selected_, whole.selected_)
    assert np.abs(blocked.coef_ - W).max() < 1e-4 * max(1.0, np.abs(W).max())
    assert np.abs(blocked.intercept_ - b).max() < 1e-4 * max(1.0, np.abs(b).max())
    np.testing.assert_allclose(blocked.coef_, whole.coef_, rtol=0, atol=1e-5 * np.abs(W).max())


def _repeated_targets(n_distinct=40, presentations=3, V=30, m=5, seed=11):
    """Y's rows repeat per stimulus (one row per presentation, shuffled), X's rows are single trials driven by the
    stimulus' targets plus noise, with raw voxel means: the design of Brain2Sound's training set."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_distinct * presentations) % n_distinct)
    Y_distinct = rng.standard_normal((n_distinct, m)) + 1.0
    X = Y_distinct[labels] @ rng.standard_normal((m, V)) + 2.0 * rng.standard_normal((len(labels), V))
    X += rng.uniform(-3.0, 10.0, V)
    return X.astype(np.float32), Y_distinct[labels].astype(np.float32)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float64", 1e-9)])
def test_selective_ridge_repeated_targets_match_fastl2lir(dtype, tol):
    """Repeated target rows take the X^T Y = S^T Y_distinct path (S: X's rows summed per distinct row of Y): the
    same coefficients as fastl2lir, which multiplies every row."""
    X, Y = _repeated_targets()
    W, b = _fastl2lir(X, Y, 10.0, 12)
    model = SelectiveRidge(alpha=10.0, n_feat=12, dtype=dtype, chunk_outputs=2).fit(X, Y)
    assert "group" in model.timings_  # the grouped path ran
    for j in range(Y.shape[1]):
        assert set(model.selected_[:, j]) == set(np.flatnonzero(W[:, j]))
    assert np.abs(model.coef_ - W).max() < tol * max(1.0, np.abs(W).max())
    assert np.abs(model.intercept_ - b).max() < tol * max(1.0, np.abs(b).max())


def test_repeated_rows_are_grouped_exactly():
    from bench.ridge import _repeated_rows

    _, Y = _repeated_targets(n_distinct=10, presentations=3, m=40)
    first, group = _repeated_rows(torch.from_numpy(Y))
    assert len(first) == 10 and group.shape == (30,)
    np.testing.assert_array_equal(Y, Y[first.numpy()[group.numpy()]])
    assert all(int(first[u]) == int(np.flatnonzero(group.numpy() == u)[0]) for u in range(10))
    # Rows that agree on the candidate key columns but differ elsewhere end the grouping, never merge.
    cols = torch.linspace(0, 39, 16).round().long().unique().numpy()
    other = np.setdiff1d(np.arange(40), cols)[0]
    Y2 = Y.copy()
    Y2[int(np.flatnonzero(group.numpy() == 0)[1]), other] += 1.0
    assert _repeated_rows(torch.from_numpy(Y2)) is None
    # Distinct rows (no repetition worth using): no grouping.
    assert _repeated_rows(torch.from_numpy(np.random.default_rng(0).standard_normal((30, 40)))) is None


def test_selective_ridge_leaves_thread_settings_as_it_found_them(monkeypatch):
    """The two-thread CPU loop holds torch (and BLAS) at one thread while it runs, and must restore them."""
    from threadpoolctl import threadpool_info

    import bench.ridge as R

    monkeypatch.setattr(R, "_few_threads", lambda: True)  # that loop, on any machine

    X, Y = _data(n=150, V=40, m=6, seed=6)
    torch_before = torch.get_num_threads()
    blas_before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=2).fit(X, Y)
    assert torch.get_num_threads() == torch_before
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == blas_before


def test_selective_ridge_gather_without_numba_matches(monkeypatch):
    """Without numba the Gram blocks are gathered whole by numpy ``take``: the factorisation reads the same triangle,
    so the coefficients are identical."""
    import bench.ridge as R

    X, Y = _data(n=150, V=40, m=6, seed=6)
    with_numba = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4).fit(X, Y)
    monkeypatch.setattr(R, "_upper_gather_kernel", lambda: None)
    without = SelectiveRidge(alpha=10.0, n_feat=12, chunk_outputs=4).fit(X, Y)
    np.testing.assert_array_equal(with_numba.coef_, without.coef_)
    np.testing.assert_array_equal(with_numba.intercept_, without.intercept_)


def test_selective_ridge_all_voxels_matches_fastl2lir():
    X, Y = _data(n=60, V=10, m=3, seed=7)
    W, b = _fastl2lir(X, Y, 5.0, 10)  # n_feat == V: fastl2lir's no-selection branch
    model = SelectiveRidge(alpha=5.0, n_feat=10, dtype="float64").fit(X, Y)
    assert np.abs(model.coef_ - W).max() < 1e-9 and np.abs(model.intercept_ - b).max() < 1e-9


# ----------------------------------------------------------------------------------------------
# Devices


def test_cpu_device_and_cuda_when_present():
    X, Y = _data(n=50, V=12, m=3, seed=8)
    cpu = RidgeGCV(device=torch.device("cpu")).fit(X, Y)
    sel = SelectiveRidge(alpha=1.0, n_feat=5, device="cpu").fit(X, Y)
    if not torch.cuda.is_available():
        return
    gpu = RidgeGCV(device="cuda").fit(X, Y)
    assert gpu.alpha_ == cpu.alpha_
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-3, atol=1e-3)
    sel_gpu = SelectiveRidge(alpha=1.0, n_feat=5, device="cuda").fit(X, Y)
    np.testing.assert_allclose(sel_gpu.coef_, sel.coef_, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Errors: one line, naming the array, its shape and the expected shape


def test_errors_input_shapes():
    X, Y = _data(n=20, V=5, m=2)
    for model in (RidgeGCV(), SelectiveRidge(alpha=1.0, n_feat=2)):
        with pytest.raises(BenchError, match=r"X has shape \(20,\) but expected a 2-D array \(n_samples, n_voxels\)"):
            model.fit(X[:, 0], Y)
        with pytest.raises(BenchError, match=r"Y has shape \(20,\) but expected a 2-D array \(20, n_outputs\)"):
            model.fit(X, Y[:, 0])
        with pytest.raises(BenchError, match=r"Y has shape \(19, 2\) but expected \(20, n_outputs\) to match X's rows"):
            model.fit(X, Y[:19])
        with pytest.raises(BenchError, match=r"X has shape \(1, 5\) and Y \(1, 2\) but expected at least 2 rows"):
            model.fit(X[:1], Y[:1])
        with pytest.raises(BenchError, match=r"X has shape \(20, 5\) and dtype <U1; expected a float array"):
            model.fit(np.full((20, 5), "a"), Y)
        Xn = X.copy()
        Xn[3, 1] = np.nan
        with pytest.raises(BenchError, match=r"X has shape \(20, 5\) and contains NaN or inf"):
            model.fit(Xn, Y)
        Yn = Y.copy()
        Yn[0, 0] = np.inf
        with pytest.raises(BenchError, match=r"Y has shape \(20, 2\) and contains NaN or inf"):
            model.fit(X, Yn)
        with pytest.raises(BenchError, match=r"is not fitted yet: call fit\(X, Y\) before predict"):
            type(model)().predict(X)
        model.fit(X, Y)
        with pytest.raises(BenchError, match=r"X has shape \(20, 4\) but expected \(n_samples, 5\) as in fit"):
            model.predict(X[:, :4])


def test_errors_parameters():
    X, Y = _data(n=20, V=5, m=2)
    with pytest.raises(BenchError, match=r"alphas has shape \(0,\) but expected \(n_alphas,\) with n_alphas >= 1"):
        RidgeGCV(alphas=()).fit(X, Y)
    with pytest.raises(BenchError, match=r"alphas has shape \(2,\) but contains non-positive or non-finite"):
        RidgeGCV(alphas=(1.0, -1.0)).fit(X, Y)
    with pytest.raises(BenchError, match=r"dtype must be 'float32' or 'float64', got 'float16'"):
        RidgeGCV(dtype="float16").fit(X, Y)
    with pytest.raises(BenchError, match=r"chunk_rows must be a positive integer, got 0"):
        RidgeGCV(chunk_rows=0).fit(X, Y)
    with pytest.raises(BenchError, match=r"device 'nodevice' is not a torch device"):
        RidgeGCV(device="nodevice").fit(X, Y)
    with pytest.raises(BenchError, match=r"device 'meta' is not supported"):
        SelectiveRidge(device="meta").fit(X, Y)
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match=r"device 'cuda' requested but torch.cuda.is_available\(\) is False"):
            RidgeGCV(device="cuda").fit(X, Y)
    with pytest.raises(BenchError, match=r"X has shape \(20, 5\) but n_feat=6 needs at least 6 voxels"):
        SelectiveRidge(alpha=1.0, n_feat=6).fit(X, Y)
    with pytest.raises(BenchError, match=r"n_feat must be a positive integer, got 0"):
        SelectiveRidge(alpha=1.0, n_feat=0).fit(X, Y)
    with pytest.raises(BenchError, match=r"chunk_outputs must be a positive integer, got -1"):
        SelectiveRidge(alpha=1.0, n_feat=2, chunk_outputs=-1).fit(X, Y)
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(BenchError, match=r"alpha must be a finite number >= 0"):
            SelectiveRidge(alpha=bad, n_feat=2).fit(X, Y)
    Xd = X.copy()
    Xd[:, 1] = Xd[:, 0]  # duplicate voxel: singular at alpha 0
    with pytest.raises(BenchError, match=r"X has shape \(20, 5\) and the selected voxels' Gram matrix for output 0 is singular"):
        SelectiveRidge(alpha=0.0, n_feat=5, dtype="float64").fit(Xd, Y)

"""Benchmark: Park et al.'s decoding step, SelectiveRidge on all 53,760 conv5_3 units at Brain2Sound's size.

Not part of the normal test run. Run (on an otherwise idle machine; minutes, ~6 GiB) with::

    OMP_NUM_THREADS=2 .venv/bin/python -m pytest benchmarks/test_bench_park.py --benchmark-only -q

Group ``park-decode``: X 14,400 x 6,662 -> Y 53,760 (512 x 5 x 21), n_feat 500, alpha 100, float32 inputs. As in
Brain2Sound, Y's rows are 3,600 distinct targets (1,200 clips x 3 windows) each presented 4 times, shuffled, and X's
rows are single trials driven by the targets plus noise (SelectiveRidge computes X^T Y over the distinct rows of Y;
fastl2lir does not). Inputs are built in blocks, so the peak is the fit's, not the generator's. Each call
runs in its own child process (the machinery of ``test_bench_ridge.py``: data generated before "go", peak RSS
from ``ru_maxrss`` including the inputs, the share of the machine other processes used recorded).

- ``test_fastl2lir_subsets``: ``fastl2lir.FastL2LiR().fit`` (its defaults, float64) on the first 256 and the first
  1,024 outputs, after an untimed warm-up fit. Its cost is a fixed part plus a part linear in the outputs
  (correlations, X^T Y, one selection and solve per output), so its time for all outputs is extrapolated
  linearly from the two fits: T(m) = T(1024) + (T(1024) - T(256)) / 768 * (m - 1024).
- ``test_selective_ridge_all_units``: ``SelectiveRidge(alpha=100, n_feat=500)`` on all 53,760 outputs (output
  blocks over one Gram of all voxels). Asserts peak RSS < 6 GiB, the same coefficients and intercepts as fastl2lir
  on the 1,024 outputs both fit (max abs difference < 1e-4) and, at full scale, >= 3 x the extrapolated fastl2lir time.

``BENCH_PRESENTATIONS`` (default 4) sets the presentations per distinct target; 1 makes every row of Y distinct
(the case without the S^T Y_distinct saving). ``BENCH_SCALE`` (default 1) multiplies n, V, the outputs and n_feat (e.g. 0.05 for a check that it runs); the speed
ratio is asserted only at scale 1, parity and memory always. ``BENCH_QUIET_WAIT`` as in ``test_bench_ridge.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_ridge import SCALE, _rss_kib, _run  # noqa: E402  (the shared child-process machinery)

FULL = SCALE == 1.0
GROUP = "park-decode"


def _sizes(scale: float = SCALE) -> dict:
    def s(x: int) -> int:
        return max(2, round(x * scale))

    return {"n": s(14_400), "V": s(6_662), "m": s(512 * 5 * 21), "m_small": s(256), "m_large": s(1024),
            "n_feat": max(1, round(500 * scale)), "alpha": 100.0,
            "presentations": int(os.environ.get("BENCH_PRESENTATIONS", "4")), "seed": 20231101}


def brain2sound_inputs(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """X (n, V) float32 single trials and Y (n, m) float32 conv5_3-like targets of :func:`_sizes`'s ``params``, in
    Brain2Sound's design (also the arrays of ``cuda_check.py``'s ``park_decode``)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(params["seed"])
    n, V, m = params["n"], params["V"], params["m"]
    # Brain2Sound's design: 1,200 training clips x 3 windows = 3,600 distinct targets, each presented 4 times in a
    # shuffled order, so the rows of Y repeat (as the conv5_3 features of a window do) while X's rows are single
    # trials. Each voxel is driven by 20 units plus noise (a sparse map: no dense (m, V) temporary).
    n_distinct = max(1, n // params["presentations"])
    # (Every row distinct: Y is Y_distinct itself, not a second copy.)
    labels = np.arange(n) if n_distinct == n else rng.permutation(np.arange(n) % n_distinct)
    Y_distinct = rng.standard_normal((n_distinct, m), dtype=np.float32)
    drive = min(20, m)
    rows = np.concatenate([rng.choice(m, drive, replace=False) for _ in range(V)])
    cols = np.repeat(np.arange(V), drive)
    M = sp.csr_matrix((rng.standard_normal(V * drive).astype(np.float32), (rows, cols)), shape=(m, V))
    signal = np.empty((n_distinct, V), dtype=np.float32)
    for r0 in range(0, n_distinct, 1024):  # in row blocks: scipy copies a transposed dense operand whole
        signal[r0 : r0 + 1024] = M.T.dot(Y_distinct[r0 : r0 + 1024].T).T
    X = 3.0 * rng.standard_normal((n, V), dtype=np.float32)
    X += signal[labels]
    del M, signal
    Y = Y_distinct if n_distinct == n else Y_distinct[labels]
    return X, Y


def _child(task: str, params: dict) -> None:
    X, Y = brain2sound_inputs(params)
    m = params["m"]
    import torch

    from bench.ridge import SelectiveRidge

    if task.startswith("fastl2lir"):
        import fastl2lir
    warm = torch.ones(64, 64)
    warm @ warm
    rss_inputs = _rss_kib()
    print("ready", flush=True)
    sys.stdin.readline()

    out: dict = {}
    t0 = time.perf_counter()
    if task == "selective":
        model = SelectiveRidge(alpha=params["alpha"], n_feat=params["n_feat"]).fit(X, Y)
        out["fit_s"] = time.perf_counter() - t0
        out["stages"] = model.timings_
        k = params["m_large"]
        np.save(params["out"] + "_W.npy", model.coef_[:, :k])
        np.save(params["out"] + "_b.npy", model.intercept_[:k])
    elif task == "fastl2lir_subsets":
        # Untimed warm-up: the first fit pays one-off costs (page faults on Y, BLAS start-up) that made a
        # timed 256-unit fit slower than the 512-unit one and the extrapolation negative.
        fastl2lir.FastL2LiR().fit(X, np.ascontiguousarray(Y[:, : params["m_small"]]), params["alpha"], params["n_feat"])
        for name in ("m_small", "m_large"):
            k = params[name]
            t1 = time.perf_counter()
            model = fastl2lir.FastL2LiR().fit(X, np.ascontiguousarray(Y[:, :k]), params["alpha"], params["n_feat"])
            out[f"fit_{name}_s"] = time.perf_counter() - t1
        np.save(params["out"] + "_W.npy", model.W)
        np.save(params["out"] + "_b.npy", model.b.ravel())
        slope = (out["fit_m_large_s"] - out["fit_m_small_s"]) / (params["m_large"] - params["m_small"])
        out["extrapolated_all_units_s"] = out["fit_m_large_s"] + slope * (m - params["m_large"])
    else:
        raise SystemExit(f"unknown task {task!r}")
    out.setdefault("fit_s", time.perf_counter() - t0)
    out["peak_rss_kib"] = _rss_kib()
    out["inputs_rss_kib"] = rss_inputs
    print(json.dumps(out), flush=True)


_RESULTS: dict = {}


@pytest.mark.benchmark(group=GROUP)
def test_fastl2lir_subsets(benchmark, tmp_path_factory):
    pytest.importorskip("fastl2lir")
    out = str(tmp_path_factory.getbasetemp() / "park_fastl2lir")
    res = _run(benchmark, "fastl2lir_subsets", dict(_sizes(), out=out), script=__file__)
    _RESULTS["fastl2lir"], _RESULTS["fastl2lir_out"] = res, out


@pytest.mark.benchmark(group=GROUP)
def test_selective_ridge_all_units(benchmark, tmp_path_factory):
    out = str(tmp_path_factory.getbasetemp() / "park_selective")
    res = _run(benchmark, "selective", dict(_sizes(), out=out), script=__file__)
    assert res["peak_rss_gib"] < 6.0, f"SelectiveRidge peak RSS {res['peak_rss_gib']:.2f} GiB >= 6 GiB"
    ref = _RESULTS.get("fastl2lir")
    if ref is None:
        pytest.skip("run test_fastl2lir_subsets in the same session for parity and speed-up")
    ref_out = _RESULTS["fastl2lir_out"]
    dW = float(np.abs(np.load(out + "_W.npy") - np.load(ref_out + "_W.npy")).max())
    db = float(np.abs(np.load(out + "_b.npy") - np.load(ref_out + "_b.npy")).max())
    speedup = ref["extrapolated_all_units_s"] / res["fit_s"]
    benchmark.extra_info.update(max_abs_dcoef=dW, max_abs_dintercept=db, speedup_vs_fastl2lir=speedup,
                                fastl2lir_extrapolated_s=ref["extrapolated_all_units_s"], peak_gib=res["peak_rss_gib"])
    assert dW < 1e-4 and db < 1e-4, f"parity: max |dW| {dW:.2e}, max |db| {db:.2e}"
    if FULL:
        assert speedup >= 3.0, (f"SelectiveRidge {res['fit_s']:.1f} s vs fastl2lir extrapolated "
                                f"{ref['extrapolated_all_units_s']:.1f} s ({speedup:.2f} x)")


if __name__ == "__main__":
    _child(sys.argv[1], json.loads(sys.argv[2]))

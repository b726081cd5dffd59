"""Benchmark: `bench weights train-sim` from scratch (every built-in simulator trainer, seed 0), target <= 10 minutes.

Not part of the normal test run. Run with::

    .venv/bin/python -m pytest benchmarks/test_bench_simtrain.py --benchmark-only -q -s

Trains into a temporary weights folder (nothing cached), once (a second round would only measure the cache).
The trainers run on one torch thread (their determinism needs it), so the clock time is that of one core.
``benchmark.extra_info`` has the seconds of each trainer (fresh-clip generation counted in the first) and the
sha256 of each file; a second run on the same machine and package versions must print the same hashes.

Environment: ``BENCH_DEVICE`` (default cpu).
"""

from __future__ import annotations

import os
import time

import pytest

TARGET_S = 600.0


@pytest.mark.benchmark(group="simtrain")
def test_train_sim_from_scratch(benchmark, tmp_path, monkeypatch):
    from bench.device import resolve_device
    from bench.networks import simtrain as S

    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "weights"))
    device = resolve_device(os.environ.get("BENCH_DEVICE", "cpu"))
    S._WORLD.clear()
    seconds: dict[str, float] = {}

    def run():
        out = {}
        for name in S.TRAINERS:
            t0 = time.perf_counter()
            out.update(S.train_sim([name], seed=0, device=device))
            seconds[name] = round(time.perf_counter() - t0, 1)
        return out

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    total = benchmark.stats.stats.mean
    benchmark.extra_info.update({"device": device, "total_s": round(total, 1), "target_s": TARGET_S,
                                 **{f"{k}_s": v for k, v in seconds.items()},
                                 **{f"{e}_sha256": r["sha256"][:16] for e, r in out.items()}})
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    assert all(r["trained"] for r in out.values())
    assert total <= TARGET_S, benchmark.extra_info

"""Benchmark: ``bench report`` for sim-sound with every quick method, 2 subjects, all test stimuli.

Not part of the normal test run (``testpaths`` is ``tests``). Run with::

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest benchmarks/test_bench_report.py --benchmark-only -q -s

Setup (not timed): records of LiR and MLP (tiny profile, seed 0) on sim-sound (default scale: 60 test samples
of 4 s per subject) for sim01 and sim02, run into a temporary folder; the slower methods are left out (their
records cost minutes to make, and the report does the same work per record whatever the method). Point
``B2A_BENCH_REPORT_RUNS`` at an existing runs folder (e.g. ``runs/`` after the quickstart) to skip the setup
and report on every method recorded there.

Measured side by side in one process:

- ``cold``: an empty output folder, so every mel image is computed (timed by pytest-benchmark; target <= 60 s);
- ``warm``: the same build again: images come from the cache keyed by each prediction file's sha256.

``benchmark.extra_info`` has both times, the number of players and the page size.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

DATASET = "sim-sound"
METHODS = ("lir", "mlp")
SUBJECTS = ("sim01", "sim02")
TARGET_S = 60.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    given = os.environ.get("B2A_BENCH_REPORT_RUNS")
    if given:
        return Path(given)
    from bench.runner import Cell, run_cells

    root = tmp_path_factory.mktemp("bench-report")
    os.environ.setdefault("BENCH_DATA", str(root / "data"))
    cells = [Cell(m, DATASET, s, 0, "tiny") for m in METHODS for s in SUBJECTS]
    run_cells(cells, runs=root / "runs", progress=False, echo=lambda *_: None)
    return root / "runs"


@pytest.mark.benchmark(group="report")
def test_report_cold_and_warm(benchmark, runs, tmp_path):
    from bench.report import build_report

    out = tmp_path / "reports"

    def cold():
        shutil.rmtree(out, ignore_errors=True)
        return build_report(DATASET, runs=runs, out=out)

    result = benchmark.pedantic(cold, rounds=1, iterations=1)
    cold_s = benchmark.stats.stats.mean
    t0 = time.perf_counter()
    again = build_report(DATASET, runs=runs, out=out)
    warm_s = time.perf_counter() - t0
    benchmark.extra_info.update({
        "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2), "players": result.n_players,
        "stimuli": result.n_stimuli, "columns": result.n_columns, "size_mib": round(result.size_bytes / 2**20, 1),
        "cpu_count": os.cpu_count(),
    })
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    assert again.size_bytes == result.size_bytes
    assert cold_s <= TARGET_S, benchmark.extra_info

"""Run records for the report tests: LiR, MLP and the oracle reference row on the tiny simulated sound dataset.

One session fixture, so the static and the browser tests share the cells (a few seconds on 2 cores).
"""

from __future__ import annotations

import json

import pytest

REPORT_DATASET = "tiny-sound"
REPORT_SUBJECT = "sim01"
FAST = (("griffin_lim_iters", 1),)  # the vocoder dominates a tiny cell; one iteration keeps the fixture quick
LIR = "LiR (tiny; griffin_lim_iters=1)"
MLP = "MLP (tiny; griffin_lim_iters=1)"
ORACLE = "Ground truth (vocoder) (tiny; griffin_lim_iters=1)"
LIR_SLUG = "lir-tiny-griffin-lim-iters-1"


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory, session_data_root):
    """A runs folder with records of lir, mlp (``FAST`` overrides) and oracle for tiny-sound sim01, seed 0."""
    from bench import datasets
    from bench.runner import Cell, run_cells
    from tests.conftest import TINY_CATALOGUE
    from tests.sim_sizes import TINY_SOUND, TINY_SPEECH

    root = tmp_path_factory.mktemp("report-runs")
    catalogue = root / "datasets.yaml"
    catalogue.write_text(
        TINY_CATALOGUE.format(params_sound=json.dumps(TINY_SOUND), params_speech=json.dumps(TINY_SPEECH)), encoding="utf-8"
    )
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_DATASETS_YAML", str(catalogue))
        mp.setenv("BENCH_DATA", str(session_data_root))
        mp.setenv("BENCH_SIM_WEIGHTS", "off")  # no simulator networks to train for these records
        datasets._read_catalogue.cache_clear()
        try:
            cells = [Cell(m, REPORT_DATASET, REPORT_SUBJECT, 0, "tiny", overrides=FAST) for m in ("lir", "mlp", "oracle")]
            run_cells(cells, runs=runs, data_root=session_data_root, progress=False, echo=lambda *_: None)
        finally:
            datasets._read_catalogue.cache_clear()
    return runs

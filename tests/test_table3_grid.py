"""The paper's Table 3 grid (P_gt x prompt) runs as one planned set of cells and renders as one table."""

from __future__ import annotations

import pytest

from bench.leaderboard import build_tables
from bench.records import iter_records
from bench.runner import plan_cells, run_cells


@pytest.mark.slow
def test_prompt_grid_on_tiny_speech(tiny_catalogue, tmp_path):
    runs = tmp_path / "runs"
    cells = plan_cells(["c2f_ldm"], ["tiny-speech"], ["sim01"], [0], "tiny",
                       grid={"p_gt": [0.25], "prompt": ["none", "text", "audio"]})
    assert len(cells) == 3
    summary = run_cells(cells, runs=runs, progress=False, echo=lambda *a: None, metrics=["pcc", "psnr"])
    assert summary.count("done") == 3
    md = build_tables(iter_records(runs))["tiny-speech"]
    for p_gt in ("0.25",):
        for prompt in ("none", "text", "audio"):
            assert f"p_gt={p_gt}; prompt={prompt}) [random-init]" in md

"""`bench run --method lir` works on each real dataset prepared from its on-disk-format fixture."""

from __future__ import annotations

import pytest

from bench.runner import Cell, run_cell
from tests.fixtures_real import write_brain2music, write_brain2sound, write_brain2speech
from tests.test_prepare_brain2speech import STORIES, TRAIN


def _prepare_cli(args):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench.cli", "data", "prepare", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "prepared" in proc.stdout


@pytest.mark.parametrize("name", ["brain2speech", "brain2music", "brain2sound"])
def test_lir_runs_on_prepared_fixture(name, tmp_path):
    data = tmp_path / "data"
    if name == "brain2speech":
        src = write_brain2speech(tmp_path / "ds003020", STORIES, subjects=["UTS01"], n_voxels=6)
        _prepare_cli([name, "--source", str(src.source if hasattr(src, "source") else src), "--data-root", str(data),
                      "--set", f"train_stories={TRAIN}"])
        subject = "UTS01"
    elif name == "brain2music":
        fx = write_brain2music(tmp_path / "ds003720", tmp_path / "gtzan", subjects=["sub-001"])
        _prepare_cli([name, "--source", str(fx.source), "--stimuli", str(fx.stimuli / "genres"), "--data-root", str(data)])
        subject = "sub-001"
    else:
        fx = write_brain2sound(tmp_path / "SoundReconstruction", tmp_path / "vggsound", subjects=["S1"])
        _prepare_cli([name, "--source", str(fx.source), "--stimuli", str(fx.stimuli), "--data-root", str(data)])
        subject = "S1"
    out = run_cell(Cell("lir", name, subject, 0, "tiny"), runs=tmp_path / "runs", data_root=data, metrics=["pcc", "psnr", "ident"])
    rec = out.record
    assert out.status == "done"
    assert rec["dataset"]["kind"] == "real" and rec["dataset"]["n_test"] > 0
    assert rec["metrics"]["pcc"]["status"] == "ok"
    assert len(rec["metrics"]["pcc"]["per_sample"]) == rec["dataset"]["n_test"]

"""The command line: user errors are one line without a traceback; data commands work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def bench(*args, env=None, check=False):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=full_env, check=check)


def assert_one_line_error(proc, pattern):
    import re

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_unknown_method_and_dataset():
    assert_one_line_error(bench("run", "--method", "lirr", "--dataset", "sim"), r"unknown method 'lirr'. Did you mean: lir")
    assert_one_line_error(bench("run", "--method", "lir", "--dataset", "sim-snd"), r"unknown dataset 'sim-snd'")


def test_wrong_type_config_value(tiny_catalogue):
    proc = bench("run", "--method", "mlp", "--dataset", "tiny-speech", "--set", "batch_size=big", "--no-leaderboard")
    assert_one_line_error(proc, r"parameter 'batch_size' must be an int")


def test_unwritable_runs_folder(tmp_path, tiny_catalogue):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = bench("run", "--method", "lir", "--dataset", "tiny-speech", "--runs", str(blocker / "runs"), "--no-leaderboard")
    assert_one_line_error(proc, r"runs folder .* is not writable")


def test_unwritable_data_root(tmp_path, tiny_catalogue):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = bench("data", "prepare", "tiny-speech", "--data-root", str(blocker / "data"))
    assert_one_line_error(proc, r"data root .* is not writable")


def test_data_ls_says_how_to_prepare(tiny_catalogue):
    proc = bench("data", "ls", check=True)
    assert "bench data prepare brain2sound --source SOUNDRECON_DIR" in proc.stdout
    assert "tiny-sound" in proc.stdout


def test_data_describe_json(tiny_catalogue):
    proc = bench("data", "describe", "tiny-speech", "--json", check=True)
    info = json.loads(proc.stdout)
    sub = info["subjects"]["sim01"]
    assert sub["n_voxels"] == 50
    assert sub["n_samples"] == {"train": 40, "test": 20, "prompt": 4}
    assert 0 < sub["noise_ceiling"]["analytic_r"] <= 1


def test_run_real_dataset_not_prepared(tiny_catalogue):
    proc = bench("run", "--method", "lir", "--dataset", "brain2sound", "--no-leaderboard")
    assert_one_line_error(proc, r"brain2sound is not prepared")


def test_leaderboard_without_records(tmp_path):
    proc = bench("leaderboard", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "lb"))
    assert_one_line_error(proc, r"no run records")


@pytest.mark.slow
def test_run_then_rerun_skips(tiny_catalogue, tmp_path):
    args = ("run", "--method", "lir", "--dataset", "tiny-speech", "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "lb"))
    first = bench(*args, check=True)
    assert "1 done, 0 skipped" in first.stdout
    second = bench(*args, check=True)
    assert "0 done, 1 skipped" in second.stdout
    assert (tmp_path / "lb" / "tiny-speech.md").exists()


@pytest.mark.slow
def test_prompt_and_p_gt_options_become_the_table3_grid(tiny_catalogue):
    base = ("run", "--dataset", "tiny-speech", "--no-leaderboard")
    assert_one_line_error(bench(*base, "--method", "lir", "--prompt", "text"), r"method lir has no parameter 'prompt'")
    assert_one_line_error(bench(*base, "--method", "c2f_ldm", "--prompt", "none,text", "--p-gt", "0,0.3"),
                          r"parameter 'p_gt' must be")
    assert_one_line_error(bench(*base, "--method", "c2f_ldm", "--prompt", "text", "--grid", "prompt=audio"),
                          r"--prompt and --grid prompt=... both given")

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


def test_train_sim_arguments(tmp_path):
    env = {"BENCH_WEIGHTS": str(tmp_path / "w")}
    assert_one_line_error(bench("weights", "train-sim", "--jobs", "-1", env=env), r"--jobs -1: give 0 \(one per usable core\)")
    assert_one_line_error(bench("weights", "train-sim", "panns", "nope", env=env), r"unknown simulator trainer\(s\) nope; known: panns")
    assert not (tmp_path / "w").exists()  # refused before anything is trained or written


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
    args = ("run", "--method", "lir", "--dataset", "tiny-speech", "--no-references", "--runs", str(tmp_path / "r"),
            "--out", str(tmp_path / "lb"))
    first = bench(*args, check=True)
    assert "1 done, 0 skipped" in first.stdout
    second = bench(*args, check=True)
    assert "0 done, 1 skipped" in second.stdout
    assert (tmp_path / "lb" / "tiny-speech.md").exists()


@pytest.mark.slow
def test_prompt_and_p_gt_options_become_the_table3_grid(tiny_catalogue, tmp_path):
    runs = tmp_path / "r"
    base = ("run", "--dataset", "tiny-speech", "--no-leaderboard", "--runs", str(runs))
    assert_one_line_error(bench(*base, "--method", "lir", "--prompt", "text"), r"method lir has no parameter 'prompt'")
    assert_one_line_error(bench(*base, "--method", "c2f_ldm", "--prompt", "none,text", "--p-gt", "0,0.3"),
                          r"parameter 'p_gt' must be")
    assert_one_line_error(bench(*base, "--method", "c2f_ldm", "--prompt", "text", "--grid", "prompt=audio"),
                          r"--prompt and --grid prompt=... both given")
    assert not runs.exists(), "a refused setting ran cells (the reference rows) before saying so"


@pytest.mark.parametrize("seeds", ["-1", "", "0,x", " , "])
def test_seeds_must_be_non_negative_integers(tiny_catalogue, seeds, tmp_path):
    proc = bench("run", "--method", "lir", "--dataset", "tiny-speech", f"--seeds={seeds}", "--no-leaderboard",
                 "--runs", str(tmp_path / "r"))
    assert_one_line_error(proc, r"--seeds expects comma-separated non-negative integers \(at least one\)")
    assert not (tmp_path / "r").exists()


def test_unwritable_data_root_refused_before_generation(tmp_path, tiny_catalogue):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from bench.datasets import get_dataset

    assert not get_dataset("tiny-sound").is_prepared(blocker / "data", "paper")
    proc = bench("run", "--method", "lir", "--dataset", "tiny-sound", "--scale", "paper", "--no-leaderboard",
                 "--data-root", str(blocker / "data"), "--runs", str(tmp_path / "r"))
    assert_one_line_error(proc, r"data root .* is not writable")


def test_unwritable_data_root_refused_before_simulating(tmp_path, tiny_catalogue, monkeypatch):
    import bench.simulate

    from bench.datasets import get_dataset
    from bench.errors import BenchError

    def never(*_a, **_k):
        raise AssertionError("simulated before checking the data root")

    monkeypatch.setattr(bench.simulate, "simulate", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="data root .* is not writable"):
        get_dataset("tiny-sound").generate(blocker / "data")


def test_unwritable_leaderboard_folder_refused_before_running(tmp_path, tiny_catalogue):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = bench("run", "--method", "lir", "--dataset", "tiny-speech", "--runs", str(tmp_path / "r"),
                 "--out", str(blocker / "lb"))
    assert_one_line_error(proc, r"leaderboard folder \(--out\) .* is not writable")
    assert not list((tmp_path / "r").rglob("*.json"))


def test_ctrl_c_says_what_finished_refreshes_leaderboards_and_exits_130(tiny_catalogue, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import bench.runner
    from bench.cli import app

    real_run_cell = bench.runner.run_cell
    calls = {"n": 0}

    def interrupt_second(cell, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run_cell(cell, **kw)

    monkeypatch.setattr(bench.runner, "run_cell", interrupt_second)
    runs, out = tmp_path / "r", tmp_path / "lb"
    result = CliRunner().invoke(app, ["run", "--method", "lir", "--dataset", "tiny-sound", "--no-references",
                                      "--runs", str(runs), "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert "interrupted during lir tiny-sound sub-sim02 seed 0" in result.stderr
    assert "1 cell(s) finished in this run, 0 were already finished, 1 not finished" in result.stderr
    assert "rerun the same command to resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "tiny-sound.md").exists() and "sim01" in (out / "tiny-sound.md").read_text()


def test_run_trains_the_sim_networks_before_its_cells_and_ctrl_c_there_is_one_line(tiny_catalogue, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import bench.runner
    from bench.cli import app

    planned = []

    def interrupted(cells, **kw):
        planned.append(sorted({c.method for c in cells}))
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.runner, "pretrain_sim_networks", interrupted)
    runs = tmp_path / "r"
    result = CliRunner().invoke(app, ["run", "--method", "lir", "--dataset", "tiny-sound", "--runs", str(runs)])
    assert result.exit_code == 130 and planned == [["chance", "lir", "oracle"]]  # every cell of the run, references too
    assert result.stderr.strip() == ("interrupted while training the simulator networks: the finished ones are cached, "
                                     "nothing is half-written; rerun the same command to resume")
    assert not list(runs.rglob("*.json"))  # no cell ran
    dry = CliRunner().invoke(app, ["run", "--method", "lir", "--dataset", "tiny-sound", "--executor", "slurm", "--dry-run",
                                   "--runs", str(runs)])
    assert planned == [["chance", "lir", "oracle"]], dry.output  # a Slurm driver leaves training to its tasks


def test_dataset_all_says_what_it_took_and_skipped(tiny_catalogue, tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    # an unknown subject stops the run right after planning: nothing trains
    result = CliRunner().invoke(app, ["run", "--method", "lir", "--dataset", "all", "--subjects", "sim09",
                                                "--no-leaderboard", "--runs", str(tmp_path / "r")])
    assert "--dataset all: running tiny-sound, tiny-speech" in result.output
    assert ("--dataset all: skipped brain2sound (not prepared): "
            "`bench data prepare brain2sound --source SOUNDRECON_DIR --stimuli VGGSOUND_DIR`") in result.output


def test_generated_leaderboards_are_ignored_in_a_checkout():
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    # --no-index: the rule itself, whether or not the file is tracked (the published sim tables are, with add -f)
    for table in ("leaderboards/brain2sound.md", "leaderboards/sim-sound.md"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", table], cwd=repo)
        assert ignored.returncode == 0, table  # the quickstart leaves no untracked tables
    kept = subprocess.run(["git", "check-ignore", "-q", "--no-index", "leaderboards/golden/smoke.json"], cwd=repo)
    assert kept.returncode == 1  # the drift-check values stay tracked


def test_unknown_scale_and_device_refused_before_any_work(tiny_catalogue, tmp_path):
    base = ("run", "--method", "lir", "--dataset", "tiny-speech", "--no-leaderboard", "--runs", str(tmp_path / "r"))
    assert_one_line_error(bench(*base, "--scale", "huge"), r"unknown scale 'huge' for tiny-speech")
    assert_one_line_error(bench(*base, "--device", "tpu"), r"device")
    assert not (tmp_path / "r").exists()

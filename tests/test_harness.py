"""End-to-end harness tests on a tiny simulated catalogue: run, skip, resume, records, leaderboards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.errors import BenchError
from bench.records import iter_records
from bench.runner import Cell, plan_cells, run_cell, run_cells


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def _quiet(*_args, **_kw):
    pass


def test_load_split_contract(tiny_catalogue):
    from bench.datasets import load_split

    train = load_split("tiny-sound", "sim01", "train")
    test = load_split("tiny-sound", "sim01", "test")
    assert train.fmri.dtype == np.float32 and train.fmri.ndim == 2
    assert train.audio.shape == (train.n_samples, 64000) and train.audio.dtype == np.float32
    assert set(np.unique(train.onset_s)) == {0.0, 2.0, 4.0}
    assert len(train.stim_id) == len(train.label) == train.n_samples
    # test responses are averaged: one row per (stimulus, window)
    assert len(set(zip(test.stim_id, test.onset_s))) == test.n_samples
    assert set(train.stim_id).isdisjoint(set(test.stim_id))
    prompt = load_split("tiny-speech", "sim01", "prompt")
    assert prompt.n_samples == 4


@pytest.mark.slow
def test_run_writes_record_with_provenance_and_skips_rerun(tiny_catalogue, runs):
    cell = Cell("lir", "tiny-sound", "sim01", 0, "tiny")
    first = run_cell(cell, runs=runs)
    assert first.status == "done" and first.path.exists()
    rec = json.loads(first.path.read_text())
    for key in ("config", "config_hash", "dataset", "metrics", "provenance", "timing", "memory", "predictions"):
        assert key in rec
    assert rec["config"]["dataset_version"].startswith("t1")
    assert rec["provenance"]["packages"]["torch"]
    assert rec["provenance"]["git"]["sha"]
    assert rec["provenance"]["machine"]["cpu_platform"]  # float results of CPU training depend on it (bench/check.py)
    assert rec["metrics"]["pcc"]["status"] == "ok"
    assert len(rec["metrics"]["pcc"]["per_sample"]) == rec["dataset"]["n_test"]
    assert rec["metrics"]["fd"]["status"] == "unavailable" and rec["metrics"]["fd"]["reason"]
    assert "probe:mel" in rec["metrics"] and "gt_features" in rec["metrics"]["probe:mel"]["extra"]
    pred = np.load(first.path.with_suffix(".npz"))
    assert pred["audio"].shape == (rec["dataset"]["n_test"], 64000)
    again = run_cell(cell, runs=runs)
    assert again.status == "skipped" and again.path == first.path
    assert again.record["config_hash"] == rec["config_hash"]
    first.path.write_text(json.dumps({"stale": True}))  # a skip would keep this; --overwrite must replace it
    redo = run_cell(cell, runs=runs, overwrite=True)
    assert redo.status == "done" and redo.path == first.path
    rewritten = json.loads(redo.path.read_text())
    assert "stale" not in rewritten and rewritten["config_hash"] == rec["config_hash"]
    assert rewritten["metrics"]["pcc"]["per_sample"] == rec["metrics"]["pcc"]["per_sample"]


@pytest.mark.slow
def test_same_seed_same_numbers_different_seed_differs(tiny_catalogue, runs, tmp_path):
    a = run_cell(Cell("mlp", "tiny-speech", "sim01", 0, "tiny"), runs=runs)
    b = run_cell(Cell("mlp", "tiny-speech", "sim01", 0, "tiny"), runs=tmp_path / "other")
    c = run_cell(Cell("mlp", "tiny-speech", "sim01", 1, "tiny"), runs=runs)
    assert a.record["metrics"]["pcc"]["per_sample"] == b.record["metrics"]["pcc"]["per_sample"]
    assert a.record["key"] != c.record["key"]
    assert a.record["metrics"]["pcc"]["per_sample"] != c.record["metrics"]["pcc"]["per_sample"]


@pytest.mark.slow
def test_interrupted_run_resumes_with_nothing_lost(tiny_catalogue, runs, monkeypatch):
    cells = plan_cells(["lir"], ["tiny-sound"], None, [0], "tiny")
    assert [c.subject for c in cells] == ["sim01", "sim02"]
    import methods.lir

    calls = {"n": 0}
    real_predict = methods.lir.LiR.predict

    def crash_on_second(self, test):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_predict(self, test)

    monkeypatch.setattr(methods.lir.LiR, "predict", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_cells(cells, runs=runs, progress=False, echo=_quiet)
    assert len(iter_records(runs)) == 1
    assert not [p for p in runs.rglob("*") if p.name.startswith(".") and p.is_file()]  # no temp leftovers
    monkeypatch.setattr(methods.lir.LiR, "predict", real_predict)
    summary = run_cells(cells, runs=runs, progress=False, echo=_quiet)
    assert [o.status for o in summary.outcomes] == ["skipped", "done"]
    assert len(iter_records(runs)) == 2


def test_error_score_nan_skips_crashing_cell(tiny_catalogue, runs, monkeypatch):
    import methods.lir

    def boom(self, train, **kw):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(methods.lir.LiR, "fit", boom)
    cells = [Cell("lir", "tiny-speech", "sim01", 0, "tiny")]
    with pytest.raises(RuntimeError, match="solver exploded"):
        run_cells(cells, runs=runs, progress=False, echo=_quiet)
    summary = run_cells(cells, runs=runs, error_score="nan", progress=False, echo=_quiet)
    assert summary.count("failed") == 1 and "solver exploded" in summary.outcomes[0].error


@pytest.mark.slow
def test_leaderboard_is_byte_identical_and_laid_out(tiny_catalogue, runs, tmp_path):
    from bench.leaderboard import build_tables, write_leaderboards

    for method in ("lir", "mlp"):
        for subject in ("sim01", "sim02"):
            run_cell(Cell(method, "tiny-sound", subject, 0, "tiny"), runs=runs)
    records = iter_records(runs)
    first = build_tables(records)["tiny-sound"]
    second = build_tables(list(reversed(iter_records(runs))))["tiny-sound"]
    assert first == second
    assert "| LiR (tiny) |" in first and "| MLP (tiny) |" in first
    assert "PCC ↑" in first and "FD ↓" in first and "**" in first
    assert "(reported)" in first and "not comparable" in first
    assert "### sim02" in first and "n/a" in first
    paths = write_leaderboards(records, tmp_path / "lb")
    assert paths[0].read_text() == first


def test_bad_inputs_are_one_line_errors(tiny_catalogue, runs):
    with pytest.raises(BenchError, match="unknown dataset 'tiny-sond'. Did you mean: tiny-sound"):
        plan_cells(["lir"], ["tiny-sond"], None, [0], "tiny")
    with pytest.raises(BenchError, match="subject.*sim09.*not in tiny-sound"):
        plan_cells(["lir"], ["tiny-sound"], ["sim09"], [0], "tiny")
    with pytest.raises(BenchError, match="parameter 'epochs' must be an int"):
        run_cell(Cell("mlp", "tiny-sound", "sim01", 0, "tiny", overrides=(("epochs", "ten"),)), runs=runs)
    with pytest.raises(BenchError, match="has no parameter 'n_epochs'"):
        run_cell(Cell("mlp", "tiny-sound", "sim01", 0, "tiny", overrides=(("n_epochs", 3),)), runs=runs)
    with pytest.raises(BenchError, match="brain2sound is not prepared.*bench data prepare brain2sound"):
        run_cell(Cell("lir", "brain2sound", "S1", 0, "tiny"), runs=runs)


def test_corrupt_record_and_prepared_file_are_named(tiny_catalogue, runs, session_data_root):
    out = run_cell(Cell("lir", "tiny-speech", "sim01", 0, "tiny"), runs=runs)
    out.path.write_text("{truncated")
    with pytest.raises(BenchError, match=r"run record .*is corrupt.*--overwrite"):
        run_cell(Cell("lir", "tiny-speech", "sim01", 0, "tiny"), runs=runs)
    from bench.datasets import get_dataset

    folder = get_dataset("tiny-speech").folder()
    target = folder / "sub-sim01" / "test.fmri.npy"
    original = target.read_bytes()
    try:
        target.write_bytes(original[:100])
        with pytest.raises(BenchError, match=r"test\.fmri\.npy is corrupt"):
            get_dataset("tiny-speech").load_split("sim01", "test")
    finally:
        target.write_bytes(original)


def test_grid_expands_every_combination(tiny_catalogue):
    cells = plan_cells(["mlp"], ["tiny-speech"], None, [0], "tiny", overrides={"epochs": 2},
                       grid={"alpha": [1e-4, 1e-3], "batch_size": [16, 32]})
    combos = {c.overrides for c in cells}
    assert len(cells) == 4 and len(combos) == 4
    assert all(dict(c.overrides)["epochs"] == 2 for c in cells)
    from bench.runner import resolve_config

    hashes = {json.dumps(resolve_config(c), sort_keys=True) for c in cells}
    assert len(hashes) == 4


def test_leaderboard_footnotes_reference_and_compute_columns(tiny_catalogue, runs):
    from bench.leaderboard import build_tables

    run_cell(Cell("lir", "tiny-speech", "sim01", 0, "tiny"), runs=runs)
    records = iter_records(runs)
    for rec in records:  # the ground-truth-feature probe above the decoded one: a reference, still not called a bound
        rec["metrics"]["probe:mel"]["extra"]["gt_features"] = 0.99
    md = build_tables(records)["tiny-speech"]
    # one footnote per distinct reason: FD and both KL variants lack the same weights
    assert "\n- FD, KL, KL (sigmoid): weights `panns-cnn14-16k` not found" in md
    assert md.count("panns-cnn14-16k") == 1 and "upper bound" not in md
    assert "ground-truth-feature reference 0.990." in md
    head = next(line for line in md.splitlines() if line.startswith("| Model | PCC") and "fit s" in line)
    assert head.endswith("| fit s | peak RSS MiB |")
    assert "Noise ceiling of the test responses over stimulus-driven voxels: analytic r = " in md
    for rec in records:  # decoded features beating the ground-truth-feature probe: not an upper bound
        rec["metrics"]["probe:mel"]["extra"]["gt_features"] = 0.01
    assert "ground-truth-feature reference 0.010 (not an upper bound: 1 row(s) exceed it)" in build_tables(records)["tiny-speech"]


def test_cell_warnings_go_to_the_record_and_one_summary_line(tiny_catalogue, runs, recwarn):
    from bench.runner import warnings_line

    out = run_cell(Cell("lir", "tiny-sound", "sim01", 0, "tiny"), runs=runs)
    assert not [w for w in recwarn if "cv_folds" in str(w.message)]  # nothing printed during the run
    entries = out.record["warnings"]
    fold = [e for e in entries if e["message"].startswith("cv_folds: reduced n_splits")]
    assert fold and fold[0]["category"] == "UserWarning" and fold[0]["where"].startswith("probes.py:")
    assert fold[0]["count"] >= 1
    line = warnings_line([out.record, out.record])
    assert "in 2 cell(s)" in line and "details in each record's \"warnings\"" in line and "\n" not in line
    assert warnings_line([{"warnings": []}]) is None


def test_run_trains_the_sim_networks_its_unfinished_cells_need_at_once(tiny_catalogue, runs, monkeypatch):
    from bench import device
    from bench.networks import simtrain
    from bench.runner import pretrain_sim_networks, sim_trainers_needed

    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "auto")
    lir, ldm = Cell("lir", "tiny-sound", "sim01", 0, "tiny"), Cell("c2f_ldm", "tiny-speech", "sim01", 0, "tiny")
    assert sim_trainers_needed([lir], runs=runs) == ["panns", "vggish", "clap"]  # FD, KL; FAD; CLAP
    assert sim_trainers_needed([lir], runs=runs, metrics=["pcc", "probe"]) == []
    assert sim_trainers_needed([ldm], runs=runs, metrics=["pcc"]) == ["clap", "audiomae", "audioldm2"]  # its backbones
    paper = Cell("c2f_decoder", "tiny-sound", "sim01", 0, "paper")  # the published backbones: nothing simulated
    assert sim_trainers_needed([paper], runs=runs, metrics=["pcc"]) == []
    done = run_cell(Cell("chance", "tiny-sound", "sim01", 0, "tiny"), runs=runs, metrics=["pcc"])
    assert sim_trainers_needed([done.cell], runs=runs) == []  # finished: skipped, needs nothing
    assert sim_trainers_needed([done.cell], runs=runs, overwrite=True) == ["panns", "vggish", "clap"]

    calls = []
    monkeypatch.setattr(simtrain, "train_sim", lambda names, **kw: calls.append((names, kw["jobs"])))
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    assert pretrain_sim_networks([lir, ldm], runs=runs, echo=_quiet) == ["panns", "vggish", "clap", "audiomae", "audioldm2"]
    assert calls == [(["panns", "vggish", "clap", "audiomae", "audioldm2"], 2)]
    assert pretrain_sim_networks([lir], runs=runs, metrics=["clap"], echo=_quiet) == []  # one trainer: first use is as fast
    monkeypatch.setattr(device, "usable_cores", lambda: 1)
    assert pretrain_sim_networks([lir, ldm], runs=runs, echo=_quiet) == []
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "cached")  # the user said: do not train
    assert pretrain_sim_networks([lir, ldm], runs=runs, echo=_quiet) == []
    assert len(calls) == 1


def test_bench_processes_keep_freed_memory_unless_the_user_tuned_malloc():
    """glibc keeps freed blocks for reuse in `bench` processes (bench.device.keep_freed_memory); a user's own
    GLIBC_TUNABLES / MALLOC_* settings win. Run in fresh processes: it changes the process it runs in."""
    import os
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = "from bench.device import keep_freed_memory as k; print(k(), k())"  # the second call: remembered
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split() == ["True", "True"]
    tuned = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "2"}, capture_output=True,
                           text=True, check=True)
    assert tuned.stdout.split() == ["False", "False"]

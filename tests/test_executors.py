"""Executors without a cluster: sbatch scripts (golden), option and config checks, error records,
``bench status`` from the files, and first-use work done once under a file lock by racing processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, bench

GOLDEN = Path(__file__).parent / "golden" / "slurm"
REPO = Path(__file__).resolve().parent.parent


def _normalise(text: str, runs: Path) -> str:
    return text.replace(str(runs.resolve()), "<RUNS>").replace(sys.executable, "<PYTHON>")


def test_dry_run_sbatch_scripts_match_golden(tiny_catalogue, tmp_path):
    """Two methods with different resource profiles: two arrays; the scripts are compared with tests/golden/slurm."""
    config = tmp_path / "cluster.yaml"
    config.write_text("defaults: {partition: cpu, mem_gb: 4, timeout_min: 30}\n"
                      "methods:\n  mlp: {partition: gpu, gpus_per_node: 1, cpus_per_task: 4, timeout_min: 120}\n")
    runs = tmp_path / "runs"
    proc = bench("run", "-m", "lir,mlp", "-d", "tiny-sound", "--seeds", "0,1", "--executor", "slurm", "--dry-run",
                 "--executor-config", str(config), "--array-parallelism", "2", "--slurm-extra", "qos=high",
                 "--runs", str(runs), "--no-leaderboard", "--no-references", env={"PATH": "/nonexistent"})  # no sbatch needed
    assert proc.returncode == 0, proc.stderr
    assert "dry run: 8 cell(s) would be submitted" in proc.stdout
    scripts = sorted((runs / ".submitit" / "dry-run").glob("*.sbatch"))
    assert [p.name for p in scripts] == ["array-0.sbatch", "array-1.sbatch"]
    if os.environ.get("BENCH_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for p in scripts:
            (GOLDEN / p.name).write_text(_normalise(p.read_text(), runs))
    for p in scripts:
        assert _normalise(p.read_text(), runs) == (GOLDEN / p.name).read_text(), p.name
    cells = (runs / ".submitit" / "dry-run" / "array-1.cells").read_text().splitlines()
    assert len(cells) == 4 and all(line.startswith("mlp tiny-sound") for line in cells)
    assert not list(runs.rglob("*.submitted")) and not list(runs.rglob("sub-*.json"))


def test_no_sbatch_is_one_line_and_submits_nothing(tiny_catalogue, tmp_path):
    runs = tmp_path / "runs"
    proc = bench("run", "-m", "lir", "-d", "tiny-sound", "--executor", "slurm", "--runs", str(runs),
                 "--no-leaderboard", "--no-references", env={"PATH": str(tmp_path)})
    assert_one_line_error(proc, r"no `sbatch` on this machine's PATH; run on a Slurm login node, or use --executor local")
    assert not list(runs.rglob("*.submitted"))


@pytest.mark.parametrize("content, pattern", [
    ("defaults: [1, 2]\n", r"cluster.yaml: 'defaults' must be a mapping"),
    ("defaults: {cpus_per_tsk: 2}\n", r"defaults: unknown setting 'cpus_per_tsk' \(did you mean cpus_per_task\?\)"),
    ("methods:\n  mlp: {gpus_per_node: one}\n", r"methods.mlp: gpus_per_node must be an integer >= 0, got 'one'"),
    ("methods:\n  mpl: {gpus_per_node: 1}\n", r"methods.mpl is not a method"),
    ("defaults: {mem_gb: -1}\n", r"defaults: mem_gb must be a positive number"),
    ("partitions: {}\n", r"unknown top-level key 'partitions'"),
    ("defaults: {partition: [a\n", r"cluster.yaml is not valid YAML"),
])
def test_malformed_executor_config(tiny_catalogue, tmp_path, content, pattern):
    config = tmp_path / "cluster.yaml"
    config.write_text(content)
    proc = bench("run", "-m", "lir,mlp", "-d", "tiny-sound", "--executor", "slurm", "--dry-run",
                 "--executor-config", str(config), "--runs", str(tmp_path / "runs"), "--no-leaderboard", "--no-references")
    assert_one_line_error(proc, pattern)
    assert not (tmp_path / "runs" / ".submitit").exists()


def test_bad_flags_name_the_setting(tiny_catalogue, tmp_path):
    from bench.errors import BenchError
    from bench.executors import parse_slurm_extra, resources_for

    with pytest.raises(BenchError, match=r"--cpus-per-task: cpus_per_task must be an integer >= 1, got 0"):
        resources_for("lir", None, {"cpus_per_task": 0})
    with pytest.raises(BenchError, match=r"--slurm-extra expects KEY=VALUE"):
        parse_slurm_extra(["qos"])
    proc = bench("run", "-m", "lir", "-d", "tiny-sound", "--executor", "cluster", "--runs", str(tmp_path / "r"))
    assert_one_line_error(proc, r"--executor must be one of inline, slurm, local, debug, got 'cluster'")


def test_resource_precedence():
    from bench.executors import resources_for

    config = {"path": "c.yaml", "defaults": {"partition": "cpu", "cpus_per_task": 2},
              "methods": {"mlp": {"partition": "gpu", "gpus_per_node": 1, "slurm_extra": {"qos": "low"}}}}
    lir = resources_for("lir", config, {})
    mlp = resources_for("mlp", config, {"cpus_per_task": 8, "slurm_extra": {"account": "lab"}})
    assert (lir.partition, lir.cpus_per_task, lir.gpus_per_node) == ("cpu", 2, 0)
    assert (mlp.partition, mlp.cpus_per_task, mlp.gpus_per_node) == ("gpu", 8, 1)
    assert dict(mlp.slurm_extra) == {"qos": "low", "account": "lab"}


def test_cells_per_task_packs_cells_into_fewer_tasks(tiny_catalogue, tmp_path):
    """--cells-per-task 2: three cells in two tasks (dry run: the array's size and each cell's task; debug
    executor: the records equal the inline run's)."""
    args = ["run", "-m", "lir", "-d", "tiny-sound", "--subjects", "sim01", "--seeds", "0,1,2", "--no-leaderboard",
            "--no-references"]
    dry = tmp_path / "dry"
    proc = bench(*args, "--executor", "slurm", "--dry-run", "--cells-per-task", "2", "--runs", str(dry),
                 env={"PATH": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    script = (dry / ".submitit" / "dry-run" / "array-0.sbatch").read_text()
    assert "#SBATCH --array=0-1%2" in script, script
    tasks = [line.rsplit("\t", 1)[1] for line in (dry / ".submitit" / "dry-run" / "array-0.cells").read_text().splitlines()]
    assert tasks == ["task 0", "task 0", "task 1"]
    packed, inline = tmp_path / "packed", tmp_path / "inline"
    proc = bench(*args, "--executor", "debug", "--cells-per-task", "2", "--wait", "--runs", str(packed))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted 3 cell(s) in 2 task(s)" in proc.stdout and "3 done, 0 failed" in proc.stdout
    assert bench(*args, "--runs", str(inline)).returncode == 0
    a = {p.name: json.loads(p.read_text())["metrics"] for p in inline.rglob("sub-*.json")}
    b = {p.name: json.loads(p.read_text())["metrics"] for p in packed.rglob("sub-*.json")}
    assert sorted(a) == sorted(b) and len(a) == 3
    for name in a:
        assert {k: v.get("value") for k, v in a[name].items()} == {k: v.get("value") for k, v in b[name].items()}
    assert not list(packed.rglob("*.submitted")) and not list(packed.rglob("*.running"))


def test_a_failing_cell_in_a_packed_task_does_not_stop_the_next(tiny_catalogue, tmp_path):
    from bench.executors import CellTask, side_files
    from bench.records import record_path
    from bench.runner import plan_cells, resolve_config

    runs = tmp_path / "runs"
    (bad,) = plan_cells(["lir"], ["brain2sound"], ["S1"], [0], "tiny")  # not prepared: raises
    (good,) = plan_cells(["lir"], ["tiny-sound"], ["sim01"], [0], "tiny")
    task = CellTask(str(runs), None, "cpu", False, None)
    with pytest.raises(RuntimeError, match=r"1 of 2 cell\(s\) in this task failed: lir brain2sound sub-S1 seed 0"):
        task((bad, good))
    assert side_files(record_path(runs, resolve_config(bad)))["error"].exists()
    assert record_path(runs, resolve_config(good)).exists()
    assert [r["status"] for r in task((good,))] == ["skipped"]  # a requeued task skips what is done


def test_failing_cell_writes_error_record_and_status_says_failed(tiny_catalogue, tmp_path):
    """A cell that raises inside a task: error record (message, traceback file, node, attempt) beside its record."""
    from bench.executors import CellTask, side_files
    from bench.records import record_path
    from bench.runner import plan_cells, resolve_config
    from bench.status import plan_status

    runs = tmp_path / "runs"
    (cell,) = plan_cells(["lir"], ["brain2sound"], ["S1"], [0], "tiny")  # a real dataset, not prepared
    task = CellTask(str(runs), None, "cpu", False, None)
    with pytest.raises(Exception, match="not prepared"):
        task(cell)
    files = side_files(record_path(runs, resolve_config(cell)))
    err = json.loads(files["error"].read_text())
    assert "dataset brain2sound is not prepared" in err["message"]
    assert err["attempt"] == 1 and err["node"] and err["traceback_file"] == files["traceback"].name
    assert "Traceback (most recent call last)" in files["traceback"].read_text()
    assert not files["running"].exists()
    (row,) = plan_status([cell], runs)
    assert row.state == "failed" and "not prepared" in row.detail and "attempt 1" in row.detail


@pytest.mark.slow
def test_local_executor_reports_a_failing_cell(tiny_catalogue, tmp_path):
    """submitit's LocalExecutor (a child process per task): the error record comes back through --wait."""
    runs = tmp_path / "runs"
    proc = bench("run", "-m", "lir", "-d", "brain2sound", "--executor", "local", "--wait", "--runs", str(runs),
                 "--no-leaderboard", "--no-references")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED   lir brain2sound sub-S1 seed 0 (tiny)  " in proc.stdout and "is not prepared" in proc.stdout
    assert "0 done, 1 failed, 0 skipped" in proc.stdout
    assert len(list(runs.rglob("*.error"))) == 1 and not list(runs.rglob("*.running"))


def test_status_from_files(tiny_catalogue, tmp_path, monkeypatch):
    """done / running / missing (interrupted, checkpoint) / stale, with no scheduler asked."""

    from bench import status
    from bench.executors import side_files
    from bench.io import write_json
    from bench.records import config_hash, record_path
    from bench.runner import plan_cells, resolve_config

    runs = tmp_path / "runs"
    cells = plan_cells(["lir"], ["tiny-sound"], ["sim01"], [0, 1, 2, 3], "tiny")
    paths = [record_path(runs, resolve_config(c)) for c in cells]
    config = resolve_config(cells[0])
    from bench import fingerprint

    record = {"schema": 1, "key": config_hash(config)[:12], "config": config, "config_hash": config_hash(config),
              "metrics": {}, "provenance": {}, "timing": {"wall_s": 1.0},
              "code": {"fingerprint": fingerprint.current("lir")}}
    write_json(paths[0], record)
    now = time.time()
    write_json(side_files(paths[1])["running"], {"node": "n1", "job_id": "7_1", "attempt": 2, "started": now, "heartbeat": now})
    write_json(side_files(paths[2])["running"], {"node": "n1", "job_id": "7_2", "attempt": 1, "started": now - 900,
                                                 "heartbeat": now - 600})
    (side_files(paths[2])["work"]).mkdir()
    (side_files(paths[2])["work"] / "bilstm.ckpt").write_bytes(b"x")
    rows = status.plan_status(cells, runs)
    assert [r.state for r in rows] == ["done", "running", "missing", "missing"]
    assert "attempt 2" in rows[1].detail
    assert "interrupted" in rows[2].detail and "checkpoint" in rows[2].detail
    assert rows[3].detail == "no record"
    assert [r.state for r in status.scan(runs)] == ["done", "running", "missing"]

    from bench.runner import is_stale

    # is_stale: the rule bench run applies (other fingerprint, or none, is stale; external records never are)
    monkeypatch.setattr(fingerprint, "current", lambda method: "new")
    assert is_stale({**record, "code": {"fingerprint": "old"}})
    assert not is_stale({**record, "code": {"fingerprint": "new"}})
    assert is_stale({k: v for k, v in record.items() if k != "code"})
    assert not is_stale({**record, "external": True})
    write_json(paths[0], {**record, "code": {"fingerprint": "old"}})
    assert status.plan_status(cells[:1], runs)[0].state == "stale"


def test_status_command(tiny_catalogue, tmp_path):
    proc = bench("status", "-m", "lir", "-d", "tiny-sound", "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "0 done, 0 running, 0 failed, 2 missing, 0 stale" in proc.stdout
    assert_one_line_error(bench("status", "-m", "lir", "--runs", str(tmp_path)), r"give both --method and --dataset")


_RACE_CHILD = textwrap.dedent("""
    import json, os, sys
    from bench import datasets
    original = datasets.Dataset.generate
    def generate(self, *a, **k):
        with open(os.environ["GEN_LOG"], "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        return original(self, *a, **k)
    datasets.Dataset.generate = generate
    split = datasets.get_dataset("tiny-sound").load_split("sim01", "train")
    print(json.dumps({"sum": float(split.fmri.astype("float64").sum()), "n": int(split.n_samples)}))
""")


@pytest.mark.slow
def test_racing_processes_generate_sim_data_once(tiny_catalogue, tmp_path):
    """Four processes load the same simulated dataset from a fresh data root: one generates it, all read the same."""
    env = {**os.environ, "BENCH_DATA": str(tmp_path / "fresh-data"), "GEN_LOG": str(tmp_path / "gen.log"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE_CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(results) == 1
    assert len((tmp_path / "gen.log").read_text().split()) == 1
    leftovers = [p.name for p in (tmp_path / "fresh-data").rglob("*") if p.name.endswith(".tmp") or ".old" in p.name]
    assert leftovers == []


_LOCK_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from bench.io import once_under_lock, write_text
    target = Path(sys.argv[1])
    def make():
        time.sleep(0.5)  # long enough that the others arrive while this one holds the lock
        with open(str(target) + ".log", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        write_text(target, "made")
    once_under_lock(target.with_name(".lock"), target.exists, make)
    print(target.read_text())
""")


def test_once_under_lock_runs_once_across_processes(tmp_path):
    target = tmp_path / "cache" / "thing.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _LOCK_CHILD, str(target)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert [o[0].strip() for o in outs] == ["made"] * 4
    assert len(Path(str(target) + ".log").read_text().split()) == 1


_EMB_CHILD = textwrap.dedent("""
    import json, os, time
    import numpy as np
    from bench.datasets import get_dataset
    from metrics import embeddings
    def fake_embed(net, audio, batch_size=None):
        with open(os.environ["EMB_LOG"], "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)  # the others arrive while this one computes
        return {"embedding": np.asarray(audio[:, :4], dtype=np.float32)}
    embeddings.embed_audio = fake_embed
    net = embeddings.Network("panns", "fake", "0" * 64, False, None, "cpu", "test")
    split = get_dataset("tiny-sound").load_split("sim01", "test")
    out = embeddings.reference_embeddings(split, net)
    print(json.dumps(float(out["embedding"].astype("float64").sum())))
""")


@pytest.mark.slow
def test_racing_processes_compute_reference_embeddings_once(tiny_catalogue, tmp_path):
    """Three processes ask for the same reference-embedding cache: one computes and writes it, all read the same."""
    from bench.datasets import get_dataset

    get_dataset("tiny-sound").load_split("sim01", "test")  # data generated before the race
    env = {**os.environ, "EMB_LOG": str(tmp_path / "emb.log"), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _EMB_CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert len((tmp_path / "emb.log").read_text().split()) == 1

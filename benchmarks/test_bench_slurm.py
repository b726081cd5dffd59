"""Benchmark: the Slurm executor against inline runs, on the one-node Slurm of ``.ci/slurm-up.sh``.

Not part of the normal test run (``testpaths`` is ``tests``). With the cluster up (``SLURM_CONF`` set)::

    .venv/bin/python -m pytest benchmarks/test_bench_slurm.py --benchmark-only -q -s

Cells are tiny LiR/MLP cells on ``small-sound`` (the test catalogue's very small simulated dataset),
generated before anything is timed. Every command runs with ``OMP_NUM_THREADS=1``.

Groups
- ``slurm-task-overhead``: one cell at a time, ``bench run --executor slurm --wait`` for a fresh cell.
  The overhead (asserted) is Slurm's ``Submit`` time (``sacct``) to the record's mtime, minus the cell's
  own ``fit_s + predict_s + score_s``; ``end_to_end_overhead_s`` also counts the driver (CLI start,
  planning, ``sbatch --test-only``, noticing the record, exiting). Split into: the driver up to
  submission, the queue (``Submit`` to ``Start``; ``sacct`` has 1 s resolution), the task up to the cell
  (Python start, unpickling, bench imports, resolving the config: ``Start`` to the task's "cell ...,
  attempt" log line), loading the data (the record's ``wall_s`` minus the cell's own time), the rest of
  ``run_cell`` outside ``wall_s`` (importing torch and the metrics, writing predictions and record), and
  the driver noticing the record and exiting. Asserts the median over ``BENCH_SLURM_OVERHEAD_CELLS`` (default 3) cells <= 5 s.
- ``slurm-vs-inline``: 12 cells (lir and mlp x 6 seeds) inline (``bench run``), as one array with
  ``--array-parallelism 2 --wait`` one cell per task, and the same with ``--cells-per-task 6`` (two
  tasks of six cells: each task starts Python and torch once); wall time of each command. Asserts the
  packed array <= 1.2 x inline; the one-cell-per-task ratio is recorded (``ratio_one_cell_per_task``),
  with the floor it cannot beat: 12 task start-ups (``python_torch_bench_import_s``) over 2 CPUs.

``extra_info`` records the 1-minute load average before and after each measurement: this machine is
shared, and a busy one inflates both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _cluster_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (start a cluster with .ci/slurm-up.sh)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15)
    if proc.returncode != 0 or not proc.stdout.strip():
        return "no Slurm cluster answers sinfo"
    return None


_REASON = _cluster_reason()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.conftest import SMALL_CATALOGUE
    from tests.sim_sizes import SMALL_SOUND

    root = tmp_path_factory.mktemp("bench-slurm")
    catalogue = root / "datasets.yaml"
    catalogue.write_text(SMALL_CATALOGUE.format(params=json.dumps(SMALL_SOUND)), encoding="utf-8")
    out = {**os.environ, "BENCH_DATASETS_YAML": str(catalogue), "BENCH_DATA": str(root / "data"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "BENCH_WEIGHTS": str(root / "no-weights"), "HF_HUB_CACHE": str(root / "no-weights")}
    subprocess.run([sys.executable, "-m", "bench.cli", "data", "prepare", "small-sound"], env=out, check=True,
                   capture_output=True)
    out["_ROOT"] = str(root)
    return out


def _bench(env, *args) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *args, "--no-leaderboard", "--no-references"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return wall, proc


def _sacct_times(job: str) -> tuple[float, float]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "Submit,Start"], capture_output=True,
                         text=True).stdout.split("\n")[0].split("|")
    return tuple(datetime.fromisoformat(t).timestamp() for t in out)  # type: ignore[return-value]


def _load() -> float:
    return os.getloadavg()[0]


def test_slurm_task_overhead(benchmark, env):
    n = int(os.environ.get("BENCH_SLURM_OVERHEAD_CELLS", "3"))
    rows = []

    def one_cell(seed):
        runs = Path(env["_ROOT"]) / f"overhead-{seed}"
        t_submit = time.time()
        wall, proc = _bench(env, "run", "-m", "lir", "-d", "small-sound", "--seeds", str(100 + seed), "--executor",
                            "slurm", "--wait", "--runs", str(runs))
        (record_path,) = list(runs.rglob("sub-*.json"))
        record = json.loads(record_path.read_text())
        written = record_path.stat().st_mtime
        t = record["timing"]
        cell_s = t["fit_s"] + t["predict_s"] + t["score_s"]
        job = proc.stdout.split("job array(s) ")[1].split()[0]
        submitted, started = _sacct_times(job)
        (log,) = list((runs / ".submitit").glob(f"{job}*/*_log.err"))
        first = next(line for line in log.read_text().splitlines() if "bench.executors INFO cell" in line)[:23]
        task_start = datetime.strptime(first, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        rows.append({"wall_s": round(wall, 2), "cell_s": round(cell_s, 2),
                     "overhead_s": round(written - submitted - cell_s, 2),
                     "end_to_end_overhead_s": round(wall - cell_s, 2),
                     "driver_to_submit_s": round(submitted - t_submit, 2), "queue_s": round(started - submitted, 2),
                     "python_start_s": round(task_start - started, 2),
                     "data_load_s": round(t["wall_s"] - cell_s, 2),
                     "imports_in_cell_and_record_write_s": round(written - task_start - t["wall_s"], 2),
                     "record_to_driver_exit_s": round(t_submit + wall - written, 2)})

    # What every task pays before its cell and an inline run pays once: Python, torch and the bench imports.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, submitit, bench.runner, methods, metrics"], env=env, check=True)
    import_s = round(time.perf_counter() - t0, 2)
    load_before = _load()
    benchmark.pedantic(lambda: [one_cell(i) for i in range(n)], rounds=1, iterations=1)
    overheads = sorted(r["overhead_s"] for r in rows)
    median = overheads[len(overheads) // 2]
    benchmark.extra_info.update(cells=rows, median_overhead_s=median, python_torch_bench_import_s=import_s, load_before=load_before, load_after=_load())
    print(json.dumps(benchmark.extra_info, indent=1))
    assert median <= 5.0, f"median per-task overhead {median:.1f} s > 5 s: {rows}"


def test_slurm_array_vs_inline(benchmark, env):
    root = Path(env["_ROOT"])
    args = ["run", "-m", "lir,mlp", "-d", "small-sound", "--seeds", "0,1,2,3,4,5"]
    out = {}

    def both():
        out["load_before"] = _load()
        out["inline_s"], _ = _bench(env, *args, "--runs", str(root / "inline"))
        out["slurm_s"], _ = _bench(env, *args, "--runs", str(root / "slurm"), "--executor", "slurm",
                                   "--array-parallelism", "2", "--wait")
        out["packed_s"], _ = _bench(env, *args, "--runs", str(root / "packed"), "--executor", "slurm",
                                    "--array-parallelism", "2", "--cells-per-task", "6", "--wait")
        out["load_after"] = _load()

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, submitit, bench.runner, methods, metrics"], env=env, check=True)
    out["python_torch_bench_import_s"] = round(time.perf_counter() - t0, 2)
    benchmark.pedantic(both, rounds=1, iterations=1)
    out["ratio_one_cell_per_task"] = round(out["slurm_s"] / out["inline_s"], 3)
    out["ratio"] = round(out["packed_s"] / out["inline_s"], 3)
    for key in ("inline", "slurm", "packed"):
        recs = [json.loads(p.read_text()) for p in (root / key).rglob("sub-*.json")]
        assert len(recs) == 12
        out[f"{key}_cells_s"] = round(sum(r["timing"]["wall_s"] for r in recs), 2)
    benchmark.extra_info.update(out)
    print(json.dumps(out, indent=1))
    assert out["ratio"] <= 1.2, f"12 cells, 6 per task: slurm {out['packed_s']:.1f} s vs inline {out['inline_s']:.1f} s"

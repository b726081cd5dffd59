"""Against a real Slurm (``.ci/slurm-up.sh`` starts a one-node one; ``SLURM_CONF`` points at it).

Skipped, with the reason, where there is no ``sbatch`` or no cluster answers ``sinfo``. The cells are
small simulated LiR/MLP/BiLSTM cells (``small_catalogue``, ``tiny_catalogue``), seconds each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import assert_one_line_error, bench


def _cluster_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (start a cluster with .ci/slurm-up.sh)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer ({exc})"
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"no Slurm cluster answers sinfo ({' '.join(proc.stderr.split())[:200]})"
    return None


_REASON = _cluster_reason()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def _records(runs: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in runs.rglob("sub-*.json")}


def _queue_empty(name_prefix: str = "bench", timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["squeue", "-h", "-n", name_prefix, "-o", "%i"], capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs still queued after {timeout:.0f} s:\n"
                         + _shell("squeue", "-h", "-n", name_prefix, "-o", "%i %T %r %M") + _shell(*_NODE_STATES))


def _queue_state(job: str) -> str:
    """``STATE REASON`` of a queued job; empty once it has left the queue."""
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True).stdout.strip()


_NODE_STATES = ("sinfo", "-N", "-o", "%N %T %E")


def _shell(*cmd: str) -> str:
    """A command and what it printed, for a failure message."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    return f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"


def _job_report(job: str, runs: Path, folder: Path) -> str:
    """What to read when a Slurm test times out: the job as Slurm sees it, the node, the tasks' logs, error files."""
    parts = [_shell("scontrol", "show", "job", job), _shell("sinfo", "-R"), _shell(*_NODE_STATES),
             _shell("sacct", "-n", "-j", job, "-o", "JobID,State,ExitCode,Start,End,Reason%30")]
    for path in sorted((runs / ".submitit").glob(f"{job}*/*_log.*")) + sorted(folder.glob("*.error")) \
            + sorted(folder.glob("*.traceback.txt")):
        parts.append(f"--- {path.name} (last 40 lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(parts)


def _wait_for_record(job: str, runs: Path, folder: Path, timeout: float) -> None:
    """Wait until the cell's record is in ``folder``, starting the job whenever Slurm holds it for its begin time.
    Slurm holds a requeued job for about two minutes (BeginTime) and may set that hold again when the requeue
    completes after an update, so the update is repeated while the job waits for it. The first update waits 2 s
    after the hold is seen: slurmd revokes the killed instance's credential with a time in whole seconds, and a
    relaunch within that same second is refused ("Job N already killed, do not launch batch job") and the job
    ends FAILED. A job that has left the queue without a record fails fast."""
    end = time.monotonic() + timeout
    gone_since = held_since = None
    while not list(folder.glob("sub-*.json")):
        state = _queue_state(job)
        if "BeginTime" in state:
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= 2:
                subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
        if state:
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        if gone_since is not None and time.monotonic() - gone_since > 15:
            raise AssertionError("the job left the queue without a record:\n" + _job_report(job, runs, folder))
        if time.monotonic() > end:
            raise AssertionError(f"no record after {timeout:.0f} s:\n" + _job_report(job, runs, folder))
        time.sleep(0.5)


@pytest.mark.slow
def test_slurm_records_equal_inline(small_catalogue, tmp_path):
    """Four LiR/MLP cells as one array (2 at a time), one cell per task and two per task, give the inline run's
    records, metric for metric."""
    inline, slurm = tmp_path / "inline", tmp_path / "slurm"
    args = ["run", "-m", "lir,mlp", "-d", "small-sound", "--seeds", "0,1", "--no-leaderboard", "--no-references"]
    proc = bench(*args, "--runs", str(inline), env=ENV)
    assert proc.returncode == 0, proc.stderr
    proc = bench(*args, "--runs", str(slurm), "--executor", "slurm", "--array-parallelism", "2", "--dry-run", env=ENV)
    assert proc.returncode == 0, proc.stderr
    proc = bench(*args, "--runs", str(slurm), "--executor", "slurm", "--array-parallelism", "2", "--wait", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 done, 0 failed" in proc.stdout
    # what was submitted is what --dry-run wrote
    checks = slurm / ".submitit" / "checks" / "array-0.sbatch"
    assert checks.read_text() == (slurm / ".submitit" / "dry-run" / "array-0.sbatch").read_text()
    a, b = _records(inline), _records(slurm)
    assert sorted(a) == sorted(b) and len(a) == 4
    for name in a:
        ma, mb = a[name]["metrics"], b[name]["metrics"]
        assert sorted(ma) == sorted(mb), name
        for key in ma:
            assert ma[key]["status"] == mb[key]["status"], (name, key)
            if ma[key]["status"] == "ok":
                np.testing.assert_allclose(mb[key]["value"], ma[key]["value"], rtol=1e-6, err_msg=f"{name} {key}")
    assert not list(slurm.rglob("*.running")) and not list(slurm.rglob("*.submitted"))
    proc = bench(*args, "--runs", str(slurm), "--executor", "slurm", "--wait", env=ENV)
    assert "nothing to submit: all 4 cell(s) already have records" in proc.stdout
    # packed: the four cells in two tasks of two, the same records
    packed = tmp_path / "packed"
    proc = bench(*args, "--runs", str(packed), "--executor", "slurm", "--cells-per-task", "2", "--wait", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted 4 cell(s) in 2 task(s)" in proc.stdout and "4 done, 0 failed" in proc.stdout
    c = _records(packed)
    assert sorted(c) == sorted(a)
    for name in a:
        for key, res in a[name]["metrics"].items():
            if res["status"] == "ok":
                np.testing.assert_allclose(c[name]["metrics"][key]["value"], res["value"], rtol=1e-6, err_msg=f"{name} {key}")


@pytest.mark.slow
def test_requeued_task_resumes_from_its_epoch_checkpoint(small_catalogue, tmp_path):
    """USR2 (what Slurm sends before a time limit or on preemption) mid-training: the task requeues itself and
    the BiLSTM resumes from its last epoch checkpoint; the record equals an uninterrupted inline run's."""
    runs, inline = tmp_path / "slurm", tmp_path / "inline"
    args = ["run", "-m", "bilstm", "-d", "small-sound", "--set", "epochs=60", "--no-leaderboard", "--no-references"]
    proc = bench(*args, "--runs", str(runs), "--executor", "slurm", env=ENV)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.split("job array(s) ")[1].split()[0]
    folder = runs / "small-sound" / "bilstm" / "tiny"
    end = time.monotonic() + 180
    while not list(folder.glob("*.work/bilstm.ckpt")):
        assert time.monotonic() < end, "no epoch checkpoint appeared:\n" + _job_report(job, runs, folder)
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    end = time.monotonic() + 60
    while "BeginTime" not in _queue_state(job):
        assert time.monotonic() < end, "the task was not requeued:\n" + _job_report(job, runs, folder)
        time.sleep(0.2)
    _wait_for_record(job, runs, folder, timeout=300)
    log = "".join(p.read_text() for p in (runs / ".submitit").glob(f"{job}*/*_log.err"))
    assert "Requeued job" in log and ", attempt 2," in log
    epoch = int(log.split("resuming bilstm from epoch ")[1].split()[0])
    assert 1 <= epoch < 60
    (record,) = _records(runs).values()
    proc = bench(*args, "--runs", str(inline), env=ENV)
    assert proc.returncode == 0, proc.stderr
    (reference,) = _records(inline).values()
    for key, res in reference["metrics"].items():
        if res["status"] == "ok":
            np.testing.assert_allclose(record["metrics"][key]["value"], res["value"], rtol=1e-5, err_msg=key)
    _queue_empty()


@pytest.mark.slow
def test_failing_task_writes_error_record(tiny_catalogue, tmp_path):
    """A cell that raises (its real dataset is not prepared): error record with message, traceback file, node, attempt."""
    runs = tmp_path / "runs"
    proc = bench("run", "-m", "lir", "-d", "brain2sound", "--executor", "slurm", "--wait", "--runs", str(runs),
                 "--no-leaderboard", "--no-references", env=ENV)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED   lir brain2sound sub-S1 seed 0 (tiny)  " in proc.stdout and "dataset brain2sound is not prepared" in proc.stdout
    (error,) = runs.rglob("*.error")
    err = json.loads(error.read_text())
    assert err["node"] and err["attempt"] == 1 and err["job_id"]
    assert "Traceback" in error.with_suffix(".traceback.txt").read_text()
    proc = bench("status", "--runs", str(runs))
    assert "0 done, 0 running, 1 failed" in proc.stdout and "is not prepared" in proc.stdout
    _queue_empty()


@pytest.mark.slow
def test_status_after_killed_driver(small_catalogue, tmp_path):
    """Kill `bench run --wait` once its tasks run: they finish anyway and `bench status` sees them done."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "bench.cli", "run", "-m", "lir", "-d", "small-sound", "--seeds", "0,1",
           "--executor", "slurm", "--wait", "--runs", str(runs), "--no-leaderboard", "--no-references"]
    driver = subprocess.Popen(cmd, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 180
    while not list(runs.rglob("*.running")):
        assert time.monotonic() < end and driver.poll() is None, "no task started"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    proc = bench("status", "-m", "lir", "-d", "small-sound", "--seeds", "0,1", "--runs", str(runs))
    assert proc.returncode == 0 and "0 failed" in proc.stdout and "running" in proc.stdout, proc.stdout
    _queue_empty()
    proc = bench("status", "-m", "lir", "-d", "small-sound", "--seeds", "0,1", "--runs", str(runs))
    assert "2 done, 0 running, 0 failed, 0 missing" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_unknown_partition_and_refused_requests_submit_nothing(tiny_catalogue, tmp_path):
    runs = tmp_path / "runs"
    base = ["run", "-m", "lir", "-d", "tiny-sound", "--executor", "slurm", "--runs", str(runs), "--no-leaderboard", "--no-references"]
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert_one_line_error(bench(*base, "--partition", "nope", env=ENV),
                          r"Slurm refuses --partition nope: .*[Ii]nvalid partition.*; choose one that `sinfo -s` lists; nothing was submitted")
    assert_one_line_error(bench(*base, "--cpus-per-task", "64", env=ENV),
                          r"Slurm refuses --cpus-per-task 64 .*More processors requested than permitted.*nothing was submitted")
    assert_one_line_error(bench(*base, "--gpus-per-node", "1", env=ENV),
                          r"Slurm refuses --gpus-per-node 1: .*gres.*nothing was submitted")
    assert not list(runs.rglob("*.submitted"))
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert set(after.split()) <= set(before.split())

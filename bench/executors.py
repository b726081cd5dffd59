"""Where cells run: inline (one after another in this process) or as submitit jobs (Slurm job arrays,
local processes, or in-process debugging).

With an executor other than inline, the cells without a record are grouped by their resource request
(``ResourceRequest``, from the flags and the ``--executor-config`` file) and each group is submitted as
one job array, one cell per task (``cells_per_task`` > 1 packs that many cells of one request into a
task, run one after another: each task pays Python, torch and the imports once, which dominates cells
of a few seconds; see the README's cluster section). A task runs ``CellTask``: for each of its cells
exactly ``bench.runner.run_cell`` (so a cell whose record exists is skipped and a record is written
atomically), wrapped in three files beside the record (see ``bench.status``):

- ``<record stem>.running``: JSON (node, job id, attempt, start time), rewritten every
  ``HEARTBEAT_S`` seconds while the task lives and removed when it ends;
- ``<record stem>.error``: JSON (message, exception type, traceback file, node, job id, attempt, time)
  when the cell raised; removed when a later attempt succeeds;
- ``<record stem>.traceback.txt``: the full traceback of that failure.

Tasks are checkpointable: on preemption or timeout (submitit's USR2 handler) the task is requeued
with the same arguments, and the method resumes from its last epoch checkpoint in the cell's
``.work`` folder (``bench.training.fit_model``). ``attempt`` counts Slurm requeues
(``SLURM_RESTART_COUNT`` + 1).

submitit is imported only here, inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.runner import Periodic

log = logging.getLogger("bench.executors")

EXECUTORS = ("inline", "slurm", "local", "debug")
HEARTBEAT_S = 20.0  # how often a live task rewrites its .running file
LOG_FOLDER = ".submitit"  # under the runs folder: sbatch scripts, pickles and task logs


# ----------------------------------------------------------------------------------------------
# resource requests


@dataclass(frozen=True)
class ResourceRequest:
    """What one task asks the scheduler for.

    partition: Slurm partition (None: the cluster's default); gpus_per_node, cpus_per_task: counts;
    mem_gb: memory per task in GiB (None: the partition's default); timeout_min: wall-clock limit per
    attempt in minutes; array_parallelism: most tasks of one array running at once; max_requeues: how
    many times a preempted or timed-out task is requeued; slurm_extra: further sbatch options
    (``(key, value), ...``, e.g. ``(("qos", "high"),)``); cells_per_task: cells run one after another in
    one task (``timeout_min`` then covers all of them).
    """

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    timeout_min: int = 60
    array_parallelism: int = 16
    max_requeues: int = 3
    slurm_extra: tuple = ()
    cells_per_task: int = 1

    def with_settings(self, settings: dict, where: str) -> "ResourceRequest":
        checked = {key: _check_setting(key, value, where) for key, value in settings.items()}
        if "slurm_extra" in checked:
            checked["slurm_extra"] = tuple(sorted({**dict(self.slurm_extra), **checked["slurm_extra"]}.items()))
        return dataclasses.replace(self, **checked)


_INT_SETTINGS = {"gpus_per_node": 0, "cpus_per_task": 1, "timeout_min": 1, "array_parallelism": 1, "max_requeues": 0,
                 "cells_per_task": 1}
SETTINGS = ("partition", *_INT_SETTINGS, "mem_gb", "slurm_extra")


def _check_setting(key: str, value: Any, where: str):
    """One setting, checked; ``where`` names its origin (a flag or a file and field) for the error."""
    if key not in SETTINGS:
        import difflib

        close = difflib.get_close_matches(key, SETTINGS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BenchError(f"{where}: unknown setting {key!r}{hint}; settings: {', '.join(SETTINGS)}")
    if key == "partition":
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise BenchError(f"{where}: partition must be a partition name, got {value!r}")
        return value
    if key in _INT_SETTINGS:
        if isinstance(value, bool) or not isinstance(value, int) or value < _INT_SETTINGS[key]:
            raise BenchError(f"{where}: {key} must be an integer >= {_INT_SETTINGS[key]}, got {value!r}")
        return value
    if key == "mem_gb":
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise BenchError(f"{where}: mem_gb must be a positive number of GiB, got {value!r}")
        return value
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise BenchError(f"{where}: slurm_extra must be a mapping of sbatch option names to values, got {value!r}")
    return {k.replace("-", "_"): v for k, v in value.items()}


def parse_slurm_extra(pairs: list[str] | None) -> dict:
    """``--slurm-extra KEY=VALUE`` (repeatable) -> {key: value}; keys are sbatch long options."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--slurm-extra expects KEY=VALUE (an sbatch option, e.g. qos=high), got {pair!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def load_executor_config(path: Path) -> dict:
    """Read ``--executor-config``: ``defaults:`` and ``methods: {<method>: {...}}`` resource settings.

    Example::

        defaults: {partition: cpu, cpus_per_task: 2, mem_gb: 8, timeout_min: 60}
        methods:
          lir: {cpus_per_task: 4}
          c2f_ldm: {partition: gpu, gpus_per_node: 1, timeout_min: 720}

    Returns {"defaults": {...}, "methods": {name: {...}}}, every setting checked.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"--executor-config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise BenchError(f"--executor-config {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise BenchError(f"--executor-config {path} must be a mapping with 'defaults:' and/or 'methods:'")
    unknown = [k for k in raw if k not in ("defaults", "methods")]
    if unknown:
        raise BenchError(f"--executor-config {path}: unknown top-level key {unknown[0]!r}; use 'defaults:' and 'methods:'")
    defaults = raw.get("defaults") or {}
    methods = raw.get("methods") or {}
    if not isinstance(defaults, dict):
        raise BenchError(f"--executor-config {path}: 'defaults' must be a mapping of settings")
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise BenchError(f"--executor-config {path}: 'methods' must map method names to mappings of settings")
    ResourceRequest().with_settings(defaults, f"--executor-config {path}: defaults")
    from methods import METHODS

    for name, settings in methods.items():
        if name not in METHODS.names():
            raise BenchError(f"--executor-config {path}: methods.{name} is not a method; methods: {', '.join(METHODS.names())}")
        ResourceRequest().with_settings(settings, f"--executor-config {path}: methods.{name}")
    return {"defaults": defaults, "methods": methods, "path": str(path)}


def resources_for(method: str, config: dict | None, flags: dict) -> ResourceRequest:
    """The request for ``method``: built-in defaults < config ``defaults`` < config ``methods.<method>`` < flags."""
    req = ResourceRequest()
    if config:
        req = req.with_settings(config["defaults"], f"--executor-config {config['path']}: defaults")
        req = req.with_settings(config["methods"].get(method, {}), f"--executor-config {config['path']}: methods.{method}")
    for key, value in flags.items():
        if value is not None and not (key == "slurm_extra" and not value):
            req = req.with_settings({key: value}, "--" + key.replace("_", "-"))
    return req


# ----------------------------------------------------------------------------------------------
# the task


def _attempt() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) + 1


def _job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def side_files(record_path: Path) -> dict[str, Path]:
    """The files a task keeps beside a cell's record: running marker, error record, traceback, work folder."""
    record_path = Path(record_path)
    return {
        "running": record_path.with_suffix(".running"),
        "error": record_path.with_suffix(".error"),
        "traceback": record_path.with_suffix(".traceback.txt"),
        "work": record_path.with_suffix(".work"),
        "submitted": record_path.with_suffix(".submitted"),
    }


class _Heartbeat(Periodic):
    """Writes the .running marker now and every ``HEARTBEAT_S`` seconds until stopped, then removes it."""

    interval = HEARTBEAT_S

    def __init__(self, path: Path, info: dict):
        self.path, self.info = path, info

    def tick(self):
        from bench.io import write_json

        try:
            write_json(self.path, {**self.info, "heartbeat": time.time()})
        except OSError:
            pass  # a full disk must not kill the cell; status will call the marker old

    def finish(self):
        self.path.unlink(missing_ok=True)


class CellTask:
    """One task: ``bench.runner.run_cell`` for a cell, or for each cell of a tuple, plus the running/error files.

    Called with a ``Cell``, returns {"status", "record"}; called with a tuple of cells (what
    ``submit_cells`` sends, one tuple of ``cells_per_task`` cells per task), runs them in order (a failing cell writes its error record and the next one still runs; the task then raises, so
    the job ends FAILED) and returns a list of those. Small, so submitit's result pickle is too.
    ``checkpoint`` makes the task requeueable: submitit calls it on preemption/timeout and resubmits
    the same call; finished cells are skipped (their records exist) and the interrupted one resumes
    from the method's epoch checkpoints.
    """

    def __init__(self, runs: str, data_root: str | None, device: str, overwrite: bool, metrics: list[str] | None,
                 reuse_stale: bool = False):
        self.runs, self.data_root, self.device = runs, data_root, device
        self.overwrite, self.metrics, self.reuse_stale = overwrite, metrics, reuse_stale

    def __call__(self, cells):
        from bench.device import keep_freed_memory

        keep_freed_memory()  # a task is a fresh process (bench.cli.main did this for inline runs)
        if not isinstance(cells, (tuple, list)):
            return self._run_one(cells)
        results, failed = [], []
        for cell in cells:
            try:
                results.append(self._run_one(cell))
            except Exception as exc:  # recorded beside the cell's record; KeyboardInterrupt/SystemExit pass
                failed.append(f"{cell.label()}: {type(exc).__name__}: {exc}")
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(cells)} cell(s) in this task failed: " + "; ".join(failed))
        return results

    def _run_one(self, cell) -> dict:
        import traceback

        from bench.io import write_json, write_text
        from bench.records import record_path
        from bench.runner import resolve_config, run_cell

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        path = record_path(Path(self.runs), resolve_config(cell, self.data_root))
        files = side_files(path)
        info = {"cell": cell.label(), "node": socket.gethostname(), "job_id": _job_id(), "attempt": _attempt(),
                "pid": os.getpid(), "started": time.time()}
        log.info("cell %s, attempt %d, record %s", cell.label(), info["attempt"], path)
        try:
            with _Heartbeat(files["running"], info):
                outcome = run_cell(cell, runs=Path(self.runs), data_root=self.data_root, device=self.device,
                                   overwrite=self.overwrite, metrics=self.metrics, reuse_stale=self.reuse_stale)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # killed or requeued: not a failure of the cell
            write_text(files["traceback"], traceback.format_exc())
            write_json(files["error"], {
                "cell": cell.label(), "message": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__,
                "traceback_file": files["traceback"].name, "node": info["node"], "job_id": info["job_id"],
                "attempt": info["attempt"], "time": time.time(),
            })
            raise
        for key in ("error", "traceback", "submitted"):
            files[key].unlink(missing_ok=True)
        return {"status": outcome.status, "record": str(outcome.path)}

    def checkpoint(self, cells):
        import submitit

        return submitit.helpers.DelayedSubmission(self, cells)


# ----------------------------------------------------------------------------------------------
# submission


@dataclass
class Submission:
    """What ``submit_cells`` did: the jobs (one entry per pending cell; cells packed into one task share its
    job), the record paths, the scripts written (``(path, number of tasks)``), the number of tasks submitted."""

    jobs: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    records: list[Path] = field(default_factory=list)
    skipped: int = 0
    scripts: list[tuple[Path, int]] = field(default_factory=list)
    array_ids: list[str] = field(default_factory=list)
    n_tasks: int = 0


def _make_executor(kind: str, folder: Path, req: ResourceRequest):
    import submitit

    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=req.max_requeues)
        ex.update_parameters(**slurm_parameters(req))
        return ex
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=req.max_requeues)
        # LocalExecutor's default timeout is 2 minutes; it starts every task at once (no array parallelism).
        ex.update_parameters(timeout_min=req.timeout_min, visible_gpus=tuple(range(req.gpus_per_node)))
        return ex
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise BenchError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


def slurm_parameters(req: ResourceRequest) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for a request (``mem`` in GiB; submitit writes "<n>GB")."""
    params: dict[str, Any] = {"time": req.timeout_min, "cpus_per_task": req.cpus_per_task,
                              "array_parallelism": req.array_parallelism, "job_name": "bench",
                              # USR2 this long before the limit: time to requeue (at most 90 s, submitit's default)
                              "signal_delay_s": min(90, max(10, req.timeout_min * 6))}
    if req.partition:
        params["partition"] = req.partition
    if req.gpus_per_node:
        params["gpus_per_node"] = req.gpus_per_node
    if req.mem_gb is not None:
        params["mem"] = req.mem_gb
    if req.slurm_extra:
        params["additional_parameters"] = dict(req.slurm_extra)
    return params


def _tasks(members: list, req: ResourceRequest) -> list:
    """Group one request's (cell, record path) pairs into tasks of ``req.cells_per_task`` (in order)."""
    k = req.cells_per_task
    return [members[i:i + k] for i in range(0, len(members), k)]


def sbatch_script(req: ResourceRequest, folder: Path, n_tasks: int) -> str:
    """The sbatch script submitit writes for an array of ``n_tasks`` tasks with this request.

    Built from submitit's own template without a SlurmExecutor, which refuses to exist where there is
    no ``srun`` (``--dry-run`` works anywhere); the command line is submitit's ``_submitit_command_str``.
    """
    import shlex

    from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

    params = slurm_parameters(req)
    if "mem" in params:
        params["mem"] = _convert_mem(params["mem"])
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_tasks, **params)


def _check_sbatch_available() -> None:
    if shutil.which("sbatch") is None:
        raise BenchError("--executor slurm: no `sbatch` on this machine's PATH; run on a Slurm login node, "
                         "or use --executor local (or inline)")


def _test_submission(script: Path, req: ResourceRequest) -> None:
    """``sbatch --test-only``: Slurm validates the request (partition, resources) and schedules nothing."""
    import subprocess

    try:
        proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise BenchError("--executor slurm: `sbatch --test-only` did not answer in 60 s; is slurmctld up (`sinfo`)?") from None
    if proc.returncode == 0:
        return
    reason = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
    low = reason.lower()
    if "partition" in low:
        setting = f"--partition {req.partition}" if req.partition else "the default partition"
        fix = "choose one that `sinfo -s` lists"
    elif "gres" in low or "gpu" in low:
        setting, fix = f"--gpus-per-node {req.gpus_per_node}", "ask for GPUs only on a partition that has them"
    elif "memory" in low or "mem" in low:
        setting, fix = f"--mem-gb {req.mem_gb}", "ask for less memory than the nodes have (`sinfo -o '%P %m'`)"
    elif "processors" in low or "cpu" in low or "node configuration" in low:
        setting, fix = (f"--cpus-per-task {req.cpus_per_task} / --mem-gb {req.mem_gb} / --gpus-per-node {req.gpus_per_node}",
                        "ask for no more than one node has (`sinfo -o '%P %c %m %G'`)")
    elif "time limit" in low:
        setting, fix = f"--timeout-min {req.timeout_min}", "ask for no more than the partition's limit (`sinfo -o '%P %l'`)"
    else:
        setting, fix = "the resource request", "check --slurm-extra and the executor config"
    raise BenchError(f"Slurm refuses {setting}: {reason}; {fix}; nothing was submitted")


def submit_cells(
    cells: list, *, kind: str, runs: Path, data_root=None, device: str = "auto", overwrite: bool = False,
    metrics: list[str] | None = None, config: dict | None = None, flags: dict | None = None, dry_run: bool = False,
    reuse_stale: bool = False, echo: Callable[[str], None] = print,
) -> Submission:
    """Submit every cell without a record, one job array per resource request; nothing if ``dry_run``.

    ``dry_run`` writes the sbatch script of each array to ``<runs>/.submitit/dry-run/`` instead.
    A request Slurm refuses (checked with ``sbatch --test-only`` for every array first) raises a
    BenchError before anything is submitted.
    """
    from bench.io import ensure_writable_dir, write_json, write_text
    from bench.records import record_path
    from bench.runner import resolve_config

    if kind not in EXECUTORS or kind == "inline":
        raise BenchError(f"submit_cells needs --executor slurm, local or debug, got {kind!r}")
    ensure_writable_dir(runs, "runs folder")
    sub = Submission()
    groups: dict[ResourceRequest, list] = {}
    for cell in cells:
        path = record_path(runs, resolve_config(cell, data_root))
        if path.exists() and not overwrite and (reuse_stale or _current_record(path)):
            sub.skipped += 1
            continue
        req = resources_for(cell.method, config, flags or {})
        groups.setdefault(req, []).append((cell, path))
    if not groups:
        return sub
    if kind == "slurm" and not dry_run:
        _check_sbatch_available()
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise BenchError(f"--executor {kind} needs submitit: pip install submitit") from None

    task = CellTask(str(Path(runs).resolve()), str(data_root) if data_root else None, device, overwrite, metrics,
                    reuse_stale)
    folder = Path(runs).resolve() / LOG_FOLDER / "%j"
    planned = []
    for i, (req, members) in enumerate(groups.items()):
        executor = None if dry_run else _make_executor(kind, folder, req)
        tasks = _tasks(members, req)
        planned.append((members, tasks, executor))
        if kind == "slurm":
            script = Path(runs) / LOG_FOLDER / ("dry-run" if dry_run else "checks") / f"array-{i}.sbatch"
            write_text(script, sbatch_script(req, folder, len(tasks)))
            if dry_run:
                write_text(script.with_suffix(".cells"), "".join(
                    f"{c.label()}\t{p}\ttask {t}\n" for t, chunk in enumerate(tasks) for c, p in chunk))
                sub.scripts.append((script, len(tasks)))
            else:
                _test_submission(script, req)
    if dry_run:
        sub.cells = [c for members, _, _ in planned for c, _ in members]
        sub.records = [p for members, _, _ in planned for _, p in members]
        return sub
    for members, tasks, executor in planned:
        try:
            task_jobs = executor.map_array(task, [tuple(c for c, _ in chunk) for chunk in tasks])
        except Exception as exc:  # submitit wraps sbatch's refusal in its own error
            message = " ".join(str(exc).split())
            raise BenchError(f"--executor {kind}: submission failed ({message[:300]}); "
                             f"{len(sub.jobs)} task(s) submitted before it") from None
        jobs = [job for job, chunk in zip(task_jobs, tasks) for _ in chunk]  # one entry per cell
        for job, (cell, path) in zip(jobs, members):
            write_json(side_files(path)["submitted"], {"cell": cell.label(), "job_id": str(job.job_id),
                                                       "executor": kind, "time": time.time()})
        sub.jobs += jobs
        sub.cells += [c for c, _ in members]
        sub.records += [p for _, p in members]
        if jobs:
            sub.array_ids.append(str(jobs[0].job_id).split("_")[0])
        sub.n_tasks += len(task_jobs)
    return sub


def _current_record(path: Path) -> bool:
    """Whether the record at ``path`` is readable and made by today's code (a task would skip its cell)."""
    from bench.records import load_record
    from bench.runner import is_stale

    try:
        return not is_stale(load_record(path))
    except BenchError:
        return False  # unreadable: the task reports it


_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
             "PREEMPTED", "FINISHED", "INTERRUPTED"}


def wait_for(sub: Submission, *, progress: bool = True, echo: Callable[[str], None] = print, poll_s: float = 0.5) -> dict:
    """Follow the submitted tasks until each has a record, an error record, or its job ended without one.

    Returns {"done": n, "failed": [(cell, message)]}. Records are read from the files (as ``bench
    status`` does); job states (through submitit, from ``sacct``) only catch tasks that died without
    writing an error record (killed, out of memory, cancelled).
    """
    from tqdm.auto import tqdm

    from bench.io import read_json

    pending = dict(enumerate(zip(sub.cells, sub.records, sub.jobs)))
    done, failed = 0, []
    bar = tqdm(total=len(pending), desc="tasks", unit="cell", disable=not progress)
    last_state_check = 0.0
    while pending:
        check_states = time.monotonic() - last_state_check > 5.0
        if check_states:
            last_state_check = time.monotonic()
        for i, (cell, path, job) in list(pending.items()):
            files = side_files(path)
            message = None
            if path.exists():
                done += 1
                echo(f"done     {cell.label()}")
            elif files["error"].exists() and not files["running"].exists() and _job_over(job):
                err = read_json(files["error"], what="error record")
                message = f"{err.get('message')} (node {err.get('node')}, attempt {err.get('attempt')}; traceback {files['traceback']})"
            elif check_states and _job_state(job) in _TERMINAL and not path.exists():
                message = f"job {job.job_id} ended {_job_state(job)} without a record; log: {job.paths.stderr}"
            else:
                continue
            if message:
                failed.append((cell, message))
                echo(f"FAILED   {cell.label()}  {message}")
            del pending[i]
            bar.update(1)
        if pending:
            time.sleep(poll_s)
    bar.close()
    return {"done": done, "failed": failed}


def _job_state(job) -> str:
    try:
        return str(job.state).split()[0].upper()
    except Exception:  # an unreachable accounting database must not stop the follower
        return "UNKNOWN"


def _job_over(job) -> bool:
    """Whether a task that wrote an error record has finished (submitit's result file, or a terminal state)."""
    if job.paths.result_pickle.exists():
        return True
    return _job_state(job) in _TERMINAL


def run_with_executor(
    cells: list, *, kind: str, runs: Path, data_root=None, device: str = "auto", overwrite: bool = False,
    metrics: list[str] | None = None, config: dict | None = None, flags: dict | None = None, dry_run: bool = False,
    wait: bool = False, progress: bool = True, reuse_stale: bool = False, echo: Callable[[str], None] = print,
) -> int:
    """``bench run --executor slurm|local|debug``: submit, then follow (``wait``) or say how to; return the
    number of failed cells (0 when not waiting)."""
    sub = submit_cells(cells, kind=kind, runs=runs, data_root=data_root, device=device, overwrite=overwrite,
                       metrics=metrics, config=config, flags=flags, dry_run=dry_run, reuse_stale=reuse_stale, echo=echo)
    if dry_run:
        for script, n_tasks in sub.scripts:
            echo(f"wrote {script} ({n_tasks} tasks; cells in {script.with_suffix('.cells').name})")
        echo(f"dry run: {len(sub.cells)} cell(s) would be submitted, {sub.skipped} already done; nothing submitted")
        return 0
    if not sub.jobs:
        echo(f"nothing to submit: all {sub.skipped} cell(s) already have records in {runs}")
        return 0
    packed = f" in {sub.n_tasks} task(s)" if sub.n_tasks != len(sub.jobs) else ""
    echo(f"submitted {len(sub.jobs)} cell(s){packed} as {kind} job array(s) {', '.join(sub.array_ids)}"
         f" ({sub.skipped} already done); logs in {Path(runs).resolve() / LOG_FOLDER}")
    if kind == "debug":  # DebugExecutor runs a task when its result is asked for
        for job in {id(j): j for j in sub.jobs}.values():
            try:
                job.result()
            except Exception:
                pass  # the task wrote its error record; wait_for reports it
    if not wait and kind != "debug":
        follow = f"bench status --runs {runs}" + ("  (or squeue --me)" if kind == "slurm" else "")
        echo(f"follow with: {follow}; when done: bench leaderboard --runs {runs}; rerunning this command resubmits only unfinished cells")
        return 0
    result = wait_for(sub, progress=progress, echo=echo)
    echo(f"{result['done']} done, {len(result['failed'])} failed, {sub.skipped} skipped; records in {runs}")
    return len(result["failed"])


def run_executor_command(cells: list, *, kind: str, runs: Path, config_path: Path | None, flags: dict,
                         slurm_extra: list[str] | None, **kwargs) -> int:
    """The CLI's entry: check the executor options, then ``run_with_executor``."""
    if kind not in EXECUTORS:
        raise BenchError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "inline":
        raise BenchError("--dry-run and --wait apply to --executor slurm, local or debug; inline runs here and waits anyway")
    config = load_executor_config(config_path) if config_path else None
    flags = {**flags, "slurm_extra": parse_slurm_extra(slurm_extra)}
    for cell in {c.method for c in cells}:
        resources_for(cell, config, flags)  # every flag checked before anything is written
    return run_with_executor(cells, kind=kind, runs=runs, config=config, flags=flags, **kwargs)

"""The runner: a cell = (method, dataset, subject, seed, profile); train, predict, score, record.

Finished cells are found by their config hash before any data is loaded and skipped (MOABB's
habit); ``overwrite=True`` recomputes. Records and predictions are written atomically at the end
of a cell, so an interrupted run resumes at the first unfinished cell with nothing lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import bench
from bench.errors import BenchError, UnavailableError
from bench.io import ensure_writable_dir, write_json, write_npz
from bench.records import SCHEMA_VERSION, config_hash, load_record, record_path

log = logging.getLogger("bench.runner")

DEFAULT_RUNS_DIR = "runs"


def runs_dir(path: str | os.PathLike | None = None) -> Path:
    """Where records live: the argument, else ``$BENCH_RUNS``, else ./runs."""
    return Path(path or os.environ.get("BENCH_RUNS") or DEFAULT_RUNS_DIR)


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    subject: str
    seed: int
    profile: str = "tiny"
    scale: str = "default"
    overrides: tuple = ()  # ((key, value), ...) from --set

    def label(self) -> str:
        return f"{self.method} {self.dataset} sub-{self.subject} seed {self.seed} ({self.profile})"


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done", "skipped", "stale" (kept by --reuse-stale), "failed"
    path: Path | None = None
    record: dict | None = None
    error: str = ""


def resolve_config(cell: Cell, data_root=None) -> dict:
    """The cell's full configuration, whose hash identifies the result."""
    from bench.datasets import get_dataset
    from methods import get_method

    method_cls = get_method(cell.method)
    method = method_cls.from_profile(cell.profile, dict(cell.overrides))
    method.validate_params()
    dataset = get_dataset(cell.dataset)
    return {
        "method": cell.method,
        "params": _jsonable(method.get_params()),
        "overrides": _jsonable(dict(cell.overrides)),  # what --set/--grid changed: shown in row names
        "profile": cell.profile,
        "dataset": cell.dataset,
        "dataset_version": dataset.version(cell.scale),
        "scale": cell.scale,
        "subject": cell.subject,
        "seed": int(cell.seed),
        "suite_version": bench.__version__,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@contextlib.contextmanager
def captured_warnings():
    """Collect every warning raised inside the block instead of printing it (a list of warnings.WarningMessage).

    Warnings during a cell (fold counts reduced, library notices) are nothing a user can act on mid-run; the record
    keeps them and ``bench run`` prints one summary line.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def summarise_warnings(caught) -> list[dict]:
    """Distinct warnings as record entries: category, message, where (file:line) and how often, in first-seen order."""
    out: dict[tuple, dict] = {}
    for w in caught:
        key = (w.category.__name__, str(w.message), f"{Path(w.filename).name}:{w.lineno}")
        if key not in out:
            out[key] = {"category": key[0], "message": key[1], "where": key[2], "count": 0}
        out[key]["count"] += 1
    return list(out.values())


def warnings_line(records: list[dict]) -> str | None:
    """One line for a whole run: how many distinct warnings in how many cells, the commonest, where the details are."""
    counts: dict[str, int] = {}
    n_cells = 0
    for rec in records:
        entries = rec.get("warnings") or []
        n_cells += bool(entries)
        for e in entries:
            counts[e["message"]] = counts.get(e["message"], 0) + int(e.get("count", 1))
    if not counts:
        return None
    top = min(counts, key=lambda m: (-counts[m], m))
    top = top if len(top) <= 100 else top[:97] + "..."
    return (f"{sum(counts.values())} warning(s), {len(counts)} distinct, in {n_cells} cell(s), e.g. \"{top}\"; "
            "details in each record's \"warnings\"")


class Periodic:
    """A block during which ``tick()`` runs at its start, every ``interval`` seconds, and at its end, in a thread.

    Subclasses implement ``tick``; ``finish`` runs once after the last tick (e.g. to remove a marker file)."""

    interval: float = 1.0

    def tick(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.tick()

    def __enter__(self):
        self._stop = threading.Event()
        self.tick()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.tick()
        self.finish()


class PeakMemory(Periodic):
    """Peak resident memory of this process during a block, sampled every 20 ms (MiB)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_mb = 0.0

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def tick(self) -> None:
        self.peak_mb = max(self.peak_mb, self.rss_mb())


def run_cell(
    cell: Cell,
    *,
    runs: Path,
    data_root=None,
    device: str = "cpu",
    overwrite: bool = False,
    metrics: list[str] | None = None,
    progress: bool = False,
    reuse_stale: bool = False,
) -> CellOutcome:
    """Run one cell unless its record exists and was computed by the same code; return what happened.

    A record whose code fingerprint (``bench.fingerprint``) differs from the running code's is recomputed, or with
    ``reuse_stale`` kept and reported as "stale".
    """
    from bench.data import use_data_root

    with use_data_root(data_root):
        return _run_cell(cell, runs=runs, data_root=data_root, device=device, overwrite=overwrite, metrics=metrics,
                         progress=progress, reuse_stale=reuse_stale)


def _run_cell(cell: Cell, *, runs: Path, data_root, device: str, overwrite: bool, metrics, progress: bool,
              reuse_stale: bool) -> CellOutcome:
    from bench import fingerprint

    config = resolve_config(cell, data_root)
    path = record_path(runs, config)
    code = fingerprint.describe(cell.method)
    record = _prior_record(path, overwrite)
    if record is not None:
        if not is_stale(record):
            return CellOutcome(cell, "skipped", path, record)
        if reuse_stale:
            return CellOutcome(cell, "stale", path, record)
        # computed by other code: recompute (the new record replaces it atomically)
    try:
        return _compute_cell(cell, config, path, code, runs=runs, data_root=data_root, device=device,
                             metrics=metrics, progress=progress)
    except CellFailed:
        raise
    except BenchError as exc:  # the configuration was valid: this cell failed (e.g. a checkpoint failing its hash)
        raise CellFailed(str(exc)) from None


def _prior_record(path: Path, overwrite: bool) -> dict | None:
    """The record a cell already has at ``path``; None when there is none or ``overwrite`` asks to recompute."""
    if overwrite or not path.exists():
        return None
    try:
        return load_record(path)
    except BenchError as exc:
        raise BenchError(f"{exc} (or pass --overwrite)") from None


class CellFailed(BenchError):
    """A cell with a valid configuration failed with a user-facing reason; ``--error-score nan`` records it."""


def _compute_cell(cell: Cell, config: dict, path: Path, code: dict, *, runs: Path, data_root, device: str, metrics,
                  progress: bool) -> CellOutcome:
    import torch

    from bench.datasets import get_dataset
    from bench.provenance import git_info, machine_info, package_versions
    from methods import get_method
    from bench.device import resolve_device

    device = resolve_device(device)
    dataset = get_dataset(cell.dataset)
    t_start = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as mem, captured_warnings() as caught:
        train = dataset.load_split(cell.subject, "train", data_root=data_root, scale=cell.scale)
        test = dataset.load_split(cell.subject, "test", data_root=data_root, scale=cell.scale)
        method = get_method(cell.method).from_profile(cell.profile, dict(cell.overrides))
        t0 = time.perf_counter()
        work_dir = path.with_suffix(".work")  # checkpoints of an unfinished cell, removed once it is recorded
        method.fit(train, device=device, random_state=cell.seed, progress=progress, work_dir=work_dir)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = method.predict(test)
        predict_s = time.perf_counter() - t0
        _check_reconstruction(rec, test, cell)
        t0 = time.perf_counter()
        results, higher = score_reconstruction(rec, test, method, device=device,
                                               embeddings_path=path.with_suffix(".emb.npz"), metrics=metrics)
        score_s = time.perf_counter() - t0

    pred_name = path.with_suffix(".npz").name
    arrays = {"audio": rec.audio.astype(np.float32), "clip_index": test.clip_index}
    if rec.mel is not None:
        arrays["mel"] = rec.mel.astype(np.float32)
    for fname, values in rec.features.items():
        arrays[f"feature_{fname}"] = np.asarray(values, dtype=np.float32)
    write_npz(path.with_suffix(".npz"), **arrays)
    from bench.data import sha256_file

    record = {
        "schema": SCHEMA_VERSION,
        "key": config_hash(config)[:12],
        "config": config,
        "config_hash": config_hash(config),
        "dataset": {
            "name": cell.dataset,
            "version": config["dataset_version"],
            "kind": dataset.kind,
            "n_train": int(train.n_samples),
            "n_test": int(test.n_samples),
            "n_voxels": int(train.n_voxels),
            "noise_ceiling": test.info.get("noise_ceiling"),
        },
        "metrics": {k: v.to_json() for k, v in sorted(results.items())},
        "higher_is_better": dict(sorted(higher.items())),
        "method_info": {"display_name": getattr(method, "display_name", cell.method), "components": method.describe_components(),
                        **({"reference": True} if getattr(method, "reference", False) else {}), **_jsonable(rec.info)},
        "timing": {"fit_s": round(fit_s, 3), "predict_s": round(predict_s, 3), "score_s": round(score_s, 3), "wall_s": round(time.perf_counter() - t_start, 3)},
        "memory": {
            "peak_rss_mb": round(mem.peak_mb, 1),
            "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
        },
        "code": {**code, "git": git_info()},
        "provenance": {"git": git_info(), "packages": package_versions(), "machine": machine_info(device)},
        "predictions": {"file": pred_name, "sha256": sha256_file(path.with_suffix(".npz"))},
        "warnings": summarise_warnings(caught),
    }
    write_json(path, record)
    if work_dir.exists():
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    return CellOutcome(cell, "done", path, record)


def score_reconstruction(rec, test, method, *, device: str = "cpu", embeddings_path: Path | None = None,
                         metrics: list[str] | None = None) -> tuple[dict, dict]:
    """Every registered metric (or ``metrics``) of a reconstruction of ``test``: ({name: MetricResult}, {name: higher
    is better}). The one scoring path of cells, rescoring and external reconstructions.

    method: provides ``target_features(split)`` for probes and identification; embeddings_path: where the
    reconstruction's own network embeddings are kept (``<record>.emb.npz``). A metric is unavailable only when its
    weights are absent (UnavailableError); any other error stops the scoring.
    """
    from metrics import METRICS, EvalContext, MetricResult

    ctx = EvalContext(rec, test, method)
    ctx.device = device  # batched embedding networks run on the cell's device
    ctx.embeddings_path = embeddings_path
    results: dict = {}
    higher: dict[str, bool] = {}
    for name in metrics or METRICS.names():
        spec = METRICS.get(name)
        try:
            out = spec.evaluate(ctx)
        except UnavailableError as exc:  # weights absent: n/a with the reason; a bad file stops the cell
            out = MetricResult.unavailable(str(exc), weights=exc.weights)
        for key, res in (out.items() if isinstance(out, dict) else [(name, out)]):
            results[key] = res
            higher[key] = spec.higher_is_better
    return results, higher


def record_fingerprint(record: dict) -> str | None:
    """The code fingerprint a record was computed with (None for records older than fingerprints)."""
    return (record.get("code") or {}).get("fingerprint")


def is_stale(record: dict) -> bool:
    """Whether a record was made by code other than today's: the rule ``run_cell`` applies before reusing it (no
    code fingerprint, or another than ``bench.fingerprint.current(method)``). External reconstructions
    (``bench score``) are never stale."""
    from bench import fingerprint

    if record.get("external"):
        return False
    try:
        return record_fingerprint(record) != fingerprint.current(record.get("config", {}).get("method"))
    except BenchError:  # a method no longer registered: its records cannot be current
        return True


def _check_reconstruction(rec, test, cell: Cell) -> None:
    audio = np.asarray(rec.audio)
    if audio.ndim != 2 or audio.shape[0] != test.n_samples:
        raise BenchError(f"method {cell.method} returned audio of shape {audio.shape}; expected ({test.n_samples}, samples)")
    if not np.isfinite(audio).all():
        raise BenchError(f"method {cell.method} returned non-finite audio for {cell.label()}")


def plan_cells(
    methods: list[str], datasets: list[str], subjects: list[str] | None, seeds: list[int], profile: str,
    scale: str = "default", overrides: dict | None = None, data_root=None, grid: dict[str, list] | None = None,
) -> list[Cell]:
    from bench.datasets import get_dataset
    from methods import get_method

    cells = []
    ov = tuple(sorted((overrides or {}).items()))
    grids = grid_overrides(ov, grid or {})
    for m in methods:  # an unknown or invalid --set/--grid value fails here, before any cell generates data or trains
        for g in grids:
            get_method(m).from_profile(profile, dict(g)).validate_params()
    for ds_name in datasets:
        ds = get_dataset(ds_name)
        if subjects:
            unknown = [s for s in subjects if s not in ds.subjects]
            if unknown:
                raise BenchError(f"subject(s) {', '.join(unknown)} not in {ds_name}; its subjects: {', '.join(ds.subjects)}")
            subs = list(subjects)
        else:
            subs = ds.prepared_subjects(data_root, scale) if ds.is_prepared(data_root, scale) else ds.subjects
        for m in methods:
            for g in grids:
                for s in subs:
                    for seed in seeds:
                        cells.append(Cell(m, ds_name, s, int(seed), profile, scale, g))
    return cells


def sim_trainers_needed(cells: list[Cell], *, runs: Path, data_root=None, overwrite: bool = False,
                        reuse_stale: bool = False, metrics: list[str] | None = None) -> list[str]:
    """The ``bench weights train-sim`` trainers whose networks the cells still to run load on simulated datasets: the
    methods' backbones (``Method.sim_networks``) and the networks the metrics score with (``MetricSpec.networks``,
    where ``bench.networks.cache.weights_name`` picks a simulator-trained entry). Finished cells need none."""
    from bench.datasets import get_dataset
    from bench.networks import simtrain
    from bench.networks.cache import SIM_WEIGHTS, weights_name
    from methods import get_method
    from metrics import METRICS

    kinds = {k for name in (metrics or METRICS.names()) for k in METRICS.get(name.split(":", 1)[0]).networks}
    metric_entries = {weights_name(k, simulated=True) for k in kinds} & set(SIM_WEIGHTS.values())
    entries: set[str] = set()
    for cell in cells:
        if get_dataset(cell.dataset).kind != "simulated":
            continue
        wanted = metric_entries | set(get_method(cell.method).from_profile(cell.profile, dict(cell.overrides)).sim_networks(True))
        if wanted <= entries:  # nothing new: its record need not be read
            continue
        record = _prior_record(record_path(runs, resolve_config(cell, data_root)), overwrite)
        if record is None or (not reuse_stale and is_stale(record)):
            entries |= wanted
    return sorted({simtrain.trainer_for(e) for e in entries}, key=list(simtrain.TRAINERS).index)


def pretrain_sim_networks(cells: list[Cell], *, runs: Path, data_root=None, overwrite: bool = False,
                          reuse_stale: bool = False, metrics: list[str] | None = None, echo=print) -> list[str]:
    """Train the simulator networks the cells need before any cell runs, one per usable core at once, instead of one
    after another at their first use inside the cells (``$BENCH_SIM_WEIGHTS=auto`` only; the files are the same
    bytes either way). Returns the trainers run: none when fewer than two are missing or one core is usable."""
    from bench.data import use_data_root
    from bench.device import usable_cores
    from bench.networks import simtrain

    if simtrain.sim_mode() != "auto" or usable_cores() < 2:
        return []
    with use_data_root(data_root):  # the weights folder defaults to <data root>/weights, as inside the cells
        todo = simtrain.pending(sim_trainers_needed(cells, runs=runs, data_root=data_root, overwrite=overwrite,
                                                    reuse_stale=reuse_stale, metrics=metrics))
        if len(todo) < 2:  # one trainer is as fast at its first use
            return []
        jobs = min(usable_cores(), len(todo))
        echo(f"training the simulator networks the cells need ({', '.join(todo)}), {jobs} at once; cached for later runs")
        simtrain.train_sim(todo, jobs=jobs, log=echo)
    return todo


def grid_overrides(base: tuple, grid: dict[str, list]) -> list[tuple]:
    """Every combination of the ``grid`` values on top of ``base`` overrides (e.g. the paper's Table 3)."""
    combos = [dict(base)]
    for key, values in sorted(grid.items()):
        combos = [{**c, key: v} for c in combos for v in values]
    return [tuple(sorted(c.items())) for c in combos]


@dataclass
class RunSummary:
    outcomes: list[CellOutcome] = field(default_factory=list)
    n_planned: int = 0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_cells``: carries what finished before it (``summary``) and the cell it stopped in."""

    def __init__(self, summary: RunSummary, cell: Cell | None):
        super().__init__()
        self.summary = summary
        self.cell = cell


def run_cells(
    cells: list[Cell], *, runs: Path, data_root=None, device: str = "cpu", overwrite: bool = False,
    error_score: str = "raise", metrics: list[str] | None = None, progress: bool = True, echo=print,
    reuse_stale: bool = False,
) -> RunSummary:
    """Run cells in order; with ``error_score="nan"`` a failing cell is reported and skipped.

    Ctrl-C raises :class:`RunInterrupted` (a KeyboardInterrupt) carrying the outcomes so far.
    """
    summary = RunSummary(n_planned=len(cells))
    try:
        return _run_cells(cells, summary, runs=runs, data_root=data_root, device=device, overwrite=overwrite,
                          error_score=error_score, metrics=metrics, progress=progress, echo=echo, reuse_stale=reuse_stale)
    except KeyboardInterrupt:
        done = {o.cell for o in summary.outcomes}
        raise RunInterrupted(summary, next((c for c in cells if c not in done), None)) from None


def _run_cells(cells, summary: RunSummary, *, runs, data_root, device, overwrite, error_score, metrics, progress,
               echo, reuse_stale) -> RunSummary:
    from tqdm.auto import tqdm

    ensure_writable_dir(runs, "runs folder")
    bar = tqdm(cells, desc="cells", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.label(), refresh=False)
        try:
            outcome = run_cell(cell, runs=runs, data_root=data_root, device=device, overwrite=overwrite, metrics=metrics,
                               progress=progress, reuse_stale=reuse_stale)
        except BenchError as exc:
            if error_score == "raise" or not isinstance(exc, CellFailed):
                raise
            outcome = CellOutcome(cell, "failed", error=str(exc))  # e.g. a checkpoint failing its hash
        except Exception as exc:  # a crashed method: raise by default (MOABB's error_score="raise")
            if error_score == "raise":
                raise
            outcome = CellOutcome(cell, "failed", error=f"{type(exc).__name__}: {exc}")
        summary.outcomes.append(outcome)
        if outcome.status == "done":
            m = outcome.record["metrics"]
            shown = ", ".join(
                f"{k}={m[k]['value']:.3f}" if isinstance(m[k]["value"], (int, float)) else f"{k}={m[k]['value']}"
                for k in ("pcc", "psnr") if k in m and m[k]["status"] == "ok"
            )
            echo(f"done     {cell.label()}  {shown}  ({outcome.record['timing']['wall_s']:.1f} s)")
        elif outcome.status == "skipped":
            echo(f"skipped  {cell.label()}  (finished earlier: {outcome.path})")
        elif outcome.status == "stale":
            echo(f"STALE    {cell.label()}  (kept by --reuse-stale; computed by other code: {outcome.path})")
        else:
            echo(f"FAILED   {cell.label()}  {outcome.error}")
    return summary

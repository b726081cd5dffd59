"""The ``bench`` command line: run, leaderboard, report, check, data, list.

User errors (``BenchError``) print one line on stderr and exit with status 2, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from bench.errors import BenchError

app = typer.Typer(
    help="brain2audio-bench: reproducible fMRI-to-audio reconstruction benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="List, describe and prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _mount_weights() -> None:
    from bench.weights_cli import weights_app  # imports no torch

    app.add_typer(weights_app, name="weights", help="List, verify, fetch and convert pretrained weights.")


_mount_weights()

DataRoot = typer.Option(None, "--data-root", help="Prepared-data folder (default: $BENCH_DATA or the user cache).")
RunsDir = typer.Option(None, "--runs", help="Folder of run records (default: $BENCH_RUNS or ./runs).")


def _parse_sets(pairs: list[str] | None) -> dict:
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise BenchError(f"--set {key}: cannot parse value {raw!r}; use YAML syntax, e.g. 0.5, true, [256, 256]") from None
    return out


def _parse_grid(pairs: list[str] | None) -> dict:
    """--grid KEY=V1,V2,... (or a YAML list) -> {key: [values]}."""
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw:
            raise BenchError(f"--grid expects KEY=V1,V2,..., got {pair!r}")
        try:
            parsed = yaml.safe_load(raw)
            values = parsed if isinstance(parsed, list) else [yaml.safe_load(v) for v in raw.split(",")]
        except yaml.YAMLError:
            raise BenchError(f"--grid {key}: cannot parse values {raw!r}; e.g. --grid p_gt=0,0.25,0.5") from None
        out[key.strip()] = values
    return out


def _parse_seeds(spec: str) -> list[int]:
    """--seeds "0,1,2" -> [0, 1, 2]: at least one non-negative integer (numpy seeds cannot be negative)."""
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise BenchError(f"--seeds expects comma-separated non-negative integers (at least one), got {spec!r}; e.g. --seeds 0,1")
    return [int(p) for p in parts]


@app.command()
def run(
    method: str = typer.Option(..., "--method", "-m", help="Method name, comma list, 'all', or a class of your own: package.module:ClassName."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name, comma list, or group (sim, paper, all)."),
    subjects: Optional[str] = typer.Option(None, "--subjects", help="Comma-separated subjects (default: all)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    profile: str = typer.Option("tiny", "--profile", help="tiny (CPU, seconds) or paper (the published setting)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    scale: str = typer.Option("default", "--scale", help="Simulated datasets only: default or paper sizes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute cells that already have records."),
    reuse_stale: bool = typer.Option(False, "--reuse-stale", help="Keep records computed by other code (marked stale) instead of recomputing them."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a method parameter: KEY=VALUE (YAML value)."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", help="Run every value of a parameter: KEY=V1,V2 (repeatable; e.g. --grid lr=1e-4,3e-4)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="LDM methods: none, text or audio; a comma list runs each (the paper's Table 3 columns)."),
    p_gt: Optional[str] = typer.Option(None, "--p-gt", help="LDM and C2F methods: P_gt 0, 0.25 or 0.5; a comma list runs each (Table 3 rows)."),
    error_score: str = typer.Option("raise", "--error-score", help="raise (default) or nan: skip a crashing cell and go on."),
    runs: Optional[Path] = RunsDir,
    data_root: Optional[Path] = DataRoot,
    leaderboard: bool = typer.Option(True, "--leaderboard/--no-leaderboard", help="Rewrite leaderboards afterwards."),
    references: bool = typer.Option(True, "--references/--no-references", help="Also score the reference rows (oracle: ground truth through the vocoder; chance: shuffled stimuli) of each dataset, subject and seed."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboard folder."),
    executor: str = typer.Option("inline", "--executor", help="inline (here, one cell after another), slurm (job arrays), local (submitit processes on this machine, all at once) or debug (in this process; pdb on an error)."),
    executor_config: Optional[Path] = typer.Option(None, "--executor-config", help="YAML of resource settings: defaults: and methods: {<method>: ...}."),
    partition: Optional[str] = typer.Option(None, "--partition", help="Slurm partition."),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", help="GPUs per task."),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="CPUs per task."),
    mem_gb: Optional[float] = typer.Option(None, "--mem-gb", help="Memory per task (GiB)."),
    timeout_min: Optional[int] = typer.Option(None, "--timeout-min", help="Wall-clock limit per attempt (minutes; default 60)."),
    array_parallelism: Optional[int] = typer.Option(None, "--array-parallelism", help="Most tasks of one array running at once (default 16)."),
    max_requeues: Optional[int] = typer.Option(None, "--max-requeues", help="Requeues of a preempted or timed-out task (default 3)."),
    cells_per_task: Optional[int] = typer.Option(None, "--cells-per-task", help="Cells run one after another in one task (default 1); packing short cells saves each task's Python and torch start-up."),
    slurm_extra: Optional[List[str]] = typer.Option(None, "--slurm-extra", help="Further sbatch option KEY=VALUE (repeatable), e.g. qos=high."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the sbatch scripts, submit nothing."),
    wait: bool = typer.Option(False, "--wait", help="Follow the submitted tasks to the end (progress bar and summary)."),
):
    """Train, predict, score and record every (method, dataset, subject, seed) cell; finished cells are skipped."""
    from bench.datasets import resolve_datasets
    from bench.runner import RunInterrupted, plan_cells, run_cells, runs_dir, warnings_line
    from methods import resolve_methods

    if profile not in ("tiny", "paper"):
        raise BenchError(f"--profile must be tiny or paper, got {profile!r}")
    if error_score not in ("raise", "nan"):
        raise BenchError(f"--error-score must be raise or nan, got {error_score!r}")
    seed_list = _parse_seeds(seeds)
    from bench.device import resolve_device

    resolve_device(device)  # an unknown device, or cuda without a GPU, is refused before any work
    if ":" in method and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--method mymodule:MyMethod` finds mymodule.py in this folder, as `python -m` would
    methods = resolve_methods(method)
    datasets = resolve_datasets(dataset, data_root)
    if "all" in (p.strip() for p in dataset.split(",")):
        _echo_all_group(datasets, data_root)
    subj = [s.strip() for s in subjects.split(",")] if subjects else None
    grid_values = _parse_grid(grid)
    for key, spec in (("prompt", prompt), ("p_gt", p_gt)):
        if spec is None:
            continue
        if key in grid_values:
            raise BenchError(f"--{key.replace('_', '-')} and --grid {key}=... both given; use one")
        grid_values.update(_parse_grid([f"{key}={spec}"]))
    cells = plan_cells(methods, datasets, subj, seed_list, profile, scale, _parse_sets(set_), data_root,
                       grid=grid_values)
    if references:  # the same reference cells for every method run: computed once, then skipped
        from methods.reference import REFERENCE_METHODS

        refs = [m for m in REFERENCE_METHODS if m not in methods]
        cells = plan_cells(refs, datasets, subj, seed_list, profile, scale, {}, data_root) + cells if refs else cells
    rdir = runs_dir(runs)
    _check_folders(rdir, out if leaderboard else None, datasets, data_root, scale)
    if executor in ("inline", "local", "debug") and not dry_run:  # cells on this machine: its cores train at once
        _pretrain_sim_networks(cells, rdir, data_root, overwrite, reuse_stale)
    if executor != "inline" or dry_run or wait:
        from bench.executors import run_executor_command

        flags = dict(partition=partition, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, mem_gb=mem_gb,
                     timeout_min=timeout_min, array_parallelism=array_parallelism, max_requeues=max_requeues,
                     cells_per_task=cells_per_task)
        n_failed = run_executor_command(cells, kind=executor, runs=rdir, data_root=data_root, device=device,
                                        overwrite=overwrite, config_path=executor_config, flags=flags,
                                        slurm_extra=slurm_extra, dry_run=dry_run, wait=wait, reuse_stale=reuse_stale,
                                        progress=sys.stderr.isatty(), echo=_echo_line)
        if leaderboard and wait and not dry_run:
            _write_leaderboards(rdir, out)
        if n_failed:
            raise typer.Exit(1)
        return

    try:
        summary = run_cells(cells, runs=rdir, data_root=data_root, device=device, overwrite=overwrite,
                            error_score=error_score, progress=sys.stderr.isatty(), echo=_echo_line, reuse_stale=reuse_stale)
    except RunInterrupted as stop:
        _report_interrupt(stop, rdir, out if leaderboard else None)
    stale = f", {summary.count('stale')} stale (kept)" if summary.count("stale") else ""
    typer.echo(f"{summary.count('done')} done, {summary.count('skipped')} skipped{stale}, {summary.count('failed')} failed; records in {rdir}")
    _hint_rescore([o.record for o in summary.outcomes if o.status in ("skipped", "stale")])
    line = warnings_line([o.record for o in summary.outcomes if o.status == "done"])
    if line:
        typer.echo(line)
    if leaderboard:
        _write_leaderboards(rdir, out)
    if summary.count("failed"):
        raise typer.Exit(1)


def _pretrain_sim_networks(cells, rdir: Path, data_root, overwrite: bool, reuse_stale: bool) -> None:
    """Train the simulator networks the cells need, several at once (``bench.runner.pretrain_sim_networks``)."""
    from bench.runner import pretrain_sim_networks

    try:
        pretrain_sim_networks(cells, runs=rdir, data_root=data_root, overwrite=overwrite, reuse_stale=reuse_stale,
                              echo=_echo_line)
    except KeyboardInterrupt:
        typer.echo("interrupted while training the simulator networks: the finished ones are cached, nothing is "
                   "half-written; rerun the same command to resume", err=True)
        raise typer.Exit(130) from None


def _echo_all_group(taken: list[str], data_root) -> None:
    """--dataset all: which datasets it took and which it skipped, with the command that prepares each."""
    from bench.datasets import not_available

    typer.echo(f"--dataset all: running {', '.join(taken)}")
    for name, command in not_available(data_root).items():
        typer.echo(f"--dataset all: skipped {name} (not prepared): `{command}`")


def _check_folders(rdir: Path, out: Path | None, datasets: list[str], data_root, scale: str) -> None:
    """Every folder the command will write is writable, checked before any training or data generation."""
    from bench.datasets import check_can_generate
    from bench.io import ensure_writable_dir

    check_can_generate(datasets, data_root, scale)
    ensure_writable_dir(rdir, "runs folder")
    if out is not None:
        ensure_writable_dir(out, "leaderboard folder (--out)")


def _report_interrupt(stop, rdir: Path, out: Path | None) -> None:
    """Ctrl-C: one line on what finished and how to resume, leaderboards refreshed from the finished records, exit 130."""
    from bench.records import iter_records

    s = stop.summary
    where = f" during {stop.cell.label()}" if stop.cell is not None else ""
    typer.echo(
        f"interrupted{where}: {s.count('done')} cell(s) finished in this run, {s.count('skipped') + s.count('stale')} were already "
        f"finished, {s.n_planned - len(s.outcomes)} not finished; records are in {rdir}; "
        "rerun the same command to resume", err=True)
    if out is not None and iter_records(rdir):
        _write_leaderboards(rdir, out)
    raise typer.Exit(130)


def _hint_rescore(records: list[dict]) -> None:
    """Skipped cells whose unavailable metrics now have their weights: say so once, and how to score them."""
    from bench.rescore import newly_available

    keys, methods, datasets, n = set(), set(), set(), 0
    for rec in records:
        new = newly_available(rec)
        if new:
            n += 1
            keys.update(new)
            methods.add(rec["config"]["method"])
            datasets.add(rec["config"]["dataset"])
    if n:
        typer.echo(f"{n} skipped cell(s) recorded {', '.join(sorted(keys))} as unavailable and the weights are found now; "
                   f"score them without retraining: bench rescore --method {','.join(sorted(methods))} "
                   f"--dataset {','.join(sorted(datasets))}")


def _echo_line(message: str) -> None:
    """One progress line, printed above any progress bar and flushed (logs show it as it happens)."""
    from tqdm.auto import tqdm

    tqdm.write(message)
    sys.stdout.flush()


def _write_leaderboards(rdir: Path, out: Path) -> None:
    from bench.leaderboard import write_leaderboards
    from bench.records import iter_records

    records = iter_records(rdir)
    if not records:
        raise BenchError(f"no run records under {rdir}; run `bench run` first")
    for path in write_leaderboards(records, out):
        typer.echo(f"wrote {path}")


@app.command("status")
def status_cmd(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="With --dataset: list the planned cells, missing ones included."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name, comma list, or group."),
    subjects: Optional[str] = typer.Option(None, "--subjects", help="Comma-separated subjects (default: all)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    profile: str = typer.Option("tiny", "--profile", help="tiny or paper."),
    scale: str = typer.Option("default", "--scale", help="Simulated datasets only: default or paper sizes."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Method parameter override KEY=VALUE, as given to run."),
    grid: Optional[List[str]] = typer.Option(None, "--grid", help="KEY=V1,V2, as given to run."),
    runs: Optional[Path] = RunsDir,
    data_root: Optional[Path] = DataRoot,
):
    """Done / running / failed / missing / stale cells, from the files under the runs folder alone."""
    from bench.runner import runs_dir
    from bench.status import plan_status, scan, summary_line

    rdir = runs_dir(runs)
    if (method is None) != (dataset is None):
        raise BenchError("bench status: give both --method and --dataset (to list planned cells) or neither (to list the runs folder)")
    if method:
        from bench.datasets import resolve_datasets
        from bench.runner import plan_cells
        from methods import METHODS

        subj = [s.strip() for s in subjects.split(",")] if subjects else None
        cells = plan_cells(METHODS.resolve_many(method), resolve_datasets(dataset, data_root), subj, _parse_seeds(seeds),
                           profile, scale, _parse_sets(set_), data_root, grid=_parse_grid(grid))
        rows = plan_status(cells, rdir, data_root)
    else:
        rows = scan(rdir)
    from tabulate import tabulate

    if rows:
        typer.echo(tabulate([[r.state, r.cell, r.detail] for r in rows], headers=["state", "cell", "detail"]))
    typer.echo(f"{summary_line(rows)} (runs folder {rdir})")


@app.command()
def score(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset whose test split the reconstructions are of."),
    subject: str = typer.Option(..., "--subject", help="Subject whose test split the reconstructions are of."),
    input_: Path = typer.Option(..., "--input", help="A folder of <sample_id>.wav files or an .npz with audio and stim_id."),
    name: str = typer.Option(..., "--name", help="Row name for these reconstructions on the leaderboard."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (for the embedding networks)."),
    scale: str = typer.Option("default", "--scale", help="Simulated datasets only: default or paper sizes."),
    runs: Optional[Path] = RunsDir,
    data_root: Optional[Path] = DataRoot,
    leaderboard: bool = typer.Option(True, "--leaderboard/--no-leaderboard", help="Rewrite leaderboards afterwards."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboard folder."),
):
    """Score reconstructions made by any other code (one 16-kHz WAV per test sample) into a run record."""
    from bench.runner import runs_dir
    from bench.score import score_external

    rdir = runs_dir(runs)
    path, record = score_external(dataset, subject, input_, name, runs=rdir, data_root=data_root, device=device, scale=scale)
    m = record["metrics"]
    shown = ", ".join(f"{k}={_fmt_value(m[k]['value'])}" for k in ("pcc", "psnr") if m.get(k, {}).get("status") == "ok")
    typer.echo(f"scored {name} on {dataset} sub-{subject}: {shown}; record {path}")
    if leaderboard:
        _write_leaderboards(rdir, out)


def _fmt_value(v) -> str:
    """A record's metric value for a progress line: numbers to 3 decimals, "nan"/"inf" as stored."""
    return f"{v:.3f}" if isinstance(v, (int, float)) else str(v)


@app.command()
def rescore(
    method: str = typer.Option("all", "--method", "-m", help="Method name, comma list, or 'all'."),
    dataset: str = typer.Option("all", "--dataset", "-d", help="Dataset name, comma list, group, or 'all'."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma list of metrics, or 'all' (default: those unavailable or missing in each record)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    runs: Optional[Path] = RunsDir,
    data_root: Optional[Path] = DataRoot,
    leaderboard: bool = typer.Option(True, "--leaderboard/--no-leaderboard", help="Rewrite leaderboards afterwards."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Leaderboard folder."),
):
    """Recompute metrics of finished cells from their stored predictions (sha256-checked), without refitting."""
    from bench.datasets import get_dataset, groups
    from bench.io import ensure_writable_dir
    from bench.rescore import describe, matching_records, rescore_record
    from bench.runner import runs_dir
    from methods import METHODS
    from bench.device import resolve_device
    from metrics import METRICS

    methods = None if method.strip() == "all" else METHODS.resolve_many(method)
    datasets = None
    if dataset.strip() != "all":
        g = groups(data_root)
        datasets = [n for part in dataset.split(",") if part.strip()
                    for n in g.get(part.strip()) or [get_dataset(part.strip()).name]]
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics is not None else None
    if wanted is not None:
        if not wanted:
            raise BenchError("--metrics expects a comma list of metric names or 'all'; `bench list` shows them")
        for name in wanted if wanted != ["all"] else []:
            METRICS.get(name)
    rdir = runs_dir(runs)
    found = matching_records(rdir, methods, datasets)
    if not found:
        raise BenchError(f"no run records for --method {method} --dataset {dataset} under {rdir}; run `bench run` first")
    ensure_writable_dir(rdir, "runs folder")
    if leaderboard:
        ensure_writable_dir(out, "leaderboard folder (--out)")
    dev = resolve_device(device)
    counts = {"rescored": 0, "up to date": 0}
    try:
        for path, record in found:
            outcome = rescore_record(path, record, metrics=wanted, data_root=data_root, device=dev)
            counts[outcome.status] += 1
            _echo_line(describe(outcome))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {counts['rescored']} record(s) rescored, each written whole; rerun the same command "
                   "to do the rest", err=True)
        raise typer.Exit(130)
    typer.echo(f"{counts['rescored']} rescored, {counts['up to date']} up to date; records in {rdir}")
    if leaderboard:
        _write_leaderboards(rdir, out)


@app.command("leaderboard")
def leaderboard_cmd(
    runs: Optional[Path] = RunsDir,
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Folder for <dataset>.md files."),
):
    """Write leaderboards/<dataset>.md from the run records."""
    from bench.runner import runs_dir

    _write_leaderboards(runs_dir(runs), out)


@app.command()
def report(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset (name, or name@scale) whose records to show."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods (default: all with records)."),
    subject: Optional[str] = typer.Option(None, "--subject", help="One subject (default: all)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed shown (default: the lowest per method and subject)."),
    max_stimuli: Optional[int] = typer.Option(None, "--max-stimuli", help="At most K test stimuli per subject, evenly spaced."),
    out: Path = typer.Option(Path("reports"), "--out", help="Folder for <dataset>/index.html (or <dataset>.html with --embed)."),
    embed: bool = typer.Option(False, "--embed", help="One self-contained HTML file instead of a linked folder."),
    runs: Optional[Path] = RunsDir,
    data_root: Optional[Path] = DataRoot,
):
    """Write an HTML page to hear and see each method's reconstructions beside the ground truth."""
    from bench.report import build_report
    from bench.runner import runs_dir

    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    result = build_report(dataset, runs=runs_dir(runs), out=out, methods=chosen, subject=subject, seed=seed,
                          max_stimuli=max_stimuli, embed=embed, data_root=data_root)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {result.path} ({result.n_stimuli} stimuli x {result.n_columns} players, {result.size_bytes / 2**20:.1f} MiB)")


@app.command()
def check(
    update: bool = typer.Option(False, "--update", help="Rewrite the golden values instead of comparing."),
    data_root: Optional[Path] = DataRoot,
):
    """Rerun the pinned smoke configuration and compare every metric with leaderboards/golden/."""
    from bench.check import run_check

    code = run_check(update=update, data_root=data_root, echo=typer.echo)
    raise typer.Exit(code)


@app.command()
def learning(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only these datasets (comma list; default: every record's)."),
    runs: Optional[Path] = RunsDir,
):
    """Does each method learn? Verdicts from the records against the chance row of the same split (bench/learning.py);
    exits 1 when any verdict fails."""
    from bench.learning import verdicts
    from bench.records import iter_records
    from bench.runner import runs_dir

    records = iter_records(runs_dir(runs))
    if dataset:
        wanted = {d.strip() for d in dataset.split(",") if d.strip()}
        records = [r for r in records if r["config"]["dataset"] in wanted]
    found = verdicts(records)
    if not found:
        raise BenchError(f"no record in {runs_dir(runs)} has a chance row of its split to compare with; "
                         "run the cells with the reference rows (the default of `bench run`)")
    for v in found:
        typer.echo(v.line())
    failed = [v for v in found if not v.passed]
    typer.echo(f"{len(found) - len(failed)} of {len(found)} verdicts pass" + (f"; {len(failed)} fail" if failed else ""))
    raise typer.Exit(1 if failed else 0)


@app.command("list")
def list_cmd():
    """List registered methods and metrics (imports no torch)."""
    from methods import METHODS
    from metrics import METRICS

    typer.echo("methods: " + ", ".join(METHODS.names()))
    typer.echo("metrics: " + ", ".join(METRICS.names()))


@data_app.command("ls")
def data_ls(data_root: Optional[Path] = DataRoot):
    """List every dataset and its state."""
    from tabulate import tabulate

    from bench.data import data_root as root_of
    from bench.datasets import dataset_names, get_dataset

    rows = []
    for name in dataset_names():
        ds = get_dataset(name)
        rows.append([name, ds.kind, ds.spec["version"], len(ds.subjects), ds.spec["label_kind"], ds.state(data_root)])
    typer.echo(tabulate(rows, headers=["dataset", "kind", "version", "subjects", "labels", "state"]))
    typer.echo(f"data root: {root_of(data_root)}")


@data_app.command("describe")
def data_describe(
    name: str,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    scale: str = typer.Option("default", "--scale"),
    data_root: Optional[Path] = DataRoot,
):
    """Per subject: n_voxels and the number of samples in each split (generates sim data if needed)."""
    from bench.datasets import get_dataset

    ds = get_dataset(name)
    manifest = ds.manifest(data_root, scale)
    info = {
        "dataset": name,
        "version": manifest["version"],
        "kind": ds.kind,
        "sample_rate": manifest["sample_rate"],
        "clip_seconds": ds.spec["clip_seconds"],
        "n_clips": manifest["n_clips"],
        "subjects": {
            s: {k: v for k, v in meta.items() if k in ("n_voxels", "n_samples", "noise_ceiling")}
            for s, meta in manifest["subjects"].items()
        },
    }
    if as_json:
        typer.echo(json.dumps(info, indent=1, sort_keys=True))
        return
    from tabulate import tabulate

    rows = []
    for s, meta in info["subjects"].items():
        nc = meta.get("noise_ceiling") or {}
        rows.append([s, meta["n_voxels"], *(meta["n_samples"].get(k, 0) for k in ("train", "test", "prompt")),
                     f"{nc['analytic_r']:.3f}" if "analytic_r" in nc else "-"])
    typer.echo(f"{name} {info['version']} ({ds.kind}), {info['n_clips']} clips of {info['clip_seconds']} s at {info['sample_rate']} Hz")
    typer.echo(tabulate(rows, headers=["subject", "n_voxels", "train", "test", "prompt", "noise ceiling r"]))


@data_app.command("verify")
def data_verify(
    name: str,
    scale: str = typer.Option("default", "--scale", help="Simulated datasets: default or paper sizes."),
    data_root: Optional[Path] = DataRoot,
):
    """Check every prepared file of a dataset against the sha256, size and shape in its manifest."""
    from bench.data import verify_prepared
    from bench.datasets import get_dataset

    ds = get_dataset(name)
    if not ds.is_prepared(data_root, scale):
        raise BenchError(f"{name} is not prepared under {ds.folder(data_root, scale).parent}; "
                         f"run `{ds.spec.get('prepare', f'bench data prepare {name}')}`")
    folder = ds.ensure_prepared(data_root, scale)
    n = verify_prepared(folder)
    typer.echo(f"ok: {n} files of {name} in {folder} match their sha256")


@data_app.command("prepare")
def data_prepare(
    name: str,
    source: Optional[Path] = typer.Option(None, "--source", help="The dataset's release folder."),
    stimuli: Optional[Path] = typer.Option(None, "--stimuli", help="Stimulus audio folder (GTZAN genres/, VGGSound clips)."),
    scale: str = typer.Option("default", "--scale", help="Simulated datasets: default or paper sizes."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Preparation setting KEY=VALUE (YAML value)."),
    data_root: Optional[Path] = DataRoot,
):
    """Prepare a dataset into the data root (simulated ones: generate)."""
    from bench.datasets import get_dataset

    ds = get_dataset(name)
    if ds.kind == "simulated":
        folder = ds.generate(data_root, scale, _parse_sets(set_))
    else:
        if source is None:
            raise BenchError(f"{name} needs --source; usage: {ds.spec.get('prepare')}")
        if not source.exists():
            raise BenchError(f"--source {source} does not exist")
        folder = ds.prepare(source=source, stimuli=stimuli, root=data_root, **_parse_sets(set_))
    typer.echo(f"prepared {name} in {folder}")


def main() -> None:
    from bench.device import keep_freed_memory

    keep_freed_memory()
    try:
        app()
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

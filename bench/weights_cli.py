"""``bench weights``: list, verify, fetch and convert the pretrained checkpoints (mounted by bench.cli).

User errors raise BenchError (one line, exit 2 through ``bench.cli.main``); ``verify`` exits 1 on a hash mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

weights_app = typer.Typer(
    help="Pretrained weights for FD, FAD, KL, CLAP and the methods: where they are looked for, and their state.",
    no_args_is_help=True,
)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"


@weights_app.command("ls")
def weights_ls(
    hashes: bool = typer.Option(True, "--hash/--no-hash", help="Hash found files (remembered per path, size, mtime)."),
    looked: bool = typer.Option(True, "--where/--no-where", help="Show where each entry was looked for."),
):
    """Table of every checkpoint: file, size, sha256, who needs it, where it was looked for, state."""
    from tabulate import tabulate

    from bench.networks import weights as W

    rows = W.status_rows(hashes=hashes)
    table = []
    for r in rows:
        where = "\n".join(r.looked) if looked else ""
        table.append([r.spec.name, r.spec.file, r.size, _short(W.expected_sha256(r.spec)),
                      ", ".join(r.spec.needed_by), where, r.state])
    headers = ["name", "file", "size", "sha256", "needed by", "looked in", "state"]
    if not looked:
        headers.pop(5)
        table = [row[:5] + row[6:] for row in table]
    typer.echo(tabulate(table, headers=headers))
    wd = W.weights_dir()
    typer.echo(f"$BENCH_WEIGHTS: {wd if wd else '(unset)'}; Hugging Face cache: {W.hf_hub_cache()}")
    typer.echo("Published hashes were not verified by this suite's authors; see `bench weights verify`.")


@weights_app.command("verify")
def weights_verify(names: Optional[List[str]] = typer.Argument(None, help="Entries to check (default: all found).")):
    """Hash every found file afresh and compare with the catalogue; exit 1 on a mismatch."""
    from bench.networks import weights as W

    rows = W.status_rows(hashes=True, fresh=True, names=names or None)
    bad = 0
    for r in rows:
        if r.found is None:
            typer.echo(f"{r.spec.name}: {r.state}")
            continue
        hs = W.hash_state(r.found)
        if hs.ok is True:
            typer.echo(f"{r.spec.name}: OK  {hs.sha256}  {r.found.path}")
        elif hs.ok is False:
            bad += 1
            typer.echo(f"{r.spec.name}: MISMATCH  {r.found.path} has {hs.sha256}, expected {hs.expected} ({r.spec.hash_note})")
        else:
            typer.echo(f"{r.spec.name}: unverified (no published sha256)  {hs.sha256}  {r.found.path}")
    if bad:
        typer.echo(f"{bad} file(s) do not match the catalogue; delete and fetch them again", err=True)
        raise typer.Exit(1)


@weights_app.command("fetch")
def weights_fetch(
    name: str,
    dest: Optional[Path] = typer.Option(None, "--dest", help="Folder to save into (default: $BENCH_WEIGHTS)."),
):
    """Download one file entry (needs a network): temp file, size/sha256 check when known, then rename."""
    from bench.networks import weights as W

    shown = {"last": -1}

    def progress(done: int, total: int | None) -> None:
        mb = done // (50 << 20)
        if mb != shown["last"]:
            shown["last"] = mb
            typer.echo(f"  {done / 1e6:.0f} MB" + (f" of {total / 1e6:.0f} MB" if total else ""), err=True)

    path = W.fetch(name, dest, progress=progress)
    typer.echo(f"{name}: {path}")


@weights_app.command("convert")
def weights_convert(
    name: str,
    trust: bool = typer.Option(False, "--trust", help="Allow a full (code-running) unpickle of this one file."),
    path: Optional[Path] = typer.Option(None, "--path", help="The file, if not found by the usual lookup."),
):
    """Re-save a trusted pickle checkpoint as a bare safetensors state dict beside it (then loaded safely)."""
    from bench.networks import weights as W

    out = W.convert(name, trust=trust, explicit=path)
    typer.echo(f"{name}: wrote {out}")


@weights_app.command("train-sim")
def weights_train_sim(
    names: Optional[List[str]] = typer.Argument(None, help="Trainers to run (default: all; see bench.networks.simtrain)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the clips and of training."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    force: bool = typer.Option(False, "--force", help="Retrain even when a current checkpoint is cached."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Trainers run at once on CPU, each in a process on one core "
                             "(0: one per usable core; the files are the same bytes with any number)."),
):
    """Train the networks of the simulator's world (small PANNs, VGGish, CLAP, ...) and add them to the local catalogue.

    Cached under the weights folder by simulator version, trainer config and seed; simulated datasets score
    FD, FAD, KL and CLAP with them by default (BENCH_SIM_WEIGHTS=auto trains them on first use).
    """
    from bench.device import resolve_device, usable_cores
    from bench.errors import BenchError
    from bench.networks import simtrain
    from bench.networks.weights import local_catalogue_path

    if jobs < 0:
        raise BenchError(f"--jobs {jobs}: give 0 (one per usable core) or a positive number")
    out = simtrain.train_sim(names or None, seed=seed, device=resolve_device(device), force=force,
                             log=lambda line: typer.echo(line, err=True), jobs=jobs or usable_cores())
    for entry, row in out.items():
        state = f"trained in {row['seconds']:.0f} s" if row["trained"] else "cached"
        typer.echo(f"{entry}: {row['sha256'][:12]}  {row['path']}  ({state})")
    typer.echo(f"entries in {local_catalogue_path()}")

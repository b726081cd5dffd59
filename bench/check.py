"""Drift check: rerun a pinned smoke configuration and compare every metric with golden values.

The smoke configuration is fixed here (simulated datasets, tiny profile, one subject, seed 0, CPU)
so a change in any method, metric or the simulator shows up as a readable diff and a non-zero exit.
Golden values live in ``bench/golden/smoke.json`` (``leaderboards/golden/smoke.json`` in a checkout); ``bench check --update`` rewrites them.
"""

from __future__ import annotations

import math
import tempfile
from importlib import resources
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.io import write_json

SMOKE = {
    "methods": ["lir", "mlp", "oracle", "chance"],  # with the reference rows: a drift in the vocoder or the data shows
    "datasets": ["sim-sound", "sim-music", "sim-speech"],
    "subjects": ["sim01"],
    "seeds": [0],
    "profile": "tiny",
    "device": "cpu",
}
# Shipped in the package; in a checkout leaderboards/golden/smoke.json is a symlink to it.
GOLDEN_FILE = Path(str(resources.files("bench") / "golden" / "smoke.json"))


@dataclass
class Drift:
    where: str
    metric: str
    golden: float | None
    current: float | None
    tolerance: float

    def line(self) -> str:
        g = "missing" if self.golden is None else f"{self.golden:.6g}"
        c = "missing" if self.current is None else f"{self.current:.6g}"
        delta = "" if self.golden is None or self.current is None else f"  (Δ {self.current - self.golden:+.3g}, tolerance ±{self.tolerance:g})"
        return f"  {self.where:<34} {self.metric:<14} golden {g:<12} now {c:<12}{delta}"


def collect_smoke_values(runs: Path, data_root=None, progress: bool = False, echo=print) -> dict:
    """Run the smoke cells into ``runs`` and return {dataset/method/subject/seed: {metric: value}}."""
    from bench.runner import plan_cells, run_cells

    import os

    cells = plan_cells(SMOKE["methods"], SMOKE["datasets"], SMOKE["subjects"], SMOKE["seeds"], SMOKE["profile"], data_root=data_root)
    # The golden values were made without the simulator-trained networks (FD, FAD, KL, CLAP unavailable unless
    # published weights are present); keep it so until they are regenerated with them.
    previous = os.environ.get("BENCH_SIM_WEIGHTS")
    os.environ["BENCH_SIM_WEIGHTS"] = "off"
    try:
        summary = run_cells(cells, runs=runs, data_root=data_root, device=SMOKE["device"], progress=progress, echo=echo)
    finally:
        if previous is None:
            os.environ.pop("BENCH_SIM_WEIGHTS", None)
        else:
            os.environ["BENCH_SIM_WEIGHTS"] = previous
    values = {}
    for o in summary.outcomes:
        c = o.cell
        key = f"{c.dataset}/{c.method}/{c.subject}/seed{c.seed}"
        values[key] = {
            m: (None if v["status"] != "ok" else float(v["value"])) for m, v in sorted(o.record["metrics"].items())
        }
    return values


def compare(golden: dict, current: dict) -> list[Drift]:
    from metrics import metric_spec

    drifts = []
    for where in sorted(set(golden) | set(current)):
        g_metrics, c_metrics = golden.get(where, {}), current.get(where, {})
        for m in sorted(set(g_metrics) | set(c_metrics)):
            g, c = g_metrics.get(m), c_metrics.get(m)
            tol = metric_spec(m).tolerance
            if g is None and c is None:
                continue
            if g is None or c is None or (math.isnan(g) != math.isnan(c)) or (not math.isnan(g) and abs(g - c) > tol):
                drifts.append(Drift(where, m, g, c, tol))
    return drifts


def read_golden(golden_file: Path = GOLDEN_FILE) -> dict:
    """The golden values, checked whole before any smoke cell runs: {where: {metric: float or None}}."""
    import json

    restore = (f"restore it from version control (git checkout -- {_shown(golden_file)}), or run `bench check --update` "
               "only to record an intended change")
    try:
        golden = json.loads(Path(golden_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"golden values file {golden_file} does not exist; {restore}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"golden values file {golden_file} is corrupt ({type(exc).__name__}: {exc}); {restore}") from None
    values = golden.get("values") if isinstance(golden, dict) else None
    if not isinstance(values, dict) or not values or not all(
        isinstance(v, dict) and all(x is None or isinstance(x, (int, float)) for x in v.values()) for v in values.values()
    ):
        raise BenchError(f"golden values file {golden_file} lacks a valid 'values' mapping of cell -> metric -> number; {restore}")
    if golden.get("smoke") != SMOKE:
        raise BenchError(f"{golden_file} was made for another smoke configuration; run `bench check --update` after review")
    return golden


def _shown(path: Path) -> str:
    """The path relative to the current folder when inside it (what a `git checkout --` needs)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_check(
    update: bool = False, golden_file: Path = GOLDEN_FILE, data_root=None, progress: bool = False, echo=print,
    runs: Path | None = None,
) -> int:
    """Returns the exit code: 0 when every metric is within tolerance (or after --update), else 1.

    The smoke cells run into a fresh temporary folder unless ``runs`` is given (tests reuse one). The golden file
    is read and validated first, so a damaged one is reported before minutes of smoke runs.
    """
    golden = None if update else read_golden(golden_file)
    if runs is not None:
        current = collect_smoke_values(Path(runs), data_root=data_root, progress=progress, echo=echo)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            current = collect_smoke_values(Path(tmp), data_root=data_root, progress=progress, echo=echo)
    if update:
        # resolved: an atomic rename onto a symlink would replace the link, not the file it points to
        write_json(golden_file.resolve(), {"smoke": SMOKE, "values": current})
        echo(f"golden values written to {golden_file} ({sum(len(v) for v in current.values())} metrics)")
        return 0
    drifts = compare(golden["values"], current)
    n = sum(len(v) for v in current.values())
    if drifts:
        echo(f"DRIFT: {len(drifts)} of {n} metric values moved beyond tolerance:")
        for d in drifts:
            echo(d.line())
        echo("If the change is intended, run `bench check --update` and commit leaderboards/golden/smoke.json.")
        return 1
    echo(f"ok: {n} metric values within tolerance of {golden_file.name}")
    return 0

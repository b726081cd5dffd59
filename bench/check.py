"""Drift check: rerun a pinned smoke configuration and compare every metric with golden values.

Two blocks, fixed here (tiny profile, one subject, seed 0, CPU), so a change in any method, metric or the
simulator shows up as a readable diff and a non-zero exit:

- ``SMOKE``: LiR, MLP and the reference rows on the three simulated datasets, scored with the published
  networks' slots only (``BENCH_SIM_WEIGHTS=off``: FD, FAD, KL, CLAP unavailable without real weights);
- ``EVERY``: every registered method on sim-sound, subject sim01, with the simulator-trained networks
  (``BENCH_SIM_WEIGHTS=auto``: trained on first use in the weights folder), so FD, FAD, KL, CLAP are compared too,
  and the learning verdicts of ``bench.learning`` are recorded: a method that stops (or starts) learning is drift.

Golden values live in ``bench/golden/smoke*.json`` (``leaderboards/golden/`` in a checkout); ``bench check --update``
rewrites the current platform's file.

Why one golden file per CPU platform: the EVERY block's simulator-trained networks are trained in the check's own
weights folder, and float32 training is bitwise reproducible on one machine but not across CPU vendors and vector
units (oneDNN and MKL pick kernels, and with them summation orders, by CPU). The tiny networks then differ, and
so do every FD/FAD/KL/CLAP value scored with them (measured: Intel Xeon vs AMD EPYC, both AVX-512, 62 of 208
values beyond tolerance, e.g. LiR's FAD 29.3 vs 61.8). So each file records the platform it was made on
(``bench.provenance.cpu_platform``: CPU vendor and torch's CPU capability) and the check compares against the file of its own
platform. On a platform with no file the SMOKE block (no trained networks: within tolerance everywhere, measured;
only the last digits differ) is still compared and the EVERY block is reported as not compared, with the command
that records it. The same holds for a file whose EVERY block was withdrawn (``"every": null``, no EVERY values): done when an intended change (e.g. to a
simulator trainer) moved that block and the file's platform was not at hand to re-record it; the SMOKE block, which
such a change does not touch, stays compared there. A metric or learning check that a file has in none of its cells
(registered after the file was recorded) is reported and set aside with a note rather than counted as drift
(``drop_unrecorded``); ``--update`` on that platform records it.
"""

from __future__ import annotations

import math
import tempfile
from importlib import resources
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.io import write_json
from bench.provenance import cpu_platform

SMOKE = {
    "methods": ["lir", "mlp", "oracle", "chance"],  # with the reference rows: a drift in the vocoder or the data shows
    "datasets": ["sim-sound", "sim-music", "sim-speech"],
    "subjects": ["sim01"],
    "seeds": [0],
    "profile": "tiny",
    "device": "cpu",
}
EVERY = {
    "methods": "every registered method",
    "datasets": ["sim-sound"],
    "subjects": ["sim01"],
    "seeds": [0],
    "profile": "tiny",
    "device": "cpu",
    "sim_weights": "auto",
}
CHECK_THREADS = 2
"""torch and BLAS threads the check's cells run with, whatever the machine's cores: float32 results depend on the
thread counts as well as on the platform, and every golden file was recorded with two threads (on 2-core machines)."""
EVERY_PREFIX = "sim-pretrained:"
"""Keys of the EVERY block's values (the same cell as in SMOKE, scored with other networks, is another value)."""


def every_methods() -> list[str]:
    from methods import METHODS

    return sorted(METHODS.names())


# Shipped in the package; in a checkout leaderboards/golden/ holds symlinks to these files.
GOLDEN_DIR = Path(str(resources.files("bench") / "golden"))
GOLDEN_FILE = GOLDEN_DIR / "smoke.json"
"""The first golden file (made on GenuineIntel-AVX512); other platforms' files are ``smoke.<platform>.json``."""


def golden_files() -> dict[str, Path]:
    """{platform: golden file} of the shipped golden files (each records the platform it was made on)."""
    import json

    out = {}
    for path in sorted(GOLDEN_DIR.glob("smoke*.json")):
        try:
            out[str(json.loads(path.read_text(encoding="utf-8")).get("platform", ""))] = path
        except (OSError, ValueError):
            out.setdefault("", path)  # read_golden reports a damaged file when it is used
    return out


def golden_file_for(key: str | None = None) -> Path | None:
    """The shipped golden file made on platform ``key`` (default: this machine's), or None."""
    return golden_files().get(key or cpu_platform())


def every_platforms() -> list[str]:
    """Platforms whose shipped golden file records the EVERY block (not withdrawn)."""
    import json

    out = []
    for key, path in golden_files().items():
        try:
            if key and json.loads(path.read_text(encoding="utf-8")).get("every") is not None:
                out.append(key)
        except (OSError, ValueError):
            continue
    return sorted(out)


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


def _run_block(block: dict, methods: list[str], sim_weights: str, runs: Path, data_root, progress, echo) -> list[dict]:
    """Run one block's cells into ``runs`` with ``$BENCH_SIM_WEIGHTS`` set for the block; returns the records."""
    import os

    from bench.runner import plan_cells, pretrain_sim_networks, run_cells

    cells = plan_cells(methods, block["datasets"], block["subjects"], block["seeds"], block["profile"], data_root=data_root)
    previous = os.environ.get("BENCH_SIM_WEIGHTS")
    os.environ["BENCH_SIM_WEIGHTS"] = sim_weights
    try:
        pretrain_sim_networks(cells, runs=runs, data_root=data_root, echo=echo)  # several at once, not cell by cell
        summary = run_cells(cells, runs=runs, data_root=data_root, device=block["device"], progress=progress, echo=echo)
    finally:
        if previous is None:
            os.environ.pop("BENCH_SIM_WEIGHTS", None)
        else:
            os.environ["BENCH_SIM_WEIGHTS"] = previous
    return [o.record for o in summary.outcomes]


def _values(records: list[dict], prefix: str = "") -> dict:
    values = {}
    for r in records:
        c = r["config"]
        key = f"{prefix}{c['dataset']}/{c['method']}/{c['subject']}/seed{c['seed']}"
        values[key] = {m: (None if v["status"] != "ok" else float(v["value"])) for m, v in sorted(r["metrics"].items())}
    return values


def collect_smoke_values(runs: Path, data_root=None, progress: bool = False, echo=print) -> tuple[dict, dict]:
    """Run both blocks' cells under ``runs`` and return ({where: {metric: value}}, {where: {check: passed}})."""
    from bench.learning import verdicts
    from bench.training import pinned_threads

    runs = Path(runs)
    with pinned_threads(CHECK_THREADS):
        smoke = _run_block(SMOKE, SMOKE["methods"], "off", runs / "smoke", data_root, progress, echo)
        every = _run_block(EVERY, every_methods(), EVERY["sim_weights"], runs / "every", data_root, progress, echo)
    learning: dict[str, dict] = {}
    for v in verdicts(every):
        learning.setdefault(v.where, {})[v.check] = v.passed
    return {**_values(smoke), **_values(every, EVERY_PREFIX)}, learning


def learning_lines(records_learning: dict) -> list[str]:
    return [f"  {'learns' if ok else 'FAILS '}  {where:<36} {check}" for where, checks in sorted(records_learning.items())
            for check, ok in sorted(checks.items())]


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


def drop_unrecorded(golden: dict, current: dict, learning: dict) -> tuple[dict, dict, list[str]]:
    """(current, learning) without the metric keys and learning checks that no cell of the golden file has, and their names.

    Such a key is newer than the file (a metric or check registered after the file was recorded), not a value that
    moved: it is set aside with a note, so adding a metric does not fail the check on platforms whose files cannot be
    re-recorded at once. A key the file has for some cells stays compared everywhere (a cell that stops or starts
    reporting it is drift).
    """
    recorded = {m for v in golden["values"].values() for m in v}
    checks = {c for v in golden.get("learning", {}).values() for c in v}
    new_metrics = sorted({m for v in current.values() for m in v} - recorded)
    new_checks = sorted({c for v in learning.values() for c in v} - checks)
    current = {w: {m: x for m, x in v.items() if m in recorded} for w, v in current.items()}
    learning = {w: {c: ok for c, ok in v.items() if c in checks} for w, v in learning.items()}
    names = new_metrics + [f"learning check {c}" for c in new_checks if c not in new_metrics]
    return current, learning, names


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
    if golden.get("smoke") != SMOKE or golden.get("every") not in (None, {**EVERY, "methods": every_methods()}):
        raise BenchError(f"{golden_file} was made for another smoke configuration or method list; run `bench check --update` after review")
    if golden.get("every") is None and any(w.startswith(EVERY_PREFIX) for w in values):
        raise BenchError(f"golden values file {golden_file} withdraws its EVERY block (\"every\": null) but still holds "
                         f"{EVERY_PREFIX} values; {restore}")
    if not isinstance(golden.get("learning"), dict):
        raise BenchError(f"golden values file {golden_file} lacks the 'learning' verdicts; {restore}")
    return golden


def _shown(path: Path) -> str:
    """The path relative to the current folder when inside it (what a `git checkout --` needs)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_check(
    update: bool = False, golden_file: Path | None = None, data_root=None, progress: bool = False, echo=print,
    runs: Path | None = None,
) -> int:
    """Returns the exit code: 0 when every metric is within tolerance (or after --update), else 1.

    ``golden_file`` defaults to this platform's (``golden_file_for``); with none for this platform, the SMOKE block is
    compared with ``GOLDEN_FILE`` and the EVERY block is not compared (said so), and --update writes
    ``smoke.<platform>.json``. The smoke cells run into a fresh temporary folder unless ``runs`` is given (tests
    reuse one). The golden file is read and validated first, so a damaged one is reported before minutes of runs.
    """
    key = cpu_platform()
    every_compared = True
    if golden_file is None:
        golden_file = golden_file_for(key)
        if golden_file is None:
            every_compared = update
            golden_file = (GOLDEN_DIR / f"smoke.{key}.json") if update else GOLDEN_FILE
    golden = None if update else read_golden(golden_file)
    if golden is not None and golden.get("every") is None:
        every_compared = False
    if runs is not None:
        current, learning = collect_smoke_values(Path(runs), data_root=data_root, progress=progress, echo=echo)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            current, learning = collect_smoke_values(Path(tmp), data_root=data_root, progress=progress, echo=echo)
    echo("learning on sim-sound (bench.learning; paired against the chance row):")
    for line in learning_lines(learning):
        echo(line)
    if update:
        # resolved: an atomic rename onto a symlink would replace the link, not the file it points to
        write_json(golden_file.resolve(), {"platform": key, "smoke": SMOKE, "every": {**EVERY, "methods": every_methods()},
                                           "values": current, "learning": learning})
        echo(f"golden values written to {golden_file} ({sum(len(v) for v in current.values())} metrics)")
        return 0
    if not every_compared:
        current = {w: v for w, v in current.items() if not w.startswith(EVERY_PREFIX)}
        golden = {**golden, "values": {w: v for w, v in golden["values"].items() if not w.startswith(EVERY_PREFIX)},
                  "learning": {}}
        learning = {}
        known = ", ".join(every_platforms()) or "none"
        echo(f"warning: no golden values for the simulator-trained block on this platform ({key}; recorded: {known}): "
             f"its {len(every_methods())} methods ran but are not compared. Record them with `bench check --update` "
             "on this platform after review, and commit the new file.")
    current, learning, unrecorded = drop_unrecorded(golden, current, learning)
    if unrecorded:
        echo(f"note: {', '.join(unrecorded)} not in {Path(golden_file).name} (registered after it was recorded): reported "
             f"above, not compared; `bench check --update` on platform {key} records them.")
    drifts = compare(golden["values"], current)
    changed = [(where, check, golden["learning"].get(where, {}).get(check), ok) for where, checks in learning.items()
               for check, ok in checks.items() if golden["learning"].get(where, {}).get(check) != ok]
    changed += [(where, check, ok, None) for where, checks in golden["learning"].items() for check, ok in checks.items()
                if check not in learning.get(where, {})]
    n = sum(len(v) for v in current.values())
    if drifts or changed:
        if drifts:
            echo(f"DRIFT: {len(drifts)} of {n} metric values moved beyond tolerance:")
            for d in drifts:
                echo(d.line())
        for where, check, was, now in changed:
            word = {True: "learns", False: "fails", None: "missing"}
            echo(f"DRIFT: learning verdict {where} {check}: golden {word[was]}, now {word[now]}")
        echo(f"If the change is intended, run `bench check --update` and commit {_shown(Path(golden_file))} "
             f"(golden values of platform {key}; other platforms' files need the same update on those machines).")
        return 1
    echo(f"ok: {n} metric values within tolerance of {Path(golden_file).name}; learning verdicts unchanged")
    return 0

"""``bench status``: the state of every cell, read from the files under the runs folder alone.

No scheduler is asked, so a lost driver (a killed ``bench run --wait``) loses nothing. For a cell
whose record would be ``<stem>.json`` (``bench.records.record_path``) the files beside it say
(see ``bench.executors``):

- done: ``<stem>.json`` exists and is current;
- stale: ``<stem>.json`` exists but was made by other code (``bench.runner.is_stale``);
- running: ``<stem>.running`` was rewritten by a live task less than ``ALIVE_S`` seconds ago;
- failed: ``<stem>.error`` exists (the last attempt raised): message, node, attempt, traceback file;
- missing: none of these; the detail says whether it was submitted (``<stem>.submitted``), interrupted
  (an old ``.running`` marker) or left an epoch checkpoint to resume from (``<stem>.work/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

STATES = ("done", "running", "failed", "missing", "stale")
SIDE_SUFFIXES = (".running", ".error", ".submitted", ".work")


def alive_s() -> float:
    """A .running marker older than this (seconds) belongs to a task that died without cleaning up."""
    from bench.executors import HEARTBEAT_S

    return 3 * HEARTBEAT_S + 10


@dataclass
class CellStatus:
    state: str  # one of STATES
    cell: str  # the cell's label, or its record path when nothing names it
    record: Path  # where its record is (or would be)
    detail: str = ""


def _read(path: Path) -> dict:
    import json

    try:
        out = json.loads(path.read_text(encoding="utf-8"))
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "at an unknown time"
    s = max(0.0, now - float(t))
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def cell_status(record_path: Path, label: str | None = None, now: float | None = None) -> CellStatus:
    """The state of the cell whose record is (or would be) ``record_path``, from the files beside it."""
    from bench.executors import side_files
    from bench.records import load_record

    now = time.time() if now is None else now
    record_path = Path(record_path)
    files = side_files(record_path)
    running = _read(files["running"]) if files["running"].exists() else None
    error = _read(files["error"]) if files["error"].exists() else None
    submitted = _read(files["submitted"]) if files["submitted"].exists() else None
    label = label or (running or error or submitted or {}).get("cell") or str(record_path)
    if record_path.exists():
        try:
            record = load_record(record_path)
        except BenchError as exc:
            return CellStatus("failed", label, record_path, f"unreadable record: {exc}")
        c = record["config"]
        if label is None or label == str(record_path):
            label = f"{c['method']} {c['dataset']} sub-{c['subject']} seed {c['seed']} ({c['profile']})"
        from bench.runner import is_stale

        if is_stale(record):
            return CellStatus("stale", label, record_path, "made by other code than today's; `bench run` recomputes it")
        return CellStatus("done", label, record_path, f"{record.get('timing', {}).get('wall_s', '?')} s")
    if running is not None:
        beat = running.get("heartbeat") or files["running"].stat().st_mtime
        where = f"on {running.get('node')} (job {running.get('job_id')}, attempt {running.get('attempt')})"
        if now - float(beat) < alive_s():
            return CellStatus("running", label, record_path, f"{where}, started {_ago(running.get('started'), now)}")
        detail = f"interrupted {where}: last heartbeat {_ago(beat, now)}"
    elif error is not None:
        detail = (f"{error.get('message')} (node {error.get('node')}, job {error.get('job_id')}, attempt "
                  f"{error.get('attempt')}; traceback {files['traceback']})")
        if not (submitted and float(submitted.get("time", 0)) > float(error.get("time", 0))):
            return CellStatus("failed", label, record_path, detail)
        detail = f"resubmitted as job {submitted.get('job_id')} {_ago(submitted.get('time'), now)} after: {detail}"
    elif submitted is not None:
        detail = f"submitted as job {submitted.get('job_id')} {_ago(submitted.get('time'), now)}, not started (or lost)"
    else:
        detail = "no record"
    if files["work"].is_dir() and any(files["work"].iterdir()):
        detail += "; epoch checkpoint to resume from"
    return CellStatus("missing", label, record_path, detail)


def scan(runs: Path) -> list[CellStatus]:
    """Every cell the runs folder knows of: records, and the running/error/submitted/work files of the rest."""
    from bench.executors import LOG_FOLDER

    runs = Path(runs)
    if not runs.exists():
        return []
    stems: set[Path] = set()
    for path in runs.rglob("*"):
        rel = path.relative_to(runs)
        if rel.parts[0] == LOG_FOLDER or any(p.startswith(".") for p in rel.parts) or ".work" in rel.parts[:-1]:
            continue
        if path.suffix == ".json" and path.is_file() or path.suffix in SIDE_SUFFIXES:
            stems.add(path.with_suffix(".json"))
    return [cell_status(p) for p in sorted(stems)]


def plan_status(cells: list, runs: Path, data_root=None) -> list[CellStatus]:
    """The state of each planned cell (``bench.runner.plan_cells``), in plan order."""
    from bench.records import record_path
    from bench.runner import resolve_config

    now = time.time()
    return [cell_status(record_path(runs, resolve_config(c, data_root)), c.label(), now) for c in cells]


def summary_line(rows: list[CellStatus]) -> str:
    return ", ".join(f"{sum(r.state == s for r in rows)} {s}" for s in STATES)

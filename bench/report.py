"""Listening report: a static HTML folder per dataset to hear and see reconstructions beside the truth.

Built from run records and their prediction files alone (plus the dataset's test split for the
ground-truth audio): a summary table per method (mean and bootstrap 95% CI over test samples), metric
plots, and one row per test stimulus with an ``<audio>`` player and a mel-spectrogram image for the
ground truth and each method. Layout of ``<out>/<dataset>/``::

    index.html                      the page (no network at view time; opens from a file system)
    audio/<stim>/<column>.wav       16-bit PCM; the same <stim> folder holds every method's clip
    img/<stim>/<column>.png         eval mel, one shared colour scale ([0, 1]); <column>-full.png larger
    img/metrics-*.png               distributions per metric, per-sample scatter of two methods

The page opens from file://: it loads only through <audio>, <img> and <a> (which Chromium allows between
file:// URLs) and carries its sort values in data attributes, since fetch/XHR of file:// URLs is blocked.
``embed=True`` writes ``<out>/<dataset>.html`` instead: one file with everything inlined as data URIs.
Output depends only on the records and the data (sorted, no build time, PNGs without metadata), so
rebuilding from the same records gives the same bytes. Mel images are cached per prediction file under
``<out>/.cache/`` keyed by the file's sha256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import tempfile
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.io import atomic_dir, atomic_path, ensure_writable_dir, write_text

SIZE_BUDGET_BYTES = 50 * 2**20
"""An embedded report above this size (bytes) is still written, with a warning: a browser holds all of it in
memory. A linked folder may be larger: its players load audio only when started (preload="none")."""


GROUND_TRUTH = "ground-truth"
IMAGE_VERSION = "mel-magma-2"  # part of the image cache key: change it when the images change
COLORMAP = "magma"
FULL_SCALE = (4, 2)  # full-size image: (rows, columns) each mel bin / frame is repeated


@dataclass
class ReportResult:
    path: Path  # index.html (linked folder) or the single embedded file
    n_stimuli: int
    n_columns: int  # ground truth + methods
    n_players: int
    size_bytes: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Column:
    """One player column: a table row of the leaderboard (method, profile, overrides), or the truth."""

    label: str
    slug: str
    group: str  # "method", "random-init" or "reference"
    records: dict[str, dict] = field(default_factory=dict)  # subject -> the record shown


def build_report(
    dataset: str,
    *,
    runs: Path,
    out: Path,
    methods: list[str] | None = None,
    subject: str | None = None,
    seed: int | None = None,
    max_stimuli: int | None = None,
    embed: bool = False,
    data_root=None,
) -> ReportResult:
    """Write the report for ``dataset`` (a name, or name@scale) from the records under ``runs``.

    methods: method names to include (default all with records); subject: one subject (default all);
    seed: the seed shown (default the lowest per method and subject); max_stimuli: at most this many test
    samples per subject, evenly spaced (default all). Raises BenchError on bad input, writing nothing.
    """
    from bench.records import iter_records

    runs = Path(runs)
    if max_stimuli is not None and max_stimuli < 1:
        raise BenchError(f"--max-stimuli must be >= 1, got {max_stimuli}")
    records = [r for r in iter_records(runs) if _dataset_key(r) == dataset]
    if not records:
        have = sorted({_dataset_key(r) for r in iter_records(runs)})
        hint = f"; datasets with records: {', '.join(have)}" if have else ""
        raise BenchError(f"no run records for dataset {dataset!r} under {runs}{hint}; run `bench run --dataset {dataset}` first")
    columns, warnings = _select(records, dataset, methods, subject, seed)

    from bench.datasets import get_dataset

    cfg0 = columns[0].records[next(iter(columns[0].records))]["config"]
    ds = get_dataset(cfg0["dataset"])
    subjects = sorted({s for c in columns for s in c.records})
    splits, predictions = {}, {}
    for subj in subjects:
        split = ds.load_split(subj, "test", data_root=data_root, scale=cfg0.get("scale", "default"))
        splits[subj] = split
        for col in columns:
            rec = col.records.get(subj)
            if rec is not None:
                if rec["config"]["dataset_version"] != split.version:
                    raise BenchError(
                        f"run record {runs / rec['_path']} is for {dataset} version {rec['config']['dataset_version']}, "
                        f"the prepared data is {split.version}; rerun the cell with --overwrite"
                    )
                predictions[(col.slug, subj)] = _load_predictions(runs, rec, split)

    out = ensure_writable_dir(Path(out), "report folder")
    stimuli = []  # (subject, index)
    for subj in subjects:
        stimuli += [(subj, int(i)) for i in _pick(splits[subj].n_samples, max_stimuli)]
    sample_rate = int(ds.spec.get("sample_rate", 16000))

    cache = out / ".cache" / "report-images"

    def build(folder: Path) -> str:
        images = _write_media(folder, cache, columns, stimuli, splits, predictions, sample_rate)
        metric_cols = _metric_columns(columns)
        plots = _write_plots(folder, columns, metric_cols)
        return _render(_page_context(dataset, ds, columns, stimuli, splits, metric_cols, plots, images, runs, sample_rate))

    if embed:
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{dataset}.") as work:
            html = _inline(build(Path(work)), Path(work))
        path = out / f"{dataset}.html"
        write_text(path, html)
        size = path.stat().st_size
    else:
        with atomic_dir(out / dataset) as tmp:
            (tmp / "index.html").write_text(build(tmp), encoding="utf-8")
            size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        path = out / dataset / "index.html"
    return _finish(path, stimuli, columns, size, warnings, embed)


def _finish(path, stimuli, columns, size, warnings, embed) -> ReportResult:
    if embed and size > SIZE_BUDGET_BYTES:
        warnings.append(
            f"{path} is {size / 2**20:.1f} MiB, over the {SIZE_BUDGET_BYTES / 2**20:.0f} MiB budget; "
            "pass --max-stimuli or --subject for a smaller page"
        )
    n_cols = len(columns) + 1
    return ReportResult(path, len(stimuli), n_cols, len(stimuli) * n_cols, size, warnings)


# ----------------------------------------------------------------------------------------------
# records


def _dataset_key(rec: dict) -> str:
    cfg = rec["config"]
    return cfg["dataset"] if cfg.get("scale", "default") == "default" else f"{cfg['dataset']}@{cfg['scale']}"


def _select(records, dataset, methods, subject, seed) -> tuple[list[_Column], list[str]]:
    """Columns in display order (methods, random-init, references), each with one record per subject."""
    from bench.leaderboard import is_random_init, is_reference, row_name

    have = sorted({r["config"]["method"] for r in records})
    if methods:
        unknown = [m for m in methods if m not in have]
        if unknown:
            raise BenchError(f"no records of method(s) {', '.join(unknown)} for {dataset}; methods with records: {', '.join(have)}")
        records = [r for r in records if r["config"]["method"] in methods]
    if subject is not None:
        subs = sorted({r["config"]["subject"] for r in records})
        if subject not in subs:
            raise BenchError(f"no records of subject {subject!r} for {dataset}; subjects with records: {', '.join(subs)}")
        records = [r for r in records if r["config"]["subject"] == subject]
    if seed is not None:
        seeds = sorted({int(r["config"]["seed"]) for r in records})
        if seed not in seeds:
            raise BenchError(f"no records with seed {seed} for {dataset}; seeds with records: {', '.join(map(str, seeds))}")
        records = [r for r in records if int(r["config"]["seed"]) == seed]

    by_row: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    group_of: dict[str, str] = {}
    for r in records:
        row = _row_label(r, row_name)
        by_row[row][r["config"]["subject"]].append(r)
        group_of[row] = ("reference" if is_reference(r)
                         else "random-init" if is_random_init(r) else "method")
    warnings: list[str] = []
    order = {"method": 0, "random-init": 1, "reference": 2}
    columns, slugs = [], {GROUND_TRUTH}
    for row in sorted(by_row, key=lambda k: (order[group_of[k]], k)):
        col = _Column(row, _unique_slug(row, slugs), group_of[row])
        for subj, recs in sorted(by_row[row].items()):
            low = min(int(r["config"]["seed"]) for r in recs)
            same = sorted((r for r in recs if int(r["config"]["seed"]) == low), key=lambda r: r["_path"])
            if len(same) > 1:
                warnings.append(f"{len(same)} records share row {row!r}, subject {subj}, seed {low}; showing {same[0]['_path']}")
            col.records[subj] = same[0]
        columns.append(col)
    return columns, warnings


def _row_label(rec: dict, row_name) -> str:
    """The leaderboard's row name, plus any backbone-weights tag it does not show itself (e.g. sim-pretrained)."""
    label = row_name(rec)
    weights = rec.get("method_info", {}).get("backbone_weights")
    if isinstance(weights, str) and weights not in ("pretrained", "") and f"[{weights}]" not in label:
        label += f" [{weights}]"
    return label


def _unique_slug(label: str, taken: set[str]) -> str:
    import re

    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "method"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _load_predictions(runs: Path, rec: dict, split) -> np.ndarray:
    """The record's predicted audio (n, samples) float32, after checking the file's sha256 and clip order."""
    from bench.data import sha256_file

    rec_path = runs / rec["_path"]
    pred = rec.get("predictions") or {}
    if "file" not in pred:
        raise BenchError(f"run record {rec_path} names no predictions file; rerun the cell with --overwrite")
    path = rec_path.parent / pred["file"]
    if not path.exists():
        raise BenchError(f"predictions {path} of record {rec_path} are missing; rerun the cell with --overwrite")
    if sha256_file(path) != pred.get("sha256"):
        raise BenchError(f"predictions {path} do not match the sha256 in {rec_path} (changed or truncated); rerun the cell with --overwrite")
    try:
        with np.load(path) as z:
            audio = np.asarray(z["audio"], dtype=np.float32)
            clip_index = np.asarray(z["clip_index"])
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"predictions {path} cannot be read ({exc}); rerun the cell with --overwrite") from None
    if audio.ndim != 2 or audio.shape[0] != split.n_samples or not np.array_equal(clip_index, split.clip_index):
        raise BenchError(
            f"predictions {path} do not match the test split of {split.dataset} {split.version} "
            f"(shape {audio.shape}, {split.n_samples} test samples); rerun the cell with --overwrite"
        )
    return audio


def _pick(n: int, k: int | None) -> np.ndarray:
    """k evenly spaced indices of range(n) (all when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def _record_date(path: Path) -> str:
    """When the record file was written (its modification time, UTC): records carry no date field."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------------------------
# audio and images


def _stim_name(subject: str, index: int) -> str:
    return f"sub-{subject}_{index:03d}"


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM; samples outside [-1, 1] are clipped."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(pcm.tobytes())


def _write_media(tmp, cache, columns, stimuli, splits, predictions, sample_rate) -> dict:
    """Write every WAV and mel image; return {(stim, slug): relative image path}."""
    by_subject = defaultdict(list)
    for subj, i in stimuli:
        by_subject[subj].append(i)
    images = {}
    (tmp / "img").mkdir(parents=True, exist_ok=True)
    _write_png(tmp / "img" / "colorbar.png", np.repeat(np.arange(256, dtype=np.uint8)[None, :], 10, axis=0))
    for subj, idx in sorted(by_subject.items()):
        truth = splits[subj].audio
        sources = [(GROUND_TRUTH, truth, _sha256_array(truth))]
        for col in columns:
            rec = col.records.get(subj)
            if rec is not None:
                sources.append((col.slug, predictions[(col.slug, subj)], rec["predictions"]["sha256"]))
        for slug, audio, key in sources:
            pngs = _cached_mels(cache / f"{key}-{IMAGE_VERSION}", audio, idx)
            for i in idx:
                stim = _stim_name(subj, i)
                (tmp / "audio" / stim).mkdir(parents=True, exist_ok=True)
                (tmp / "img" / stim).mkdir(parents=True, exist_ok=True)
                _write_wav(tmp / "audio" / stim / f"{slug}.wav", audio[i], sample_rate)
                shutil.copyfile(pngs[i][0], tmp / "img" / stim / f"{slug}.png")
                shutil.copyfile(pngs[i][1], tmp / "img" / stim / f"{slug}-full.png")
                images[(stim, slug)] = f"img/{stim}/{slug}"
    return images


def _sha256_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _cached_mels(folder: Path, audio: np.ndarray, idx) -> dict[int, tuple[Path, Path]]:
    """{i: (thumbnail png, full-size png)} for the samples ``idx`` of ``audio`` (n, samples); missing ones are made."""
    from bench.audio import eval_mel

    out = {i: (folder / f"{i:04d}.png", folder / f"{i:04d}-full.png") for i in idx}
    missing = [i for i in idx if not (out[i][0].exists() and out[i][1].exists())]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), 32):
            chunk = missing[start:start + 32]
            mels = eval_mel(np.asarray(audio[chunk], dtype=np.float32))
            for i, mel in zip(chunk, mels):
                levels = _levels(mel)
                _write_png(out[i][0], levels)
                _write_png(out[i][1], np.repeat(np.repeat(levels, FULL_SCALE[0], axis=0), FULL_SCALE[1], axis=1))
    return out


def _levels(mel: np.ndarray) -> np.ndarray:
    """eval mel (n_mels, T) in [0, 1] -> (n_mels, T) uint8 colour index 0..255, low frequencies at the bottom."""
    return np.round(np.clip(np.flipud(mel), 0.0, 1.0) * 255.0).astype(np.uint8)


def _write_png(path: Path, levels: np.ndarray) -> None:
    """A palette PNG of ``levels`` (h, w) uint8 through the 256-entry colormap: the same scale for every image."""
    from matplotlib import colormaps
    from PIL import Image

    palette = colormaps[COLORMAP](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3]
    h, w = levels.shape
    image = Image.frombytes("P", (w, h), np.ascontiguousarray(levels, dtype=np.uint8).tobytes())
    image.putpalette(palette.astype(np.uint8).tobytes())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


# ----------------------------------------------------------------------------------------------
# metrics


def _metric_columns(columns) -> list[str]:
    """Metric names of the shown records: the paper's columns (and their variants) first, then the rest."""
    from metrics.registry import paper_columns

    present = sorted({m for c in columns for r in c.records.values() for m in r["metrics"]})
    first = [m for p in paper_columns() for m in present if m == p or m.startswith(p + ":")]
    return first + [m for m in present if m not in first]


def _per_sample(rec: dict, metric: str) -> np.ndarray | None:
    val = rec["metrics"].get(metric) or {}
    if val.get("status") != "ok" or "per_sample" not in val:
        return None
    return np.array([float(x) for x in val["per_sample"]], dtype=np.float64)


def _summary(col: _Column, metric: str) -> dict:
    """mean and bootstrap 95% CI over every test sample of the shown records (set-level metrics: mean over records)."""
    from bench.leaderboard import metric_value
    from bench.stats import bootstrap_ci, mean_finite

    recs = [col.records[s] for s in sorted(col.records)]
    samples = [v for v in (_per_sample(r, metric) for r in recs) if v is not None]
    if samples:
        pooled = np.concatenate(samples)
        lo, hi = bootstrap_ci(pooled, seed=0)
        return {"mean": mean_finite(pooled), "lo": lo, "hi": hi, "n": int(np.isfinite(pooled).sum())}
    values = [v for v in (metric_value(r["metrics"].get(metric, {})) for r in recs) if v is not None]
    if values:
        return {"mean": float(np.mean(values)), "lo": None, "hi": None, "n": len(values)}
    reasons = sorted({r["metrics"].get(metric, {}).get("reason", "") for r in recs} - {""})
    return {"mean": None, "reason": "; ".join(reasons) or "not computed for these records"}


def fmt_value(v, digits: int = 3) -> str:
    from bench.leaderboard import fmt_value as fmt

    return fmt(v, digits)


def _write_plots(tmp: Path, columns, metric_cols) -> list[dict]:
    """Metric figures under img/: per-metric distributions, and a per-sample scatter of the first two methods."""
    from metrics import metric_spec

    per_sample = [m for m in metric_cols if any(_per_sample(r, m) is not None for c in columns for r in c.records.values())]
    if not per_sample:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    rng = np.random.default_rng(0)
    n = len(per_sample)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.5, 3.4), squeeze=False)
    for ax, m in zip(axes[0], per_sample):
        data, names = [], []
        for col in columns:
            vals = [v for v in (_per_sample(col.records[s], m) for s in sorted(col.records)) if v is not None]
            if vals:
                v = np.concatenate(vals)
                data.append(v[np.isfinite(v)])
                names.append(col.label)
        ax.boxplot(data, showfliers=False)
        for k, v in enumerate(data, start=1):
            ax.scatter(k + rng.uniform(-0.15, 0.15, size=v.size), v, s=4, alpha=0.4, color="#444")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
        spec = metric_spec(m)
        ax.set_title(f"{_metric_label(m)} {'↑' if spec.higher_is_better else '↓'}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    _save_figure(fig, tmp / "img" / "metrics-distributions.png")
    plt.close(fig)
    plots.append({"src": "img/metrics-distributions.png",
                  "alt": "Per-sample metric distributions per method (box: quartiles; dots: test samples)"})

    measured = [c for c in columns if c.group != "reference"]
    if len(measured) >= 2:
        a, b = measured[0], measured[1]
        common = sorted(set(a.records) & set(b.records))
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.5, 3.4), squeeze=False)
        for ax, m in zip(axes[0], per_sample):
            xs = [_per_sample(a.records[s], m) for s in common]
            ys = [_per_sample(b.records[s], m) for s in common]
            pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
            if pairs:
                x = np.concatenate([p[0] for p in pairs])
                y = np.concatenate([p[1] for p in pairs])
                keep = np.isfinite(x) & np.isfinite(y)
                ax.scatter(x[keep], y[keep], s=6, alpha=0.6)
                if keep.any():
                    lo, hi = float(min(x[keep].min(), y[keep].min())), float(max(x[keep].max(), y[keep].max()))
                    ax.plot([lo, hi], [lo, hi], color="#999", lw=0.8)
            ax.set_xlabel(a.label, fontsize=7)
            ax.set_ylabel(b.label, fontsize=7)
            ax.set_title(_metric_label(m), fontsize=9)
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        _save_figure(fig, tmp / "img" / "metrics-scatter.png")
        plt.close(fig)
        plots.append({"src": "img/metrics-scatter.png",
                      "alt": f"Per-sample metrics, {b.label} against {a.label} (one dot per test sample; line: equal)"})
    return plots


def _save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _metric_label(name: str) -> str:
    from metrics import metric_spec

    family, _, member = name.partition(":")
    label = metric_spec(family).label
    return f"{label} ({member})" if member else label


# ----------------------------------------------------------------------------------------------
# page


def _page_context(dataset, ds, columns, stimuli, splits, metric_cols, plots, images, runs, sample_rate) -> dict:
    from metrics import metric_spec

    arrows = {m: "↑" if metric_spec(m).higher_is_better else "↓" for m in metric_cols}
    group_titles = {"method": "Methods", "random-init": "Random-initialised backbones (smoke runs, not comparable)",
                    "reference": "Reference rows: oracle = ground truth through the vocoder, chance = test stimuli shuffled"}
    summary_groups = []
    for group in ("method", "random-init", "reference"):
        rows = []
        for col in (c for c in columns if c.group == group):
            cells = []
            for m in metric_cols:
                s = _summary(col, m)
                if s["mean"] is None:
                    cells.append({"text": "n/a", "title": s["reason"], "value": ""})
                elif s["lo"] is None:
                    cells.append({"text": fmt_value(s["mean"]), "title": f"set-level; mean over {s['n']} record(s)", "value": fmt_value(s["mean"], 6)})
                else:
                    cells.append({"text": f"{fmt_value(s['mean'])} [{fmt_value(s['lo'])}, {fmt_value(s['hi'])}]",
                                  "title": f"mean [bootstrap 95% CI] over {s['n']} test samples", "value": fmt_value(s["mean"], 6)})
            rows.append({"label": col.label, "slug": col.slug, "cells": cells,
                         "subjects": ", ".join(sorted(col.records)),
                         "seeds": ", ".join(sorted({str(r["config"]["seed"]) for r in col.records.values()}))})
        if rows:
            summary_groups.append({"title": group_titles[group], "rows": rows})

    sample_metrics = [m for m in metric_cols if any(_per_sample(r, m) is not None for c in columns for r in c.records.values())]
    stim_rows = []
    for subj, i in stimuli:
        split = splits[subj]
        stim = _stim_name(subj, i)
        sort_values = {"index": i, "subject": subj, "label": str(split.label[i]), "stim": str(split.stim_id[i])}
        cells = [{"slug": GROUND_TRUTH, "label": "ground truth", "audio": f"audio/{stim}/{GROUND_TRUTH}.wav",
                  "img": images[(stim, GROUND_TRUTH)], "metrics": [], "missing": ""}]
        for col in columns:
            rec = col.records.get(subj)
            if rec is None:
                cells.append({"slug": col.slug, "label": col.label, "missing": f"no record for sub-{subj}"})
                continue
            ms = []
            for m in sample_metrics:
                v = _per_sample(rec, m)
                if v is not None:
                    val = float(v[i])
                    ms.append({"name": _metric_label(m), "text": fmt_value(val)})
                    sort_values[f"{col.slug}:{m}"] = val if math.isfinite(val) else None
            cells.append({"slug": col.slug, "label": col.label, "audio": f"audio/{stim}/{col.slug}.wav",
                          "img": images[(stim, col.slug)], "metrics": ms, "missing": ""})
        stim_rows.append({"stim": stim, "index": i, "subject": subj, "label": str(split.label[i]),
                          "stim_id": str(split.stim_id[i]), "onset": f"{float(split.onset_s[i]):g}",
                          "cells": cells, "sort": json.dumps(sort_values, sort_keys=True, separators=(",", ":"))})

    sort_keys = [{"key": f"{c.slug}:{m}", "text": f"{_metric_label(m)} {arrows[m]}", "slug": c.slug}
                 for c in columns for m in sample_metrics]
    provenance = []
    for col in columns:
        for subj, rec in sorted(col.records.items()):
            path = runs / rec["_path"]
            git = rec["provenance"].get("git", {})
            provenance.append({
                "row": col.label, "subject": subj, "seed": rec["config"]["seed"], "path": rec["_path"],
                "config_hash": rec["config_hash"][:12],
                "fingerprint": (rec.get("code") or {}).get("fingerprint") or "-",
                "git": (git.get("sha") or "unknown")[:10] + ("+dirty" if git.get("dirty") else ""),
                "date": _record_date(path), "predictions": rec["predictions"]["sha256"][:12],
            })
    first = columns[0].records[next(iter(columns[0].records))]
    clip_s = {f"{splits[s].audio.shape[1] / sample_rate:g}" for s in splits}
    return {
        "dataset": dataset,
        "title": ds.spec.get("title", dataset),
        "kind": ds.kind,
        "mirrors": ds.spec.get("mirrors"),
        "version": first["config"]["dataset_version"],
        "columns": [{"slug": c.slug, "label": c.label, "group": c.group} for c in columns],
        "metric_headers": [{"name": m, "text": f"{_metric_label(m)} {arrows[m]}"} for m in metric_cols],
        "summary_groups": summary_groups,
        "plots": plots,
        "stimuli": stim_rows,
        "labels": sorted({r["label"] for r in stim_rows}),
        "subjects": sorted({r["subject"] for r in stim_rows}),
        "sort_keys": sort_keys,
        "provenance": provenance,
        "n_records": len(provenance),
        "n_players": len(stim_rows) * (len(columns) + 1),
        "clip_seconds": ", ".join(sorted(clip_s)),
        "sample_rate": sample_rate,
        "n_test": {s: int(splits[s].n_samples) for s in sorted(splits)},
    }


def _render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("bench", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(**context)


def _inline(html: str, folder: Path) -> str:
    """Replace every src/href to a file under ``folder`` by a data URI (one self-contained page)."""
    import re

    mime = {".wav": "audio/wav", ".png": "image/png"}

    def repl(match):
        attr, rel = match.group(1), match.group(2)
        path = folder / rel
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{attr}="data:{mime.get(path.suffix, "application/octet-stream")};base64,{data}"'

    return re.sub(r'\b(src|href)="((?:audio|img)/[^"]+)"', repl, html)

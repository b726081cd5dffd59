"""``bench rescore``: recompute the metrics of finished cells from their stored predictions, without refitting.

Every record has its predictions beside it (``<record>.npz``: audio, clip_index, mel, feature_<name>) and their
sha256 in ``record["predictions"]``. Rescoring checks that hash, rebuilds the Reconstruction, loads the test split
of the record's dataset version and scores through the runner's own :func:`bench.runner.score_reconstruction`, then
rewrites the record atomically. The method is rebuilt from the record's parameters but not fitted: metrics that need
the fitted method's ground-truth features (probes and identification of methods whose targets come from a trained
stage) keep their recorded values and are reported as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.io import write_json


class NeedsFittedMethod(Exception):
    """A metric asked for ground-truth features that only the fitted method can compute."""


@dataclass
class RescoreOutcome:
    path: Path
    label: str
    changed: dict = field(default_factory=dict)  # metric key -> new JSON entry, where it differs from the record
    kept: list = field(default_factory=list)  # metric families that need the fitted method
    status: str = "rescored"  # "rescored" or "up to date"


def family(key: str) -> str:
    """The registered metric a record key belongs to ("kl:sigmoid" -> "kl")."""
    return key.split(":", 1)[0]


def newly_available(record: dict) -> list[str]:
    """Metric keys recorded as unavailable for lack of weights that are found now (``bench rescore`` can score them)."""
    from bench.networks import cache
    from bench.networks import weights as W

    kind_of = {entry: kind for names in (cache.DEFAULT_WEIGHTS, cache.SIM_WEIGHTS) for kind, entry in names.items()}
    simulated = (record.get("dataset") or {}).get("kind") == "simulated"
    out = []
    for key, entry in sorted(record.get("metrics", {}).items()):
        name = entry.get("weights") if entry.get("status") != "ok" else None
        if not name:
            continue
        try:
            # the entry the metric's network would load now ($BENCH_<NET>_WEIGHTS may choose another than recorded)
            now = cache.weights_name(kind_of[name], simulated) if name in kind_of else name
            found = W.find(now)
        except BenchError:
            found = None
        if found is not None:
            out.append(key)
    return out


def select_metrics(record: dict, requested: list[str] | None) -> list[str]:
    """Registered metric names to recompute: ``requested`` (["all"]: every one), or by default each metric that is
    unavailable in the record or missing from it (a metric, or a member of a family, registered after the run)."""
    from metrics import METRICS

    if requested:
        if requested == ["all"]:
            return list(METRICS.names())
        for name in requested:
            METRICS.get(name)  # an unknown name is a one-line error with suggestions
        return list(dict.fromkeys(requested))
    present = {family(k) for k in record["metrics"]}
    unavailable = {family(k) for k, v in record["metrics"].items() if v.get("status") != "ok"}
    incomplete = {n for n in METRICS.names() if any(k not in record["metrics"] for k in METRICS.get(n).members)}
    return [n for n in METRICS.names() if n in unavailable or n not in present or n in incomplete]


def load_predictions(record: dict, record_file: Path):
    """The stored Reconstruction of a record, after checking the predictions file against the record's sha256."""
    from bench.data import sha256_file
    from methods.base import Reconstruction

    pred = record.get("predictions") or {}
    pred_file = Path(record_file).parent / str(pred.get("file", ""))
    if not pred.get("file") or not pred_file.is_file():
        raise BenchError(f"predictions {pred_file} of record {record_file} are missing; rerun the cell with --overwrite")
    if sha256_file(pred_file) != pred.get("sha256"):
        raise BenchError(f"predictions {pred_file} do not match the sha256 in record {record_file} (changed since the run); "
                         "rerun the cell with --overwrite")
    try:
        with np.load(pred_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise BenchError(f"predictions {pred_file} cannot be read ({exc}); rerun the cell with --overwrite") from None
    if "audio" not in arrays or "clip_index" not in arrays:
        raise BenchError(f"predictions {pred_file} lack audio or clip_index; rerun the cell with --overwrite")
    features = {k[len("feature_"):]: v for k, v in arrays.items() if k.startswith("feature_")}
    rec = Reconstruction(audio=arrays["audio"], mel=arrays.get("mel"), features=features,
                         info=dict(record.get("method_info", {})))
    return rec, arrays["clip_index"]


class _UnfittedMethod:
    """Stands in for the fitted method: ground-truth features only where the method gives them without fitting."""

    def __init__(self, method):
        self._method = method

    def target_features(self, split) -> dict[str, np.ndarray]:
        try:
            return self._method.target_features(split)
        except BenchError as exc:
            raise NeedsFittedMethod(str(exc)) from None


def record_label(record: dict) -> str:
    c = record["config"]
    return f"{c['method']} {c['dataset']} sub-{c['subject']} seed {c['seed']} ({c['profile']})"


def rescore_record(record_file: Path, record: dict, *, metrics: list[str] | None = None, data_root=None,
                   device: str = "cpu") -> RescoreOutcome:
    """Recompute the selected metrics of one record from its predictions and rewrite the record atomically."""
    from bench.data import use_data_root

    with use_data_root(data_root):  # caches land under the same root as the cell's did
        return _rescore_record(Path(record_file), record, metrics=metrics, data_root=data_root, device=device)


def _rescore_record(record_file: Path, record: dict, *, metrics, data_root, device: str) -> RescoreOutcome:
    from bench.datasets import get_dataset
    from bench.provenance import git_info
    from bench.runner import score_reconstruction
    from methods import get_method

    label = record_label(record)
    names = select_metrics(record, metrics)
    outcome = RescoreOutcome(Path(record_file), label)
    if not names:
        outcome.status = "up to date"
        return outcome
    cfg = record["config"]
    dataset = get_dataset(cfg["dataset"])
    scale = cfg.get("scale", "default")
    if dataset.version(scale) != cfg["dataset_version"]:
        raise BenchError(f"record {record_file} was made on {cfg['dataset']} version {cfg['dataset_version']}, the data "
                         f"here are version {dataset.version(scale)}; rerun the cell (bench run) instead of rescoring")
    rec, clip_index = load_predictions(record, record_file)
    test = dataset.load_split(cfg["subject"], "test", data_root=data_root, scale=scale)
    if not np.array_equal(np.asarray(clip_index), np.asarray(test.clip_index)):
        raise BenchError(f"predictions of record {record_file} are for other test samples than the prepared "
                         f"{cfg['dataset']} {cfg['subject']} test split; rerun the cell with --overwrite")
    method = _UnfittedMethod(get_method(cfg["method"])(**cfg["params"]))
    metrics_json = dict(record["metrics"])
    higher_json = dict(record.get("higher_is_better", {}))
    t0 = time.perf_counter()
    for name in names:
        try:
            results, higher = score_reconstruction(rec, test, method, device=device, metrics=[name],
                                                   embeddings_path=Path(record_file).with_suffix(".emb.npz"))
        except NeedsFittedMethod:
            outcome.kept.append(name)
            continue
        old = {k: metrics_json.pop(k) for k in [k for k in metrics_json if family(k) == name]}
        for key in old:
            higher_json.pop(key, None)
        for key, res in results.items():
            metrics_json[key] = res.to_json()
            higher_json[key] = higher[key]
            if metrics_json[key] != old.get(key):
                outcome.changed[key] = metrics_json[key]
        outcome.changed.update({k: {"status": "removed"} for k in old if k not in results})
    if not outcome.changed:
        outcome.status = "up to date"
        return outcome
    updated = {k: v for k, v in record.items() if not k.startswith("_")}
    updated["metrics"] = dict(sorted(metrics_json.items()))
    updated["higher_is_better"] = dict(sorted(higher_json.items()))
    updated["rescored"] = {"metrics": sorted({family(k) for k in outcome.changed}),
                           "score_s": round(time.perf_counter() - t0, 3), "git": git_info()}
    write_json(record_file, updated)
    return outcome


def matching_records(runs: Path, methods: list[str] | None, datasets: list[str] | None) -> list[tuple[Path, dict]]:
    """(path, record) of every record under ``runs`` for these methods and datasets (None: any)."""
    from bench.records import iter_records

    out = []
    for rec in iter_records(runs):
        cfg = rec["config"]
        if methods is not None and cfg["method"] not in methods:
            continue
        if datasets is not None and cfg["dataset"] not in datasets:
            continue
        out.append((Path(runs) / rec["_path"], rec))
    return out


def describe(outcome: RescoreOutcome) -> str:
    """One line per record for the CLI."""
    if outcome.status == "up to date":
        text = f"up to date  {outcome.label}"
    else:
        parts = []
        for key, entry in sorted(outcome.changed.items()):
            parts.append(f"{key}={float(entry['value']):.3f}" if entry["status"] == "ok" else f"{key} {entry['status']}")
        text = f"rescored  {outcome.label}  {', '.join(parts)}"
    if outcome.kept:
        text += (f"  (kept the recorded {', '.join(outcome.kept)}: they need the fitted method's ground-truth features; "
                 "`bench run --overwrite` refits)")
    return text

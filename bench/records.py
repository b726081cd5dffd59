"""Run records: one JSON per cell, with the resolved config, its hash and full provenance.

Schema (``SCHEMA_VERSION``)::

    schema          int, this file's schema version
    key             str, 12-hex-digit hash of ``config`` (the cell's identity)
    config          method, params, profile, dataset, dataset_version, scale, subject, seed, suite_version
    config_hash     str, full sha256 of the canonical JSON of ``config``
    dataset         name, version, n_train, n_test, n_voxels, manifest settings digest
    metrics         {name: {status, value, per_sample?, extra?, reason?}}
    higher_is_better {name: bool}
    method_info     what the method reports (chosen alpha, epochs, vocoder, components, weights)
    timing          fit_s, predict_s, score_s, wall_s
    memory          peak_rss_mb (sampled during the cell), cuda_peak_mb
    provenance      git sha and dirty flag, package versions, machine, device
    predictions     file name of the .npz beside the record, and its sha256
    warnings        distinct warnings raised during the cell: category, message, where, count
    rescored        (after ``bench rescore``) which metrics were recomputed from the predictions, and by which code

The leaderboard reads only these records. A record is written last, atomically, so its presence
means the cell finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import read_json

SCHEMA_VERSION = 1
REQUIRED = ("schema", "key", "config", "config_hash", "metrics", "provenance")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def record_path(runs_dir: Path, config: dict) -> Path:
    """runs/<dataset>/<method>/<profile>/sub-<subject>_seed-<seed>_<key>.json"""
    key = config_hash(config)[:12]
    name = f"sub-{config['subject']}_seed-{config['seed']}_{key}.json"
    dataset = config["dataset"] if config.get("scale", "default") == "default" else f"{config['dataset']}@{config['scale']}"
    return Path(runs_dir) / dataset / config["method"] / config["profile"] / name


def load_record(path: Path) -> dict:
    rec = read_json(path, what="run record")
    if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
        raise BenchError(f"run record {path} is incomplete or not a record; delete it and rerun the cell")
    if rec["schema"] != SCHEMA_VERSION:
        raise BenchError(f"run record {path} has schema {rec['schema']}, this version reads {SCHEMA_VERSION}; rerun with --overwrite")
    if config_hash(rec["config"]) != rec["config_hash"]:
        raise BenchError(f"run record {path} does not match its config hash (edited by hand?); delete it and rerun")
    return rec


def iter_records(runs_dir: Path) -> list[dict]:
    """All records under ``runs_dir``, sorted by path (so output built from them is stable)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    out = []
    for path in sorted(runs_dir.rglob("*.json")):
        if path.name.startswith("."):
            continue
        rec = load_record(path)
        rec["_path"] = str(path.relative_to(runs_dir))
        out.append(rec)
    return out

"""Run records for the report tests: LiR and MLP on the tiny simulated sound dataset, and an oracle row.

One session fixture, so the static and the browser tests share the cells (a few seconds on 2 cores).
The oracle record stands in for the registered ``oracle`` reference method: its predictions are the
ground-truth test audio and its PCC / PSNR are computed from them, laid out as the runner writes records.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

REPORT_DATASET = "tiny-sound"
REPORT_SUBJECT = "sim01"
FAST = (("griffin_lim_iters", 1),)  # the vocoder dominates a tiny cell; one iteration keeps the fixture quick
LIR = "LiR (tiny; griffin_lim_iters=1)"
MLP = "MLP (tiny; griffin_lim_iters=1)"
LIR_SLUG = "lir-tiny-griffin-lim-iters-1"


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory, session_data_root):
    """A runs folder with records of lir, mlp (``FAST`` overrides) and oracle for tiny-sound sim01, seed 0."""
    from bench import datasets
    from bench.runner import Cell, run_cells
    from tests.conftest import TINY_CATALOGUE
    from tests.sim_sizes import TINY_SOUND, TINY_SPEECH

    root = tmp_path_factory.mktemp("report-runs")
    catalogue = root / "datasets.yaml"
    catalogue.write_text(
        TINY_CATALOGUE.format(params_sound=json.dumps(TINY_SOUND), params_speech=json.dumps(TINY_SPEECH)), encoding="utf-8"
    )
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_DATASETS_YAML", str(catalogue))
        mp.setenv("BENCH_DATA", str(session_data_root))
        datasets._read_catalogue.cache_clear()
        try:
            cells = [Cell(m, REPORT_DATASET, REPORT_SUBJECT, 0, "tiny", overrides=FAST) for m in ("lir", "mlp")]
            summary = run_cells(cells, runs=runs, data_root=session_data_root, progress=False, echo=lambda *_: None)
            _write_oracle_record(runs, summary.outcomes[0].record, session_data_root)
        finally:
            datasets._read_catalogue.cache_clear()
    return runs


def _write_oracle_record(runs, template: dict, data_root) -> None:
    from bench.audio import eval_mel
    from bench.data import sha256_file
    from bench.datasets import get_dataset
    from bench.io import write_json, write_npz
    from bench.records import config_hash, record_path
    from metrics.spectral import pcc, psnr

    test = get_dataset(REPORT_DATASET).load_split(REPORT_SUBJECT, "test", data_root=data_root)
    config = {**template["config"], "method": "oracle", "params": {}, "overrides": {}}
    path = record_path(runs, config)
    write_npz(path.with_suffix(".npz"), audio=test.audio, clip_index=test.clip_index)
    mel = eval_mel(test.audio)
    metrics = {}
    for name, fn in (("pcc", pcc), ("psnr", psnr)):
        values = fn(mel, mel)
        metrics[name] = {"status": "ok", "value": float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else "nan",
                         "per_sample": [float(v) if np.isfinite(v) else ("inf" if v > 0 else "nan") for v in values]}
    record = {
        **{k: template[k] for k in ("schema", "dataset", "provenance", "timing", "memory")},
        "key": config_hash(config)[:12],
        "config": config,
        "config_hash": config_hash(config),
        "metrics": metrics,
        "higher_is_better": {"pcc": True, "psnr": True},
        "method_info": {"display_name": "Oracle"},
        "code": {"fingerprint": "test-fingerprint"},
        "predictions": {"file": path.with_suffix(".npz").name, "sha256": sha256_file(path.with_suffix(".npz"))},
    }
    write_json(path, record)

"""Benchmark: the README's main job, `bench run --method lir,mlp --dataset sim --profile tiny`, from empty folders.

Not part of the normal test run. Run with::

    .venv/bin/python -m pytest benchmarks/test_bench_quickstart.py --benchmark-only -q -s

Each round is a fresh `bench` process with empty data, weights and runs folders, so it generates the three simulated
datasets and trains the simulator's PANNs, VGGish and CLAP that FD, KL, FAD and CLAP score with. Side by side in one
run:

- ``test_quickstart_first_use`` (the reference, the behaviour before `bench run` trained ahead): each network is
  trained at its first use inside the first cell, one after another (``pretrain_sim_networks`` switched off);
- ``test_quickstart_pretrained``: `bench run` as shipped, which trains them before the first cell, one per usable
  core at once (``bench.runner.pretrain_sim_networks``). The records must hold the same numbers and the weights the
  same bytes as the reference's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = ["run", "--method", "lir,mlp", "--dataset", "sim", "--profile", "tiny"]
_REFERENCE: dict[str, dict] = {}
"""From test_quickstart_first_use: {"metrics": {cell: {metric: value}}, "weights": {file: sha256}}."""

# The reference: the same CLI with the up-front training switched off.
_FIRST_USE = ("import sys, bench.runner; bench.runner.pretrain_sim_networks = lambda *a, **k: []; "
              "from bench.cli import main; sys.argv = ['bench', *sys.argv[1:]]; main()")
_SHIPPED = "import sys; from bench.cli import main; sys.argv = ['bench', *sys.argv[1:]]; main()"


def _run(code: str, folder: Path) -> None:
    env = {**os.environ, "BENCH_DATA": str(folder / "data"), "BENCH_WEIGHTS": str(folder / "weights"),
           "BENCH_RUNS": str(folder / "runs"), "BENCH_SIM_WEIGHTS": "auto", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code, *COMMAND, "--out", str(folder / "leaderboards")], env=env,
                   cwd=folder, check=True, stdout=subprocess.DEVNULL)


def _results(folder: Path) -> dict:
    metrics = {}
    for path in sorted((folder / "runs").rglob("*.json")):
        record = json.loads(path.read_text())
        if "metrics" in record:
            c = record["config"]
            metrics[f"{c['method']} {c['dataset']} {c['subject']}"] = {k: v.get("value") for k, v in record["metrics"].items()}
    weights = {str(p.relative_to(folder / "weights")): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted((folder / "weights" / "sim").rglob("*.safetensors"))}
    return {"metrics": metrics, "weights": weights}


def _bench(benchmark, code: str, tmp_path: Path) -> dict:
    folder = tmp_path / "quickstart"
    folder.mkdir()
    benchmark.pedantic(lambda: _run(code, folder), rounds=1, iterations=1)
    out = _results(folder)
    benchmark.extra_info.update({"total_s": round(benchmark.stats.stats.mean, 1), "cells": len(out["metrics"]),
                                 "cpu_count": os.cpu_count()})
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    assert len(out["metrics"]) == 24 and len(out["weights"]) == 3  # 4 methods x 3 datasets x 2 subjects; panns, vggish, clap
    return out


@pytest.mark.benchmark(group="quickstart")
def test_quickstart_first_use(benchmark, tmp_path):
    _REFERENCE.update(_bench(benchmark, _FIRST_USE, tmp_path))


@pytest.mark.benchmark(group="quickstart")
def test_quickstart_pretrained(benchmark, tmp_path):
    if not _REFERENCE:
        pytest.skip("compares with test_quickstart_first_use: run the whole module")
    out = _bench(benchmark, _SHIPPED, tmp_path)
    assert out["weights"] == _REFERENCE["weights"]  # the same bytes, trained one after another or at once
    assert out["metrics"] == _REFERENCE["metrics"]  # so the same numbers

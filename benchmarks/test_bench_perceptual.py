"""Benchmark: scoring one method's reconstructions with FD, FAD, KL and CLAP on a 150-clip, 4-s test set.

Not part of the normal test run (``testpaths`` is ``tests``). Run with::

    .venv/bin/python -m pytest benchmarks/test_bench_perceptual.py --benchmark-only -q -s

Full-size networks with random weights (timing does not depend on the values): PANNs Cnn14 16 kHz, VGGish and
LAION CLAP (HTSAT-tiny + RoBERTa, the layout of 630k-audioset-best.pt), saved in a temporary $BENCH_WEIGHTS as
entries of its local catalogue (published architectures, their own sha256) and selected with $BENCH_PANNS_WEIGHTS,
$BENCH_VGGISH_WEIGHTS and $BENCH_CLAP_WEIGHTS, so they load through the normal path.
The networks are loaded once and warmed up on two clips before timing (``network_load_s``); the three runs below are
measured side by side in one process, each on a fresh EvalContext:

- ``scratch``: empty feature cache: stimuli and reconstructions are embedded by all three networks (2 x 150 clips);
- ``cached_reference``: a second method on the same test set: the stimuli's features come from the data-root
  cache, its reconstructions are embedded (at most ~2x faster than scratch: half the clips);
- ``rescore``: the same record scored again after a metric change: stimuli from the data-root cache, the
  reconstructions' features from ``<record>.emb.npz``; only the metric math runs (timed by pytest-benchmark).

Asserts rescore >= 3x faster than scratch. ``benchmark.extra_info`` has the times and clips per second of each.

Environment: ``BENCH_SCALE`` (default 1) scales the number of clips (e.g. 0.1 for a quick look);
``BENCH_DEVICE`` (default cpu) picks the device (auto: cuda when available).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N_CLIPS = max(10, round(150 * SCALE))
SECONDS = 4.0
SR = 16_000
METRICS_RUN = ("fd", "fad", "kl", "clap")
ENTRIES = {"BENCH_PANNS_WEIGHTS": ("bench-panns", "panns", "cnn14.pth"), "BENCH_VGGISH_WEIGHTS": ("bench-vggish", "vggish", "vggish.pth"),
           "BENCH_CLAP_WEIGHTS": ("bench-clap", "clap", "clap.pt")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("transformers")
    from bench.networks import weights as W
    from bench.data import ClipTable, Split
    from bench.device import resolve_device
    from bench.networks import cache as NC
    from metrics import embeddings as E
    from bench.networks import clap as C
    from bench.networks.panns import Cnn14
    from bench.networks.vggish import VGGish

    root = tmp_path_factory.mktemp("perceptual-bench")
    wdir = root / "weights"
    wdir.mkdir()
    torch.manual_seed(0)
    torch.save({"iteration": 0, "model": Cnn14().state_dict()}, wdir / "cnn14.pth")
    torch.save(VGGish().state_dict(), wdir / "vggish.pth")
    torch.save({"epoch": 0, "state_dict": C.hf_to_laion(C.build_model().state_dict())}, wdir / "clap.pt")

    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * SR)) / SR
    f0 = rng.uniform(100, 1000, N_CLIPS)[:, None]
    audio = (0.2 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(4 * np.pi * f0 * t) + 0.02 * rng.standard_normal((N_CLIPS, t.size))).astype(np.float32)
    clips = ClipTable(audio, np.array([f"s{i}" for i in range(N_CLIPS)], dtype=object), np.zeros(N_CLIPS),
                      np.array(["ab"[i % 2] for i in range(N_CLIPS)], dtype=object))
    split = Split("bench-perceptual", "v1", "S1", "test", np.zeros((N_CLIPS, 4), np.float32), np.arange(N_CLIPS), clips)
    rec_a = (audio + 0.05 * rng.standard_normal(audio.shape)).astype(np.float32)
    rec_b = (audio * 0.5 + 0.05 * rng.standard_normal(audio.shape)).astype(np.float32)

    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_WEIGHTS", str(wdir))
    mp.setenv("BENCH_DATA", str(root / "data"))
    mp.setenv("HF_HUB_CACHE", str(root / "hub"))
    mp.delenv("BENCH_CLAP_WEIGHTS", raising=False)
    for spec in W.CATALOGUE:
        mp.delenv(spec.env_var, raising=False)
    for env, (name, network, file) in ENTRIES.items():
        mp.setenv(env, name)
    W.add_local_entries([{"name": name, "file": file, "sha256": W.sha256_of(wdir / file, fresh=True), "network": network,
                          "arch": None, "description": "random weights, published architecture (benchmark)"}
                         for name, network, file in ENTRIES.values()])
    device = resolve_device(os.environ.get("BENCH_DEVICE", "cpu"))
    NC.clear_loaded()
    t0 = time.perf_counter()
    nets = [NC.load_network(kind, device=device) for kind in ("panns", "vggish", "clap")]
    load_s = time.perf_counter() - t0
    for net in nets:  # warm-up (first-call allocations), outside the timed runs
        E.embed_audio(net, rec_b[:2])
    yield dict(split=split, rec_a=rec_a, rec_b=rec_b, root=root, device=device, load_s=load_s)
    NC.clear_loaded()
    mp.undo()


def _score(split, audio, device, emb_path=None) -> dict:
    from methods.base import Reconstruction
    from metrics import METRICS, EvalContext

    ctx = EvalContext(Reconstruction(audio=audio), split, None)
    ctx.device = device
    if emb_path is not None:
        ctx.embeddings_path = emb_path
    out = {}
    for name in METRICS_RUN:
        res = METRICS.get(name).evaluate(ctx)
        out.update(res if isinstance(res, dict) else {name: res})
    assert all(r.status == "ok" for r in out.values()), {k: r.reason for k, r in out.items()}
    return {k: r.value for k, r in out.items()}


@pytest.mark.benchmark(group="perceptual-rescoring")
def test_rescoring_vs_scratch(benchmark, setup):
    split, device = setup["split"], setup["device"]
    emb_a = setup["root"] / "runs" / "a.emb.npz"

    t0 = time.perf_counter()
    scratch = _score(split, setup["rec_a"], device, emb_a)
    scratch_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    _score(split, setup["rec_b"], device, setup["root"] / "runs" / "b.emb.npz")
    cached_ref_s = time.perf_counter() - t0

    rescored = benchmark.pedantic(_score, args=(split, setup["rec_a"], device, emb_a), rounds=3, iterations=1)
    rescore_s = benchmark.stats.stats.mean
    for k, v in scratch.items():
        assert rescored[k] == pytest.approx(v, rel=1e-9, abs=1e-12)

    n = split.n_samples
    benchmark.extra_info.update({
        "device": device, "torch_threads": torch.get_num_threads(), "n_clips": n, "clip_seconds": SECONDS,
        "network_load_s": round(setup["load_s"], 2),
        "scratch_s": round(scratch_s, 2), "scratch_clips_per_s": round(n / scratch_s, 2),
        "cached_reference_s": round(cached_ref_s, 2), "cached_reference_clips_per_s": round(n / cached_ref_s, 2),
        "rescore_s": round(rescore_s, 3), "rescore_clips_per_s": round(n / rescore_s, 1),
        "speedup_cached_reference": round(scratch_s / cached_ref_s, 2), "speedup_rescore": round(scratch_s / rescore_s, 1),
    })
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    assert scratch_s >= 3 * rescore_s, benchmark.extra_info
    assert cached_ref_s < scratch_s, benchmark.extra_info

"""FD, FAD, KL and CLAP registry entries: unavailable without weights, numbers with random tiny weights, caches.

Random tiny weights are entries of a local catalogue (``$BENCH_WEIGHTS/catalogue.json``, with their sha256 and tiny
architectures), selected as a user would: ``$BENCH_PANNS_WEIGHTS``, ``$BENCH_VGGISH_WEIGHTS``, ``$BENCH_CLAP_WEIGHTS``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.networks import weights as W
from bench.data import ClipTable, Split
from bench.errors import BenchError
from methods.base import Reconstruction
from metrics import METRICS, EvalContext
from metrics import embeddings as E
from bench.networks import cache as NC
from bench.networks import panns as P
from bench.networks import vggish as V

SR = 16_000
NAMES = ["panns-cnn14-16k", "vggish", "clap-630k-audioset"]
TINY_ENTRIES = {"BENCH_PANNS_WEIGHTS": "tiny-panns", "BENCH_VGGISH_WEIGHTS": "tiny-vggish", "BENCH_CLAP_WEIGHTS": "tiny-clap"}


def _split(n_clips=5, seconds=2.0, dataset="tinyds", version="v1"):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    audio = np.stack([0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(t.size) for i in range(n_clips)]).astype(np.float32)
    clips = ClipTable(audio, np.array([f"s{i}" for i in range(n_clips)], dtype=object), np.zeros(n_clips),
                      np.array(["ab"[i % 2] for i in range(n_clips)], dtype=object))
    index = np.concatenate([np.arange(n_clips), np.arange(n_clips)])  # every stimulus heard twice
    return Split(dataset, version, "S1", "test", np.zeros((index.size, 3), np.float32), index, clips)


def _ctx(audio, split, **attrs):
    ctx = EvalContext(Reconstruction(audio=np.asarray(audio, dtype=np.float32)), split, None)
    for k, v in attrs.items():
        setattr(ctx, k, v)
    return ctx


def _evaluate(name, ctx):
    out = METRICS.get(name).evaluate(ctx)
    return out if isinstance(out, dict) else {name: out}


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("BENCH_CLAP_WEIGHTS", raising=False)
    for spec in W.CATALOGUE:
        monkeypatch.delenv(spec.env_var, raising=False)
    NC.clear_loaded()


def _calibrated_cnn14():
    """A random tiny Cnn14 whose batch-norm statistics come from one batch of audio (else its ReLUs die)."""
    net = P.Cnn14(**P.TINY)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: the stats of this batch
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(np.concatenate([_split().clips.audio, np.random.default_rng(5).standard_normal((4, 2 * SR)).astype(np.float32) * 0.3])))
    return net.eval()


def _tiny_clap_arch() -> dict:
    from bench.networks import clap as C

    cfg = C.tiny_config()
    keep_t = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
    keep_a = ("patch_embeds_hidden_size", "depths", "num_attention_heads", "hidden_size", "window_size", "num_hidden_layers",
              "enable_fusion")
    return {"text_config": {k: getattr(cfg.text_config, k) for k in keep_t},
            "audio_config": {k: getattr(cfg.audio_config, k) for k in keep_a}, "projection_dim": cfg.projection_dim,
            "tokenizer": "bytes"}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """Random tiny weights as local catalogue entries (PANNs with a numpy 'sampler', a LAION-style CLAP .pt)."""
    pytest.importorskip("transformers")
    import hashlib
    import json

    from bench.networks import clap as C

    folder = tmp_path_factory.mktemp("weights")
    (folder / "tiny").mkdir()
    torch.manual_seed(0)
    torch.save({"iteration": 1, "model": _calibrated_cnn14().state_dict(), "sampler": {"indexes": np.arange(3)}},
               folder / "tiny" / "cnn14.pth")
    vggish = V.VGGish(**V.TINY)
    for m in vggish.modules():  # He initialisation keeps the signal's scale through the ReLUs
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(vggish.state_dict(), folder / "tiny" / "vggish.pth")
    torch.save({"epoch": 1, "state_dict": C.hf_to_laion(C.build_model(C.tiny_config()).state_dict())}, folder / "tiny" / "clap.pt")
    entries = []
    for name, file, network, arch in (("tiny-panns", "cnn14.pth", "panns", P.TINY), ("tiny-vggish", "vggish.pth", "vggish", V.TINY),
                                      ("tiny-clap", "clap.pt", "clap", _tiny_clap_arch())):
        digest = hashlib.sha256((folder / "tiny" / file).read_bytes()).hexdigest()
        entries.append({"name": name, "file": f"tiny/{file}", "sha256": digest, "network": network,
                        "arch": json.loads(json.dumps(arch)), "description": f"random tiny {network} for tests"})
    (folder / "catalogue.json").write_text(json.dumps({"format": 1, "entries": entries}))
    return folder


@pytest.fixture
def tiny_weights(tiny_files, no_weights, monkeypatch):
    monkeypatch.setenv("BENCH_WEIGHTS", str(tiny_files))
    for env, name in TINY_ENTRIES.items():
        monkeypatch.setenv(env, name)
    yield tiny_files
    NC.clear_loaded()


def test_registry_points_at_the_perceptual_entries():
    for name in ("fd", "fad", "kl", "clap"):
        assert METRICS.get(name).evaluate.__name__ == f"evaluate_{name}"


def test_unavailable_without_weights(no_weights):
    split = _split()
    ctx = _ctx(split.audio, split)
    expected = {"fd": "FD needs PANNs Cnn14, 16 kHz", "fad": "FAD needs VGGish", "kl": "KL needs PANNs",
                "kl:sigmoid": "KL needs PANNs", "clap": "CLAP needs LAION CLAP", "clap:ident": "CLAP needs LAION CLAP"}
    got = {}
    for name in ("fd", "fad", "kl", "clap"):
        got.update(_evaluate(name, ctx))
    assert set(got) == set(expected)
    for name in ("fd", "fad", "kl", "clap"):  # the keys a family declares are the keys it returns
        assert set(METRICS.get(name).members or (name,)) == {k for k in got if k.split(":")[0] == name}
    for key, start in expected.items():
        res = got[key]
        assert res.status == "unavailable" and res.value is None and res.reason.startswith(start)
        assert "$BENCH_WEIGHTS" in res.reason and "bench weights ls" in res.reason and "\n" not in res.reason
    assert "Cnn14_16k_mAP=0.438.pth" in got["fd"].reason and "vggish-10086976.pth" in got["fad"].reason
    assert "630k-audioset-best.pt" in got["clap"].reason and "BENCH_CLAP_WEIGHTS=clap-htsat-unfused" in got["clap"].reason


def test_clap_without_transformers_is_unavailable(no_weights, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    res = _evaluate("clap", _ctx(_split().audio, _split()))["clap"]
    assert res.status == "unavailable" and "pip install 'transformers" in res.reason


def test_numbers_with_random_weights(tiny_weights):
    split = _split()
    same = {}
    for name in ("fd", "fad", "kl", "clap"):
        same.update(_evaluate(name, _ctx(split.audio, split)))
    assert all(r.status == "ok" for r in same.values())
    assert abs(same["fd"].value) < 1e-6 and abs(same["fad"].value) < 1e-6
    assert abs(same["kl"].value) < 1e-4 and same["clap"].value == pytest.approx(1.0, abs=1e-5)
    assert same["kl"].per_sample.shape == (10,) and same["clap"].per_sample.shape == (10,)
    assert same["fd"].extra["weights"] == "tiny-panns" and same["fd"].extra["weights_verified"] is True
    assert same["fd"].extra["weights_origin"] == "local" and same["clap"].extra["weights"] == "tiny-clap"
    # each stimulus is heard twice: its other sample ties with it (a failure), the 8 others lose
    assert same["clap:ident"].value == pytest.approx(8 / 9) and same["clap:ident"].per_sample.shape == (10,)
    assert same["clap:ident"].extra["chance"] == 0.5 and same["clap:ident"].extra["weights"] == "tiny-clap"
    assert "fad_inf" in same["fd"].extra and same["fd"].extra["n_reference"] == 10
    assert same["fad"].extra["n_reference"] == 20  # two 0.96-s patches per 2-s clip
    assert same["kl"].extra["probabilities"] == "softmax" and same["kl:sigmoid"].extra["probabilities"] == "sigmoid"

    noise = (np.random.default_rng(1).standard_normal((10, 2 * SR)) * 0.3).astype(np.float32)
    other = {}
    ctx = _ctx(noise, split)
    for name in ("fd", "fad", "kl", "clap"):
        other.update(_evaluate(name, ctx))
    assert other["fd"].value > 1e-2 and other["fad"].value > 1e-2
    assert other["kl"].value > 1e-4 and other["clap"].value < 1.0 - 1e-4
    assert np.isfinite(other["kl:sigmoid"].value)
    json = other["kl"].to_json()
    assert json["status"] == "ok" and len(json["per_sample"]) == 10


def test_a_real_mismatch_is_not_hidden(tiny_files, no_weights, monkeypatch, tmp_path):
    import shutil

    split = _split()
    wdir = tmp_path / "w"
    shutil.copytree(tiny_files, wdir)
    monkeypatch.setenv("BENCH_WEIGHTS", str(wdir))
    shutil.copy(wdir / "tiny" / "cnn14.pth", wdir / "Cnn14_16k_mAP=0.438.pth")  # a small file under the real name
    with pytest.raises(BenchError, match="the catalogue expects e2ee543a"):
        _evaluate("fd", _ctx(split.audio, split))
    monkeypatch.setenv("BENCH_VGGISH_WEIGHTS", "tiny-vggish")  # choosing one entry leaves the others checked
    with pytest.raises(BenchError, match="the catalogue expects e2ee543a"):
        _evaluate("kl", _ctx(split.audio, split))
    with open(wdir / "tiny" / "vggish.pth", "ab") as fh:
        fh.write(b"\0")  # a local entry's file that changed
    with pytest.raises(BenchError, match="tiny-vggish: .* the local catalogue expects"):
        _evaluate("fad", _ctx(split.audio, split))


def test_simulated_data_uses_sim_entries_and_real_data_never_does(tiny_files, no_weights, monkeypatch, tmp_path):
    import shutil

    from bench.networks import simtrain

    split = _split()
    split.info["simulated"] = True
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "cached")  # use what is trained, train nothing
    res = _evaluate("fd", _ctx(split.audio, split))["fd"]
    assert res.status == "unavailable" and "needs sim-panns" in res.reason and "bench weights train-sim" in res.reason

    wdir = tmp_path / "w"
    shutil.copytree(tiny_files, wdir)
    monkeypatch.setenv("BENCH_WEIGHTS", str(wdir))
    tiny = next(s for s in W.local_entries() if s.name == "tiny-panns")
    sim = {"sim_version": simtrain._sim_version(), "config": simtrain.config_key("panns"), "seed": 0, "trainer": "panns"}
    W.add_local_entries([{"name": "sim-panns", "file": tiny.file, "sha256": tiny.sha256, "network": "panns",
                          "arch": tiny.arch, "description": "stands in for a trained one", "sim": sim}])
    res = _evaluate("fd", _ctx(split.audio, split))["fd"]
    assert res.status == "ok" and res.extra["weights"] == "sim-panns" and res.extra["weights_origin"] == "sim-pretrained"

    split.info["simulated"] = False  # real data: the published file or nothing, never the simulator's
    res = _evaluate("fd", _ctx(split.audio, split))["fd"]
    assert res.status == "unavailable" and "Cnn14_16k_mAP=0.438.pth" in res.reason

    split.info["simulated"] = True
    W.add_local_entries([{"name": "sim-panns", "file": tiny.file, "sha256": tiny.sha256, "network": "panns",
                          "arch": tiny.arch, "description": "old", "sim": dict(sim, sim_version="0")}])
    res = _evaluate("fd", _ctx(split.audio, split))["fd"]  # trained for another simulator version: not used
    assert res.status == "unavailable" and "another simulator version" in res.reason


def test_reference_features_are_cached_per_clip_set(tiny_weights, monkeypatch, tmp_path):
    calls = []
    real = E.embed_audio

    def counting(net, audio, *a, **k):
        calls.append((net.kind, len(audio)))
        return real(net, audio, *a, **k)

    monkeypatch.setattr(E, "embed_audio", counting)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    split = _split()
    first = _evaluate("fd", _ctx(split.audio, split))["fd"]
    assert calls == [("panns", 5), ("panns", 10)]  # 5 unique stimuli, 10 reconstructions
    files = list((tmp_path / "data" / "features" / "tinyds" / "v1").rglob("clips-*.npz"))
    assert len(files) == 1 and files[0].parent.name.startswith("panns-")
    calls.clear()
    second = _evaluate("kl", _ctx(split.audio * 0.5, split))  # another method, same test clips
    assert calls == [("panns", 10)] and second["kl"].status == "ok"
    calls.clear()
    assert _evaluate("fd", _ctx(split.audio, split))["fd"].value == pytest.approx(first.value, abs=1e-9)
    assert calls == [("panns", 10)]
    # Same dataset, version and clip indices but other audio (re-prepared clips): the references are recomputed.
    calls.clear()
    changed = _split()
    changed.clips.audio[:] = changed.clips.audio[::-1]
    assert _evaluate("fd", _ctx(split.audio, changed))["fd"].status == "ok"
    assert calls == [("panns", 5), ("panns", 10)]  # the stale cache would have been read: [("panns", 10)]


def test_record_features_are_kept_beside_the_record(tiny_weights, monkeypatch, tmp_path):
    calls = []
    real = E.embed_audio
    monkeypatch.setattr(E, "embed_audio", lambda net, audio, *a, **k: calls.append(net.kind) or real(net, audio, *a, **k))
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    split = _split()
    emb = tmp_path / "runs" / "sub-S1_seed-0_abc.emb.npz"
    assert E.record_embeddings_path(tmp_path / "runs" / "sub-S1_seed-0_abc.json") == emb
    audio = split.audio * 0.7
    a = {}
    for name in ("fd", "kl", "fad"):
        a.update(_evaluate(name, _ctx(audio, split, embeddings_path=emb)))
    assert sorted(calls) == sorted(["panns", "panns", "vggish", "vggish"])  # FD and KL share one PANNs pass
    with np.load(emb) as z:
        assert {"panns__embedding", "panns__logits", "panns__key", "vggish__patches", "vggish__n_patches", "vggish__audio_sha256"} <= set(z.files)
    calls.clear()
    b = {}
    for name in ("fd", "kl", "fad"):  # rescoring: nothing is recomputed
        b.update(_evaluate(name, _ctx(audio, split, embeddings_path=emb)))
    assert calls == [] and all(a[k].value == b[k].value for k in a)
    _evaluate("fd", _ctx(audio * 0.5, split, embeddings_path=emb))  # changed audio: recomputed, not reused
    assert calls == ["panns"]


def test_frechet_in_span_is_exact():
    from metrics.frechet import fad_inf, frechet_distance
    from metrics.perceptual import frechet_in_span

    rng = np.random.default_rng(3)
    a = rng.standard_normal((12, 60)) + 0.5
    b = rng.standard_normal((15, 60)) * 1.3
    pa, pb = frechet_in_span(a, b)
    assert pa.shape == (12, 27)
    assert frechet_distance(pa, pb) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert fad_inf(pa, pb, min_size=5, subsample_ref=True)["fad_inf"] == pytest.approx(
        fad_inf(a, b, min_size=5, subsample_ref=True)["fad_inf"], rel=1e-8)
    big_a, big_b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
    assert frechet_in_span(big_a, big_b)[0] is not None and frechet_in_span(big_a, big_b)[0].shape == (40, 8)


def test_clap_entry_can_be_chosen(no_weights, monkeypatch):
    monkeypatch.setenv("BENCH_CLAP_WEIGHTS", "clap-htsat-unfused")
    assert NC.weights_name("clap") == "clap-htsat-unfused"
    res = _evaluate("clap", _ctx(_split().audio, _split()))["clap"]
    assert "laion/clap-htsat-unfused folder at $BENCH_WEIGHTS/clap-htsat-unfused" in res.reason
    monkeypatch.setenv("BENCH_CLAP_WEIGHTS", "vggish")
    with pytest.raises(BenchError, match="is a vggish entry, not LAION CLAP"):
        NC.weights_name("clap")


@pytest.mark.weights
def test_real_weights_score_a_split():
    import os

    if not os.environ.get("BENCH_WEIGHTS") or any(W.find(n) is None for n in NAMES):
        pytest.skip("set BENCH_WEIGHTS to a folder with the real PANNs, VGGish and CLAP checkpoints")
    NC.clear_loaded()
    split = _split(n_clips=10)
    out = {}
    for name in ("fd", "fad", "kl", "clap"):
        out.update(_evaluate(name, _ctx(split.audio, split)))
    assert all(r.status == "ok" for r in out.values())
    assert abs(out["fd"].value) < 1e-3 and out["clap"].value == pytest.approx(1.0, abs=1e-4)
    assert out["fd"].extra["weights_verified"] is True

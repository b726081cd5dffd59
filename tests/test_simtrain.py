"""Networks trained on the simulator: the trainer registry and its cache, determinism, and that FD, FAD, KL and CLAP
computed with them are numbers that tell simulated audio apart (tests with the real trainers are slow: they train
the full set once per session, as `bench weights train-sim` does)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bench.errors import BenchError, UnavailableError
from bench.networks import cache as NC
from bench.networks import simtrain as S
from bench.networks import weights as W


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv("BENCH_WEIGHTS", str(folder))
    NC.clear_loaded()
    yield folder
    NC.clear_loaded()


@pytest.fixture
def fake_trainer(monkeypatch):
    """A registered trainer writing a random tiny Cnn14 as "sim-fake" (counts its calls)."""
    from bench.networks.panns import TINY, Cnn14

    calls = []

    def train(out_dir, seed, device):
        calls.append(seed)
        torch.manual_seed(seed)
        S._save(Cnn14(**TINY), out_dir / "fake.safetensors", {})
        return {"sim-fake": {"file": "fake.safetensors", "network": "panns", "arch": dict(TINY, channels=list(TINY["channels"])),
                             "description": "a fake"}}

    monkeypatch.setattr(S, "TRAINERS", dict(S.TRAINERS))
    monkeypatch.setattr(S, "_ENTRIES", dict(S._ENTRIES))
    monkeypatch.setattr(S, "_CONFIG", dict(S._CONFIG))
    monkeypatch.setattr(S, "_NEEDS", dict(S._NEEDS))
    monkeypatch.setattr(S, "_SECONDS", dict(S._SECONDS))
    S.register("fake", train, entries=("sim-fake",), config={"size": "tiny"})
    return calls


def test_registry_trains_once_and_registers_entries(weights_folder, fake_trainer):
    out = S.train_sim(["fake"], seed=3)
    assert fake_trainer == [3] and out["sim-fake"]["trained"]
    spec = W.get_spec("sim-fake")
    assert spec.origin == "sim-pretrained" and spec.network == "panns" and spec.sim["seed"] == 3
    assert spec.sim["sim_version"] == S._sim_version() and spec.sim["config"] == S.config_key("fake")
    path = W.local_dir() / spec.file
    assert path.parent == S.output_dir("fake", 3) and spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not S.train_sim(["fake"], seed=3)["sim-fake"]["trained"] and fake_trainer == [3]  # cached
    assert S.ensure_entry("sim-fake", "FD").name == "sim-fake" and fake_trainer == [3]
    S.train_sim(["fake"], seed=3, force=True)
    assert fake_trainer == [3, 3]
    with pytest.raises(BenchError, match="unknown simulator trainer"):
        S.train_sim(["nope"])


def test_stale_or_corrupt_checkpoints_are_never_used(weights_folder, fake_trainer, monkeypatch):
    S.train_sim(["fake"], seed=0)
    path = W.local_dir() / W.get_spec("sim-fake").file
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BenchError, match=r"sim-fake: .* the file is damaged; retrain it with `bench weights train-sim --force`"):
        S.ensure_entry("sim-fake", "FD")
    S.train_sim(["fake"], seed=0, force=True)
    monkeypatch.setattr(S, "_sim_version", lambda: "999")  # the simulator changed
    with pytest.raises(UnavailableError, match="trained for another simulator version or config"):
        S.ensure_entry("sim-fake", "FD", train=False)
    spec = S.ensure_entry("sim-fake", "FD", train=True)  # retrained for the new version
    assert spec.sim["sim_version"] == "999" and len(fake_trainer) == 3
    assert "-v999-" in spec.file


def test_a_trainer_must_write_what_it_declares(weights_folder, fake_trainer):
    S.register("liar", lambda out, seed, device: {}, entries=("sim-liar",), config={})
    with pytest.raises(BenchError, match="trainer liar wrote , expected sim-liar"):
        S.train_sim(["liar"])


def _fake_net_trainer(entry: str, check=None):
    """A trainer writing a random tiny Cnn14 as ``entry`` (after ``check()``, which runs where the trainer runs)."""
    from bench.networks.panns import TINY, Cnn14

    def train(out_dir, seed, device):
        if check is not None:
            check()
        torch.manual_seed(seed)
        S._save(Cnn14(**TINY), out_dir / f"{entry}.safetensors", {})
        return {entry: {"file": f"{entry}.safetensors", "network": "panns", "arch": dict(TINY, channels=list(TINY["channels"])),
                        "description": "a fake"}}

    return train


def test_needs_train_first_and_must_be_registered(weights_folder, fake_trainer):
    def needs_fake():  # in the worker process: the parent registered sim-fake before starting it
        assert S.ensure_entry("sim-fake", "test", train=False).name == "sim-fake"

    S.register("after", _fake_net_trainer("sim-after", needs_fake), entries=("sim-after",), config={}, needs=("fake",))
    S.register("other", _fake_net_trainer("sim-other"), entries=("sim-other",), config={})
    out = S.train_sim(["after", "other"], seed=0, jobs=2)  # fake is not named: trained first as a need
    assert set(out) == {"sim-fake", "sim-after", "sim-other"} and all(r["trained"] for r in out.values())
    assert fake_trainer == []  # the trainers ran in worker processes, not here
    serial = {e: r["sha256"] for e, r in S.train_sim(["after", "other"], seed=0, force=True).items()}
    assert serial == {e: out[e]["sha256"] for e in ("sim-after", "sim-other")}  # forced: named ones only; same bytes
    assert fake_trainer == []  # sim-fake was cached
    with pytest.raises(BenchError, match="trainer late needs nope, which is not registered"):
        S.register("late", _fake_net_trainer("sim-late"), entries=("sim-late",), config={}, needs=("nope",))
    with pytest.raises(BenchError, match="jobs=0"):
        S.train_sim(["fake"], jobs=0)


def test_processes_sharing_a_weights_folder_train_a_network_once(weights_folder, fake_trainer, tmp_path):
    import multiprocessing
    import time

    trained, said = tmp_path / "trained", tmp_path / "said"

    def slow():  # long enough for the second process to arrive while the first trains
        with open(trained, "a") as fh:
            fh.write("x")
        time.sleep(2.0)

    def log(line):
        with open(said, "a") as fh:
            fh.write(line + "\n")

    S.register("slow", _fake_net_trainer("sim-slow", slow), entries=("sim-slow",), config={})
    assert S.pending(["slow", "fake"]) == ["fake", "slow"]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=S.train_sim, args=(["slow"],), kwargs={"log": log}) for _ in range(2)]
    procs[0].start()
    while not trained.exists():  # the first holds the lock and trains
        time.sleep(0.01)
    procs[1].start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert trained.read_text() == "x"  # the second waited for the lock, then found it cached
    assert said.read_text().count("waiting for another process training simulator networks") == 1
    assert S.pending(["slow"]) == [] and S.ensure_entry("sim-slow", "test", train=False).name == "sim-slow"


def test_parallel_start_order_follows_the_longest_chain():
    # AudioMAE -> AudioLDM2 is most of train-sim's time: both go first, so the UNet starts as soon as AudioMAE ends;
    # then the longest first, so the short ones fill the other core
    assert S.start_order(list(S.TRAINERS)) == ["audiomae", "audioldm2", "clap", "panns", "vggish"]
    assert S.start_order(["vggish", "panns", "clap"]) == ["clap", "panns", "vggish"]


def test_a_failing_worker_is_reported_and_leaves_nothing(weights_folder, fake_trainer):
    import os

    def refuse():
        raise BenchError("sim-bad: the clips are wrong; fix them")

    S.register("bad", _fake_net_trainer("sim-bad", refuse), entries=("sim-bad",), config={})
    S.register("dies", _fake_net_trainer("sim-dies", lambda: os._exit(9)), entries=("sim-dies",), config={})
    with pytest.raises(BenchError, match="^sim-bad: the clips are wrong; fix them$"):
        S.train_sim(["fake", "bad"], seed=0, jobs=2)
    with pytest.raises(BenchError, match="trainer dies's worker process ended with exit code 9 before it reported"):
        S.train_sim(["dies", "fake"], seed=1, jobs=2)
    assert {s.name for s in W.local_entries()} <= {"sim-fake"}  # only what finished is registered
    leftovers = [p.name for p in (weights_folder / "sim").iterdir() if not p.name.startswith("fake-")]
    assert leftovers == []  # no half-written folder


def _shrink(monkeypatch):
    """Every built-in trainer at a few clips and one epoch (same code paths, seconds instead of minutes)."""
    for cfg in (S.PANNS_CONFIG, S.VGGISH_CONFIG, S.CLAP_CONFIG, S.AUDIOMAE_CONFIG):
        monkeypatch.setitem(cfg, "n_per_kind", 4)
        monkeypatch.setitem(cfg, "epochs", 1)
    for key, value in {"n_per_kind": 4, "n_used": 4, "vae_epochs": 1, "unet_epochs": 1}.items():
        monkeypatch.setitem(S.LDM_CONFIG, key, value)
    S._WORLD.clear()


ALL_ENTRIES = {"sim-panns", "sim-vggish", "sim-clap", "sim-audiomae", "sim-audioldm2-vae", "sim-audioldm2-unet"}


def test_saved_sim_files_do_not_depend_on_metadata_order(tmp_path):
    """safetensors writes a metadata map in random order per map: _save keeps all metadata under one key."""
    import json

    from safetensors import safe_open

    path = tmp_path / "x.safetensors"
    S._save({"w": torch.ones(2)}, path, {"labels": ["a", "b"], "train_loss": [0.5]})
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert list(meta) == ["bench"] and json.loads(meta["bench"]) == {"labels": ["a", "b"], "train_loss": [0.5]}


@pytest.mark.slow
def test_real_trainers_are_deterministic(tmp_path, monkeypatch):
    """Each built-in trainer, shrunk, twice: byte-identical files, loadable strictly through the catalogue."""
    _shrink(monkeypatch)
    digests = []
    for run in ("a", "b"):
        S._WORLD.clear()
        monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / run))
        out = S.train_sim(seed=0)
        assert set(out) == ALL_ENTRIES
        digests.append({e: r["sha256"] for e, r in out.items()})
    # sim-panns and sim-vggish once differed here with identical tensors: their two metadata keys were written in
    # safetensors' random map order; one key now (simtrain._save), so every file must be byte-identical.
    assert digests[0] == digests[1]
    S._WORLD.clear()
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "parallel"))
    parallel = S.train_sim(seed=0, jobs=2)  # each trainer in a forked process, two at once: the same bytes
    assert {e: r["sha256"] for e, r in parallel.items()} == digests[0]
    NC.clear_loaded()
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "cached")
    for kind in ("panns", "vggish", "clap"):
        net = NC.load_network(kind, simulated=True)
        assert net.origin == "sim-pretrained" and net.weights == f"sim-{kind}"
    mae, spec = S.load_sim_audiomae("test")
    assert spec.name == "sim-audiomae" and mae.config.embed_dim == 32
    parts, names = S.load_sim_ldm("test")
    assert names == {"vae": "sim-audioldm2-vae", "unet": "sim-audioldm2-unet"}
    NC.clear_loaded()


@pytest.mark.slow
def test_tiny_profiles_use_sim_backbones_on_simulated_data(tiny_catalogue, tmp_path, monkeypatch):
    """c2f_decoder and fine_ldm (tiny) on a simulated dataset: sim-pretrained backbones, recorded as such; with
    BENCH_SIM_WEIGHTS=off random-init as before."""
    from bench.datasets import load_split
    from methods import get_method

    _shrink(monkeypatch)
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "auto")  # trains the (shrunk) networks on first use
    NC.clear_loaded()
    train = load_split("tiny-speech", "sim01", "train")
    test = load_split("tiny-speech", "sim01", "test")
    asked, ensure_entry = [], S.ensure_entry
    monkeypatch.setattr(S, "ensure_entry", lambda entry, *a, **kw: asked.append(entry) or ensure_entry(entry, *a, **kw))
    for name in ("c2f_decoder", "fine_ldm"):
        asked.clear()
        method = get_method(name).from_profile("tiny")
        rec = method.fit(train, random_state=0).predict(test)
        assert rec.info["backbone_weights"] == "sim-pretrained", name
        assert set(asked) == set(method.sim_networks(True)), name  # what `bench run` trains up front is what fit loads
    assert {s.name for s in W.local_entries()} == ALL_ENTRIES - {"sim-panns", "sim-vggish"}  # only what the methods use
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "off")
    method = get_method("c2f_decoder").from_profile("tiny")
    rec = method.fit(train, random_state=0).predict(test)
    assert rec.info["backbone_weights"] == "random-init" and method.sim_networks(True) == ()
    NC.clear_loaded()


def test_metrics_declare_the_networks_they_load(weights_folder, monkeypatch):
    """``MetricSpec.networks`` (what `bench run` trains up front) is what scoring simulated audio asks for."""
    from types import SimpleNamespace

    from methods.base import Reconstruction
    from metrics import METRICS, EvalContext

    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "cached")
    asked = []

    def refuse(entry, what, **kw):
        asked.append(entry)
        raise UnavailableError(f"{entry} is not trained in this test")

    monkeypatch.setattr(S, "ensure_entry", refuse)
    audio = np.random.default_rng(0).standard_normal((4, 16_000)).astype(np.float32) * 0.1
    split = _split(audio, ["a", "b", "a", "b"])
    for name in METRICS.names():
        asked.clear()
        ctx = EvalContext(Reconstruction(audio=audio), split, SimpleNamespace(target_features=lambda split: {}))
        METRICS.get(name).evaluate(ctx)
        assert asked == [NC.SIM_WEIGHTS[k] for k in METRICS.get(name).networks], name


# ----------------------------------------------------------------------------------------------
# the full trainers, once per session


@pytest.fixture
def with_sim_weights(sim_weights, monkeypatch):
    monkeypatch.setenv("BENCH_WEIGHTS", str(sim_weights))
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "cached")
    NC.clear_loaded()
    yield sim_weights
    NC.clear_loaded()


def _split(audio, labels, dataset="sim-metric-test"):
    from bench.data import ClipTable, Split

    n = len(audio)
    clips = ClipTable(np.asarray(audio, np.float32), np.array([f"s{i}" for i in range(n)], dtype=object), np.zeros(n),
                      np.asarray(labels, dtype=object))
    split = Split(dataset, "v1", "S1", "test", np.zeros((n, 2), np.float32), np.arange(n), clips)
    split.info["simulated"] = True
    return split


def _score(split, audio) -> dict:
    from methods.base import Reconstruction
    from metrics import METRICS, EvalContext

    ctx = EvalContext(Reconstruction(audio=np.asarray(audio, np.float32)), split, None)
    out = {}
    for name in ("fd", "fad", "kl", "clap"):
        res = METRICS.get(name).evaluate(ctx)
        out.update(res if isinstance(res, dict) else {name: res})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sound", "music", "speech"])
def test_metrics_tell_the_simulator_labels_apart(with_sim_weights, kind):
    """On new clips of one world, every metric is computed with the sim networks, and for the pairwise ones (KL,
    CLAP) a reconstruction that is another clip of the same label scores better than one of another label (neither
    is the stimulus, so this fails if the networks learned nothing about the labels)."""
    from bench.simulate import fresh_clips

    rng = np.random.default_rng(0)
    test = fresh_clips(kind, 32, seed=1234)
    other = fresh_clips(kind, 64, seed=4321)
    split = _split(test["audio"], test["label"])
    same, diff = [], []
    for lab in test["label"]:
        same.append(rng.choice(np.flatnonzero(other["label"] == lab)))
        diff.append(rng.choice(np.flatnonzero(other["label"] != lab)))
    same_label = _score(split, other["audio"][same])
    other_label = _score(split, other["audio"][diff])
    for res in list(same_label.values()) + list(other_label.values()):
        assert res.status == "ok", res.reason
        assert res.extra["weights_origin"] == "sim-pretrained"
    assert same_label["kl"].value < other_label["kl"].value
    assert same_label["clap"].value > other_label["clap"].value


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sound", "music", "speech"])
def test_frechet_distances_tell_the_worlds_apart(with_sim_weights, kind):
    """FD and FAD: other clips of the same world are closer to the stimuli than clips of another world. (It failed for
    music and speech while the reference-feature cache was keyed by split name and clip indices only: these ad-hoc
    splits share both, so the second kind was scored against the first kind's cached references.)"""
    from bench.simulate import fresh_clips

    test = fresh_clips(kind, 32, seed=1234)
    other = fresh_clips(kind, 32, seed=4321)
    split = _split(test["audio"], test["label"])
    world = {"sound": "speech", "music": "sound", "speech": "music"}[kind]
    foreign = fresh_clips(world, 32, seed=99)["audio"]
    length = test["audio"].shape[1]
    foreign = np.tile(foreign, (1, -(-length // foreign.shape[1])))[:, :length]
    own = _score(split, other["audio"])
    far = _score(split, foreign)
    assert own["fd"].value < far["fd"].value and own["fad"].value < far["fad"].value


@pytest.mark.slow
def test_ground_truth_beats_shuffled_stimuli(with_sim_weights):
    """The stimuli themselves score better than the same stimuli shuffled (pairwise metrics; FD and FAD see the same
    set either way, so they are equal up to rounding)."""
    from bench.simulate import fresh_clips

    test = fresh_clips("sound", 24, seed=7)
    split = _split(test["audio"], test["label"])
    truth = _score(split, test["audio"])
    perm = np.random.default_rng(1).permutation(24)
    shuffled = _score(split, test["audio"][perm])
    assert truth["kl"].value < shuffled["kl"].value and truth["clap"].value > shuffled["clap"].value
    assert truth["fd"].value == pytest.approx(0.0, abs=1e-6) and truth["fd"].value <= shuffled["fd"].value + 1e-6

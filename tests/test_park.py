"""Park et al. (methods.park): checkpoint layouts load strictly, the clip-length adaptation, bad input, learning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.networks import melgan as M
from bench.networks import specvqgan as S
from bench.networks import vggishish as V

# Small networks in the real layouts (same keys, smaller widths) for fast tests.
V_ARCH = {"widths": [2, 2, 4, 4, 4], "hidden": 8, "n_classes": 3}
C_ARCH = {"ch": 2, "ch_mult": [1, 1, 1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [53], "resolution": 848,
          "z_channels": 4, "embed_dim": 4, "n_embed": 16, "norm_groups": 1}
T_ARCH = {"vocab_size": 16, "block_size": 126, "n_layer": 1, "n_head": 1, "n_embd": 8, "feat_dim": 20, "grid": [5, 21]}
G_ARCH = {"n_mels": 80, "ngf": 2, "n_residual_layers": 1}


def _save_all(folder, seed=0):
    """Random-init checkpoints in exactly the published layouts, under the catalogue's file names."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vnet = V.build_vggishish(V.VGGishishConfig.from_arch(V_ARCH))
    torch.save({"model": vnet.state_dict(), "epoch": 3, "optimizer": {"lr": 1e-4}}, folder / "vggishish16.pt")
    V.write_mel_stats(folder / "train_means_stds_melspec_10s_22050hz.txt", np.full(80, 0.3), np.full(80, 0.2))
    ccfg, tcfg = S.CodebookConfig.from_arch(C_ARCH), S.TransformerConfig.from_arch(T_ARCH)
    net = S.build_net2net(tcfg, ccfg)
    S.save_lightning(folder / "park_conv5_3_transformer.ckpt", net.state_dict(), epoch=1)
    loss = {"loss.discriminator.main.0.weight": torch.zeros(2, 1, 4, 4)}  # training-only entries of a codebook ckpt
    S.save_lightning(folder / "vggsound_codebook.ckpt", {**net.first_stage_model.state_dict(), **loss})
    torch.save(M.build_melgan(M.MelGanConfig.from_arch(G_ARCH)).state_dict(), folder / "best_netG.pt")
    return folder


def _arch():
    return {"vggishish": V_ARCH, "park-conv5_3-transformer": {**T_ARCH, "codebook": C_ARCH}, "melgan-vggsound": G_ARCH}


# ----------------------------------------------------------------------------------------------
# layouts


def test_published_layouts_key_counts_and_sizes():
    with torch.device("meta"):  # shapes only, no memory
        vnet = V.build_vggishish()
        g = M.build_melgan().state_dict()
        sd = S.build_net2net().state_dict()
    keys = list(vnet.state_dict())
    assert len(keys) == 32 and {k.rsplit(".", 2)[0] for k in keys} == {"features", "classifier"}
    assert sorted({int(k.split(".")[1]) for k in keys if k.startswith("features")}) == list(V.CONV_INDICES)
    assert V.VGGishishConfig().conv5_3_shape() == (512, 5, 21)
    assert len(g) == 126 and sum(v.numel() for v in g.values()) == 4_266_050
    assert {k.rsplit(".", 1)[1] for k in g} == {"bias", "weight_g", "weight_v"}
    prefixes = {k.split(".", 1)[0] for k in sd}
    assert prefixes == {"transformer", "first_stage_model", "first_stage_permuter"}
    attn = sorted({k.rsplit(".", 2)[0] for k in sd if ".attn" in k and k.startswith("first_stage_model") and k.endswith("q.weight")})
    assert attn == ["first_stage_model.decoder.mid.attn_1", "first_stage_model.decoder.up.4.attn.0",
                    "first_stage_model.decoder.up.4.attn.1", "first_stage_model.decoder.up.4.attn.2",
                    "first_stage_model.encoder.down.4.attn.0", "first_stage_model.encoder.down.4.attn.1",
                    "first_stage_model.encoder.mid.attn_1"]
    assert sd["first_stage_model.quantize.embedding.weight"].shape == (1024, 256)
    assert sd["transformer.embedder.weight"].shape == (1024, 2560, 1)
    assert sd["transformer.blocks.23.attn.mask"].shape == (1, 1, 477, 477)
    assert sd["first_stage_permuter.forward_shuffle_idx"].shape == (105,)


def test_real_layouts_load_strictly(tmp_path):
    f = _save_all(tmp_path)
    vnet = V.load_vggishish(f / "vggishish16.pt", V.VGGishishConfig.from_arch(V_ARCH))
    assert vnet.conv5_3(torch.zeros(1, 80, 336)).shape == (1, 4, 5, 21)
    ccfg, tcfg = S.CodebookConfig.from_arch(C_ARCH), S.TransformerConfig.from_arch(T_ARCH)
    net = S.load_transformer(f / "park_conv5_3_transformer.ckpt", tcfg, ccfg)
    assert torch.equal(net.first_stage_permuter.forward_shuffle_idx[:6], torch.tensor([0, 21, 42, 63, 84, 1]))
    vq = S.load_codebook(f / "vggsound_codebook.ckpt", ccfg)
    assert vq.encode(torch.zeros(1, 1, 80, 336)).shape == (1, 5, 21)
    g = M.load_melgan(f / "best_netG.pt", M.MelGanConfig.from_arch(G_ARCH))
    assert g(torch.rand(1, 80, 4)).shape == (1, 1, 1024)


def test_missing_or_misshaped_key_is_named(tmp_path):
    f = _save_all(tmp_path)
    obj = torch.load(f / "vggishish16.pt")
    del obj["model"]["features.28.bias"]
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(BenchError, match=r"missing key.*features\.28\.bias") as e:
        V.load_vggishish(tmp_path / "bad.pt", V.VGGishishConfig.from_arch(V_ARCH))
    assert "bad.pt" in str(e.value) and "\n" not in str(e.value)
    sd = torch.load(f / "best_netG.pt")
    sd["model.1.weight_g"] = torch.zeros(3, 1, 1)
    torch.save(sd, tmp_path / "g.pt")
    with pytest.raises(BenchError, match=r"shape mismatch.*model\.1\.weight_g"):
        M.load_melgan(tmp_path / "g.pt", M.MelGanConfig.from_arch(G_ARCH))
    # upstream's mistake: the whole training dict handed over as a state dict
    torch.save(torch.load(f / "vggishish16.pt")["model"], tmp_path / "bare.pt")
    with pytest.raises(BenchError, match=r"bare\.pt has no 'model' state dict"):
        V.load_vggishish(tmp_path / "bare.pt", V.VGGishishConfig.from_arch(V_ARCH))


def test_transformer_buffers_are_checked(tmp_path):
    f = _save_all(tmp_path)
    ccfg, tcfg = S.CodebookConfig.from_arch(C_ARCH), S.TransformerConfig.from_arch(T_ARCH)
    ck = torch.load(f / "park_conv5_3_transformer.ckpt")
    sd = ck["state_dict"]
    for key in ("transformer.blocks.0.attn.mask", "first_stage_permuter.backward_shuffle_idx"):
        bad = dict(sd)
        bad[key] = torch.ones_like(sd[key]) if "mask" in key else torch.flip(sd[key], [0])
        S.save_lightning(tmp_path / "t.ckpt", bad)
        with pytest.raises(BenchError, match=key.replace(".", r"\.") + " differs"):
            S.load_transformer(tmp_path / "t.ckpt", tcfg, ccfg)
    missing = {k: v for k, v in sd.items() if k != "transformer.blocks.0.attn.mask"}
    S.save_lightning(tmp_path / "m.ckpt", missing)
    with pytest.raises(BenchError, match=r"missing key.*transformer\.blocks\.0\.attn\.mask"):
        S.load_transformer(tmp_path / "m.ckpt", tcfg, ccfg)
    torch.save(sd, tmp_path / "nolightning.ckpt")  # a bare state dict is not the Lightning layout
    with pytest.raises(BenchError, match=r"no Lightning 'state_dict'"):
        S.load_transformer(tmp_path / "nolightning.ckpt", tcfg, ccfg)


# ----------------------------------------------------------------------------------------------
# front end, adaptation, feature preparation


def test_mel_front_end_and_loop_adaptation():
    rng = np.random.default_rng(0)
    a4 = rng.standard_normal((2, 64000)).astype(np.float32) * 0.1
    mel = V.park_mel(a4)
    assert mel.shape == (2, 80, 336) and mel.min() >= 0 and mel.max() <= 1
    assert V.park_mel(a4, crop=None).shape == (2, 80, 345)
    for seconds in (1.5, 2.0):
        clip = rng.standard_normal((3, int(seconds * 16000))).astype(np.float32)
        looped = V.loop_to_window(clip, 16000)
        assert looped.shape == (3, 64000)
        np.testing.assert_array_equal(looped[:, : clip.shape[1]], clip)
        np.testing.assert_array_equal(looped[:, clip.shape[1] : 2 * clip.shape[1]], clip)
    np.testing.assert_array_equal(V.loop_to_window(a4, 16000), a4)
    with pytest.raises(BenchError, match=r"longer than Park et al.'s 4-s window.*clip_seconds"):
        V.loop_to_window(np.zeros((1, 80000), np.float32), 16000)
    vm = V.park_mel_to_vocoder_mel(mel, 64000)
    assert vm.shape == (2, 64, 401) and np.isfinite(vm).all()


def test_condition_preparation_inflates_and_fills():
    from methods.park import prepare_condition

    mean = np.array([1.0, 2.0, 3.0])
    dec = np.array([[2.0, np.nan, 3.0], [1.0, 2.0, np.inf]])
    out, filled = prepare_condition(dec, mean, 4)
    np.testing.assert_allclose(out, [[3.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert filled == 2
    with pytest.raises(BenchError, match=r"all NaN/inf.*alpha"):
        prepare_condition(np.full((2, 3), np.nan), mean, 4)
    tokens = S.conditioning_tokens(np.arange(3 * 5 * 21).reshape(1, 3, 5, 21))
    assert tokens.shape == (1, 15, 21) and tokens[0, 1 * 5 + 2, 7] == 1 * 105 + 2 * 21 + 7  # index c * 5 + f


# ----------------------------------------------------------------------------------------------
# the method with random-init checkpoints (fast) on 2-s and 1.5-s clips


@pytest.fixture
def fake_weights(tmp_path, monkeypatch):
    """The random checkpoints as entries of a local catalogue (their sha256 and small architectures), chosen for
    Park's roles through $BENCH_PARK_ENTRIES: the way a user runs Park with checkpoints of their own."""
    import hashlib

    from bench.networks import weights as W

    folder = _save_all(tmp_path / "w")
    monkeypatch.setenv("BENCH_WEIGHTS", str(folder))
    arch = _arch()
    files = {"vggishish": ("vggishish16.pt", "vggishish"),
             "vggishish-mel-stats": ("train_means_stds_melspec_10s_22050hz.txt", "vggishish-mel-stats"),
             "park-conv5_3-transformer": ("park_conv5_3_transformer.ckpt", "park-conv5_3-transformer"),
             "melgan-vggsound": ("best_netG.pt", "melgan")}
    W.add_local_entries([{"name": f"test-{role}", "file": file, "network": network, "arch": arch.get(role),
                          "sha256": hashlib.sha256((folder / file).read_bytes()).hexdigest(),
                          "description": f"random {role} for tests"} for role, (file, network) in files.items()])
    monkeypatch.setenv("BENCH_PARK_ENTRIES", ",".join(f"{role}=test-{role}" for role in files))
    yield


def _splits(ds_name, seconds=None):
    from bench.datasets import get_dataset

    ds = get_dataset(ds_name)
    train, test = ds.load_split("sim01", "train"), ds.load_split("sim01", "test")
    if seconds is not None:  # a 1.5-s copy (Brain2Music's clip length) of the same dataset
        n = int(seconds * 16000)
        clips = dataclasses.replace(train.clips, audio=np.ascontiguousarray(train.clips.audio[:, :n]))
        train = dataclasses.replace(train, dataset=ds_name + "-1.5s", clips=clips)
        test = dataclasses.replace(test, dataset=ds_name + "-1.5s", clips=clips)
    return train, test


@pytest.mark.parametrize("seconds", [2.0, 1.5])
def test_method_serves_short_clips(tiny_catalogue, fake_weights, seconds):
    from metrics.identification import pairwise_identification
    from methods.park import Park

    train, test = _splits("tiny-speech", None if seconds == 2.0 else seconds)
    n_samples = int(seconds * 16000)
    assert train.clips.audio.shape[1] == n_samples
    params = {"backbone": "pretrained", "vocoder": "griffin-lim", "top_k": 8, "griffin_lim_iters": 2}
    fitted = Park.from_profile("paper", params).fit(train, random_state=1)
    a = fitted.predict(test)
    assert a.audio.shape == (test.n_samples, n_samples) and a.audio.dtype == np.float32 and np.isfinite(a.audio).all()
    if seconds == 2.0:  # same seed, same audio (the sampler draws from a generator seeded by the cell's seed)
        np.testing.assert_array_equal(a.audio, Park.from_profile("paper", params).fit(train, random_state=1).predict(test).audio)
    assert a.features["conv5_3"].shape == (test.n_samples, 4 * 5 * 21)
    assert a.info["adaptation"].startswith(f"{seconds:g}-s clips looped to 4 s")
    assert a.info["n_repetitions"] >= 1
    truth = fitted.target_features(test)["conv5_3"]
    assert truth.shape == a.features["conv5_3"].shape
    assert np.isfinite(pairwise_identification(a.features["conv5_3"], truth)).all()


def test_melgan_vocoder_path(tiny_catalogue, fake_weights):
    from methods.park import Park

    train, test = _splits("tiny-speech")
    r = Park.from_profile("paper", {"top_k": 8}).fit(train).predict(test)
    assert r.info["vocoder"]["name"] == "melgan" and r.mel is None
    assert r.audio.shape == (test.n_samples, 32000) and np.isfinite(r.audio).all()


@pytest.mark.slow
def test_run_cell_records_identification_and_leaderboard_note(tiny_catalogue, fake_weights, tmp_path):
    from bench.leaderboard import build_tables
    from bench.runner import Cell, run_cell

    cell = Cell("park", "tiny-speech", "sim01", 0, "paper", overrides=(("vocoder", "griffin-lim"), ("top_k", 8)))
    out = run_cell(cell, runs=tmp_path / "runs", metrics=["pcc", "ident"])
    assert out.status == "done"
    ident = out.record["metrics"]["ident:conv5_3"]
    assert ident["status"] == "ok" and 0.0 <= ident["value"] <= 1.0 and ident["extra"]["chance"] == 0.5
    assert out.record["method_info"]["adaptation"].startswith("2-s clips looped to 4 s")
    md = next(iter(build_tables([out.record]).values()))
    assert "Park et al. has a reported row only for Brain2Sound (Table 1)" in md


def test_bad_settings_are_one_line_errors(tiny_catalogue, fake_weights, tmp_path, monkeypatch):
    from methods.park import Park

    train, _ = _splits("tiny-speech")
    long = dataclasses.replace(train, dataset="long", clips=dataclasses.replace(
        train.clips, audio=np.tile(train.clips.audio, (1, 3))))  # 6-s clips
    with pytest.raises(BenchError, match=r"6-s clips, longer than Park et al.'s 4-s window") as e:
        Park.from_profile("paper").fit(long)
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match=r"vocoder 'melgan' needs backbone=pretrained"):
        Park.from_profile("tiny", {"vocoder": "melgan"}).fit(train)
    with pytest.raises(BenchError, match=r"'n_repetitions' must be 'auto' or an int"):
        Park.from_profile("paper", {"n_repetitions": 0}).fit(train)
    # a checkpoint in the wrong layout is named with its file
    import hashlib

    from bench.networks import weights as W

    bad = tmp_path / "w" / "park_conv5_3_transformer.ckpt"
    with pytest.raises(BenchError, match=r"park_conv5_3_transformer\.ckpt has sha256 .* the local catalogue expects"):
        bad.write_bytes((tmp_path / "w" / "best_netG.pt").read_bytes())
        Park.from_profile("paper").fit(train)
    entry = next(e for e in W.local_entries() if e.name == "test-park-conv5_3-transformer")
    W.add_local_entries([{"name": entry.name, "file": bad.name, "network": "park-conv5_3-transformer", "arch": entry.arch,
                          "sha256": hashlib.sha256(bad.read_bytes()).hexdigest(), "description": "wrong layout"}])
    with pytest.raises(BenchError, match=r"park_conv5_3_transformer\.ckpt has no Lightning 'state_dict'"):
        Park.from_profile("paper").fit(train)


def test_paper_profile_without_weights_names_the_file(tiny_catalogue):
    from methods.park import Park

    train, _ = _splits("tiny-speech")
    with pytest.raises(BenchError, match=r"vggishish16\.pt"):
        Park.from_profile("paper").fit(train)


# ----------------------------------------------------------------------------------------------
# learning on the simulator (tiny profile: simulator-trained networks)


_PARK_SIM_SOUND: dict = {}


@pytest.fixture
def park_sim_sound(tmp_path):
    """Park's tiny cell and the chance cell on sim-sound sim01, run once (inside the first test's isolated environment)."""
    from bench.runner import Cell, run_cell

    if "park" not in _PARK_SIM_SOUND:
        for method in ("park", "chance"):
            out = run_cell(Cell(method, "sim-sound", "sim01", 0, "tiny"), runs=tmp_path / "runs", metrics=["pcc", "ident"])
            assert out.status == "done"
            _PARK_SIM_SOUND[method] = out
    return _PARK_SIM_SOUND


@pytest.mark.slow
def test_park_identifies_stimuli_on_sim_sound(park_sim_sound):
    """Its decoded conv5_3 features identify the stimulus (0.70-0.79 on the committed tables, 0.67-0.82 before)."""
    ident = park_sim_sound["park"].record["metrics"]["ident:conv5_3"]["value"]
    assert ident > 0.65, ident


@pytest.mark.slow
def test_park_pcc_beats_the_chance_row_on_sim_sound(park_sim_sound):
    """The learning verdict (bench.learning): the paired bootstrap CI of PCC(park) - PCC(chance) lies above 0. With the
    sim GPT trained on clips of all three kinds it is +0.18 (CI [+0.12, +0.25]) on AuthenticAMD-AVX512; with sound
    clips only it was +0.005 (CI [-0.05, +0.05])."""
    from bench.learning import verdicts

    found = [v for v in verdicts([park_sim_sound[m].record for m in ("park", "chance")]) if v.check == "pcc"]
    assert len(found) == 1 and found[0].passed, found

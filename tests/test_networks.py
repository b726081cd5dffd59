"""The network definitions: key layouts of the published checkpoints, strict loading, front ends, CLAP conversion.

Full-size networks are built once each with random weights and run on one short clip; everything else uses the
tiny settings. Opt-in checks with the real files are marked ``weights``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from bench.errors import BenchError, UnavailableError
from bench.networks.checkpoints import manifest, strict_load
from bench.networks import panns as P
from bench.networks import vggish as V

RNG = np.random.default_rng(0)


def _noise(n, samples, scale=0.1, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, samples)) * scale).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# PANNs Cnn14


def expected_cnn14_layout(channels=(64, 128, 256, 512, 1024, 2048), n_fft=512, mels=64, classes=527):
    """The published Cnn14_16k key layout, written out from its description (not from the class)."""
    out = {
        "spectrogram_extractor.stft.conv_real.weight": (n_fft // 2 + 1, 1, n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (n_fft // 2 + 1, 1, n_fft),
        "logmel_extractor.melW": (n_fft // 2 + 1, mels),
    }
    bn = lambda p, c: {f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,), f"{p}.running_var": (c,), f"{p}.num_batches_tracked": ()}  # noqa: E731
    out.update(bn("bn0", mels))
    cin = 1
    for i, c in enumerate(channels, 1):
        out[f"conv_block{i}.conv1.weight"] = (c, cin, 3, 3)
        out[f"conv_block{i}.conv2.weight"] = (c, c, 3, 3)
        out.update(bn(f"conv_block{i}.bn1", c))
        out.update(bn(f"conv_block{i}.bn2", c))
        cin = c
    out.update({"fc1.weight": (cin, cin), "fc1.bias": (cin,), "fc_audioset.weight": (classes, cin), "fc_audioset.bias": (classes,)})
    return out


def test_cnn14_full_size_layout_and_forward():
    net = P.Cnn14()
    m = manifest(net)
    json.dumps(m)  # JSON-able
    assert dict(m) == expected_cnn14_layout()
    assert ("fc_audioset.weight", (527, 2048)) in m and ("spectrogram_extractor.stft.conv_real.weight", (257, 1, 512)) in m
    with torch.inference_mode():
        out = net(torch.from_numpy(_noise(1, 32000)))
    assert out["embedding"].shape == (1, 2048) and out["logits"].shape == (1, 527)
    assert torch.all(out["embedding"] >= 0) and torch.isfinite(out["logits"]).all()


def test_cnn14_log_mel_matches_torch_stft():
    from bench.audio import mel_filterbank, stft_magnitude

    x = _noise(2, 16000)
    net = P.Cnn14(**P.TINY)
    got = net.logmel(torch.from_numpy(x)).numpy()[:, 0]
    power = stft_magnitude(x, 512, 160, 512).astype(np.float64) ** 2  # (n, 257, T), periodic Hann, reflect
    ref = 10 * np.log10(np.maximum(mel_filterbank(16000, 512, 64, 50, 8000) @ power, 1e-10)).transpose(0, 2, 1)
    assert got.shape == (2, 101, 64)
    np.testing.assert_allclose(got, ref, atol=2e-3)


def _save_panns(path, net):
    torch.save({"iteration": 7, "model": net.state_dict(), "sampler": {"indexes": np.arange(5), "rng": np.random.RandomState(0).get_state()[1][:4]}}, path)


def test_cnn14_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = P.Cnn14(**P.TINY)
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    _save_panns(path, net)
    loaded = P.load_cnn14(path, arch=P.TINY)
    x = torch.from_numpy(_noise(2, 32000))
    with torch.inference_mode():
        a, b = net(x), loaded(x)
    torch.testing.assert_close(a["embedding"], b["embedding"])
    torch.testing.assert_close(a["logits"], b["logits"])
    with pytest.raises(BenchError, match="expected a dict with a 'model' state dict"):
        P.checkpoint_state_dict({"iteration": 1})


def test_strict_load_names_missing_unexpected_and_mismatched():
    net = P.Cnn14(**P.TINY)
    sd = dict(net.state_dict())
    del sd["fc1.bias"]
    with pytest.raises(BenchError, match=r"1 missing key \(fc1\.bias\)"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME, "x.pth")
    sd = dict(net.state_dict())
    sd["fc_audioset.weight"] = torch.zeros(10, 16)
    with pytest.raises(BenchError, match=r"1 shape mismatch \(fc_audioset\.weight: file \(10, 16\) vs network \(11, 16\)\)"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME)
    sd = dict(net.state_dict(), extra_head=torch.zeros(1))
    with pytest.raises(BenchError, match=r"1 unexpected key \(extra_head\)"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME)
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith("conv_block")}
    with pytest.raises(BenchError, match=r"\d+ missing keys \(conv_block1\.conv1\.weight, .*\.\.\. \(\d+ more\)\)"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME)
    sd = dict(net.state_dict())
    sd["fc1.bias"] = np.zeros(16)  # not a tensor (shape matches)
    with pytest.raises(BenchError, match="is a ndarray, not a tensor"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME)


def test_the_32k_front_end_is_refused():
    sd = P.Cnn14(**dict(P.TINY, sample_rate=32000, window_size=1024, hop_size=320, fmax=14000)).state_dict()
    with pytest.raises(BenchError, match=r"3 shape mismatches \(spectrogram_extractor\.stft\.conv_real\.weight: file \(513, 1, 1024\) vs network \(257, 1, 512\)"):
        strict_load(P.Cnn14(**P.TINY), sd, P.NAME)


def test_derived_buffers_may_be_absent():
    net = P.Cnn14(**P.TINY)
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    strict_load(P.Cnn14(**P.TINY), sd, P.NAME)


def test_cnn14_rejects_bad_input():
    net = P.Cnn14(**P.TINY)
    with pytest.raises(BenchError, match=r"expects waveforms \(B, samples\)"):
        net(torch.zeros(3))
    with pytest.raises(BenchError, match="needs more than 256 samples"):
        net(torch.zeros(1, 100))
    with pytest.raises(BenchError, match="needs 6 channel widths"):
        P.Cnn14(channels=(4, 4))


# ----------------------------------------------------------------------------------------------
# VGGish


def expected_vggish_layout():
    chans = [(64, 1), (128, 64), (256, 128), (256, 256), (512, 256), (512, 512)]
    out = {}
    for idx, (co, ci) in zip((0, 3, 6, 8, 11, 13), chans):
        out[f"features.{idx}.weight"] = (co, ci, 3, 3)
        out[f"features.{idx}.bias"] = (co,)
    for idx, (o, i) in zip((0, 2, 4), [(4096, 512 * 4 * 6), (4096, 4096), (128, 4096)]):
        out[f"embeddings.{idx}.weight"] = (o, i)
        out[f"embeddings.{idx}.bias"] = (o,)
    return out


def test_vggish_full_size_layout_and_forward():
    net = V.VGGish()
    m = manifest(net)
    json.dumps(m)
    assert dict(m) == expected_vggish_layout()
    with torch.inference_mode():
        out = net.embed(torch.from_numpy(_noise(1, 16000)))
    assert out.shape == (1, 1, 128)
    assert (out < 0).any()  # no final ReLU


def _vggish_reference_log_mel(x: np.ndarray) -> np.ndarray:
    """vggish_input's log-mel written out with loops, independently of the module."""
    n_frames = 1 + (len(x) - 400) // 160
    window = 0.5 - 0.5 * np.cos(2 * np.pi / 400 * np.arange(400))
    frames = np.stack([x[i * 160 : i * 160 + 400] * window for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames, 512))
    hz = np.linspace(0, 8000, 257)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    w = np.zeros((257, 64))
    for i in range(64):
        lo, c, hi = edges[i : i + 3]
        for j in range(1, 257):
            m = mel(hz[j])
            w[j, i] = max(0.0, min((m - lo) / (c - lo), (hi - m) / (hi - c)))
    return np.log(mag @ w + 0.01)


def test_vggish_front_end():
    x = _noise(1, 64000, seed=3)
    lm = V.log_mel(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(lm, _vggish_reference_log_mel(x[0].astype(np.float64)), rtol=1e-6, atol=1e-6)
    assert lm.shape == (398, 64)
    assert V.examples(torch.from_numpy(x)).shape == (1, 4, 96, 64)
    assert V.examples(torch.zeros(1, 32000)).shape == (1, 2, 96, 64)
    w = V.mel_matrix()
    assert w.shape == (257, 64) and np.all(w[0] == 0)
    with pytest.raises(BenchError, match=r"needs at least 15600 samples"):
        V.examples(torch.zeros(1, 15000))
    with pytest.raises(BenchError, match=r"expects patches \(N, 1, 96, 64\)"):
        V.VGGish(**V.TINY)(torch.zeros(1, 1, 10, 64))


def test_vggish_round_trip_and_errors(tmp_path):
    torch.manual_seed(2)
    net = V.VGGish(**V.TINY)
    path = tmp_path / "vggish-10086976.pth"
    torch.save(net.state_dict(), path)
    loaded = V.load_vggish(path, arch=V.TINY)
    x = torch.from_numpy(_noise(2, 20000))
    torch.testing.assert_close(net.embed(x), loaded.embed(x))
    sd = dict(net.state_dict())
    sd["embeddings.4.weight"] = torch.zeros(9, 16)
    torch.save(sd, path)
    with pytest.raises(BenchError, match=r"VGGish checkpoint .* 1 shape mismatch \(embeddings\.4\.weight: file \(9, 16\) vs network \(8, 16\)\)"):
        V.load_vggish(path, arch=V.TINY)


# ----------------------------------------------------------------------------------------------
# CLAP

transformers = pytest.importorskip("transformers")
from bench.networks import clap as C  # noqa: E402


def test_clap_full_size_layout_conversion_and_forward():
    model = C.build_model()
    m = dict(manifest(model))
    assert m["audio_model.audio_encoder.patch_embed.proj.weight"] == (96, 1, 4, 4)
    assert m["audio_projection.linear2.weight"] == (512, 512)
    assert m["text_model.embeddings.word_embeddings.weight"] == (50265, 768)
    hf = model.state_dict()
    laion = C.hf_to_laion(hf)
    assert laion["module.audio_branch.layers.0.blocks.0.attn.qkv.weight"].shape == (288, 96)
    assert laion["module.audio_projection.0.weight"].shape == (512, 768)
    back = C.laion_to_hf(laion)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in hf.items()}
    cfg = C.config_from_state_dict(back)
    assert list(cfg.audio_config.depths) == [2, 2, 6, 2] and list(cfg.audio_config.num_attention_heads) == [4, 8, 16, 32]
    assert cfg.audio_config.hidden_size == 768 and cfg.text_config.num_attention_heads == 12 and cfg.projection_dim == 512
    strict_load(model, back, C.NAME)  # every key and shape of the converted dict fits the full model
    net = C.ClapNetwork(model)
    emb = net.audio_embeddings(_noise(1, 48000))
    assert emb.shape == (1, 512) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def laion_extras(sd_laion: dict, prefix: str = "module.") -> dict:
    """Entries a real LAION checkpoint has and ClapModel has not (front end, tscam head, transforms, masks)."""
    real, imag = P.stft_kernels(1024)
    extra = {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.from_numpy(real),
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": torch.from_numpy(imag),
        "audio_branch.logmel_extractor.melW": torch.zeros(513, 64),
        "audio_branch.tscam_conv.weight": torch.zeros(527, 16, 2, 3),
        "audio_branch.tscam_conv.bias": torch.zeros(527),
        "audio_branch.head.weight": torch.zeros(527, 527),
        "audio_branch.head.bias": torch.zeros(527),
        "audio_branch.layers.0.blocks.1.attn_mask": torch.zeros(64, 64, 64),
        "text_transform.sequential.0.weight": torch.zeros(16, 16),
        "text_transform.sequential.3.weight": torch.zeros(16, 16),
        "audio_transform.sequential.0.weight": torch.zeros(16, 16),
        "audio_transform.sequential.3.bias": torch.zeros(16),
    }
    return {**sd_laion, **{prefix + k: v for k, v in extra.items()}}


@pytest.mark.parametrize("fused", [False, True])
def test_laion_checkpoint_round_trip(tmp_path, fused):
    torch.manual_seed(3)
    model = C.build_model(C.tiny_config(fused))
    laion = laion_extras(C.hf_to_laion(model.state_dict()))
    assert "module.text_branch.embeddings.position_ids" in laion
    path = tmp_path / "630k-audioset-best.pt"
    torch.save({"epoch": 3, "state_dict": laion, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}, path)
    net = C.load_laion(path)
    assert net.fused is fused
    x = _noise(2, 3 * 48000, seed=4)
    np.testing.assert_allclose(net.audio_embeddings(x), C.ClapNetwork(model).audio_embeddings(x), atol=1e-5)
    ids = torch.randint(3, 90, (2, 9))
    np.testing.assert_allclose(net.text_embeddings_from_ids(ids), C.ClapNetwork(model).text_embeddings_from_ids(ids), atol=1e-5)


def test_laion_conversion_errors(tmp_path):
    model = C.build_model(C.tiny_config())
    laion = C.hf_to_laion(model.state_dict(), module_prefix=False)
    path = tmp_path / "x.pt"
    torch.save({"state_dict": {**laion, "audio_branch.absolute_pos_embed": torch.zeros(1, 4096, 8)}}, path)
    with pytest.raises(BenchError, match=r"1 unexpected key \(audio_model\.audio_encoder\.absolute_pos_embed\)"):
        C.load_laion(path)
    bad = {**laion, "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.zeros(257, 1, 512)}
    with pytest.raises(BenchError, match=r"conv_real\.weight has shape \(257, 1, 512\), expected \(513, 1, 1024\)"):
        C.laion_to_hf(bad)
    missing = {k: v for k, v in laion.items() if "layers.1.blocks.0.attn.proj" not in k}
    torch.save({"state_dict": missing}, path)
    with pytest.raises(BenchError, match=r"2 missing keys \(audio_model\.audio_encoder\.layers\.1\.blocks\.0\.attention\.output\.dense\.weight"):
        C.load_laion(path)
    with pytest.raises(BenchError, match="no HTSAT audio layers"):
        C.config_from_state_dict({})
    torch.save([1, 2], path)
    with pytest.raises(BenchError, match="holds no state dict"):
        C.load_laion(path)


def test_hf_folder_round_trip(tmp_path):
    torch.manual_seed(5)
    model = C.build_model(C.tiny_config())
    model.save_pretrained(tmp_path / "clap")
    transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14000).save_pretrained(tmp_path / "clap")
    net = C.load_clap(tmp_path / "clap")
    assert net.tokenizer_source is None and (net.fmin, net.fmax) == (50.0, 14000.0)
    x = _noise(2, 48000)
    np.testing.assert_allclose(net.audio_embeddings(x), C.ClapNetwork(model).audio_embeddings(x), atol=1e-5)
    with pytest.raises(UnavailableError, match="RoBERTa tokenizer files"):
        net.text_embeddings(["a dog barks"])
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "clap" / "model.safetensors"))
    sd.pop("logit_scale_a")
    save_file(sd, str(tmp_path / "clap" / "model.safetensors"))
    with pytest.raises(BenchError, match=r"1 missing key \(logit_scale_a\)"):
        C.load_clap(tmp_path / "clap")


@pytest.mark.parametrize("fused", [False, True])
def test_clap_front_end_matches_transformers(fused):
    x = _noise(1, 4 * 48000, seed=6)[0]
    fe = transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14000,
                                           truncation="fusion" if fused else "rand_trunc", padding="repeatpad")
    ref = fe(x, sampling_rate=48000, return_tensors="np")["input_features"][0, 0]
    got = C.log_mel(C.repeat_pad(torch.from_numpy(x))[None].double(), fused).numpy()[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_clap_long_clips_average_deterministic_windows():
    torch.manual_seed(7)
    net = C.ClapNetwork(C.build_model(C.tiny_config()))
    assert C.window_starts(25 * 48000) == [0, 360000, 720000]
    n = 11 * 48000
    assert C.window_starts(n) == [0, 48000]
    x = _noise(1, n, seed=8)
    whole = net.audio_embeddings(x)  # a random crop would not reproduce the mean of the fixed windows
    parts = net.audio_embeddings(np.concatenate([x[:, s : s + C.MAX_SAMPLES] for s in C.window_starts(n)]))
    mean = parts.mean(axis=0)
    np.testing.assert_allclose(whole[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert C.repeat_pad(torch.arange(3.0), 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    assert C.quantise_int16(torch.tensor([2.0, -0.50001])).tolist() == pytest.approx([1.0, -16383 / 32767])


# ----------------------------------------------------------------------------------------------
# real weights (opt-in: BENCH_WEIGHTS pointing at the published files)


def _real(name):
    from bench.networks import weights as W

    if not os.environ.get("BENCH_WEIGHTS"):
        pytest.skip("set BENCH_WEIGHTS to the folder with the real checkpoints")
    found = W.find(name)
    if found is None:
        pytest.skip(f"{name} not found")
    W.check(found)
    return found


@pytest.mark.weights
def test_real_panns_loads_strictly():
    found = _real("panns-cnn14-16k")
    net = P.load_cnn14(found.load_path)
    t = np.arange(32000) / 16000
    with torch.inference_mode():
        out = net(torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))[None])
    assert torch.isfinite(out["logits"]).all() and out["embedding"].shape == (1, 2048)


@pytest.mark.weights
def test_real_vggish_loads_strictly():
    found = _real("vggish")
    net = V.load_vggish(found.load_path)
    assert net.embed(torch.from_numpy(_noise(1, 32000))).shape == (1, 2, 128)


@pytest.mark.weights
def test_real_clap_loads_strictly():
    found = _real("clap-630k-audioset")
    net = C.load_clap(found.load_path)
    emb = net.audio_embeddings(_noise(2, 48000))
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

"""Kaldi fbank parity with kaldi-native-fbank, the AudioMAE front end, N_patch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.fbank import (
    AUDIOMAE_MEAN,
    AUDIOMAE_STD,
    FLOAT_EPS,
    audiomae_input,
    kaldi_fbank,
    kaldi_mel_banks,
    n_patch_for_seconds,
    repeat_to_seconds,
)

try:
    import kaldi_native_fbank as knf

    KNF_ERROR = None
except Exception as err:  # pragma: no cover - depends on the environment
    knf = None
    KNF_ERROR = f"kaldi-native-fbank does not import ({type(err).__name__}: {err}); pip install kaldi-native-fbank"

needs_knf = pytest.mark.skipif(knf is None, reason=KNF_ERROR or "")

# kaldi-native-fbank computes in float32: where a band is ~1e-9 below the frame's strongest one
# (pure tones), its rounding noise moves the log by up to ~1e-3. Within 10 nats of the frame's
# maximum the agreement is ~1e-4.
TOL_ALL = 2e-3
TOL_STRONG = 3e-4


def _signals():
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000.0
    return {
        "noise": (0.1 * rng.standard_normal(24000)).astype(np.float32),
        "tone": (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32),
        "int16-scale": (3000.0 * rng.standard_normal(24000)).astype(np.float32),
    }


def _reference(x, bins, window="hanning", snip_edges=True, use_energy=False, htk_compat=True, frame_length_ms=25.0,
               **frame_opts):
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = window
    opts.frame_opts.snip_edges = snip_edges
    opts.frame_opts.frame_length_ms = frame_length_ms
    for key, value in frame_opts.items():
        setattr(opts.frame_opts, key, value)
    opts.mel_opts.num_bins = bins
    opts.use_energy = use_energy
    opts.htk_compat = htk_compat
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, x.tolist())
    fb.input_finished()
    return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])


def _assert_close(ref, ours):
    assert ref.shape == ours.shape
    diff = np.abs(ref - ours)
    assert diff.max() < TOL_ALL, diff.max()
    strong = ref > ref.max(axis=1, keepdims=True) - 10.0
    assert diff[strong].max() < TOL_STRONG, diff[strong].max()


@needs_knf
@pytest.mark.parametrize("bins", [64, 80])
@pytest.mark.parametrize("window", ["hanning", "povey"])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_parity_with_kaldi_native_fbank(bins, window, snip_edges):
    signals = _signals()
    batch = np.stack(list(signals.values()))
    ours = kaldi_fbank(batch, num_mel_bins=bins, window=window, snip_edges=snip_edges).numpy()
    for i, x in enumerate(signals.values()):
        _assert_close(_reference(x, bins, window, snip_edges), ours[i])


@needs_knf
def test_parity_128_bins_and_other_options():
    x = _signals()["noise"]
    # 128 bins need a longer window for kaldi-native-fbank to accept them (see the next test).
    _assert_close(_reference(x, 128, frame_length_ms=50.0), kaldi_fbank(x[None], frame_length_ms=50.0)[0].numpy())
    for htk in (True, False):
        ref = _reference(x, 80, use_energy=True, htk_compat=htk)
        ours = kaldi_fbank(x[None], num_mel_bins=80, use_energy=True, htk_compat=htk)[0].numpy()
        assert ours.shape == (148, 81)
        _assert_close(ref, ours)
    ref = _reference(x, 80, window="blackman", preemph_coeff=0.0, remove_dc_offset=False)
    ours = kaldi_fbank(x[None], num_mel_bins=80, window="blackman", preemphasis=0.0, remove_dc_offset=False)
    _assert_close(ref, ours[0].numpy())
    for n in (100, 401):  # shorter than a window, and one sample over: reflected edges
        ref = _reference(x[:n], 64, window="povey", snip_edges=False)
        _assert_close(ref, kaldi_fbank(x[None, :n], num_mel_bins=64, window="povey", snip_edges=False)[0].numpy())


def test_128_bins_at_25ms_have_one_empty_band():
    # Kaldi's compute-fbank refuses this setting (a triangle with no FFT bin); torchaudio, which
    # AudioMAE uses, gives that band ln(eps) in every frame, and so do we.
    banks = kaldi_mel_banks(128, 512, 16000.0)
    assert banks.shape == (128, 256)
    assert np.flatnonzero(banks.max(axis=1) == 0).tolist() == [3]
    x = _signals()["noise"]
    out = kaldi_fbank(x[None])[0].numpy()
    assert out.shape == (148, 128)
    np.testing.assert_allclose(out[:, 3], math.log(FLOAT_EPS), rtol=0, atol=1e-6)
    assert np.all(out[:, [0, 1, 2, 4]].mean(axis=0) > math.log(FLOAT_EPS) + 3)


def test_mel_banks_kaldi_formula():
    banks = kaldi_mel_banks(23, 512, 16000.0, 20.0, 0.0)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(8000.0)
    delta = (hi - lo) / 24
    # bin 31.25 * i lies in triangle k iff its mel is strictly between the edges
    i = 40
    m = mel(31.25 * i)
    k = int((m - lo) // delta)  # rising side of band k, falling side of band k - 1
    assert banks[k, i] == pytest.approx((m - (lo + k * delta)) / delta, abs=1e-12)
    assert banks[k - 1, i] == pytest.approx(((lo + (k + 1) * delta) - m) / delta, abs=1e-12)
    assert np.count_nonzero(banks[:, i]) == 2


def test_fbank_shapes_device_dtype_and_errors():
    x = torch.randn(2, 16000)
    out = kaldi_fbank(x, num_mel_bins=40)
    assert out.dtype == torch.float32 and out.shape == (2, 98, 40)
    assert kaldi_fbank(np.zeros((1, 399), np.float32)).shape == (1, 0, 128)
    silent = kaldi_fbank(np.zeros((1, 1600), np.float32))
    assert torch.all(silent == math.log(FLOAT_EPS))
    with pytest.raises(BenchError, match=r"\(n, samples\)"):
        kaldi_fbank(np.zeros(1600, np.float32))
    with pytest.raises(BenchError, match="window must be one of"):
        kaldi_fbank(x, window="hann")
    with pytest.raises(BenchError, match="NaN"):
        kaldi_fbank(np.full((1, 1600), np.nan, np.float32))
    with pytest.raises(BenchError, match="high_freq"):
        kaldi_fbank(x, high_freq=9000.0)


def test_dither_uses_the_generator():
    x = torch.zeros(1, 4000)
    a = kaldi_fbank(x, dither=1.0, generator=torch.Generator().manual_seed(3))
    b = kaldi_fbank(x, dither=1.0, generator=torch.Generator().manual_seed(3))
    c = kaldi_fbank(x, dither=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_audiomae_input_pads_normalises_and_cuts():
    rng = np.random.default_rng(1)
    wav = (0.1 * rng.standard_normal((2, 160000))).astype(np.float32) + 0.3  # a DC offset, removed first
    out = audiomae_input(wav)
    assert out.shape == (2, 1024, 128) and out.dtype == torch.float32
    fb = kaldi_fbank(wav - wav.mean(axis=1, keepdims=True), num_mel_bins=128)
    assert fb.shape[1] == 998  # 10 s
    torch.testing.assert_close(out[:, :998], (fb - AUDIOMAE_MEAN) / (2 * AUDIOMAE_STD))
    torch.testing.assert_close(out[:, 998:], torch.full((2, 26, 128), -AUDIOMAE_MEAN / (2 * AUDIOMAE_STD)))
    long = audiomae_input(np.tile(wav[:1], (1, 2)))  # 20 s -> cut
    assert long.shape == (1, 1024, 128)
    assert audiomae_input(wav[:, :16000], target_frames=64).shape == (2, 64, 128)
    at_8k = audiomae_input(wav[:, ::2], sr=8000)
    assert at_8k.shape == (2, 1024, 128)


def test_repeat_to_seconds():
    clip = np.arange(64000, dtype=np.float32)[None].repeat(2, 0)  # 4 s
    out = repeat_to_seconds(clip)
    assert out.shape == (2, 160000)
    np.testing.assert_array_equal(out[:, 64000:128000], clip)
    np.testing.assert_array_equal(out[:, 128000:], clip[:, :32000])
    t = repeat_to_seconds(torch.from_numpy(clip), seconds=1.0)
    assert isinstance(t, torch.Tensor) and t.shape == (2, 16000)
    assert repeat_to_seconds(np.ones((1, 200000), np.float32)).shape == (1, 160000)
    with pytest.raises(BenchError, match="samples > 0"):
        repeat_to_seconds(np.ones((1, 0), np.float32))


def test_n_patch_rule_matches_the_paper():
    assert n_patch_for_seconds(4.0) == 208  # Brain2Sound
    assert n_patch_for_seconds(1.5) == 80  # Brain2Music
    assert n_patch_for_seconds(2.0) == 112  # Brain2Speech
    assert n_patch_for_seconds(10.0) == 512
    assert n_patch_for_seconds(30.0) == 512
    with pytest.raises(BenchError, match="positive"):
        n_patch_for_seconds(0)

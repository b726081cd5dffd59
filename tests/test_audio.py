"""bench.audio: mel filterbank and mels against librosa, Griffin-Lim, resampling, waveform prep."""

from __future__ import annotations

import numpy as np
import pytest

from bench import audio as A
from bench.errors import BenchError

SR = 16_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Small FFTs on a shared 2-core machine run ~10x faster single-threaded.
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tone(seconds: float, n: int = 1, f0: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for i in range(n):
        f = f0 * (1 + 0.25 * i)
        clips.append(sum(0.2 / k * np.sin(2 * np.pi * f * k * t) for k in range(1, 6)))
    return np.asarray(clips, dtype=np.float32)


def _noisy_tone(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (_tone(seconds) + 0.01 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize(
    "sr, n_fft, n_mels, fmin, fmax",
    [(16000, 1024, 64, 0.0, 8000.0), (16000, 512, 64, 50.0, 8000.0), (22050, 2048, 128, 0.0, None), (16000, 1023, 40, 20.0, 7000.0)],
)
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    librosa = pytest.importorskip("librosa")
    mine = A.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert mine.dtype == np.float32 and mine.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-8)


def test_mel_filterbank_rejects_bad_settings_and_warns_on_empty_filters():
    with pytest.raises(BenchError, match="sr must be a positive number"):
        A.mel_filterbank(0, 512, 64, 0.0, 8000.0)
    with pytest.raises(BenchError, match="n_fft must be an integer >= 2"):
        A.mel_filterbank(16000, 512.0, 64, 0.0, 8000.0)
    with pytest.raises(BenchError, match="n_mels must be an integer >= 1"):
        A.mel_filterbank(16000, 512, 0, 0.0, 8000.0)
    with pytest.raises(BenchError, match="0 <= fmin < fmax <= sr/2"):
        A.mel_filterbank(16000, 512, 64, 0.0, 9000.0)
    with pytest.warns(UserWarning, match="mel filters are empty"):
        A.mel_filterbank(16000, 64, 64, 0.0, 8000.0)


@pytest.mark.parametrize("seconds, frames", [(4.0, 401), (1.5, 151), (2.0, 201)])
def test_vocoder_mel_frame_counts(seconds, frames):
    mel = A.vocoder_mel(np.zeros((2, int(seconds * SR)), dtype=np.float32))
    assert mel.shape == (2, 64, frames) and mel.dtype == np.float32
    assert np.allclose(mel, np.log(1e-5))  # silence sits on the floor


def _librosa_mel(y, n_fft, hop, fmin, fmax):
    librosa = pytest.importorskip("librosa")
    spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True, pad_mode="reflect"))
    return librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=64, fmin=fmin, fmax=fmax) @ spec


@pytest.mark.slow
def test_vocoder_mel_matches_librosa():
    y = _noisy_tone(1.0)
    ref = np.log(np.maximum(_librosa_mel(y[0], 1024, 160, 0.0, 8000.0), 1e-5))
    mel = A.vocoder_mel(y)[0]
    assert mel.shape == ref.shape
    np.testing.assert_allclose(mel, ref, atol=2e-3)


def test_eval_mel_range_and_matches_librosa():
    y = _noisy_tone(1.0)
    m = _librosa_mel(y[0], 512, 160, 50.0, 8000.0)
    ref = np.clip((20 * np.log10(np.maximum(m, 1e-5)) - 20 + 100) / 100, 0, 1)
    mel = A.eval_mel(y)
    assert mel.shape == (1, 64, SR // 160 + 1) and mel.dtype == np.float32
    np.testing.assert_allclose(mel[0], ref, atol=1e-4)
    loud = A.eval_mel(np.concatenate([100 * y, np.zeros_like(y)]))
    assert loud.min() >= 0.0 and loud.max() <= 1.0
    assert np.all(loud[1] == 0.0)  # silence clips to 0
    np.testing.assert_allclose(loud[0], A.eval_mel(np.clip(100 * y, -1, 1))[0])  # input clipped to [-1, 1]


def test_stft_magnitude_shapes_and_errors():
    x = np.random.default_rng(1).standard_normal((3, 4000)).astype(np.float32)
    assert A.stft_magnitude(x, 512, 160, 400).shape == (3, 257, 4000 // 160 + 1)
    assert A.stft_magnitude(x, 512, 160, 512, center=False).shape == (3, 257, 1 + (4000 - 512) // 160)
    with pytest.raises(BenchError, match=r"audio must be \(n, samples\), got shape \(4000,\)"):
        A.stft_magnitude(x[0], 512, 160, 512)
    with pytest.raises(BenchError, match="must be a real-valued array"):
        A.stft_magnitude(x.astype(np.complex64), 512, 160, 512)
    with pytest.raises(BenchError, match="NaN or infinite"):
        A.stft_magnitude(np.full((1, 4000), np.nan, np.float32), 512, 160, 512)
    with pytest.raises(BenchError, match="win must be <= n_fft"):
        A.stft_magnitude(x, 512, 160, 1024)
    with pytest.raises(BenchError, match="hop must be an integer >= 1"):
        A.stft_magnitude(x, 512, 0, 512)
    with pytest.raises(BenchError, match="reflect padding needs more than n_fft//2 = 256"):
        A.stft_magnitude(x[:, :200], 512, 160, 512)
    with pytest.raises(BenchError, match="center=False needs at least n_fft = 512"):
        A.stft_magnitude(x[:, :400], 512, 160, 512, center=False)


def test_griffin_lim_is_deterministic_and_inverts_vocoder_mel():
    from metrics.spectral import pcc

    y = _tone(1.5, n=2)
    mel = A.vocoder_mel(y)
    gl = A.GriffinLim(n_iter=16)
    out = gl.mel_to_audio(mel, y.shape[1])
    assert out.shape == y.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, A.GriffinLim(n_iter=16).mel_to_audio(mel, y.shape[1]))
    assert not np.array_equal(out, A.GriffinLim(n_iter=16, seed=1).mel_to_audio(mel, y.shape[1]))
    assert np.all(pcc(A.vocoder_mel(out), mel) > 0.9)
    np.testing.assert_allclose(gl.mel_to_audio(mel[1:], y.shape[1])[0], out[1], atol=1e-5)  # batch-independent
    # natural length is (T - 1) * 160; longer requests are zero-padded, shorter ones cut
    longer = gl.mel_to_audio(mel, y.shape[1] + 500)
    assert longer.shape == (2, y.shape[1] + 500) and np.all(longer[:, y.shape[1] :] == 0)
    np.testing.assert_array_equal(gl.mel_to_audio(mel, 1000), out[:, :1000])
    assert gl.name == "griffin-lim"
    assert gl.config()["n_iter"] == 16 and gl.config()["mel"]["hop"] == 160


def test_griffin_lim_errors():
    mel = np.zeros((1, 64, 20), dtype=np.float32)
    with pytest.raises(BenchError, match=r"log_mel must be \(n, 64, frames\), got shape \(64, 20\)"):
        A.GriffinLim().mel_to_audio(mel[0], 3000)
    with pytest.raises(BenchError, match="too few frames: need at least 5"):
        A.GriffinLim().mel_to_audio(mel[:, :, :4], 3000)
    with pytest.raises(BenchError, match="NaN or infinite"):
        A.GriffinLim().mel_to_audio(np.full_like(mel, np.nan), 3000)
    with pytest.raises(BenchError, match="n_samples must be an integer >= 1"):
        A.GriffinLim().mel_to_audio(mel, 0)
    with pytest.raises(BenchError, match=r"momentum must be in \[0, 1\)"):
        A.GriffinLim(momentum=1.5).mel_to_audio(mel, 3000)
    with pytest.raises(BenchError, match="n_iter must be an integer >= 0"):
        A.GriffinLim(n_iter=-1).mel_to_audio(mel, 3000)


def test_resample():
    x = _tone(0.5, n=2)
    y = A.resample(x, SR, 48_000)
    assert y.shape == (2, 3 * x.shape[1]) and y.dtype == np.float32
    back = A.resample(y, 48_000, SR)
    np.testing.assert_allclose(back[:, 200:-200], x[:, 200:-200], atol=2e-3)
    assert A.resample(x[0], 44_100, 16_000).shape == (int(np.ceil(x.shape[1] * 160 / 441)),)
    same = A.resample(x, SR, SR)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    with pytest.raises(BenchError, match=r"audio must be \(samples,\) or \(n, samples\)"):
        A.resample(x[None], SR, 8000)
    with pytest.raises(BenchError, match="orig_sr must be an integer >= 1"):
        A.resample(x, 0, 8000)


def test_prepare_for_embedding():
    rng = np.random.default_rng(2)
    stereo = (0.1 * rng.standard_normal((2, 2, 48_000)) + 0.5).astype(np.float32)  # 1 s at 48 kHz, DC offset
    out = A.prepare_for_embedding(stereo, 48_000)
    assert out.shape == (2, 32_000) and out.dtype == np.float32
    assert np.all(out[:, 16_000:] == 0)  # padded to 2 s
    expected = A.resample((stereo[:, 0] - stereo[:, 0].mean(axis=1, keepdims=True)), 48_000, SR)
    np.testing.assert_allclose(out[:, :16_000], expected, atol=1e-6)
    long = A.prepare_for_embedding(np.ones(3 * SR, np.float32), SR)  # one clip, already 16 kHz
    assert long.shape == (1, 3 * SR) and np.allclose(long, 0.0)
    with pytest.raises(BenchError, match=r"audio must be \(samples,\), \(n, samples\) or \(n, channels, samples\)"):
        A.prepare_for_embedding(np.zeros((1, 1, 1, 10)), SR)
    with pytest.raises(BenchError, match="has no samples"):
        A.prepare_for_embedding(np.zeros((2, 0)), SR)
    with pytest.raises(BenchError, match="sr must be an integer >= 1, got 44100.0"):
        A.prepare_for_embedding(np.zeros((2, 10)), 44100.0)
    with pytest.raises(BenchError, match="min_seconds must be a number >= 0"):
        A.prepare_for_embedding(np.zeros((2, 10)), SR, min_seconds=-1)

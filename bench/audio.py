"""Waveform and mel-spectrogram helpers shared by methods and metrics.

Every waveform is float32; the mel functions expect 16 kHz mono clips shaped (n, samples).
Two mels are used and must not be mixed up:

- ``vocoder_mel``: the AudioLDM2 VAE / HiFiGAN input (natural log of the magnitude mel).
  Methods predict it, vocoders invert it.
- ``eval_mel``: audioldm_eval's [0, 1] mel, used only by the PCC and PSNR metrics.

torch is imported inside the functions that use it, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from functools import lru_cache

import numpy as np

from bench.errors import BenchError

from bench import SAMPLE_RATE

VOCODER_MEL = dict(sr=16_000, n_fft=1024, hop=160, win=1024, n_mels=64, fmin=0.0, fmax=8000.0, floor=1e-5)
"""AudioLDM2 (cvssp/audioldm2) mel for the VAE and the SpeechT5HifiGan vocoder."""

EVAL_MEL = dict(sr=16_000, n_fft=512, hop=160, win=512, n_mels=64, fmin=50.0, fmax=8000.0, floor=1e-5)
"""audioldm_eval's TacotronSTFT(512, 160, 512, 64, 16000, 50, 8000) used for PCC / PSNR."""

# Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_htk(freq):
    """The HTK (and Kaldi) mel scale, 1127 ln(1 + f / 700), float64 (numpy array or float in Hz). Used by
    Kaldi's fbank (``bench.fbank``) and VGGish's filterbank (``bench.networks.vggish``)."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    freqs = np.asarray(freqs, dtype=np.float64)
    mels = freqs / _F_SP
    high = freqs >= _MIN_LOG_HZ
    mels[high] = _MIN_LOG_MEL + np.log(freqs[high] / _MIN_LOG_HZ) / _LOGSTEP
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freqs = mels * _F_SP
    high = mels >= _MIN_LOG_MEL
    freqs[high] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[high] - _MIN_LOG_MEL))
    return freqs


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BenchError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Triangular mel filters: (n_mels, n_fft // 2 + 1) float32; fmax None means sr / 2.

    Slaney mel scale with Slaney area normalisation (each triangle is scaled by
    2 / (upper edge - lower edge) in Hz), i.e. what ``librosa.filters.mel`` returns with its
    defaults (htk=False, norm='slaney'). Computed in float64, returned as float32.
    Warns when a filter covers no FFT bin (too many mels for n_fft).
    """
    if not (isinstance(sr, (int, float, np.integer, np.floating)) and sr > 0):
        raise BenchError(f"sr must be a positive number (Hz), got {sr!r}")
    n_fft = _check_int(n_fft, "n_fft", 2)
    n_mels = _check_int(n_mels, "n_mels", 1)
    if fmax is None:
        fmax = sr / 2.0
    real = (int, float, np.integer, np.floating)
    if not (isinstance(fmin, real) and isinstance(fmax, real) and 0.0 <= fmin < fmax <= sr / 2.0):
        raise BenchError(f"mel band must satisfy 0 <= fmin < fmax <= sr/2 = {sr / 2.0:g}, got fmin={fmin!r} fmax={fmax!r}")

    bin_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)  # (n_fft//2+1,) Hz
    # n_mels + 2 edges evenly spaced on the mel scale; filter i spans edges i .. i+2.
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([fmin]))[0], _hz_to_mel(np.array([fmax]))[0], n_mels + 2))
    widths = np.diff(edges)  # (n_mels + 1,)
    offsets = edges[:, None] - bin_freqs[None, :]  # (n_mels + 2, n_bins)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    if np.any(weights.max(axis=1) == 0.0):
        warnings.warn(
            f"mel_filterbank: some of the {n_mels} mel filters are empty; use fewer mels or a larger n_fft ({n_fft})",
            stacklevel=2,
        )
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def cached_filterbank(sr, n_fft, n_mels, fmin, fmax) -> np.ndarray:
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    fb.setflags(write=False)  # shared between callers
    return fb


def _check_batch(audio, name: str = "audio") -> np.ndarray:
    """(n, samples) finite float32 array, or BenchError."""
    arr = np.asarray(audio)
    if arr.ndim != 2:
        raise BenchError(f"{name} must be (n, samples), got shape {arr.shape}; add a batch axis with {name}[None]")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise BenchError(f"{name} must be a real-valued array (n, samples), got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise BenchError(f"{name} {arr.shape} contains NaN or infinite samples")
    return arr


def stft_magnitude(audio: np.ndarray, n_fft: int, hop: int, win: int, center: bool = True) -> np.ndarray:
    """Magnitude STFT with a periodic Hann window.

    audio: (n, samples) float32. When ``center`` the signal is reflect-padded by n_fft // 2 on both
    sides (frames = samples // hop + 1); otherwise frames = 1 + (samples - n_fft) // hop.
    A window shorter than n_fft is zero-padded to n_fft around its centre.
    Returns (n, n_fft // 2 + 1, frames) float32, |X| (not power).
    """
    import torch

    n_fft = _check_int(n_fft, "n_fft", 2)
    hop = _check_int(hop, "hop", 1)
    win = _check_int(win, "win", 1)
    if win > n_fft:
        raise BenchError(f"win must be <= n_fft, got win={win} n_fft={n_fft}")
    x = _check_batch(audio)
    samples = x.shape[1]
    if center and samples <= n_fft // 2:
        raise BenchError(f"audio {x.shape} is too short: reflect padding needs more than n_fft//2 = {n_fft // 2} samples")
    if not center and samples < n_fft:
        raise BenchError(f"audio {x.shape} is too short: center=False needs at least n_fft = {n_fft} samples")
    window = torch.hann_window(win, periodic=True, dtype=torch.float32)
    spec = torch.stft(
        torch.from_numpy(np.ascontiguousarray(x)),
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return spec.abs().numpy().astype(np.float32, copy=False)


def _mel_magnitude(audio: np.ndarray, cfg: dict) -> np.ndarray:
    import torch

    mag = stft_magnitude(audio, cfg["n_fft"], cfg["hop"], cfg["win"], center=True)
    fb = cached_filterbank(cfg["sr"], cfg["n_fft"], cfg["n_mels"], cfg["fmin"], cfg["fmax"])
    # (n_mels, F) @ (n, F, T) -> (n, n_mels, T); torch's batched BLAS is ~10x numpy's stacked matmul here.
    return torch.matmul(torch.tensor(fb, dtype=torch.float32), torch.from_numpy(mag)).numpy()


def vocoder_mel(audio: np.ndarray) -> np.ndarray:
    """AudioLDM2 / HiFiGAN log-mel: audio (n, samples) float32 at 16 kHz -> (n, 64, T) float32.

    Settings in ``VOCODER_MEL``: n_fft = win = 1024, hop 160, periodic Hann, reflect padding of
    512 (T = samples // 160 + 1: 401 frames for 4 s, 151 for 1.5 s, 201 for 2 s), 64 Slaney mels
    over 0-8000 Hz applied to the magnitude (not power) spectrum, then ln(max(mel, 1e-5)).
    The waveform is used as given (no mean removal, no clipping).
    """
    mel = _mel_magnitude(audio, VOCODER_MEL)
    return np.log(np.maximum(mel, VOCODER_MEL["floor"])).astype(np.float32)


def eval_mel(audio: np.ndarray) -> np.ndarray:
    """audioldm_eval's mel for PCC / PSNR: audio (n, samples) float32 at 16 kHz -> (n, 64, T) in [0, 1].

    As in audioldm_eval (``MelPairedDataset.get_mel_from_wav`` with ``TacotronSTFT(512, 160, 512,
    64, 16000, 50, 8000)``): the waveform is clipped to [-1, 1]; STFT n_fft = win = 512, hop 160,
    periodic Hann; its STFT reflect-pads n_fft // 2 = 256 samples on both sides, which equals
    center=True with reflect padding here (T = samples // 160 + 1); 64 Slaney mels over 50-8000 Hz
    on the magnitude spectrum give m, and the output is
    clip((20 log10(max(m, 1e-5)) - 20 + 100) / 100, 0, 1).
    Mean removal and resampling (which audioldm_eval does when loading files) are the caller's job.
    """
    x = np.clip(_check_batch(audio), -1.0, 1.0)
    mel = _mel_magnitude(x, EVAL_MEL)
    db = 20.0 * np.log10(np.maximum(mel, EVAL_MEL["floor"])) - 20.0
    return np.clip((db + 100.0) / 100.0, 0.0, 1.0).astype(np.float32)


class GriffinLim:
    """Vocoder without weights: inverts ``vocoder_mel`` by fast Griffin-Lim.

    Steps: exp of the log-mel; mel -> linear magnitude with the filterbank's pseudo-inverse,
    clamped at 1e-8 (least squares can go negative); a uniform random initial phase drawn on the
    CPU from ``torch.Generator().manual_seed(seed)`` (the same on every device, and the same for
    every clip, so results do not depend on how clips are batched); then ``n_iter``
    iterations of fast Griffin-Lim (Perraudin et al. 2013) with ``momentum``, using torch.stft /
    torch.istft with the window, hop and padding of ``vocoder_mel``.
    """

    name = "griffin-lim"

    def __init__(self, n_iter: int = 32, momentum: float = 0.99, seed: int = 0, device: str = "cpu"):
        self.n_iter = n_iter
        self.momentum = momentum
        self.seed = seed
        self.device = device

    def config(self) -> dict:
        """Settings that decide the output (device excluded: it only changes float rounding)."""
        return {
            "name": self.name,
            "n_iter": self.n_iter,
            "momentum": self.momentum,
            "seed": self.seed,
            "mel": dict(VOCODER_MEL),
            "mel_inverse": "pinv, clamp 1e-8",
            "init_phase": "uniform",
        }

    def _check_settings(self) -> None:
        _check_int(self.n_iter, "n_iter", 0)
        _check_int(self.seed, "seed", 0)
        if not (isinstance(self.momentum, (int, float, np.floating)) and 0.0 <= self.momentum < 1.0):
            raise BenchError(f"momentum must be in [0, 1), got {self.momentum!r}")

    batch_size = 32  # clips per Griffin-Lim batch: keeps the complex buffers cache-friendly

    def mel_to_audio(self, log_mel: np.ndarray, n_samples: int) -> np.ndarray:
        """log_mel: (n, 64, T) from ``vocoder_mel`` -> (n, n_samples) float32 at 16 kHz.

        The signal is rebuilt at its natural length (T - 1) * 160 samples, then cut or
        zero-padded at the end to ``n_samples``. Clips are processed in batches; the result does
        not depend on the batching.
        """
        mel = np.asarray(log_mel)
        if mel.ndim == 3 and mel.shape[0] > self.batch_size:
            return np.concatenate(
                [self._mel_to_audio(mel[i : i + self.batch_size], n_samples) for i in range(0, mel.shape[0], self.batch_size)]
            )
        return self._mel_to_audio(mel, n_samples)

    def _mel_to_audio(self, log_mel: np.ndarray, n_samples: int) -> np.ndarray:
        import torch

        self._check_settings()
        n_samples = _check_int(n_samples, "n_samples", 1)
        cfg = VOCODER_MEL
        mel = np.asarray(log_mel)
        if mel.ndim != 3 or mel.shape[1] != cfg["n_mels"]:
            raise BenchError(f"log_mel must be (n, {cfg['n_mels']}, frames), got shape {mel.shape}")
        n_fft, hop, win = cfg["n_fft"], cfg["hop"], cfg["win"]
        frames = mel.shape[2]
        length = (frames - 1) * hop
        if length <= n_fft // 2:
            raise BenchError(f"log_mel {mel.shape} has too few frames: need at least {n_fft // (2 * hop) + 2}")
        if not np.all(np.isfinite(mel)):
            raise BenchError(f"log_mel {mel.shape} contains NaN or infinite values")

        fb = cached_filterbank(cfg["sr"], n_fft, cfg["n_mels"], cfg["fmin"], cfg["fmax"]).astype(np.float64)
        inverse = torch.from_numpy(np.linalg.pinv(fb).astype(np.float32))  # (F, n_mels)
        device = torch.device(self.device)
        mel_t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).to(device)
        mag = torch.matmul(inverse.to(device), torch.exp(mel_t)).clamp_(min=1e-8)
        window = torch.hann_window(win, periodic=True, dtype=torch.float32, device=device)
        gen = torch.Generator(device="cpu").manual_seed(int(self.seed))
        # One (F, T) phase shared by all clips: a clip's output does not depend on its batch.
        phase = torch.rand(mag.shape[1:], generator=gen, dtype=torch.float32) * (2.0 * math.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(device).expand(mag.shape)
        stft_args = dict(n_fft=n_fft, hop_length=hop, win_length=win, window=window, center=True)
        # Perraudin's c_n = t_n + a (t_n - t_{n-1}) is proportional to t_n - a/(1+a) t_{n-1};
        # only the phase is kept, so the scale does not matter.
        beta = self.momentum / (1.0 + self.momentum)
        previous = None
        with torch.no_grad():
            for _ in range(self.n_iter):
                wav = torch.istft(mag * angles, length=length, **stft_args)
                rebuilt = torch.stft(wav, pad_mode="reflect", return_complex=True, **stft_args)
                angles = rebuilt if previous is None else rebuilt - beta * previous
                angles = angles / (angles.abs() + 1e-16)
                previous = rebuilt
            wav = torch.istft(mag * angles, length=length, **stft_args).cpu().numpy()
        del mel_t

        out = np.zeros((wav.shape[0], n_samples), dtype=np.float32)
        keep = min(n_samples, length)
        out[:, :keep] = wav[:, :keep]
        return out


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis: (samples,) or (n, samples) -> float32.

    scipy.signal.resample_poly with up / down = target_sr / orig_sr reduced by their gcd
    (its default Kaiser-windowed FIR). Returns a float32 copy when the rates are equal.
    """
    from scipy.signal import resample_poly

    orig_sr = _check_int(orig_sr, "orig_sr", 1)
    target_sr = _check_int(target_sr, "target_sr", 1)
    x = np.asarray(audio)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise BenchError(f"audio must be (samples,) or (n, samples) with samples > 0, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if orig_sr == target_sr:
        return x.copy()
    ratio = Fraction(target_sr, orig_sr)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32, copy=False)


def prepare_for_embedding(audio: np.ndarray, sr: int, min_seconds: float = 2.0) -> np.ndarray:
    """audioldm_eval's waveform preparation before PANNs / VGGish: -> (n, L) float32 at 16 kHz.

    audio: (samples,) one clip, (n, samples), or (n, channels, samples) (the first channel is
    kept). Per clip: subtract its mean, resample to 16 kHz (``resample``: resample_poly where
    audioldm_eval uses torchaudio's sinc resampler), zero-pad at the end to at least
    ceil(min_seconds * 16000) samples (32000 for 2 s).
    """
    sr = _check_int(sr, "sr", 1)
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[None]
    elif x.ndim == 3:
        x = x[:, 0]
    elif x.ndim != 2:
        raise BenchError(f"audio must be (samples,), (n, samples) or (n, channels, samples), got shape {x.shape}")
    if x.shape[-1] == 0:
        raise BenchError(f"audio {np.asarray(audio).shape} has no samples")
    if not (isinstance(min_seconds, (int, float)) and min_seconds >= 0):
        raise BenchError(f"min_seconds must be a number >= 0, got {min_seconds!r}")
    x = x.astype(np.float64) - x.mean(axis=-1, keepdims=True, dtype=np.float64)
    x = resample(x.astype(np.float32), sr, SAMPLE_RATE)
    min_len = int(math.ceil(min_seconds * SAMPLE_RATE))
    if x.shape[1] < min_len:
        x = np.pad(x, ((0, 0), (0, min_len - x.shape[1])))
    return x

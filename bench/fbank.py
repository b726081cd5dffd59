"""Kaldi-compatible log mel filterbanks in torch, and the AudioMAE front end built on them.

``kaldi_fbank`` follows Kaldi's ``compute-fbank`` (and ``torchaudio.compliance.kaldi.fbank``):

1. frames of ``int(sr * frame_length_ms / 1000)`` samples every ``int(sr * frame_shift_ms / 1000)``
   (400 / 160 at 16 kHz). ``snip_edges=True``: 1 + (samples - 400) // 160 frames, none
   shorter than the window; ``snip_edges=False``: (samples + 80) // 160 frames centred on
   i * 160 + 80, the edges reflected (sample -k-1 for -k, 2N-1-k for N+k);
2. per frame, in this order: dither (``dither`` * standard normal noise), DC removal (frame
   mean), raw log energy (if ``use_energy`` and ``raw_energy``), pre-emphasis
   x[i] -= c * x[i-1] with x[-1] := x[0], window, energy (if not ``raw_energy``);
3. zero padding to the next power of two (512 for 400) when ``round_to_power_of_two``;
   power spectrum |rfft|^2 (magnitude when ``use_power=False``);
4. ``num_mel_bins`` triangles evenly spaced on Kaldi's mel scale 1127 ln(1 + f / 700) between
   ``low_freq`` and ``high_freq`` (<= 0 means Nyquist + high_freq), weights linear in mel,
   FFT bins 0 .. n_fft/2 - 1 (the Nyquist bin is not used);
5. ln(max(energy, eps)) with eps = float32 epsilon 1.1920929e-07 when ``use_log_fbank``.

The frames are computed in float64 and returned as float32. The signal is used at the scale it is
given (AudioMAE feeds floats in [-1, 1]; Kaldi's tools feed int16-scaled samples).

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math

import numpy as np

from bench.errors import BenchError

from bench import SAMPLE_RATE
FLOAT_EPS = float(np.finfo(np.float32).eps)  # 1.1920928955078125e-07, Kaldi's log floor

AUDIOMAE_MEAN = -4.2677393
AUDIOMAE_STD = 4.5689974
"""AudioSet fbank statistics AudioMAE normalises with: (fbank - mean) / (2 * std)."""

AUDIOMAE_FRAMES = 1024
AUDIOMAE_MEL_BINS = 128

WINDOWS = ("hanning", "hamming", "povey", "rectangular", "sine", "blackman")


def kaldi_mel_scale(freq):
    """Kaldi's mel scale: 1127 ln(1 + f / 700) (numpy or float, float64)."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0
) -> np.ndarray:
    """Kaldi's triangular mel filters: (num_bins, padded_window // 2) float64.

    Edges at mel_low + k * delta, delta = (mel_high - mel_low) / (num_bins + 1); FFT bin i
    (frequency i * sr / padded_window) gets weight (mel - left) / (centre - left) on the rising
    side and (right - mel) / (right - centre) on the falling side, strictly inside (left, right).
    """
    if not isinstance(num_bins, (int, np.integer)) or isinstance(num_bins, bool) or num_bins < 3:
        raise BenchError(f"num_mel_bins must be an integer >= 3, got {num_bins!r}")
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0.0 else nyquist + high_freq
    if not (0.0 <= low_freq < nyquist and low_freq < high <= nyquist):
        raise BenchError(
            f"mel band must satisfy 0 <= low_freq < high_freq <= Nyquist ({nyquist:g} Hz), "
            f"got low_freq={low_freq!r} high_freq={high_freq!r} (high_freq <= 0 counts from Nyquist)"
        )
    n_fft_bins = padded_window // 2
    bin_mel = kaldi_mel_scale(np.arange(n_fft_bins) * (sample_rate / padded_window))  # (F,)
    mel_low, mel_high = kaldi_mel_scale(low_freq), kaldi_mel_scale(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    k = np.arange(num_bins, dtype=np.float64)[:, None]
    left, centre, right = mel_low + k * delta, mel_low + (k + 1) * delta, mel_low + (k + 2) * delta
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    weights = np.where(bin_mel <= centre, rising, falling)
    inside = (bin_mel > left) & (bin_mel < right)
    return np.where(inside, weights, 0.0)


def feature_window(name: str, length: int, blackman_coeff: float = 0.42):
    """Kaldi's FeatureWindowFunction as a float64 torch tensor; a = 2 pi / (length - 1)."""
    import torch

    if name not in WINDOWS:
        raise BenchError(f"window must be one of {', '.join(WINDOWS)}, got {name!r}")
    i = torch.arange(length, dtype=torch.float64)
    a = 2.0 * math.pi / (length - 1) if length > 1 else 0.0
    if name == "hanning":
        return 0.5 - 0.5 * torch.cos(a * i)
    if name == "povey":
        return (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    if name == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    if name == "sine":
        return torch.sin(0.5 * a * i)
    if name == "blackman":
        return blackman_coeff - 0.5 * torch.cos(a * i) + (0.5 - blackman_coeff) * torch.cos(2.0 * a * i)
    return torch.ones(length, dtype=torch.float64)


def _as_batch(waveform, name: str = "waveform"):
    """(n, samples) float64 torch tensor (device kept for tensors), or BenchError."""
    import torch

    if isinstance(waveform, torch.Tensor):
        x = waveform.detach()
    else:
        arr = np.asarray(waveform)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise BenchError(f"{name} must be a real-valued array (n, samples), got dtype {arr.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim != 2:
        raise BenchError(f"{name} must be (n, samples), got shape {tuple(x.shape)}; add a batch axis with {name}[None]")
    if x.is_complex():
        raise BenchError(f"{name} must be real-valued, got dtype {x.dtype}")
    if x.device.type == "mps":  # no float64 there; the caller moves the result back
        x = x.cpu()
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise BenchError(f"{name} {tuple(x.shape)} contains NaN or infinite samples")
    return x


def num_frames(samples: int, window: int, shift: int, snip_edges: bool = True) -> int:
    """Kaldi's NumFrames: 1 + (samples - window) // shift (0 if shorter), or (samples + shift/2) // shift."""
    if snip_edges:
        return 0 if samples < window else 1 + (samples - window) // shift
    return (samples + shift // 2) // shift


def kaldi_fbank(
    waveform,
    sample_rate: float = SAMPLE_RATE,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    dither: float = 0.0,
    window: str = "hanning",
    blackman_coeff: float = 0.42,
    htk_compat: bool = True,
    use_energy: bool = False,
    raw_energy: bool = True,
    energy_floor: float = 0.0,
    remove_dc_offset: bool = True,
    preemphasis: float = 0.97,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_log_fbank: bool = True,
    use_power: bool = True,
    generator=None,
):
    """Kaldi ``compute-fbank``: waveform (n, samples) -> (n, frames, num_mel_bins) float32 torch tensor.

    waveform: numpy array or torch tensor (a tensor's device is kept; on Apple's MPS, which has
    no float64, the work is done on the CPU). With ``use_energy`` one
    more column holds the log energy: last when ``htk_compat``, first otherwise;
    ``energy_floor`` > 0 floors it at ln(energy_floor). ``dither`` > 0 adds Gaussian noise drawn
    from ``generator`` (a torch.Generator on the waveform's device; None: torch's global one).
    A clip shorter than one window gives zero frames, as in Kaldi. See the module docstring for
    the steps.
    """
    import torch

    out_device = waveform.device if isinstance(waveform, torch.Tensor) else torch.device("cpu")
    x = _as_batch(waveform)
    if not (isinstance(sample_rate, (int, float, np.integer, np.floating)) and sample_rate > 0):
        raise BenchError(f"sample_rate must be a positive number (Hz), got {sample_rate!r}")
    win_len = int(sample_rate * 0.001 * frame_length_ms)
    shift = int(sample_rate * 0.001 * frame_shift_ms)
    if win_len < 2 or shift < 1:
        raise BenchError(
            f"frame_length_ms={frame_length_ms!r} / frame_shift_ms={frame_shift_ms!r} give a window of {win_len} "
            f"and a shift of {shift} samples at {sample_rate:g} Hz; need at least 2 and 1"
        )
    if not 0.0 <= preemphasis <= 1.0:
        raise BenchError(f"preemphasis must be in [0, 1], got {preemphasis!r}")
    if dither < 0.0:
        raise BenchError(f"dither must be >= 0, got {dither!r}")
    padded = 1 << (win_len - 1).bit_length() if round_to_power_of_two else win_len
    banks = kaldi_mel_banks(num_mel_bins, padded, float(sample_rate), float(low_freq), float(high_freq))
    window_fn = feature_window(window, win_len, blackman_coeff).to(x.device)

    n, samples = x.shape
    frames = num_frames(samples, win_len, shift, snip_edges)
    n_out = num_mel_bins + (1 if use_energy else 0)
    if frames == 0 or n == 0:
        return torch.zeros((n, frames, n_out), dtype=torch.float32, device=out_device)

    if snip_edges:
        idx = torch.arange(frames, device=x.device)[:, None] * shift + torch.arange(win_len, device=x.device)[None]
    else:
        start = torch.arange(frames, device=x.device)[:, None] * shift + shift // 2 - win_len // 2
        idx = start + torch.arange(win_len, device=x.device)[None]
        # Kaldi's ExtractWindow reflection; repeated for clips shorter than the window.
        while bool((idx < 0).any() or (idx >= samples).any()):
            idx = torch.where(idx < 0, -idx - 1, idx)
            idx = torch.where(idx >= samples, 2 * samples - 1 - idx, idx)
    strided = x[:, idx]  # (n, frames, win_len)

    if dither > 0.0:
        noise = torch.randn(strided.shape, generator=generator, dtype=torch.float64, device=x.device)
        strided = strided + dither * noise
    if remove_dc_offset:
        strided = strided - strided.mean(dim=-1, keepdim=True)
    log_energy = None
    if use_energy and raw_energy:
        log_energy = strided.pow(2).sum(-1).clamp_min(FLOAT_EPS).log()
    if preemphasis != 0.0:
        previous = torch.cat([strided[..., :1], strided[..., :-1]], dim=-1)
        strided = strided - preemphasis * previous
    strided = strided * window_fn
    if use_energy and not raw_energy:
        log_energy = strided.pow(2).sum(-1).clamp_min(FLOAT_EPS).log()

    spectrum = torch.fft.rfft(strided, n=padded, dim=-1)
    power = spectrum.real.pow(2) + spectrum.imag.pow(2)
    if not use_power:
        power = power.sqrt()
    mel_w = torch.from_numpy(banks).to(device=x.device, dtype=torch.float64)  # (bins, padded // 2)
    mel = power[..., : padded // 2] @ mel_w.T
    if use_log_fbank:
        mel = mel.clamp_min(FLOAT_EPS).log()
    if use_energy:
        if energy_floor > 0.0:
            log_energy = log_energy.clamp_min(math.log(energy_floor))
        column = log_energy[..., None]
        mel = torch.cat([mel, column] if htk_compat else [column, mel], dim=-1)
    return mel.to(device=out_device, dtype=torch.float32)


def repeat_to_seconds(waveform, seconds: float = 10.0, sr: int = SAMPLE_RATE):
    """Tile each clip (n, samples) end to end and cut to round(seconds * sr) samples.

    The paper repeats its 1.5 / 2 / 4-s stimuli to 10 s before AudioMAE (a 4-s clip becomes
    4 + 4 + 2 s). Longer clips are cut. Returns the input's type (numpy array or torch tensor).
    """
    import torch

    target = int(round(seconds * sr))
    if target < 1:
        raise BenchError(f"seconds * sr must give at least one sample, got seconds={seconds!r} sr={sr!r}")
    if waveform.ndim != 2 or waveform.shape[-1] == 0:
        raise BenchError(f"waveform must be (n, samples) with samples > 0, got shape {tuple(waveform.shape)}")
    reps = -(-target // waveform.shape[-1])
    if isinstance(waveform, torch.Tensor):
        return waveform.repeat(1, reps)[:, :target]
    return np.tile(np.asarray(waveform), (1, reps))[:, :target]


def audiomae_input(waveform, target_frames: int = AUDIOMAE_FRAMES, sr: int = SAMPLE_RATE):
    """AudioMAE's input: waveform (n, samples) -> normalised fbank (n, target_frames, 128) float32 tensor.

    As AudioMAE's dataset: each clip minus its mean; Kaldi fbank (128 bins, Hanning window,
    htk_compat, no energy, dither 0, 25 ms window every 10 ms, other options Kaldi's defaults);
    zero frames appended up to ``target_frames`` or frames cut beyond it; then
    (fbank + 4.2677393) / (4.5689974 * 2) (padded frames become 0.467, not 0).
    A clip at another rate is first resampled to 16 kHz with ``bench.audio.resample``.
    """
    import torch

    if sr != SAMPLE_RATE:
        from bench.audio import resample

        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        waveform = resample(np.asarray(waveform), sr, SAMPLE_RATE)
    if not isinstance(target_frames, (int, np.integer)) or target_frames < 1:
        raise BenchError(f"target_frames must be a positive integer, got {target_frames!r}")
    x = _as_batch(waveform)
    x = x - x.mean(dim=-1, keepdim=True)
    fbank = kaldi_fbank(
        x, sample_rate=SAMPLE_RATE, num_mel_bins=AUDIOMAE_MEL_BINS, window="hanning", htk_compat=True,
        use_energy=False, dither=0.0, frame_shift_ms=10.0, frame_length_ms=25.0,
    )
    frames = fbank.shape[1]
    if frames < target_frames:
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, target_frames - frames))
    else:
        fbank = fbank[:, :target_frames]
    return (fbank - AUDIOMAE_MEAN) / (AUDIOMAE_STD * 2.0)


def n_patch_for_seconds(seconds: float, frame_shift_ms: float = 10.0, patch: int = 16, freq_patches: int = 8,
                        time_multiple: int = 32, max_frames: int = AUDIOMAE_FRAMES) -> int:
    """How many AudioMAE tokens cover a clip: the paper's N_patch (208 / 80 / 112 for 4 / 1.5 / 2 s).

    Inferred rule, not stated in the paper: nominal frames round(seconds * 100) (400 / 150 / 200)
    rounded up to a multiple of 32 (416 / 160 / 224), divided by the 16-frame patch height
    (26 / 10 / 14 time rows), times 8 frequency columns; capped at the 1024-frame input
    (512 tokens). Kaldi's actual frame counts (398 / 148 / 198) give the same numbers.
    """
    if not (isinstance(seconds, (int, float, np.integer, np.floating)) and seconds > 0):
        raise BenchError(f"seconds must be a positive number, got {seconds!r}")
    frames = int(round(seconds * 1000.0 / frame_shift_ms))
    frames = min(-(-frames // time_multiple) * time_multiple, max_frames)
    return (frames // patch) * freq_patches

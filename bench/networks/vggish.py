"""VGGish (Hershey et al. 2017) in the torchvggish layout, as used for FAD (no PCA, no final ReLU).

Checkpoint ``vggish-10086976.pth`` (torchvggish release v0.1) is a bare state dict:

    features.{0,3,6,8,11,13}.{weight,bias}   3x3 convs 1->64->128->256->256->512->512 (ReLU; 2x2 max-pool after
                                             features 0, 3, 8 and 13)
    embeddings.{0,2,4}.{weight,bias}         Linear(512*4*6, 4096), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 128)

The conv output (B, 512, 6, 4) is flattened in (time, frequency, channel) order, as the TensorFlow original does
(torchvggish transposes before ``view``). FAD uses the 128-d output of the last Linear directly: torchvggish ends
``embeddings`` with a ReLU that frechet_audio_distance / audioldm_eval drop (``use_activation=False``), and the
PCA + quantisation post-processing is off (``use_pca=False``), so no PCA file is needed.

Front end (vggish_input.waveform_to_examples, at 16 kHz): frames of 400 samples (25 ms) every 160 (10 ms), no
padding; each frame times a periodic Hann window of 400, zero-padded at the end to 512 for the FFT; magnitude
spectrum; 64 mel bands 125-7500 Hz on the HTK mel scale (1127 ln(1 + f/700)), triangles linear in mel, DC bin
zeroed; log(mel + 0.01); then non-overlapping patches of 96 frames (0.96 s), any remainder dropped. A 4-s clip
gives 398 frames and 4 patches, a 1.5-s clip 148 frames and 1 patch. FAD feeds the waveform as audioldm_eval's FAD
path does: resampled to 16 kHz and nothing else (no mean removal, no padding; ``metrics.embeddings``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from bench.audio import hz_to_mel_htk
from bench.errors import BenchError

from bench import SAMPLE_RATE

NAME = "VGGish"
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512  # 2 ** ceil(log2(400))
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
PATCH = 96  # frames per example (0.96 s)

FULL = dict(channels=(64, 128, 256, 256, 512, 512), hidden=4096, embedding=128)
"""The configuration of ``vggish-10086976.pth``."""

TINY = dict(channels=(4, 4, 8, 8, 8, 8), hidden=16, embedding=8)
"""A small network with the same front end, for tests."""

SIM = dict(channels=(8, 16, 32, 32, 64, 64), hidden=128, embedding=32)
"""The size trained on the simulator (``bench weights train-sim``)."""


def mel_matrix(n_mels: int = N_MELS, n_bins: int = N_FFT // 2 + 1, sr: int = SAMPLE_RATE,
               fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_bins, n_mels) float64 VGGish mel weights (mel_features.spectrogram_to_mel_matrix)."""
    nyquist = sr / 2.0
    if not 0.0 <= fmin < fmax <= nyquist:
        raise BenchError(f"mel band must satisfy 0 <= fmin < fmax <= {nyquist}, got {fmin}, {fmax}")
    bins_mel = hz_to_mel_htk(np.linspace(0.0, nyquist, n_bins))
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower[None, :]) / (center - lower)[None, :]
    falling = (upper[None, :] - bins_mel[:, None]) / (upper - center)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin contributes to no band
    return weights


def log_mel(waveform: torch.Tensor) -> torch.Tensor:
    """(B, L) float at 16 kHz -> (B, frames, 64) float64 VGGish log-mel; frames = 1 + (L - 400) // 160."""
    if waveform.ndim != 2:
        raise BenchError(f"VGGish expects waveforms (B, samples), got shape {tuple(waveform.shape)}")
    if waveform.shape[1] < WINDOW:
        raise BenchError(f"VGGish needs at least {WINDOW} samples per clip, got {waveform.shape[1]}")
    x = waveform.to(torch.float64)
    frames = x.unfold(1, WINDOW, HOP)  # (B, T, 400)
    window = 0.5 - 0.5 * torch.cos(2.0 * torch.pi * torch.arange(WINDOW, dtype=torch.float64, device=x.device) / WINDOW)
    mag = torch.fft.rfft(frames * window, n=N_FFT).abs()  # (B, T, 257)
    mel = mag @ torch.from_numpy(mel_matrix()).to(x.device)
    return torch.log(mel + LOG_OFFSET)


def examples(waveform: torch.Tensor) -> torch.Tensor:
    """(B, L) at 16 kHz -> (B, P, 96, 64) float32 patches; P = frames // 96 (at least one is required)."""
    lm = log_mel(waveform)
    n = lm.shape[1] // PATCH
    if n < 1:
        raise BenchError(
            f"VGGish needs at least {WINDOW + (PATCH - 1) * HOP} samples (0.96 s at 16 kHz) per clip, got {waveform.shape[1]}"
        )
    return lm[:, : n * PATCH].reshape(lm.shape[0], n, PATCH, N_MELS).to(torch.float32)


class VGGish(nn.Module):
    """VGGish without PCA and without the final ReLU.

    ``forward(patches (N, 1, 96, 64))`` -> (N, embedding); :meth:`embed` takes waveforms and returns the
    per-patch embeddings (B, P, embedding).
    """

    def __init__(self, channels=(64, 128, 256, 256, 512, 512), hidden=4096, embedding=128):
        super().__init__()
        c = tuple(int(v) for v in channels)
        if len(c) != 6:
            raise BenchError(f"VGGish needs 6 channel widths, got {c}")
        self.config = dict(channels=c, hidden=hidden, embedding=embedding)
        self.features = nn.Sequential(
            nn.Conv2d(1, c[0], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[4], c[5], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
        )
        # 96 x 64 patches shrink to 6 x 4 after four 2x2 poolings
        self.embeddings = nn.Sequential(
            nn.Linear(c[5] * 6 * 4, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, embedding),
        )
        self.eval()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.ndim != 4 or tuple(patches.shape[1:]) != (1, PATCH, N_MELS):
            raise BenchError(f"VGGish expects patches (N, 1, {PATCH}, {N_MELS}), got {tuple(patches.shape)}")
        x = self.features(patches)  # (N, C, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (time, freq, channel) order, as TensorFlow
        return self.embeddings(x)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, L) at 16 kHz -> (B, P, embedding)."""
        ex = examples(waveform)
        b, p = ex.shape[:2]
        out = self(ex.reshape(b * p, 1, PATCH, N_MELS).to(next(self.parameters()).dtype))
        return out.reshape(b, p, -1)


def load_vggish(path, *, device: str = "cpu", arch: dict | None = None) -> VGGish:
    """VGGish (``FULL`` unless ``arch``) with the weights of ``path``, strictly checked."""
    from bench.networks.weights import load_checkpoint_file
    from bench.networks.checkpoints import strict_load

    sd = load_checkpoint_file(path)
    if not isinstance(sd, dict):
        raise BenchError(f"{NAME} checkpoint {path} holds a {type(sd).__name__}, expected a state dict")
    net = VGGish(**(arch or FULL))
    strict_load(net, sd, NAME, str(path))
    return net.to(device).eval()


"""PANNs Cnn14 (Kong et al. 2020) as used by audioldm_eval for FD and KL, written from the published layout.

The 16 kHz checkpoint ``Cnn14_16k_mAP=0.438.pth`` (zenodo 3987831) is a dict {'iteration', 'model', 'sampler'};
its 'model' state dict is what :class:`Cnn14` loads strictly. Its front end is part of the state dict (torchlibrosa
stores the STFT kernels and the mel filter as parameters), so the key shapes pin the sample-rate configuration:

    spectrogram_extractor.stft.conv_real.weight  (257, 1, 512)  DFT real part x periodic Hann, n_fft 512
    spectrogram_extractor.stft.conv_imag.weight  (257, 1, 512)
    logmel_extractor.melW                         (257, 64)      Slaney mel, 50-8000 Hz at 16 kHz
    bn0.*                                         (64,)
    conv_block{1..6}.conv{1,2}.weight, bn{1,2}.*  64, 128, 256, 512, 1024, 2048 channels, 3x3, no bias
    fc1.weight (2048, 2048), fc_audioset.weight (527, 2048) (+ biases)

Forward pass (eval mode; no SpecAugment, mixup or dropout): reflect-pad by n_fft // 2, STFT by convolution with
the stored kernels at hop 160, power spectrum, mel by ``melW``, 10 log10(max(mel, 1e-10)) (ref 1, no top_db);
bn0 over mel bins; six conv blocks (conv-bn-relu twice, then 2x2 average pooling, 1x1 for the last); mean over
frequency; max + mean over time; ``embedding`` = relu(fc1(x)) (2048-d) and ``logits`` = fc_audioset(embedding)
before the sigmoid (527 AudioSet classes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.errors import BenchError

FULL = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50.0, fmax=8000.0, classes_num=527,
            channels=(64, 128, 256, 512, 1024, 2048))
"""The configuration of ``Cnn14_16k_mAP=0.438.pth`` (audioldm_eval's Cnn14(16000, 512, 160, 64, 50, 8000, 527))."""

TINY = dict(FULL, classes_num=11, channels=(4, 4, 8, 8, 8, 16))
"""A small network with the same front end, for tests."""

SIM = dict(FULL, classes_num=16, channels=(8, 16, 32, 32, 64, 64))
"""The size trained on the simulator (``bench weights train-sim``: 16 classes, the labels of its three worlds)."""

NAME = "PANNs Cnn14 (16 kHz)"


def stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """(real, imag) conv1d kernels (n_fft // 2 + 1, 1, n_fft): e^{-2 pi i k n / N} times a periodic Hann window."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    angle = 2.0 * np.pi * np.outer(k, n) / n_fft
    real = (np.cos(angle) * window)[:, None, :]
    imag = (-np.sin(angle) * window)[:, None, :]
    return real.astype(np.float32), imag.astype(np.float32)


class _Stft(nn.Module):
    def __init__(self, n_fft: int):
        super().__init__()
        real, imag = stft_kernels(n_fft)
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=1, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=1, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int):
        super().__init__()
        self.stft = _Stft(n_fft)


class _Logmel(nn.Module):
    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        from bench.audio import mel_filterbank

        fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)  # (n_mels, F): librosa's default Slaney filters
        self.melW = nn.Parameter(torch.from_numpy(np.ascontiguousarray(fb.T)), requires_grad=False)


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool: tuple[int, int]):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool != (1, 1) else x


class Cnn14(nn.Module):
    """PANNs Cnn14 in eval mode: ``forward(waveform (B, L) at sample_rate)`` -> dict(embedding, logits).

    Settings default to ``FULL`` (the 16 kHz checkpoint); ``Cnn14(**TINY)`` is a small test network.
    The front-end parameters are initialised as torchlibrosa does (so a random-weight network still has a
    meaningful log-mel), and are overwritten by a checkpoint's stored values.
    """

    def __init__(self, sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50.0, fmax=8000.0,
                 classes_num=527, channels=(64, 128, 256, 512, 1024, 2048)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 6:
            raise BenchError(f"Cnn14 needs 6 channel widths, got {channels}")
        self.config = dict(sample_rate=sample_rate, window_size=window_size, hop_size=hop_size, mel_bins=mel_bins,
                           fmin=fmin, fmax=fmax, classes_num=classes_num, channels=channels)
        self.n_fft = int(window_size)
        self.hop = int(hop_size)
        self.spectrogram_extractor = _Spectrogram(self.n_fft)
        self.logmel_extractor = _Logmel(sample_rate, self.n_fft, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = (1,) + channels
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(widths[-1], widths[-1], bias=True)
        self.fc_audioset = nn.Linear(widths[-1], classes_num, bias=True)
        for p in list(self.spectrogram_extractor.parameters()) + list(self.logmel_extractor.parameters()):
            p.requires_grad_(False)
        self.eval()

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, 1, frames, mel_bins) log-mel in dB; frames = L // hop + 1."""
        if waveform.ndim != 2:
            raise BenchError(f"Cnn14 expects waveforms (B, samples), got shape {tuple(waveform.shape)}")
        if waveform.shape[1] <= self.n_fft // 2:
            raise BenchError(f"Cnn14 needs more than {self.n_fft // 2} samples per clip, got {waveform.shape[1]}")
        x = F.pad(waveform[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        stft = self.spectrogram_extractor.stft
        real = F.conv1d(x, stft.conv_real.weight, stride=self.hop)
        imag = F.conv1d(x, stft.conv_imag.weight, stride=self.hop)
        power = (real * real + imag * imag).transpose(1, 2)[:, None]  # (B, 1, T, F)
        mel = torch.matmul(power, self.logmel_extractor.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))

    def forward(self, waveform: torch.Tensor) -> dict:
        return self.forward_logmel(self.logmel(waveform))

    def forward_logmel(self, x: torch.Tensor) -> dict:
        """The network after its (fixed) front end: log-mel (B, 1, frames, mel_bins) -> dict(embedding, logits)."""
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, (2, 2) if i < 5 else (1, 1))
        x = torch.mean(x, dim=3)  # over frequency
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)  # over time
        embedding = F.relu(self.fc1(x))
        return {"embedding": embedding, "logits": self.fc_audioset(embedding)}


def checkpoint_state_dict(obj) -> dict:
    """The model state dict inside a loaded PANNs file: obj['model'] of the original dict, or a bare state dict."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
    raise BenchError(f"not a PANNs checkpoint: expected a dict with a 'model' state dict, found {keys}")


def load_cnn14(path, *, device: str = "cpu", arch: dict | None = None) -> Cnn14:
    """Cnn14 (``FULL`` unless ``arch``) with the weights of ``path`` (.pth or converted .safetensors), strictly."""
    from bench.networks.weights import load_checkpoint_file
    from bench.networks.checkpoints import strict_load

    net = Cnn14(**(arch or FULL))
    strict_load(net, checkpoint_state_dict(load_checkpoint_file(path)), NAME, str(path))
    return net.to(device).eval()

"""MelGAN generator (descript melgan-neurips, as shipped with SpecVQGAN's VGGSound vocoder): Park et al.'s vocoder.

Generator(input_size=80, ngf=32, n_residual_layers=3): reflect-pad 3, WN-Conv1d(80 -> 16 ngf, 7); for each upsampling
ratio r in (8, 8, 2, 2): LeakyReLU(0.2), WN-ConvTranspose1d(kernel 2r, stride r, padding r // 2 + r % 2,
output_padding r % 2) halving the width, then ``n_residual_layers`` residual blocks with dilations 3^j (LeakyReLU,
reflect-pad d, WN-Conv1d k3 dilation d, LeakyReLU, WN-Conv1d k1; plus a WN-Conv1d k1 shortcut); finally LeakyReLU,
reflect-pad 3, WN-Conv1d(ngf -> 1, 7), tanh. 256 samples per mel frame: 336 frames -> 86,016 samples at 22,050 Hz.

Weight norm uses the legacy parameter names of ``torch.nn.utils.weight_norm`` (``weight_g``, ``weight_v``), which
``best_netG.pt`` (a bare state dict, 126 tensors, 4,266,050 parameters) stores: w = g * v / ||v||, the norm over
every axis but the first. The input is SpecVQGAN's [0, 1] mel (the codebook's [-1, 1] output mapped by (x + 1) / 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.errors import BenchError

SAMPLE_RATE = 22_050
RATIOS = (8, 8, 2, 2)


@dataclass(frozen=True)
class MelGanConfig:
    n_mels: int = 80
    ngf: int = 32
    n_residual_layers: int = 3

    @classmethod
    def from_arch(cls, arch: dict | None) -> "MelGanConfig":
        return cls(**{k: int(v) for k, v in (arch or {}).items() if k in cls.__dataclass_fields__})

    def arch(self) -> dict:
        return asdict(self)


class _WN(nn.Module):
    """A convolution with legacy weight-norm parameters (bias, weight_g, weight_v)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        w = conv.weight.detach()
        self.weight_g = nn.Parameter(w.flatten(1).norm(dim=1).view(-1, *([1] * (w.ndim - 1))).clone())
        self.weight_v = nn.Parameter(w.clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self._conv = {k: getattr(conv, k) for k in ("stride", "padding", "dilation")}
        self._transposed = isinstance(conv, nn.ConvTranspose1d)
        if self._transposed:
            self._conv["output_padding"] = conv.output_padding

    def forward(self, x):
        v = self.weight_v
        w = self.weight_g * v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
        if self._transposed:
            return F.conv_transpose1d(x, w, self.bias, **self._conv)
        return F.conv1d(x, w, self.bias, **self._conv)

class ResnetBlock(nn.Module):
    def __init__(self, dim, dilation):
        super().__init__()
        self.block = nn.Sequential(nn.LeakyReLU(0.2), nn.ReflectionPad1d(dilation),
                                   _WN(nn.Conv1d(dim, dim, 3, dilation=dilation)), nn.LeakyReLU(0.2),
                                   _WN(nn.Conv1d(dim, dim, 1)))
        self.shortcut = _WN(nn.Conv1d(dim, dim, 1))

    def forward(self, x):
        return self.shortcut(x) + self.block(x)

class Generator(nn.Module):
    """MelGAN's generator: (B, n_mels, T) mel in [0, 1] -> (B, 1, 256 T) waveform."""

    def __init__(self, cfg: "MelGanConfig"):
        super().__init__()
        mult = 2 ** len(RATIOS)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), _WN(nn.Conv1d(cfg.n_mels, mult * cfg.ngf, 7))]
        for r in RATIOS:
            layers += [nn.LeakyReLU(0.2),
                       _WN(nn.ConvTranspose1d(mult * cfg.ngf, mult * cfg.ngf // 2, 2 * r, stride=r,
                                              padding=r // 2 + r % 2, output_padding=r % 2))]
            layers += [ResnetBlock(mult * cfg.ngf // 2, 3**j) for j in range(cfg.n_residual_layers)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), _WN(nn.Conv1d(cfg.ngf, 1, 7)), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.config = cfg

    def forward(self, mel):
        return self.model(mel)


def build_melgan(config: MelGanConfig | None = None):
    """The generator (random init): ``forward(mel01 (B, n_mels, T))`` -> (B, 1, 256 T)."""
    with torch.random.fork_rng(devices=[]):
        return Generator(config or MelGanConfig())


def load_melgan(path: str | Path, config: MelGanConfig | None = None, device: str = "cpu"):
    """MelGAN from ``best_netG.pt`` (a bare state dict with legacy weight-norm keys), loaded strictly."""
    import torch

    from bench.networks.checkpoints import read_checkpoint, strict_load

    sd = read_checkpoint(path, entry="melgan-vggsound")
    if not (isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values())):
        keys = ", ".join(map(str, list(sd)[:6])) if isinstance(sd, dict) else type(sd).__name__
        raise BenchError(f"MelGAN checkpoint {path} is not a bare state dict of tensors (has {keys}); expected "
                         f"SpecVQGAN's vocoder best_netG.pt (see `bench weights ls`)")
    net = build_melgan(config)
    strict_load(net, sd, "MelGAN", str(path))
    return net.to(device).eval()


class MelGanVocoder:
    """[0, 1] Park mels (n, 80, T) at 22.05 kHz -> waveforms at 16 kHz of ``n_samples`` (resampled, cut or padded)."""

    name = "melgan"

    def __init__(self, net, source: str, device: str = "cpu", batch_size: int = 8):
        self.net, self.source, self.device, self.batch_size = net.to(device).eval(), source, device, batch_size

    def mel_to_audio(self, mel01: np.ndarray, n_samples: int, sr_out: int = 16_000) -> np.ndarray:
        import torch

        from bench.audio import resample

        mel = np.asarray(mel01, dtype=np.float32)
        if mel.ndim != 3 or mel.shape[1] != self.net.config.n_mels:
            raise BenchError(f"MelGAN input must be (n, {self.net.config.n_mels}, frames), got shape {mel.shape}")
        wavs = []
        with torch.no_grad():
            for i in range(0, len(mel), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(mel[i : i + self.batch_size])).to(self.device)
                wavs.append(self.net(x)[:, 0].float().cpu().numpy())
        wav = resample(np.concatenate(wavs), SAMPLE_RATE, sr_out)
        out = np.zeros((len(wav), int(n_samples)), dtype=np.float32)
        keep = min(int(n_samples), wav.shape[1])
        out[:, :keep] = wav[:, :keep]
        return out

    def config(self) -> dict:
        return {"name": self.name, "weights": self.source, "sample_rate": SAMPLE_RATE, "resampled_to": 16_000}

"""VGGishish (SpecVQGAN's VGGSound classifier) and its mel front end: Park et al.'s auditory features.

Network (SpecVQGAN ``specvqgan/modules/losses/vggishish/model.py``): VGG16 without its last max-pool, 3x3 convs
(padding 1) + ReLU without batch norm, 2x2 max-pools, then AdaptiveAvgPool2d((5, 10)) and a classifier
Linear(C5 * 50, hidden)-ReLU-Linear(hidden, hidden)-ReLU-Linear(hidden, n_classes). State-dict keys (32 tensors):
``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}``, ``classifier.{0,2,4}.{weight,bias}``.
``vggishish16.pt`` is a training dict whose weights are under ``'model'``; :func:`load_vggishish` loads exactly
those, strictly (upstream lpaps.py loads the whole dict with strict=False and so loads nothing).

Front end (SpecVQGAN ``feature_extraction/extract_mel_spectrogram.py``, :func:`park_mel`): 22,050 Hz mono padded or
trimmed to the window length, |STFT| (n_fft = win = 1024, hop 256, periodic Hann, centred, reflect padding),
80 Slaney mels over 125-7600 Hz, then clip((20 log10(max(m, 1e-5)) - 20 + 100) / 100, 0, 1). A 4-s window gives
345 frames, centre-cropped to 336 (offset 4). VGGishish sees that [0, 1] mel standardised per mel bin with the
VGGSound training statistics (``train_means_stds_melspec_10s_22050hz.txt``: 80 rows of ``mean std``).

conv5_3, the layer Park et al. decode, is the output of ``features.28`` before its ReLU: (C5, 5, 21) for an
80 x 336 input, 512 x 5 x 21 = 53,760 units with the published widths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bench.errors import BenchError

PARK_MEL = dict(sr=22_050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=125.0, fmax=7600.0, floor=1e-5)
WINDOW_SECONDS = 4.0  # the window every Park network is built for
WINDOW_FRAMES = 336  # 345 frames of a 4-s window, centre-cropped (SpecVQGAN's crop to a multiple of 16)
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV5_3 = 28
_BLOCKS = (2, 2, 3, 3, 3)  # convs per VGG16 block


@dataclass(frozen=True)
class VGGishishConfig:
    """widths: output channels of the five VGG blocks; hidden: classifier width; n_classes: 309 for VGGSound."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    hidden: int = 4096
    n_classes: int = 309

    @classmethod
    def from_arch(cls, arch: dict | None) -> "VGGishishConfig":
        if not arch:
            return cls()
        return cls(widths=tuple(int(w) for w in arch.get("widths", cls.widths)), hidden=int(arch.get("hidden", cls.hidden)),
                   n_classes=int(arch.get("n_classes", cls.n_classes)))

    def arch(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def conv5_3_shape(self, frames: int = WINDOW_FRAMES) -> tuple[int, int, int]:
        return (self.widths[-1], PARK_MEL["n_mels"] // 16, frames // 16)


def loop_to_window(audio: np.ndarray, sr: int = 16_000, seconds: float = WINDOW_SECONDS) -> np.ndarray:
    """This suite's adaptation of clips shorter than the 4-s window (Brain2Music 1.5 s, Brain2Speech 2 s): each clip
    (n, samples) is repeated end to end and cut to ``seconds`` (a 4-s clip is returned unchanged). Clips longer than
    the window cannot be served (Park et al.'s networks see one 4-s window): a one-line error."""
    x = np.asarray(audio, dtype=np.float32)
    length = int(round(seconds * sr))
    if x.ndim != 2 or x.shape[1] < 1:
        raise BenchError(f"audio must be (n, samples) with samples > 0, got shape {x.shape}")
    if x.shape[1] > length:
        raise BenchError(f"clips of {x.shape[1] / sr:g} s are longer than Park et al.'s {seconds:g}-s window; cut them into "
                         f"windows of at most {seconds:g} s (clip_seconds in datasets.yaml)")
    reps = -(-length // x.shape[1])
    return np.ascontiguousarray(np.tile(x, (1, reps))[:, :length])


def park_mel(audio: np.ndarray, sr: int = 16_000, seconds: float = WINDOW_SECONDS, crop: int | None = WINDOW_FRAMES) -> np.ndarray:
    """SpecVQGAN's [0, 1] log-mel: audio (n, samples) at ``sr`` -> (n, 80, frames) float32.

    The audio is resampled to 22,050 Hz and padded with zeros or trimmed to ``seconds``; ``crop`` frames are kept
    from the centre (336 of 345 for 4 s; None keeps all).
    """
    from bench.audio import cached_filterbank, resample, stft_magnitude

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 2:
        raise BenchError(f"audio must be (n, samples), got shape {x.shape}")
    cfg = PARK_MEL
    x = resample(x, int(sr), cfg["sr"])
    length = int(round(seconds * cfg["sr"]))
    if x.shape[1] < length:
        x = np.pad(x, ((0, 0), (0, length - x.shape[1])))
    x = np.ascontiguousarray(x[:, :length])
    mag = stft_magnitude(x, cfg["n_fft"], cfg["hop"], cfg["win"], center=True)
    fb = cached_filterbank(cfg["sr"], cfg["n_fft"], cfg["n_mels"], cfg["fmin"], cfg["fmax"])
    mel = np.einsum("mf,nft->nmt", fb, mag, optimize=True)
    db = 20.0 * np.log10(np.maximum(mel, cfg["floor"])) - 20.0
    out = np.clip((db + 100.0) / 100.0, 0.0, 1.0).astype(np.float32)
    if crop is not None:
        if out.shape[2] < crop:
            raise BenchError(f"a {seconds:g}-s window gives {out.shape[2]} mel frames, fewer than the {crop} to keep")
        start = (out.shape[2] - crop) // 2
        out = out[:, :, start : start + crop]
    return out


def park_mel_to_vocoder_mel(mel01: np.ndarray, n_samples: int) -> np.ndarray:
    """A [0, 1] Park mel (n, 80, T) at 22.05 kHz -> the suite's ``vocoder_mel`` (n, 64, frames) for ``n_samples`` at
    16 kHz, through the linear magnitude: dB undone, mel -> |STFT| by the filterbank's pseudo-inverse (clamped at
    1e-8), bins and frames linearly interpolated onto the 16-kHz grid (both STFTs use a 1024-point Hann window, so
    magnitudes are on the same scale), then the vocoder's 64 mels and natural log. For Griffin-Lim or HiFiGAN."""
    from bench.audio import VOCODER_MEL, cached_filterbank

    cfg, voc = PARK_MEL, VOCODER_MEL
    m = np.asarray(mel01, dtype=np.float64)
    mel = 10.0 ** ((m * 100.0 - 100.0 + 20.0) / 20.0)
    fb = cached_filterbank(cfg["sr"], cfg["n_fft"], cfg["n_mels"], cfg["fmin"], cfg["fmax"]).astype(np.float64)
    mag = np.maximum(np.einsum("fm,nmt->nft", np.linalg.pinv(fb), mel), 1e-8)
    f_src = np.fft.rfftfreq(cfg["n_fft"], 1.0 / cfg["sr"])
    f_dst = np.fft.rfftfreq(voc["n_fft"], 1.0 / voc["sr"])
    t_src = np.arange(mag.shape[2]) * cfg["hop"] / cfg["sr"]
    frames = n_samples // voc["hop"] + 1
    t_dst = np.arange(frames) * voc["hop"] / voc["sr"]
    # time first, then frequency, each a linear interpolation (edges held)
    lo = np.clip(np.searchsorted(t_src, t_dst, side="right") - 1, 0, len(t_src) - 1)
    hi = np.minimum(lo + 1, len(t_src) - 1)
    w = np.where(hi > lo, (t_dst - t_src[lo]) / np.maximum(t_src[hi] - t_src[lo], 1e-12), 0.0).clip(0, 1)
    mag_t = mag[:, :, lo] * (1 - w) + mag[:, :, hi] * w
    flo = np.clip(np.searchsorted(f_src, f_dst, side="right") - 1, 0, len(f_src) - 1)
    fhi = np.minimum(flo + 1, len(f_src) - 1)
    fw = np.where(fhi > flo, (f_dst - f_src[flo]) / np.maximum(f_src[fhi] - f_src[flo], 1e-12), 0.0).clip(0, 1)
    mag_f = mag_t[:, flo, :] * (1 - fw)[None, :, None] + mag_t[:, fhi, :] * fw[None, :, None]
    vfb = cached_filterbank(voc["sr"], voc["n_fft"], voc["n_mels"], voc["fmin"], voc["fmax"]).astype(np.float64)
    out = np.einsum("mf,nft->nmt", vfb, mag_f)
    return np.log(np.maximum(out, voc["floor"])).astype(np.float32)


def read_mel_stats(path: str | Path, n_mels: int = PARK_MEL["n_mels"]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin (mean, std) from a ``train_means_stds_melspec_10s_22050hz.txt``-style file: ``n_mels`` rows of two
    numbers. Returns two (n_mels,) float32 arrays; a malformed file is a one-line error."""
    path = Path(path)
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise BenchError(f"mel statistics file {path} is unreadable ({exc}); expected {n_mels} rows of 'mean std'") from None
    if table.shape != (n_mels, 2) or not np.isfinite(table).all() or (table[:, 1] <= 0).any():
        raise BenchError(f"mel statistics file {path} has shape {table.shape}; expected {n_mels} rows of 'mean std' "
                         f"with finite means and positive stds")
    return table[:, 0].astype(np.float32), table[:, 1].astype(np.float32)


def write_mel_stats(path: str | Path, mean: np.ndarray, std: np.ndarray) -> None:
    """Write per-bin statistics in the format :func:`read_mel_stats` reads (atomically)."""
    from bench.io import write_text

    rows = "\n".join(f"{float(m):.9g} {float(s):.9g}" for m, s in zip(mean, std))
    write_text(Path(path), rows + "\n")


class VGGishish(nn.Module):
    """VGGishish: ``forward(x (B, 80, T))`` -> logits; ``conv5_3(x)`` -> (B, C5, 5, T/16)."""

    def __init__(self, cfg: "VGGishishConfig"):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for b, (n_convs, width) in enumerate(zip(_BLOCKS, cfg.widths)):
            for _ in range(n_convs):
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            if b < len(_BLOCKS) - 1:  # no pool after the last block
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((5, 10))
        self.classifier = nn.Sequential(
            nn.Linear(cfg.widths[-1] * 50, cfg.hidden), nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.n_classes))
        self.config = cfg

    def forward(self, x):
        x = self.features(x[:, None] if x.ndim == 3 else x)
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def conv5_3(self, x):
        """Output of features.28 before its ReLU: (B, C5, H/16, W/16)."""
        x = x[:, None] if x.ndim == 3 else x
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == CONV5_3:
                return x
        raise AssertionError("features has no conv5_3")  # pragma: no cover - fixed layout


def build_vggishish(config: VGGishishConfig | None = None):
    """The VGGishish torch module (random init). ``forward(x (B, 80, T))`` -> logits; ``conv5_3(x)`` -> (B, C5, 5, T/16)."""
    net = VGGishish(config or VGGishishConfig())
    assert tuple(i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)) == CONV_INDICES
    return net


def load_vggishish(path: str | Path, config: VGGishishConfig | None = None, device: str = "cpu"):
    """VGGishish from a ``vggishish16.pt``-style training dict: the state dict under ``'model'``, loaded strictly."""
    from bench.networks.checkpoints import read_checkpoint, strict_load

    obj = read_checkpoint(path, entry="vggishish")
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise BenchError(f"VGGishish checkpoint {path} has no 'model' state dict (has {keys}); expected SpecVQGAN's "
                         f"vggishish16.pt training dict (see `bench weights ls`)")
    net = build_vggishish(config)
    strict_load(net, obj["model"], "VGGishish", str(path))
    return net.to(device).eval()


class AuditoryFeatures:
    """A frozen VGGishish with its per-bin statistics: audio windows -> conv5_3 features.

    ``conv5_3(audio16k)`` -> (n, C5, 5, 21) float32 for 4-s windows at 16 kHz (shorter clips padded by the
    caller's adaptation, see methods.park).
    """

    def __init__(self, net, mel_mean: np.ndarray, mel_std: np.ndarray, device: str = "cpu"):
        self.net, self.device = net.to(device).eval(), device
        self.mel_mean = np.asarray(mel_mean, dtype=np.float32)[:, None]
        self.mel_std = np.asarray(mel_std, dtype=np.float32)[:, None]

    def standardise(self, mel01: np.ndarray) -> np.ndarray:
        return (mel01 - self.mel_mean) / self.mel_std

    def conv5_3(self, audio16k: np.ndarray, batch_size: int = 16) -> np.ndarray:
        import torch

        mel = self.standardise(park_mel(audio16k))
        out = []
        with torch.no_grad():
            for i in range(0, len(mel), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(mel[i : i + batch_size])).to(self.device)
                out.append(self.net.conv5_3(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

"""Vocoders: vocoder log-mel (n, 64, frames) -> waveform (n, samples) float32 at 16 kHz.

Griffin-Lim is the offline default (no weights). HiFiGAN (SpeechT5HifiGan with AudioLDM2
weights) plugs in here once pretrained backbones are available.
"""

from __future__ import annotations

from bench.errors import BenchError

VOCODERS = ("griffin-lim",)


def get_vocoder(name: str = "griffin-lim", *, n_iter: int = 32, seed: int = 0, device: str = "cpu"):
    """Build a vocoder with ``mel_to_audio(log_mel, n_samples)`` and ``config()``."""
    if name == "griffin-lim":
        from bench.audio import GriffinLim

        return GriffinLim(n_iter=n_iter, seed=seed, device=device)
    raise BenchError(f"unknown vocoder {name!r}; available: {', '.join(VOCODERS)}")

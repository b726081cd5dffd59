"""Vocoders: vocoder log-mel (n, 64, frames) -> waveform (n, samples) float32 at 16 kHz.

- ``griffin-lim``: no weights (``bench.audio.GriffinLim``), the offline default of the tiny profiles.
- ``hifigan``: AudioLDM2's SpeechT5HifiGan, loaded strictly from the ``vocoder/`` folder of the audioldm2
  weights (catalogue entry ``audioldm2``; ``bench weights ls`` says where it is looked for). Its input is
  exactly ``bench.audio.vocoder_mel`` (64 Slaney mels, n_fft 1024, hop 160, ln(max(mel, 1e-5))).
- ``auto`` (a parameter value, never a vocoder): ``hifigan`` when the audioldm2 weights are found, else
  ``griffin-lim``. Methods resolve it when they are configured (``Method.from_profile``), so the
  config, its hash and the leaderboard row name say which vocoder made the audio.
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError

VOCODERS = ("griffin-lim", "hifigan")
VOCODER_PARAM_VALUES = VOCODERS + ("auto",)  # what a method's ``vocoder`` parameter accepts
HIFIGAN_WEIGHTS = "audioldm2"  # the catalogue entry whose vocoder/ folder holds the HiFiGAN


def resolve_vocoder(name: str) -> str:
    """'auto' -> 'hifigan' when the audioldm2 weights are found, else 'griffin-lim'; other names unchanged."""
    if name != "auto":
        return name
    from bench.networks import weights as W

    return "hifigan" if W.find(HIFIGAN_WEIGHTS) is not None else "griffin-lim"


class HifiGan:
    """SpeechT5HifiGan (transformers) as a vocoder: log-mel (n, n_mels, T) -> (n, samples), batched, no grad."""

    def __init__(self, model, source: str, device: str = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.source, self.device, self.batch_size = source, device, int(batch_size)
        self.n_mels = int(model.config.model_in_dim)
        self.hop = int(np.prod(model.config.upsample_rates))

    def mel_to_audio(self, log_mel: np.ndarray, n_samples: int) -> np.ndarray:
        """log_mel: (n, n_mels, T) float32 ``vocoder_mel`` units -> (n, n_samples) float32 (cropped or zero-padded)."""
        import torch

        log_mel = np.asarray(log_mel, dtype=np.float32)
        if log_mel.ndim != 3 or log_mel.shape[1] != self.n_mels:
            raise BenchError(f"HiFiGAN input must be (n, {self.n_mels}, frames) log-mels, got shape {log_mel.shape}")
        out = np.zeros((len(log_mel), int(n_samples)), dtype=np.float32)
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            for i in range(0, len(log_mel), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(log_mel[i : i + self.batch_size].transpose(0, 2, 1)))
                wav = self.model(x.to(self.device, dtype)).float().cpu().numpy()
                wav = wav.reshape(len(x), -1)[:, :n_samples]
                out[i : i + len(x), : wav.shape[1]] = wav
        return out

    def config(self) -> dict:
        return {"name": "hifigan", "weights": self.source, "n_mels": self.n_mels, "hop": self.hop}


def load_hifigan(device: str = "cpu", weights: str = HIFIGAN_WEIGHTS) -> HifiGan:
    """The HiFiGAN of the ``weights`` catalogue entry (an AudioLDM2 folder); a one-line BenchError if absent."""
    from bench.networks import weights as W
    from bench.networks.audioldm2 import load_vocoder

    found = W.find(weights)
    if found is None:
        raise BenchError(W.missing_reason(W.get_spec(weights), "the HiFiGAN vocoder (or --set vocoder=griffin-lim)"))
    return HifiGan(load_vocoder(found.path, what=weights), str(found.path), device=device)


def get_vocoder(name: str = "griffin-lim", *, n_iter: int = 32, seed: int = 0, device: str = "cpu"):
    """Build a vocoder with ``mel_to_audio(log_mel, n_samples)`` and ``config()``."""
    name = resolve_vocoder(name)
    if name == "griffin-lim":
        from bench.audio import GriffinLim

        return GriffinLim(n_iter=n_iter, seed=seed, device=device)
    if name == "hifigan":
        return load_hifigan(device=device)
    raise BenchError(f"unknown vocoder {name!r}; available: {', '.join(VOCODERS)} (or auto)")

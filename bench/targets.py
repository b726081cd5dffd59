"""Ground-truth targets computed from the stimulus audio, once per clip and cached in memory.

Samples share clips (windows, repetitions), so targets are computed for the unique clips a split
uses and gathered per sample.
"""

from __future__ import annotations

import numpy as np

_CACHE: dict[tuple, dict[int, np.ndarray]] = {}
_CACHE_LIMIT = 4  # datasets kept; a paper-scale sound table of mels is ~0.4 GB


def clip_targets(split, kind: str, compute, batch: int = 64) -> np.ndarray:
    """Per-sample targets of ``kind`` for ``split``: (n, *target_shape) float32.

    compute: callable mapping audio (b, samples) float32 at 16 kHz -> (b, *target_shape)
    """
    key = (split.dataset, split.version, kind)
    store = _CACHE.setdefault(key, {})
    while len(_CACHE) > _CACHE_LIMIT:
        _CACHE.pop(next(iter(_CACHE)))
    needed = [int(i) for i in split.unique_clips() if int(i) not in store]
    for start in range(0, len(needed), batch):
        idx = needed[start : start + batch]
        values = compute(np.asarray(split.clips.audio[idx], dtype=np.float32))
        for i, v in zip(idx, values):
            store[i] = np.asarray(v, dtype=np.float32)
    return np.stack([store[int(i)] for i in split.clip_index])


def vocoder_mels(split) -> np.ndarray:
    """(n, 64, frames) float32 vocoder log-mels of the audio each sample heard."""
    from bench.audio import vocoder_mel

    return clip_targets(split, "vocoder_mel", vocoder_mel)


def clip_view(split):
    """A split-like view with one row per unique clip (what ``clip_targets`` needs), the unique clip indices (u,) and
    each sample's row in them (n,)."""
    from types import SimpleNamespace

    unique = np.asarray(split.unique_clips(), dtype=np.int64)
    view = SimpleNamespace(dataset=split.dataset, version=split.version, clips=split.clips, clip_index=unique,
                           unique_clips=lambda: unique)
    rows = np.searchsorted(unique, np.asarray(split.clip_index, dtype=np.int64))
    return view, unique, rows

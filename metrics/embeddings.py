"""Embeddings of audio by the perceptual networks (PANNs, VGGish, CLAP), computed in batches and cached twice.

Networks (``KINDS``) and their per-clip outputs:

    panns   embedding (n, 2048) relu(fc1), logits (n, 527) before the sigmoid   input: prepare_for_embedding (16 kHz)
    vggish  patches (sum of P_i, 128) and n_patches (n,) per clip                input: prepare_for_embedding (16 kHz)
    clap    embedding (n, 512), L2-normalised                                    input: resampled to 48 kHz

Inputs follow audioldm_eval 0.0.3 path by path: PANNs gets ``prepare_for_embedding`` (its PANNs path: first channel,
mean removed, 16 kHz, zero-padded to 2 s); VGGish gets the clip resampled to 16 kHz and nothing else (its FAD path:
no mean removal, no padding; a clip shorter than one 0.96-s patch is an error naming it). CLAP gets the clip resampled to 48 kHz without mean removal or padding (laion_clap's own conventions; see
:mod:`bench.networks.clap`).

Caches:

- reference (stimulus) features, per unique clip of a split, under the data root:
  ``<data root>/features/<dataset>/<version>/<network>-<weights sha256[:16]>-p<PREP_VERSION>/clips-<hash of the
  clip indices>.npz``; computed once per (dataset, version, clip set, network, weights) and shared by every method,
  subject and seed with the same test clips; written atomically; used only while the sha256 of the clips' audio
  matches the one stored with it;
- a record's own features, in ``<record>.emb.npz`` beside the record when the caller sets
  ``ctx.embeddings_path``; keyed by the network key and the sha256 of the reconstruction audio, so rescoring a
  record after a metric change recomputes nothing, and a changed reconstruction is never matched with stale
  features.

``PREP_VERSION`` is part of every key: bump it when the preparation or a network's code changes its output.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.networks.cache import Network

PREP_VERSION = 2  # 2: VGGish input without mean removal and padding (audioldm_eval's FAD path)
BATCH = {"panns": 16, "vggish": 16, "clap": 8}


def feature_key(net: Network) -> str:
    """Identifies a network's outputs in the caches: network, weights sha256 and preparation version."""
    return f"{net.key}-p{PREP_VERSION}"


# ----------------------------------------------------------------------------------------------
# inference


def embed_audio(net: Network, audio: np.ndarray, sr: int = 16_000, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Per-clip outputs of ``net`` for audio (n, samples) at ``sr`` (see the module docstring for the layouts)."""
    import torch

    from bench.audio import prepare_for_embedding

    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise BenchError(f"audio must be (n, samples) with n >= 1, got shape {audio.shape}")
    bs = int(batch_size or BATCH[net.kind])
    outs: dict[str, list] = {}
    with torch.inference_mode():
        for start in range(0, audio.shape[0], bs):
            chunk = audio[start : start + bs]
            if net.kind == "clap":
                from bench.networks.clap import prepare_waveform

                emb = net.model.audio_embeddings(prepare_waveform(chunk, sr), batch_size=bs)
                outs.setdefault("embedding", []).append(emb)
                continue
            if net.kind == "panns":
                x = torch.from_numpy(prepare_for_embedding(chunk, sr)).to(net.device)
                o = net.model(x)
                outs.setdefault("embedding", []).append(o["embedding"].float().cpu().numpy())
                outs.setdefault("logits", []).append(o["logits"].float().cpu().numpy())
            else:
                x = torch.from_numpy(vggish_input(chunk, sr, start)).to(net.device)
                e = net.model.embed(x).float().cpu().numpy()  # (b, P, D)
                outs.setdefault("patches", []).append(e.reshape(-1, e.shape[-1]))
                outs.setdefault("n_patches", []).append(np.full(e.shape[0], e.shape[1], dtype=np.int64))
    return {k: np.concatenate(v).astype(np.int64 if k == "n_patches" else np.float32) for k, v in outs.items()}


def vggish_input(audio: np.ndarray, sr: int, first_row: int = 0) -> np.ndarray:
    """audioldm_eval's FAD input: (n, samples) at ``sr`` -> (n, L) float32 at 16 kHz, resampled and nothing else.

    A clip shorter than one VGGish patch (0.96 s: 15,360 samples at 16 kHz + the 240-sample frame overhang) would give
    no embedding: BenchError naming its row (``first_row`` + its index in ``audio``).
    """
    from bench.audio import resample

    x = resample(np.asarray(audio, dtype=np.float32), sr, 16_000)
    min_len = 400 + 95 * 160  # 96 frames of 400 samples every 160
    if x.shape[-1] < min_len:
        raise BenchError(f"FAD: clip {first_row} is {x.shape[-1] / 16000:.3f} s long, shorter than one 0.96-s VGGish patch "
                         f"({min_len} samples at 16 kHz); FAD cannot score clips this short")
    return np.ascontiguousarray(x, dtype=np.float32)


def _select(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows (clip positions, repeats allowed) of per-clip outputs, the ragged VGGish layout included."""
    if "n_patches" in data:
        counts = data["n_patches"]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        parts = [data["patches"][offsets[r] : offsets[r + 1]] for r in rows]
        return {"patches": np.concatenate(parts) if parts else data["patches"][:0], "n_patches": counts[rows]}
    return {k: v[rows] for k, v in data.items()}


# ----------------------------------------------------------------------------------------------
# reference features (per clip, under the data root)


def _clip_hash(clips: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(clips, dtype=np.int64).tobytes()).hexdigest()[:16]


def feature_path(split, net: Network, clips: np.ndarray, root=None) -> Path:
    from bench.data import data_root

    if root is None and getattr(split, "folder", None) is not None:
        root = Path(split.folder).parent.parent  # the data root the split was read from
    return data_root(root) / "features" / split.dataset / split.version / feature_key(net) / f"clips-{_clip_hash(clips)}.npz"


def _meta(split, net: Network, audio_sha256: str) -> dict:
    return {"dataset": split.dataset, "version": split.version, "network": net.kind, "weights": net.weights,
            "weights_sha256": net.sha256, "prep_version": PREP_VERSION, "audio_sha256": audio_sha256}


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError):
        return None  # missing or corrupt: recomputed and rewritten


def reference_embeddings(split, net: Network, *, batch_size: int | None = None, root=None) -> dict[str, np.ndarray]:
    """Outputs for the audio each sample of ``split`` heard (per sample, in order), from the feature cache."""
    from bench.io import file_lock, write_npz

    clips = np.asarray(split.unique_clips(), dtype=np.int64)
    path = feature_path(split, net, clips, root)
    audio = np.asarray(split.clips.audio[clips], dtype=np.float32)
    # The audio's own digest, not only the dataset version: re-prepared audio under the same version (users fetch
    # Brain2Sound's clips themselves) or another split that reuses a name is recomputed, never matched with stale
    # features (measured: the metric tests' ad-hoc splits read each other's references before this).
    meta = _meta(split, net, audio_digest(audio))

    def cached():
        stored = _read_npz(path)
        if stored is not None and np.array_equal(stored.get("clip_index"), clips) and \
                json.loads(str(stored.get("meta", np.array("{}")))) == meta:
            return {k: v for k, v in stored.items() if k not in ("clip_index", "meta")}
        return None

    data = cached()
    if data is None:
        # Concurrent cells (Slurm tasks) share the cache: one computes it, the others wait and read it.
        with file_lock(path.with_name(f".{path.name}.lock")):
            data = cached()
            if data is None:
                data = embed_audio(net, audio, batch_size=batch_size)
                write_npz(path, clip_index=clips, meta=np.array(json.dumps(meta, sort_keys=True)), **data)
    rows = np.searchsorted(clips, np.asarray(split.clip_index, dtype=np.int64))
    return _select(data, rows)


# ----------------------------------------------------------------------------------------------
# a record's own features (beside the record)


def audio_digest(audio: np.ndarray) -> str:
    a = np.ascontiguousarray(audio, dtype=np.float32)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def record_embeddings(audio: np.ndarray, net: Network, path: str | os.PathLike | None = None,
                      *, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Outputs for a reconstruction's audio (n, samples) at 16 kHz; read from / written to ``path`` when given.

    The file holds one group per network (``<kind>__<output>``), each with its network key and the audio's sha256.
    """
    from bench.io import write_npz

    audio = np.asarray(audio, dtype=np.float32)
    digest = audio_digest(audio)
    stored = _read_npz(Path(path)) if path is not None else None
    prefix = f"{net.kind}__"
    if stored is not None:
        if str(stored.get(prefix + "key", "")) == feature_key(net) and str(stored.get(prefix + "audio_sha256", "")) == digest:
            return {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix) and k[len(prefix):] not in ("key", "audio_sha256")}
    data = embed_audio(net, audio, batch_size=batch_size)
    if path is not None:
        keep = {k: v for k, v in (stored or {}).items() if not k.startswith(prefix)}
        keep.update({prefix + k: v for k, v in data.items()})
        keep[prefix + "key"] = np.array(feature_key(net))
        keep[prefix + "audio_sha256"] = np.array(digest)
        write_npz(Path(path), **keep)
    return data


def record_embeddings_path(record_path: str | os.PathLike) -> Path:
    """``<record>.emb.npz`` beside a run record (runs/.../sub-X_seed-0_<key>.json -> ...<key>.emb.npz)."""
    return Path(record_path).with_suffix(".emb.npz")


# ----------------------------------------------------------------------------------------------
# EvalContext glue


def context_device(ctx) -> str:
    from bench.device import resolve_device

    return resolve_device(getattr(ctx, "device", None) or "cpu")


def pair(ctx, net: Network) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(reference, reconstruction) per-sample outputs for a cell, computed once per context and network."""
    def compute():
        ref = reference_embeddings(ctx.test, net)
        rec = record_embeddings(ctx.rec.audio, net, getattr(ctx, "embeddings_path", None))
        return ref, rec

    return ctx.cached(f"embeddings:{feature_key(net)}", compute)

"""Embeddings of audio by the perceptual networks (PANNs, VGGish, CLAP), computed in batches and cached twice.

Networks (``KINDS``) and their per-clip outputs:

    panns   embedding (n, 2048) relu(fc1), logits (n, 527) before the sigmoid   input: prepare_for_embedding (16 kHz)
    vggish  patches (sum of P_i, 128) and n_patches (n,) per clip                input: prepare_for_embedding (16 kHz)
    clap    embedding (n, 512), L2-normalised                                    input: resampled to 48 kHz

``prepare_for_embedding`` is audioldm_eval's preparation (first channel, mean removed, 16 kHz, zero-padded to 2 s).
CLAP gets the clip resampled to 48 kHz without mean removal or padding (laion_clap's own conventions; see
:mod:`metrics.networks.clap`).

Caches:

- reference (stimulus) features, per unique clip of a split, under the data root:
  ``<data root>/features/<dataset>/<version>/<network>-<weights sha256[:16]>-p<PREP_VERSION>/clips-<hash of the
  clip indices>.npz``; computed once per (dataset, version, clip set, network, weights) and shared by every method,
  subject and seed with the same test clips; written atomically;
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, UnavailableError

PREP_VERSION = 1
KINDS = ("panns", "vggish", "clap")
LABELS = {"panns": "PANNs Cnn14 (16 kHz)", "vggish": "VGGish", "clap": "LAION CLAP"}
DEFAULT_WEIGHTS = {"panns": "panns-cnn14-16k", "vggish": "vggish", "clap": "clap-630k-audioset"}
CLAP_ENV = "BENCH_CLAP_WEIGHTS"
BATCH = {"panns": 16, "vggish": 16, "clap": 8}


def weights_name(kind: str) -> str:
    """Catalogue entry a network loads: fixed for PANNs and VGGish; ``$BENCH_CLAP_WEIGHTS`` or the default for CLAP."""
    from bench import weights as W

    if kind not in KINDS:
        raise BenchError(f"unknown network {kind!r}; known: {', '.join(KINDS)}")
    if kind == "clap" and os.environ.get(CLAP_ENV):
        name = os.environ[CLAP_ENV].strip()
        spec = W.get_spec(name)
        if not spec.name.startswith("clap"):
            raise BenchError(f"${CLAP_ENV}={name} is not a CLAP entry; choose one of "
                             f"{', '.join(s.name for s in W.CATALOGUE if s.name.startswith('clap'))}")
        return name
    return DEFAULT_WEIGHTS[kind]


@dataclass
class Network:
    """A loaded network. key: identifies its outputs (network, weights sha256, preparation version)."""

    kind: str
    weights: str
    sha256: str
    verified: bool
    model: Any
    device: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.sha256[:16]}-p{PREP_VERSION}"

    def info(self) -> dict:
        """What a MetricResult's ``extra`` records about the weights."""
        return {"weights": self.weights, "weights_sha256": self.sha256[:16], "weights_verified": self.verified}


_LOADED: dict[tuple, Network] = {}
_MAX_LOADED = 3


def clear_loaded() -> None:
    """Forget loaded networks (tests, benchmarks)."""
    _LOADED.clear()


def resolve_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def load_network(kind: str, what: str | None = None, device: str | None = "cpu") -> Network:
    """The network with its weights, loaded once per process.

    Raises UnavailableError (weights missing, or transformers missing for CLAP) with a one-line reason naming the
    file and the place; BenchError for a hash mismatch or a file that does not match the network.
    """
    from bench import weights as W

    what = what or LABELS[kind]
    if kind == "clap":
        import importlib.util

        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("safetensors") is None:
            raise UnavailableError(f"{what} needs the transformers and safetensors packages: pip install 'transformers>=4.31' safetensors")
    name = weights_name(kind)
    spec = W.get_spec(name)
    found = W.find(spec)
    if found is None:
        reason = W.missing_reason(spec, what)
        if kind == "clap":
            reason += f"; or set {CLAP_ENV}=clap-htsat-unfused to use the Hugging Face folder"
        raise UnavailableError(reason)
    state = W.check(found)
    arch = W.test_arch(name)
    device = resolve_device(device)
    cache_key = (kind, name, str(found.load_path), state.sha256, device, repr(arch))
    if cache_key in _LOADED:
        return _LOADED[cache_key]
    if kind == "panns":
        from metrics.networks.panns import load_cnn14

        model = load_cnn14(found.load_path, device=device, arch=arch)
    elif kind == "vggish":
        from metrics.networks.vggish import load_vggish

        model = load_vggish(found.load_path, device=device, arch=arch)
    else:
        from metrics.networks.clap import load_clap

        tok = None
        for cand in ("roberta-base", "clap-htsat-unfused", "clap-larger-general"):
            f = W.find(cand)
            if f is not None:
                tok = f.path
                break
        model = load_clap(found.load_path, device=device, tokenizer_source=tok)
    net = Network(kind, name, state.sha256, bool(state.ok), model, device, str(found.load_path))
    while len(_LOADED) >= _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[cache_key] = net
    return net


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
                from metrics.networks.clap import prepare_waveform

                emb = net.model.audio_embeddings(prepare_waveform(chunk, sr), batch_size=bs)
                outs.setdefault("embedding", []).append(emb)
                continue
            x = torch.from_numpy(prepare_for_embedding(chunk, sr)).to(net.device)
            if net.kind == "panns":
                o = net.model(x)
                outs.setdefault("embedding", []).append(o["embedding"].float().cpu().numpy())
                outs.setdefault("logits", []).append(o["logits"].float().cpu().numpy())
            else:
                e = net.model.embed(x).float().cpu().numpy()  # (b, P, D)
                outs.setdefault("patches", []).append(e.reshape(-1, e.shape[-1]))
                outs.setdefault("n_patches", []).append(np.full(e.shape[0], e.shape[1], dtype=np.int64))
    return {k: np.concatenate(v).astype(np.int64 if k == "n_patches" else np.float32) for k, v in outs.items()}


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

    return data_root(root) / "features" / split.dataset / split.version / net.key / f"clips-{_clip_hash(clips)}.npz"


def _meta(split, net: Network) -> dict:
    return {"dataset": split.dataset, "version": split.version, "network": net.kind, "weights": net.weights,
            "weights_sha256": net.sha256, "prep_version": PREP_VERSION}


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
    meta = _meta(split, net)
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
                audio = np.asarray(split.clips.audio[clips], dtype=np.float32)
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
        if str(stored.get(prefix + "key", "")) == net.key and str(stored.get(prefix + "audio_sha256", "")) == digest:
            return {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix) and k[len(prefix):] not in ("key", "audio_sha256")}
    data = embed_audio(net, audio, batch_size=batch_size)
    if path is not None:
        keep = {k: v for k, v in (stored or {}).items() if not k.startswith(prefix)}
        keep.update({prefix + k: v for k, v in data.items()})
        keep[prefix + "key"] = np.array(net.key)
        keep[prefix + "audio_sha256"] = np.array(digest)
        write_npz(Path(path), **keep)
    return data


def record_embeddings_path(record_path: str | os.PathLike) -> Path:
    """``<record>.emb.npz`` beside a run record (runs/.../sub-X_seed-0_<key>.json -> ...<key>.emb.npz)."""
    return Path(record_path).with_suffix(".emb.npz")


# ----------------------------------------------------------------------------------------------
# EvalContext glue


def context_device(ctx) -> str:
    return resolve_device(getattr(ctx, "device", None) or "cpu")


def pair(ctx, net: Network) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(reference, reconstruction) per-sample outputs for a cell, computed once per context and network."""
    bs = getattr(ctx, "embed_batch_size", None)

    def compute():
        ref = reference_embeddings(ctx.test, net, batch_size=bs)
        rec = record_embeddings(ctx.rec.audio, net, getattr(ctx, "embeddings_path", None), batch_size=bs)
        return ref, rec

    return ctx.cached(f"embeddings:{net.key}", compute)

"""A process cache of loaded pretrained networks, handed to callers frozen (eval mode, no gradients).

``load_network(kind)`` finds the catalogue entry of a perceptual network (PANNs Cnn14, VGGish, CLAP), checks its
file (hash, keys, shapes), builds the module once per (network, file, device) and keeps the last few loaded.
Metrics and methods share it, so a cell that scores CLAP and decodes CLAP targets loads CLAP once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError, UnavailableError

KINDS = ("panns", "vggish", "clap")
LABELS = {"panns": "PANNs Cnn14 (16 kHz)", "vggish": "VGGish", "clap": "LAION CLAP"}
DEFAULT_WEIGHTS = {"panns": "panns-cnn14-16k", "vggish": "vggish", "clap": "clap-630k-audioset"}
CLAP_ENV = "BENCH_CLAP_WEIGHTS"
_MAX_LOADED = 3


def weights_name(kind: str) -> str:
    """Catalogue entry a network loads: fixed for PANNs and VGGish; ``$BENCH_CLAP_WEIGHTS`` or the default for CLAP."""
    from bench.networks import weights as W

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
    """A loaded, frozen network. key: identifies its weights (network kind and weights sha256)."""

    kind: str
    weights: str
    sha256: str
    verified: bool
    model: Any
    device: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.sha256[:16]}"

    def info(self) -> dict:
        """What a metric's result records about the weights."""
        return {"weights": self.weights, "weights_sha256": self.sha256[:16], "weights_verified": self.verified}


_LOADED: dict[tuple, Network] = {}


def clear_loaded() -> None:
    """Forget loaded networks (tests, benchmarks)."""
    _LOADED.clear()


def freeze(module):
    """Eval mode and no gradients: what every caller of a pretrained network wants."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_network(kind: str, what: str | None = None, device: str | None = "cpu") -> Network:
    """The network with its weights, loaded once per process and frozen.

    Raises UnavailableError (weights missing, or transformers missing for CLAP) with a one-line reason naming the
    file and the place; BenchError for a hash mismatch or a file that does not match the network.
    """
    from bench.device import resolve_device
    from bench.networks import weights as W

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
        raise UnavailableError(reason, weights=name)
    state = W.check(found)
    arch = W.architecture(name)
    device = resolve_device(device)
    cache_key = (kind, name, str(found.load_path), state.sha256, device, repr(arch))
    if cache_key in _LOADED:
        return _LOADED[cache_key]
    if kind == "panns":
        from bench.networks.panns import load_cnn14

        model = load_cnn14(found.load_path, device=device, arch=arch)
    elif kind == "vggish":
        from bench.networks.vggish import load_vggish

        model = load_vggish(found.load_path, device=device, arch=arch)
    else:
        from bench.networks.clap import load_clap

        tok = None
        for cand in ("roberta-base", "clap-htsat-unfused", "clap-larger-general"):
            f = W.find(cand)
            if f is not None:
                tok = f.path
                break
        model = load_clap(found.load_path, device=device, tokenizer_source=tok)
    net = Network(kind, name, state.sha256, bool(state.ok), model, device, str(found.load_path))
    if hasattr(model, "parameters"):
        freeze(model)
    elif hasattr(getattr(model, "model", None), "parameters"):
        freeze(model.model)
    while len(_LOADED) >= _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[cache_key] = net
    return net

"""A process cache of loaded pretrained networks, handed to callers frozen (eval mode, no gradients).

``load_network(kind)`` finds the catalogue entry of a perceptual network (PANNs Cnn14, VGGish, CLAP; which one:
:func:`weights_name`), checks its file (hash, keys, shapes), builds the module once per (network, file, device) and keeps the last few loaded.
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
SIM_WEIGHTS = {"panns": "sim-panns", "vggish": "sim-vggish", "clap": "sim-clap"}
ENV = {"panns": "BENCH_PANNS_WEIGHTS", "vggish": "BENCH_VGGISH_WEIGHTS", "clap": "BENCH_CLAP_WEIGHTS"}
CLAP_ENV = ENV["clap"]
_MAX_LOADED = 3


def weights_name(kind: str, simulated: bool = False) -> str:
    """Catalogue entry a network loads.

    ``$BENCH_PANNS_WEIGHTS`` / ``$BENCH_VGGISH_WEIGHTS`` / ``$BENCH_CLAP_WEIGHTS`` name any entry of that network
    (built-in or local); otherwise simulated data (``simulated``) uses the simulator-trained entry
    (``SIM_WEIGHTS``, unless ``$BENCH_SIM_WEIGHTS=off``) and real data the published one. Real data never gets a
    simulator-trained network: choosing one for it is an error, and a missing published file stays missing.
    """
    from bench.networks import weights as W

    if kind not in KINDS:
        raise BenchError(f"unknown network {kind!r}; known: {', '.join(KINDS)}")
    env = ENV[kind]
    chosen = os.environ.get(env, "").strip()
    if chosen == SIM_WEIGHTS[kind] and simulated:
        return chosen  # may not be trained yet: load_network trains or refuses
    if chosen:
        spec = W.get_spec(chosen) if chosen != SIM_WEIGHTS[kind] else None
        if spec is None:
            raise BenchError(f"${env}={chosen} is trained on the simulator and scores simulated datasets only; unset it "
                             f"for real data (the published {DEFAULT_WEIGHTS[kind]} is used there)")
        if spec.network != kind:
            raise BenchError(f"${env}={chosen} is a {spec.network or 'non-network'} entry, not {LABELS[kind]}; choose one of "
                             f"{', '.join(s.name for s in W.all_specs() if s.network == kind)}")
        if spec.sim is not None and not simulated:
            raise BenchError(f"${env}={chosen} is trained on the simulator and scores simulated datasets only; unset it "
                             f"for real data (the published {DEFAULT_WEIGHTS[kind]} is used there)")
        return chosen
    from bench.networks.simtrain import sim_mode

    if simulated and sim_mode() != "off":
        return SIM_WEIGHTS[kind]
    return DEFAULT_WEIGHTS[kind]


def _sim_spec(kind: str, name: str, what: str):
    """The simulator-trained entry ``name``, training it first when ``$BENCH_SIM_WEIGHTS`` allows (UnavailableError otherwise)."""
    from bench.networks import simtrain

    return simtrain.ensure_entry(name, what, train=simtrain.sim_mode() == "auto")


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
    origin: str = "published"

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.sha256[:16]}"

    def info(self) -> dict:
        """What a metric's result records about the weights."""
        return {"weights": self.weights, "weights_sha256": self.sha256[:16], "weights_verified": self.verified,
                "weights_origin": self.origin}


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


def load_network(kind: str, what: str | None = None, device: str | None = "cpu", simulated: bool = False) -> Network:
    """The network with its weights, loaded once per process and frozen.

    simulated: the data scored is simulated (see :func:`weights_name`; may train the simulator's networks first).
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
    name = weights_name(kind, simulated)
    spec = W.get_spec(name) if name != SIM_WEIGHTS[kind] else _sim_spec(kind, name, what)
    found = W.find(spec)
    if found is None:
        reason = W.missing_reason(spec, what)
        if kind == "clap" and not spec.local:
            reason += f"; or set {CLAP_ENV}=clap-htsat-unfused to use the Hugging Face folder"
        raise UnavailableError(reason, weights=name)
    state = W.check(found)
    arch = spec.arch
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
        model = load_clap(found.load_path, device=device, tokenizer_source=tok, arch=arch)
    net = Network(kind, name, state.sha256, bool(state.ok), model, device, str(found.load_path), spec.origin)
    if hasattr(model, "parameters"):
        freeze(model)
    elif hasattr(getattr(model, "model", None), "parameters"):
        freeze(model.model)
    while len(_LOADED) >= _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[cache_key] = net
    return net

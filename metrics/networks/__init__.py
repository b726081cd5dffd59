"""Pretrained audio networks behind the perceptual metrics, defined here so that no package downloads anything.

- :mod:`metrics.networks.panns`: PANNs Cnn14 at 16 kHz (FD, KL), key layout of ``Cnn14_16k_mAP=0.438.pth``
- :mod:`metrics.networks.vggish`: VGGish (FAD), key layout of torchvggish's ``vggish-10086976.pth``
- :mod:`metrics.networks.clap`: LAION CLAP (CLAP), transformers' ``ClapModel`` as the engine, loading either a
  Hugging Face folder or an original LAION ``.pt`` checkpoint

Every checkpoint goes through :func:`strict_load`: each key and shape of the file must match the network, except
buffers that the network derives itself (``DERIVED_BUFFERS``), which may be absent from a file. A mismatch raises a
:class:`~bench.errors.BenchError` that names the first few missing keys, unexpected keys and mismatched shapes with
their counts, so a wrong file (e.g. the 32 kHz Cnn14) is caught at load time rather than giving plausible numbers.

torch is imported inside the functions; importing this package is cheap.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from bench.errors import BenchError

DERIVED_BUFFERS = ("num_batches_tracked", "position_ids", "token_type_ids", "relative_position_index")
"""Key suffixes of buffers a network computes itself (counters, index tables); a file may omit them."""

SHOWN = 5  # how many offending keys an error message lists per kind


def manifest(obj: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every entry of a module's state dict (or of a state dict), in order; JSON-able as lists."""
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    return [(str(k), tuple(int(d) for d in v.shape)) for k, v in sd.items()]


def _listing(items: list[str], noun: str, plural: str) -> str:
    head = ", ".join(items[:SHOWN])
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return f"{len(items)} {noun if len(items) == 1 else plural} ({head}{more})"


def compare_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    given: Mapping[str, Any],
    optional_suffixes: Iterable[str] = DERIVED_BUFFERS,
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mismatched) between an expected {key: shape} and a given state dict.

    Keys ending in one of ``optional_suffixes`` may be missing. Mismatches read "key: file (..) vs network (..)".
    """
    optional = tuple(optional_suffixes)
    missing = [k for k in expected if k not in given and not k.endswith(optional)]
    unexpected = [k for k in given if k not in expected]
    mismatched = []
    for k, shape in expected.items():
        if k in given:
            got = tuple(int(d) for d in getattr(given[k], "shape", ()))
            if got != tuple(shape):
                mismatched.append(f"{k}: file {got} vs network {tuple(shape)}")
    return missing, unexpected, mismatched


def strict_load(module, state_dict: Mapping[str, Any], what: str, source: str = "", optional_suffixes: Iterable[str] = DERIVED_BUFFERS):
    """Load ``state_dict`` into ``module`` only if every key and shape matches; returns the module.

    what: the network's name for the message ("PANNs Cnn14 (16 kHz)"); source: the file it came from.
    Derived buffers missing from the file keep the module's own values.
    """
    import torch

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing, unexpected, mismatched = compare_state_dict(expected, state_dict, optional_suffixes)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing(missing, "missing key", "missing keys"))
        if unexpected:
            parts.append(_listing(unexpected, "unexpected key", "unexpected keys"))
        if mismatched:
            parts.append(_listing(mismatched, "shape mismatch", "shape mismatches"))
        where = f" {source}" if source else ""
        raise BenchError(
            f"{what} checkpoint{where} does not match the network: {'; '.join(parts)}. "
            f"Is it the right file? See `bench weights ls` for the expected files"
        )
    full = dict(module.state_dict())
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise BenchError(f"{what} checkpoint{' ' + source if source else ''}: entry {k} is a {type(v).__name__}, not a tensor")
        full[k] = v
    module.load_state_dict(full, strict=True)
    return module

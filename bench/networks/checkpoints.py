"""Reading checkpoints safely and loading them strictly: the one reader and the one loader of every network.

Every file is read by :func:`read_checkpoint` (safetensors, or ``torch.load(weights_only=True)`` with a minimal
allowlist) and every state dict goes through :func:`strict_load`: each key and shape of the file must match the network, except
buffers that the network derives itself (``DERIVED_BUFFERS``), which may be absent from a file. A mismatch raises a
:class:`~bench.errors.BenchError` that names the first few missing keys, unexpected keys and mismatched shapes with
their counts, so a wrong file (e.g. the 32 kHz Cnn14) is caught at load time rather than giving plausible numbers.

torch is imported inside the functions; importing this module is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
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


def _safe_globals() -> list:
    """What ``weights_only`` may rebuild beyond tensors: numpy arrays (PANNs keeps its sampler state in one) and
    argparse.Namespace."""
    import argparse

    import numpy as np

    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    out: list[Any] = [
        (ma._reconstruct, "numpy.core.multiarray._reconstruct"),
        (ma._reconstruct, "numpy._core.multiarray._reconstruct"),
        (ma.scalar, "numpy.core.multiarray.scalar"),
        (ma.scalar, "numpy._core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
        argparse.Namespace,  # AudioMAE's training script stores its arguments under 'args'
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and not n.startswith("_")]
    return out


def read_checkpoint(path: str | os.PathLike, entry: str | None = None) -> Any:
    """Load a .safetensors (dict of tensors) or a torch pickle with ``weights_only=True`` (plus numpy arrays).

    Anything else in the pickle is refused with a BenchError naming ``bench weights convert ENTRY --trust``
    (``entry``: the catalogue name, when the caller knows it). This is the suite's one checkpoint reader.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise BenchError(f"weights file {path} is not a readable safetensors file ({exc}); delete it and convert or fetch again") from None
    import zipfile

    with open(path, "rb") as fh:
        legacy_pickle = fh.read(1) == b"\x80"
    if not (legacy_pickle or zipfile.is_zipfile(path)):
        raise BenchError(f"weights file {path} is corrupt or truncated (not a torch checkpoint or safetensors file); "
                         f"delete it and fetch it again")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = entry or "NAME"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(
            f"weights file {path} needs more than safe loading allows ({first[:160]}). If you trust it (downloaded "
            f"from the catalogue URL), run `bench weights convert {name} --trust` once; it saves the bare state dict "
            f"as {path.stem}.safetensors beside it"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise BenchError(f"weights file {path} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:160]}); delete it and fetch it again") from None

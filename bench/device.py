"""The one rule for choosing a torch device (``auto`` -> CUDA when present, else CPU), and the CPU cores usable."""

from __future__ import annotations

import os

from bench.errors import BenchError


def resolve_device(device: str | None = "auto") -> str:
    """'auto' (or None / '') -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is a user error."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device} was asked for but torch sees no CUDA device; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise BenchError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: what a Slurm or container limit leaves)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

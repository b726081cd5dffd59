"""The one rule for choosing a torch device (``auto`` -> CUDA when present, else CPU), and the CPU cores usable."""

from __future__ import annotations

import functools
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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_THRESHOLD = 256 * 2**20
KEEP_TRIM_THRESHOLD = 2**30


@functools.cache  # once per process
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse: blocks up to 256 MiB come from the heap instead of fresh
    ``mmap`` pages, and the heap is given back to the system only above 1 GiB free at its top.

    Why: training and scoring free and re-allocate the same large arrays batch after batch; above glibc's mmap
    threshold (128 KiB until a large block is freed) each one is new pages the kernel zeroes on first touch. Measured on
    the README's main job with its networks cached (2 cores, README): page faults, system time and the cells' time
    fall (18.2 M, 56 s, 140 s -> 0.36 M, 4 s, 101 s with the same settings as glibc tunables), every record's numbers
    identical; peak RSS rises (1.33 -> 1.75 GB). A process that had trained networks in-process got part of this by
    accident (glibc raises its threshold after freeing a large block).
    glibc only; not when ``$GLIBC_TUNABLES`` or a ``$MALLOC_*`` variable says what the user wants.
    Returns whether it is in effect.
    """
    if any(k == "GLIBC_TUNABLES" or k.startswith("MALLOC_") for k in os.environ):
        return False
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))

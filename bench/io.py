"""Atomic file writing: write to a temporary path beside the target, then rename.

A crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench.errors import BenchError


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if needed and check it is writable; raise a one-line BenchError if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise BenchError(
            f"{what} {path} is not writable ({exc.strerror or exc}); "
            f"choose another folder or fix its permissions"
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the usual permissions (umask applied).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_torch(target: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``target`` atomically, the same bytes for the same tensors: through a file object,
    because given a path torch names the zip archive's inner folder after it, here the random temporary name."""
    import torch

    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` whole."""
    target = Path(target)
    tmp = temporary_dir_beside(target)
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def temporary_dir_beside(target: Path) -> Path:
    """A new empty folder next to ``target`` (same file system, so ``replace_dir`` is a rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` (from ``temporary_dir_beside``) in place of ``target``, whole."""
    tmp, target = Path(tmp), Path(target)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path, what: str = "file") -> Any:
    """Read JSON; a missing or corrupt file is a one-line BenchError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(
            f"{what} {path} is corrupt ({exc.__class__.__name__}: {exc}); delete it and rerun to recreate it"
        ) from None


def write_npz(target: Path, **arrays: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock (``fcntl.flock``) on ``path`` (created if missing) for the block.

    For first-use work shared by many processes (Slurm tasks on one runs folder and data root): the
    others block until the holder leaves the block or dies (the kernel drops a dead process's lock),
    calling ``on_wait()`` first when given (e.g. to say what they wait for).
    The lock file itself is left in place; it holds nothing.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def once_under_lock(lock: Path, ready, make):
    """``make()`` unless ``ready()`` says the work is done, under ``lock``; return ``make()``'s result or None.

    ``ready`` is checked before taking the lock (the common, already-done case costs no waiting) and
    again after acquiring it, since another process may have finished the work while this one waited.
    """
    if ready():
        return None
    with file_lock(lock):
        if ready():
            return None
        return make()

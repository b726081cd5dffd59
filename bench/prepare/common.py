"""Helpers shared by the preparers: settings, audio (16 kHz mono), scratch memory maps, checks.

Everything here raises :class:`~bench.errors.BenchError` with a one-line message naming the file
(or setting) at fault, and warns with :class:`PrepareWarning` where the paper's practice is to
skip something (a missing training clip, NaN voxels).

Memory: the preparers stream. Each subject's rows are written block by block into scratch .npy
files beside the prepared data (:class:`NpyWriter`, plain file writes), reopened as read-only memory
maps, and :class:`StreamedSubjects` hands subjects to
:func:`bench.data.write_prepared` one at a time while it writes (building subject *i + 1* only
after subject *i* is on disk, and dropping the pages of what was written). Peak memory therefore
scales with one subject's largest split, not with the dataset.
"""

from __future__ import annotations

import math
import mmap
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from bench import SAMPLE_RATE
from bench.data import PreparedSubject, describe_sources
from bench.errors import BenchError
from bench.io import ensure_writable_dir


class PrepareWarning(UserWarning):
    """Something was skipped or repaired while preparing (the message names the file)."""


def warn(message: str) -> None:
    warnings.warn(message, PrepareWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class Setting:
    """One preparation setting: its default, its kind (for coercing CLI/YAML values) and help."""

    default: Any
    kind: str  # "int" | "float" | "bool" | "str" | "path" | "strlist"
    help: str


def _coerce(dataset: str, name: str, value: Any, kind: str) -> Any:
    if value is None:
        return None
    bad = BenchError(f"{dataset}: setting {name}={value!r} is not a valid {kind}")
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise bad
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise bad
            out = float(value)
            if not math.isfinite(out):
                raise bad
            return out
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.strip().lower() in ("1", "true", "yes", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise bad
        if kind == "str":
            if not isinstance(value, (str, int, float)):
                raise bad
            return str(value)
        if kind == "path":
            return Path(str(value)).expanduser()
        if kind == "strlist":
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",")]
            elif isinstance(value, (list, tuple)):
                items = [str(v).strip() for v in value]
            else:
                raise bad
            items = [v for v in items if v]
            if not items:
                raise BenchError(f"{dataset}: setting {name} must list at least one value")
            return items
    except (TypeError, ValueError):
        raise bad from None
    raise ValueError(f"unknown setting kind {kind!r}")  # programming error


def resolve_settings(dataset: str, specs: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with ``given``; unknown names and ill-typed values are one-line BenchErrors."""
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise BenchError(
            f"{dataset}: unknown preparation setting(s) {', '.join(unknown)}; known: {', '.join(sorted(specs))}"
        )
    out = {}
    for name, spec in specs.items():
        value = given.get(name, spec.default)
        out[name] = _coerce(dataset, name, value, spec.kind)
    return out


def manifest_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as JSON-safe values (paths as strings), for the manifest."""

    def conv(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in settings.items()}


def resolve_subjects(dataset, subjects: Sequence[str] | str | None) -> list[str]:
    """The requested subjects (default: all in the catalogue); unknown names are a BenchError."""
    known = dataset.subjects
    if subjects is None:
        return list(known)
    if isinstance(subjects, str):
        subjects = [s.strip() for s in subjects.split(",") if s.strip()]
    wanted = [str(s) for s in subjects]
    bad = [s for s in wanted if s not in known]
    if bad:
        raise BenchError(f"{dataset.name}: subject(s) {', '.join(bad)} not in the catalogue; subjects: {', '.join(known)}")
    if not wanted:
        raise BenchError(f"{dataset.name}: no subjects requested")
    return list(dict.fromkeys(wanted))


def report_missing_subjects(dataset: str, wanted: list[str], found: list[str], where: Path) -> None:
    """Warn about subjects absent from the source; a BenchError if none is there."""
    missing = [s for s in wanted if s not in found]
    if not found:
        raise BenchError(f"{dataset}: none of the subjects {', '.join(wanted)} was found under {where}")
    if missing:
        warn(f"{dataset}: subject(s) {', '.join(missing)} not found under {where}; preparing {', '.join(found)}")


# ----------------------------------------------------------------------------------------------
# files


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"{what} {path} does not exist or is not a folder{'; ' + hint if hint else ''}")
    return path


def require_file(path: Path, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{what} {path} is missing{'; ' + hint if hint else ''}")
    return path


def describe_files(paths: Iterable[Path], base: Path, tag: str, checksums: bool = True) -> list[dict]:
    """Manifest entries (path relative to ``base``, bytes, sha256 unless ``checksums`` is off)."""
    paths = sorted({Path(p) for p in paths})
    if checksums:
        entries = describe_sources(paths, base=Path(base))
    else:
        entries = [{"path": str(p.relative_to(base)), "bytes": p.stat().st_size} for p in paths]
    for e in entries:
        e["root"] = tag
    return entries


# ----------------------------------------------------------------------------------------------
# audio


def audio_info(path: Path) -> tuple[int, int, int]:
    """(sample rate, frames, channels) of an audio file; a missing or unreadable file is a BenchError."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"audio file {path} is missing")
    try:
        info = sf.info(str(path))
    except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise BenchError(f"audio file {path} cannot be read ({exc}); it may be truncated or not audio") from None
    return int(info.samplerate), int(info.frames), int(info.channels)


def check_sample_rate(path: Path, sr: int, expect: int | None) -> None:
    if expect is not None and sr != expect:
        raise BenchError(f"audio file {path} is sampled at {sr} Hz, but the setting expect_sample_rate pins {expect} Hz")


def resample_to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) of a mono signal to 16 kHz, float32."""
    from scipy.signal import resample_poly

    if sr == SAMPLE_RATE:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(sr), SAMPLE_RATE)
    return resample_poly(np.asarray(x, dtype=np.float64), SAMPLE_RATE // g, int(sr) // g).astype(np.float32)


def read_audio_16k(path: Path, expect_sample_rate: int | None = None) -> np.ndarray:
    """A whole audio file as float32 mono (channel mean) at 16 kHz.

    The file is resampled whole (then cut), so clips cut from one file are consistent with each other.
    """
    import soundfile as sf

    sr, frames, _ = audio_info(path)
    check_sample_rate(path, sr, expect_sample_rate)
    mono = np.empty(frames, dtype=np.float64)
    pos = 0
    try:  # block by block, so a long stereo story never sits in memory twice
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 20, dtype="float32", always_2d=True):
                m = min(block.shape[0], frames - pos)
                mono[pos : pos + m] = block[:m].mean(axis=1) if block.shape[1] > 1 else block[:m, 0]
                pos += m
    except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise BenchError(f"audio file {path} cannot be read ({exc}); it may be truncated") from None
    if pos == 0:
        raise BenchError(f"audio file {path} holds no samples; it may be truncated")
    mono = mono[:pos]
    return resample_to_16k(mono, sr)


def cut_clip(audio16: np.ndarray, onset_s: float, n_samples: int, path: Path, tolerance_s: float) -> np.ndarray:
    """``n_samples`` of 16-kHz audio from ``onset_s``; a shortfall up to ``tolerance_s`` is zero-padded.

    A longer shortfall (a wav shorter than the span the dataset needs) is a BenchError naming the file.
    """
    start = int(round(onset_s * SAMPLE_RATE))
    stop = start + n_samples
    have = audio16.shape[0]
    if start < 0:
        raise BenchError(f"audio file {path}: a clip would start at {onset_s:.3f} s, before the file begins")
    if stop > have:
        short = (stop - have) / SAMPLE_RATE
        if short > tolerance_s + 1e-9:
            raise BenchError(
                f"audio file {path} is {have / SAMPLE_RATE:.3f} s long, shorter than the span "
                f"[{onset_s:.3f}, {stop / SAMPLE_RATE:.3f}) s the dataset needs (truncated or wrong file?)"
            )
        out = np.zeros(n_samples, dtype=np.float32)
        if start < have:
            out[: have - start] = audio16[start:]
        return out
    return np.asarray(audio16[start:stop], dtype=np.float32)


def check_audio_span(path: Path, needed_s: float, tolerance_s: float, expect_sample_rate: int | None) -> int:
    """Check (from the header only) that an audio file exists, is readable and lasts ``needed_s``."""
    sr, frames, _ = audio_info(path)
    check_sample_rate(path, sr, expect_sample_rate)
    if frames / sr + tolerance_s + 1e-9 < needed_s:
        raise BenchError(
            f"audio file {path} is {frames / sr:.3f} s long, shorter than the {needed_s:.3f} s the dataset needs "
            f"(truncated or wrong file?)"
        )
    return sr


# ----------------------------------------------------------------------------------------------
# scratch memory maps


class Scratch:
    """A temporary folder beside the prepared data (same disk), removed on exit."""

    def __init__(self, root: Path, dataset: str):
        parent = ensure_writable_dir(Path(root) / dataset, "data root")
        self.path = Path(tempfile.mkdtemp(dir=parent, prefix=".prepare-scratch-"))

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def writer(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> "NpyWriter":
        """A .npy file in the scratch folder, filled row block by row block (see :class:`NpyWriter`)."""
        return NpyWriter(self.path / f"{name}.npy", shape, dtype)

    def remove(self, array: np.ndarray) -> None:
        """Drop a scratch map's pages and delete its file."""
        release_pages(array)
        if isinstance(array, np.memmap) and array.filename:
            Path(array.filename).unlink(missing_ok=True)


class NpyWriter:
    """Write a (rows, ...) .npy file sequentially, block by block, then reopen it as a read-only memory map.

    Plain file writes go to the page cache, not to this process's memory, so filling a split of any
    size costs only the block being written.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.float32):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        try:
            self._fh = open(self.path, "wb")
            np.lib.format.write_array_header_2_0(
                self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
            )
        except OSError as exc:
            raise BenchError(f"cannot write scratch file {self.path} ({exc.strerror or exc}); free some disk space") from None

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim == len(self.shape) - 1:
            block = block[None]
        if block.shape[1:] != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"block {block.shape} does not fit {self.path.name} {self.shape} at row {self.rows}")
        try:
            block.tofile(self._fh)
        except OSError as exc:
            raise BenchError(f"cannot write scratch file {self.path} ({exc.strerror or exc}); free some disk space") from None
        self.rows += block.shape[0]

    def close(self) -> np.ndarray:
        """Finish the file and return it as a read-only memory map (an in-memory array when empty)."""
        self._fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: wrote {self.rows} of {self.shape[0]} rows")
        if 0 in self.shape:
            return np.zeros(self.shape, dtype=self.dtype)
        return np.load(self.path, mmap_mode="r")


def release_pages(array: Any) -> None:
    """Tell the kernel a read-only memory map's pages are no longer needed (RSS drops; data stays on disk)."""
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


class _Splits(Mapping):
    """A subject's splits handed out one at a time; the previous split's pages are dropped first."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
        self._splits = splits
        self._last: Any = None

    def __getitem__(self, split: str):
        if self._last is not None:
            release_pages(self._last)
        self._last = self._splits[split][0]
        return self._splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    def release(self) -> None:
        for fmri, _ in self._splits.values():
            release_pages(fmri)


class StreamedSubjects(Mapping):
    """``{subject: PreparedSubject}`` built on demand, one subject at a time.

    ``build(subject)`` returns a PreparedSubject whose arrays may be scratch memory maps; when the next
    subject is asked for, the previous one's pages are released and its scratch files deleted.
    """

    def __init__(
        self,
        names: list[str],
        build: Callable[[str], PreparedSubject],
        scratch: Scratch | None = None,
        release: Sequence[Any] = (),
    ):
        self._names = list(names)
        self._build = build
        self._scratch = scratch
        self._release = list(release)  # memory maps already written (the clip audio): drop their pages
        self._current: tuple[str, PreparedSubject] | None = None

    def _drop_current(self) -> None:
        if self._current is None:
            return
        _, prepared = self._current
        splits = prepared.splits
        if isinstance(splits, _Splits):
            splits.release()
            splits = splits._splits
        if self._scratch is not None:
            for fmri, _ in splits.values():
                self._scratch.remove(fmri)
        self._current = None

    def __getitem__(self, subject: str) -> PreparedSubject:
        if self._current is not None and self._current[0] == subject:
            return self._current[1]
        if subject not in self._names:
            raise KeyError(subject)
        self._drop_current()
        for array in self._release:
            release_pages(array)
        prepared = self._build(subject)
        prepared = PreparedSubject(splits=_Splits(dict(prepared.splits)), info=prepared.info)
        self._current = (subject, prepared)
        return prepared

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        self._drop_current()


# ----------------------------------------------------------------------------------------------
# arrays


def clean_nans(block: np.ndarray, path: Path, counter: dict) -> np.ndarray:
    """Replace NaN/inf by 0 in place-ish (float32 out); counts go to ``counter[path]`` for one warning per file."""
    bad = ~np.isfinite(block)
    n = int(bad.sum())
    if n:
        counter[path] = counter.get(path, 0) + n
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    return np.asarray(block, dtype=np.float32)


def warn_nans(counter: dict) -> None:
    for path, n in counter.items():
        warn(f"{path}: {n} NaN/inf voxel value(s) replaced by 0 (nan_to_num)")
    counter.clear()


def load_voxel_index(path: Path, n_voxels: int) -> np.ndarray:
    """Integer voxel indices from a .npy (integers or a boolean mask) or .txt file, checked against ``n_voxels``."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            raw = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except FileNotFoundError:
        raise BenchError(f"voxel-index file {path} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise BenchError(f"voxel-index file {path} cannot be read ({exc})") from None
    raw = np.asarray(raw).ravel()
    if raw.dtype == bool:
        if raw.size != n_voxels:
            raise BenchError(f"voxel-index file {path} is a boolean mask of {raw.size} values, but the data has {n_voxels} voxels")
        idx = np.flatnonzero(raw)
    else:
        if raw.size and (not np.all(np.isfinite(raw)) or not np.all(np.asarray(raw, dtype=np.float64) % 1 == 0)):
            raise BenchError(f"voxel-index file {path} must hold integer indices")
        idx = raw.astype(np.int64)
    if idx.size == 0:
        raise BenchError(f"voxel-index file {path} selects no voxels")
    if idx.min() < 0 or idx.max() >= n_voxels:
        raise BenchError(f"voxel-index file {path} has indices outside 0..{n_voxels - 1} (the data has {n_voxels} voxels)")
    if np.unique(idx).size != idx.size:
        raise BenchError(f"voxel-index file {path} repeats some indices")
    return idx

"""Prepared data: the on-disk format every dataset is turned into, and its readers (``bench.datasets.load_split`` reads a split by dataset name).

Layout under the data root (``$BENCH_DATA``, default a user cache folder)::

    <root>/<dataset>/<version>/
        manifest.json                    dataset, version, settings, sources (size, sha256), subjects, and
                                         files: per data file its bytes, sha256 and (arrays) shape and dtype
        clips/audio.npy                  (n_clips, samples) float32 mono at 16 kHz
        clips/clips.json                 per clip: stim_id, onset_s, label (and source file)
        sub-<subject>/<split>.fmri.npy   (n, n_voxels) float32, responses as found (not normalised)
        sub-<subject>/<split>.clip.npy   (n,) int64, row of clips/audio.npy that sample i heard

A whole version folder is written into a temporary folder and renamed at the end, so a crash never
leaves half a dataset. Samples point at clips rather than holding audio, because windows and
repetitions share clips: targets (mels, embeddings) are computed once per clip.

Every load checks each file's size and array header against the manifest, and the manifest's own counts
(n_voxels, samples per split, clips) against the arrays, so an edited manifest or a replaced file is an error
naming the file; ``bench data verify NAME`` also recomputes every sha256 (:func:`verify_prepared`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from bench import SAMPLE_RATE
from bench.errors import BenchError, NotPreparedError
from bench.io import atomic_dir, ensure_writable_dir, read_json

SPLITS = ("train", "test", "prompt")
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: the manifest lists every data file with its sha256, size, shape and dtype


_ACTIVE_ROOT: list[Path] = []


@contextlib.contextmanager
def use_data_root(root: str | os.PathLike | None):
    """Within this block, ``data_root()`` without an argument is ``root`` (when given): the runner sets it around a
    cell so every first-use cache (simulated data, reference embeddings, weights hashes) lands under one root."""
    if root is None:
        yield
        return
    _ACTIVE_ROOT.append(Path(root).expanduser())
    try:
        yield
    finally:
        _ACTIVE_ROOT.pop()


def data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data root, by the one rule every part of the suite uses: the argument, else the root set by
    ``use_data_root``, else ``$BENCH_DATA``, else the user cache folder."""
    if data_root is not None:
        return Path(data_root).expanduser()
    if _ACTIVE_ROOT:
        return _ACTIVE_ROOT[-1]
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("brain2audio-bench")) / "data"


@dataclass(frozen=True)
class ClipTable:
    """The unique audio clips of a dataset.

    audio: (n_clips, samples) float32 at 16 kHz (may be a read-only memory map)
    stim_id: (n_clips,) str, the source stimulus; windows cut from one stimulus share it
    onset_s: (n_clips,) float64, where the clip starts in its source file, in seconds
    label: (n_clips,) str, the category used by the probes (sound category, genre, speaker gender)
    """

    audio: np.ndarray
    stim_id: np.ndarray
    onset_s: np.ndarray
    label: np.ndarray
    source: np.ndarray | None = None

    def __post_init__(self):
        n = self.audio.shape[0]
        for name in ("stim_id", "onset_s", "label"):
            if len(getattr(self, name)) != n:
                raise BenchError(f"clip table field {name!r} has {len(getattr(self, name))} rows, audio has {n}")

    @property
    def n_clips(self) -> int:
        return self.audio.shape[0]


@dataclass(frozen=True)
class Split:
    """One subject's samples of one split.

    fmri: (n, n_voxels) float32, responses as prepared (not normalised)
    clip_index: (n,) int64 into ``clips``
    audio: (n, samples) float32 at 16 kHz, the clip each sample heard (gathered on access)
    """

    dataset: str
    version: str
    subject: str
    split: str
    fmri: np.ndarray
    clip_index: np.ndarray
    clips: ClipTable
    info: dict = field(default_factory=dict, compare=False)
    folder: Path | None = field(default=None, compare=False)  # the prepared version folder it was read from

    def __post_init__(self):
        if self.fmri.ndim != 2:
            raise BenchError(f"{self.dataset}/{self.subject}/{self.split}: fmri must be (n, n_voxels), got {self.fmri.shape}")
        if self.fmri.shape[0] != self.clip_index.shape[0]:
            raise BenchError(
                f"{self.dataset}/{self.subject}/{self.split}: {self.fmri.shape[0]} fmri rows but "
                f"{self.clip_index.shape[0]} clip indices; re-prepare the dataset"
            )

    @property
    def n_samples(self) -> int:
        return self.fmri.shape[0]

    def sibling(self, split: str) -> "Split":
        """Another split of the same subject from the same prepared folder (e.g. Brain2Speech's ``prompt`` clips)."""
        if self.folder is None:
            raise BenchError(f"{self.dataset}/{self.subject}: this split was not read from a prepared folder, so its "
                             f"{split!r} split cannot be found")
        out = read_split(self.folder, self.subject, split, clips=self.clips)
        out.info.update({k: v for k, v in self.info.items() if k not in out.info})
        return out

    @property
    def n_voxels(self) -> int:
        return self.fmri.shape[1]

    @property
    def audio(self) -> np.ndarray:
        return np.asarray(self.clips.audio[self.clip_index], dtype=np.float32)

    @property
    def stim_id(self) -> np.ndarray:
        return self.clips.stim_id[self.clip_index]

    @property
    def onset_s(self) -> np.ndarray:
        return self.clips.onset_s[self.clip_index]

    @property
    def label(self) -> np.ndarray:
        return self.clips.label[self.clip_index]

    @property
    def sample_id(self) -> np.ndarray:
        """(n,) str: the stimulus id, or ``<stim_id>@<onset in s>`` where a stimulus has several windows in the split
        (what external reconstructions are named by: ``bench score``)."""
        stim = np.asarray(self.stim_id).astype(str)
        clips_per_stim = {s: len(np.unique(self.clip_index[stim == s])) for s in np.unique(stim)}
        return np.array([s if clips_per_stim[s] == 1 else f"{s}@{o:g}" for s, o in zip(stim, self.onset_s)], dtype=object)

    def unique_clips(self) -> np.ndarray:
        """Sorted clip indices this split uses."""
        return np.unique(self.clip_index)


# ----------------------------------------------------------------------------------------------
# writing


@dataclass
class PreparedSubject:
    """One subject's arrays, per split: {split: (fmri (n, V) float32, clip_index (n,) int64)}."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    info: dict = field(default_factory=dict)


def write_prepared(
    root: Path,
    dataset: str,
    version: str,
    clips: ClipTable,
    subjects: dict[str, PreparedSubject],
    settings: dict,
    sources: list[dict] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a prepared dataset atomically to ``root/dataset/version`` and return that folder."""
    target = ensure_writable_dir(Path(root) / dataset, "data root") / version
    if clips.audio.dtype != np.float32 or clips.audio.ndim != 2:
        raise BenchError(f"{dataset}: clip audio must be (n_clips, samples) float32, got {clips.audio.dtype} {clips.audio.shape}")
    files: dict[str, dict] = {}
    with atomic_dir(target) as tmp:
        (tmp / "clips").mkdir()
        _save_array(tmp, "clips/audio.npy", clips.audio, files)
        table = {
            "stim_id": [str(s) for s in clips.stim_id],
            "onset_s": [float(t) for t in clips.onset_s],
            "label": [str(s) for s in clips.label],
        }
        if clips.source is not None:
            table["source"] = [str(s) for s in clips.source]
        (tmp / "clips" / "clips.json").write_text(json.dumps(table), encoding="utf-8")
        files["clips/clips.json"] = _file_entry(tmp / "clips" / "clips.json")
        subject_meta = {}
        for subject, prepared in subjects.items():
            sub_dir = tmp / f"sub-{subject}"
            sub_dir.mkdir()
            counts = {}
            n_voxels = None
            for split, (fmri, clip_index) in prepared.splits.items():
                if split not in SPLITS:
                    raise BenchError(f"{dataset}: unknown split {split!r}; expected one of {SPLITS}")
                fmri = np.ascontiguousarray(fmri, dtype=np.float32)
                clip_index = np.asarray(clip_index, dtype=np.int64)
                if fmri.shape[0] != clip_index.shape[0]:
                    raise BenchError(f"{dataset}/{subject}/{split}: {fmri.shape[0]} rows vs {clip_index.shape[0]} clip indices")
                if clip_index.size and (clip_index.min() < 0 or clip_index.max() >= clips.n_clips):
                    raise BenchError(f"{dataset}/{subject}/{split}: clip index out of range 0..{clips.n_clips - 1}")
                if not _all_finite(fmri):
                    raise BenchError(f"{dataset}/{subject}/{split}: fmri holds NaN or inf values; clean them before writing")
                if n_voxels is not None and fmri.shape[1] != n_voxels:
                    raise BenchError(f"{dataset}/{subject}: splits disagree on n_voxels ({n_voxels} vs {fmri.shape[1]})")
                n_voxels = fmri.shape[1]
                _save_array(tmp, f"sub-{subject}/{split}.fmri.npy", fmri, files)
                _save_array(tmp, f"sub-{subject}/{split}.clip.npy", clip_index, files)
                counts[split] = int(fmri.shape[0])
            subject_meta[subject] = {"n_voxels": int(n_voxels or 0), "n_samples": counts, **prepared.info}
        manifest = {
            "format": FORMAT_VERSION,
            "dataset": dataset,
            "version": version,
            "sample_rate": SAMPLE_RATE,
            "n_clips": clips.n_clips,
            "clip_samples": int(clips.audio.shape[1]),
            "settings": settings,
            "sources": sources or [],
            "subjects": subject_meta,
            **(extra or {}),
            "files": dict(sorted(files.items())),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return target


def _save_array(folder: Path, rel: str, array: np.ndarray, files: dict) -> None:
    """np.save ``array`` to ``folder/rel`` and record its manifest entry (hashed now, while the file is in cache)."""
    np.save(folder / rel, array)
    files[rel] = {**_file_entry(folder / rel), "shape": [int(n) for n in array.shape], "dtype": str(array.dtype)}


def _file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _all_finite(array: np.ndarray, rows: int = 512) -> bool:
    """Row-chunked finiteness check: a whole-split np.isfinite would double peak memory."""
    return all(np.isfinite(array[i : i + rows]).all() for i in range(0, array.shape[0], rows))


# ----------------------------------------------------------------------------------------------
# reading


def prepared_dir(dataset: str, version: str, root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / dataset / version


def manifest_format(folder: Path) -> int | None:
    """The format number of a prepared folder's manifest (None when unreadable), to spot data of an older format."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.get("format") if isinstance(manifest, dict) else None


def read_manifest(folder: Path) -> dict:
    """The manifest of a prepared folder, after the cheap checks of :func:`check_prepared`."""
    manifest = read_json(folder / MANIFEST, what="prepared-data manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        old = isinstance(manifest, dict) and isinstance(manifest.get("format"), int) and manifest["format"] < FORMAT_VERSION
        raise BenchError(
            f"prepared-data manifest {folder / MANIFEST} has "
            f"{'an older format without file digests' if old else 'an unknown format'}; "
            f"delete {folder} and prepare the dataset again"
        )
    check_prepared(folder, manifest)
    return manifest


def check_prepared(folder: Path, manifest: dict) -> None:
    """Cheap checks on every load: each listed file exists with its recorded size, each array's header has the
    recorded shape and dtype, and the manifest's counts (clips, n_voxels, samples per split) match those shapes."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BenchError(f"prepared-data manifest {mpath} lists no files; delete {folder} and prepare the dataset again")
    fix = f"restore it or delete {folder} and prepare the dataset again"
    for rel, entry in files.items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BenchError(f"prepared file {path} is missing; {fix}") from None
        if size != entry.get("bytes"):
            raise BenchError(f"prepared file {path} is corrupt or changed ({size} bytes, the manifest says "
                             f"{entry.get('bytes')}); {fix}")
        if "shape" in entry:
            shape, dtype = _npy_header(path)
            if list(shape) != entry["shape"] or dtype != entry.get("dtype"):
                raise BenchError(f"prepared file {path} holds a {dtype} array of shape {tuple(shape)}, the manifest says "
                                 f"{entry.get('dtype')} {tuple(entry['shape'])}; {fix}")

    def shape_of(rel: str) -> list | None:
        return files.get(rel, {}).get("shape")

    expected = {"clips/audio.npy": [manifest.get("n_clips"), manifest.get("clip_samples")]}
    for subject, meta in manifest.get("subjects", {}).items():
        for split, n in meta.get("n_samples", {}).items():
            expected[f"sub-{subject}/{split}.fmri.npy"] = [n, meta.get("n_voxels")]
            expected[f"sub-{subject}/{split}.clip.npy"] = [n]
    for rel, want in expected.items():
        have = shape_of(rel)
        if have != want:
            raise BenchError(f"prepared-data manifest {mpath} says {rel} has shape {tuple(want)} but the file list "
                             f"says {tuple(have) if have else 'nothing'} (the manifest was edited?); {fix}")


def _npy_header(path: Path) -> tuple[tuple, str]:
    """(shape, dtype) from a .npy header, without reading the data."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
    except (ValueError, OSError, EOFError) as exc:
        raise BenchError(f"prepared file {path} is corrupt ({exc}); delete its dataset folder and prepare again") from None
    return shape, str(dtype)


def verify_prepared(folder: Path) -> int:
    """Full check: the cheap ones, then every file's sha256 against the manifest. Returns the number of files."""
    manifest = read_manifest(folder)
    for rel, entry in manifest["files"].items():
        if sha256_file(Path(folder) / rel) != entry.get("sha256"):
            raise BenchError(f"prepared file {Path(folder) / rel} does not match its sha256 in {Path(folder) / MANIFEST} "
                             f"(changed since it was prepared); restore it or delete {folder} and prepare the dataset again")
    return len(manifest["files"])


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise BenchError(f"prepared file {path} is missing; prepare the dataset again") from None
    except (ValueError, OSError, EOFError) as exc:
        raise BenchError(f"prepared file {path} is corrupt ({exc}); delete its dataset folder and prepare again") from None


def read_clips(folder: Path, mmap: bool = True) -> ClipTable:
    audio = _load_npy(folder / "clips" / "audio.npy", mmap=mmap)
    table = read_json(folder / "clips" / "clips.json", what="clip table")
    try:
        return ClipTable(
            audio=audio,
            stim_id=np.asarray(table["stim_id"], dtype=object),
            onset_s=np.asarray(table["onset_s"], dtype=np.float64),
            label=np.asarray(table["label"], dtype=object),
            source=np.asarray(table["source"], dtype=object) if "source" in table else None,
        )
    except KeyError as exc:
        raise BenchError(f"clip table {folder / 'clips' / 'clips.json'} lacks field {exc}; prepare again") from None


def read_split(folder: Path, subject: str, split: str, clips: ClipTable | None = None) -> Split:
    manifest = read_manifest(folder)
    if subject not in manifest["subjects"]:
        raise BenchError(
            f"subject {subject!r} is not in {manifest['dataset']} (prepared: {', '.join(manifest['subjects'])})"
        )
    if split not in manifest["subjects"][subject]["n_samples"]:
        raise BenchError(
            f"{manifest['dataset']} has no split {split!r} for subject {subject} "
            f"(has: {', '.join(manifest['subjects'][subject]['n_samples'])})"
        )
    sub_dir = folder / f"sub-{subject}"
    fmri = _load_npy(sub_dir / f"{split}.fmri.npy")
    clip_index = _load_npy(sub_dir / f"{split}.clip.npy")
    if fmri.dtype != np.float32:
        raise BenchError(f"prepared file {sub_dir / f'{split}.fmri.npy'} is {fmri.dtype}, expected float32; prepare again")
    return Split(
        dataset=manifest["dataset"],
        version=manifest["version"],
        subject=subject,
        split=split,
        fmri=fmri,
        clip_index=clip_index,
        clips=clips if clips is not None else read_clips(folder),
        info={"settings": manifest.get("settings", {}), **manifest["subjects"][subject]},
        folder=Path(folder),
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_sources(paths: Iterable[Path], base: Path | None = None) -> list[dict]:
    """Size and sha256 of each source file, for the manifest (provenance of a preparation)."""
    out = []
    for p in sorted(Path(x) for x in paths):
        out.append(
            {
                "path": str(p.relative_to(base)) if base else str(p),
                "bytes": p.stat().st_size,
                "sha256": sha256_file(p),
            }
        )
    return out

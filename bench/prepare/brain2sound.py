"""Brain2Sound (Park et al. 2023, KamitaniLab SoundReconstruction) -> the prepared format.

Source layout (``--source`` is the SoundReconstruction repository, its ``data`` folder, or the folder
holding the .h5 files; ``--stimuli`` the folder of VGGSound clips the user fetched)::

    data/fmri_data/S{1..5}_VGGishish{Train,Test}_volume_native.h5    bdpy BData HDF5
    data/SoundReconstruction_stimulus.csv                            YouTube ID,start seconds,end seconds,label,split
    <stimuli>/<ytid>_<start_seconds:06d>.wav                         audio from the stimulus start (setting audio_pattern)

BData HDF5 is read with h5py (no bdpy): ``/dataset`` (samples x columns), ``/metadata/key``,
``/metadata/description`` (byte strings), ``/metadata/value`` (keys x columns; 1 marks a member
column, NaN elsewhere), ``/vmap/<key>/<float>`` (value -> label); older files name them ``dataSet`` and
``metaData``. Voxel columns are the union of the auditory ROIs (setting ``rois``: HCP area names
matched in both hemispheres as ``..._[LR]_<area>_ROI``, or full metadata keys; default A1, LBelt,
MBelt, PBelt, A4, A5, RI, TA2, STGa, STSda, STSdp, STSva, STSvp, whichever exist), intersected with
the ``VoxelData`` columns. Rows are read a few MB at a time, so files of any width stream.

Samples: the ``sample_name`` vmap labels each row ``<stimulus>_<train|test>_slide<w>``; window ``w``
is the 4-s span ``[2w, 2w + 4)`` s of the 8-s clip (three per clip). Training rows are every
repetition, one sample each; test rows sharing a label are averaged. ``<stimulus>`` is matched to
the CSV by YouTube ID (or ``<ytid>_<start>``). The CSV's start/end are milliseconds although the
header says seconds (setting ``csv_time_unit``: auto, ms or s). Labels for the probes are the CSV's
label column (quoted labels may hold commas).

Missing audio: VGGSound clips vanish from YouTube. Training stimuli without a wav are skipped with
one warning counting them (the paper's footnote 4: 13,872-13,944 training samples instead of
14,400); a test stimulus without a wav is an error (the test set must be complete).
Responses are stored as found (float32; NaN -> 0 with a warning naming the file).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data import ClipTable, PreparedSubject, data_root, write_prepared
from bench.errors import BenchError
from bench.prepare.common import (
    Scratch,
    Setting,
    StreamedSubjects,
    check_audio_span,
    clean_nans,
    cut_clip,
    describe_files,
    manifest_settings,
    read_audio_16k,
    release_pages,
    report_missing_subjects,
    require_dir,
    require_file,
    resolve_settings,
    resolve_subjects,
    warn,
    warn_nans,
)

AUDITORY_ROIS = ["A1", "LBelt", "MBelt", "PBelt", "A4", "A5", "RI", "TA2", "STGa", "STSda", "STSdp", "STSva", "STSvp"]
CSV_NAME = "SoundReconstruction_stimulus.csv"
CSV_COLUMNS = ("youtube id", "start seconds", "end seconds", "label", "split")

SETTINGS: dict[str, Setting] = {
    "rois": Setting(list(AUDITORY_ROIS), "strlist", "ROI names (HCP areas, both hemispheres) or full metadata keys"),
    "label_key": Setting("sample_name", "str", "BData vmap key holding the sample labels"),
    "voxel_key": Setting("VoxelData", "str", "BData metadata key marking voxel columns (ignored if absent)"),
    "label_pattern": Setting(r"^(?P<stim>.+?)_(?:(?:train|test)_)?slide(?P<window>[0-9]+)$", "str",
                             "regex with groups stim and window parsing a sample label"),
    "stride_s": Setting(2.0, "float", "seconds between the starts of a clip's windows"),
    "audio_pattern": Setting("{ytid}_{start_s:06d}.wav", "str",
                             "audio file under --stimuli; fields ytid, start_s, start_ms, end_ms"),
    "stimulus_csv": Setting(None, "path", f"the stimulus CSV (default: {CSV_NAME} in the source)"),
    "csv_time_unit": Setting("auto", "str", "unit of the CSV's start/end columns: auto, ms or s"),
    "train_file": Setting("{subject}_VGGishishTrain_volume_native.h5", "str", "training BData file name"),
    "test_file": Setting("{subject}_VGGishishTest_volume_native.h5", "str", "test BData file name"),
    "expect_sample_rate": Setting(None, "int", "fail when a clip's wav has another rate (default: accept any)"),
    "short_audio_tolerance_s": Setting(0.05, "float", "a wav may fall short of a window's end by this much (zero-padded)"),
    "checksums": Setting(True, "bool", "record sha256 of every source file in the manifest"),
}


@dataclass(frozen=True)
class Stimulus:
    ytid: str
    start_ms: int
    end_ms: int
    label: str
    split: str
    line: int

    @property
    def stim_id(self) -> str:
        return f"{self.ytid}_{self.start_ms // 1000:06d}" if self.start_ms % 1000 == 0 else f"{self.ytid}_{self.start_ms}ms"


@dataclass
class _FilePlan:
    path: Path
    n_rows: int
    rows: np.ndarray  # rows kept
    keys: list  # (stimulus index, window) per kept row
    labels: list  # sample label per kept row
    n_columns: int
    voxel_columns: np.ndarray
    rois: list
    coords: np.ndarray | None
    skipped_rows: int = 0


@dataclass
class _SubjectPlan:
    subject: str
    train: _FilePlan
    test: _FilePlan
    info: dict = field(default_factory=dict)


def prepare(dataset, *, source, stimuli=None, root=None, subjects=None, **settings) -> Path:
    """Prepare Brain2Sound from the KamitaniLab release and the user's VGGSound clips; returns the prepared folder."""
    cfg = resolve_settings(dataset.name, SETTINGS, settings)
    if cfg["csv_time_unit"] not in ("auto", "ms", "s"):
        raise BenchError(f"{dataset.name}: setting csv_time_unit must be auto, ms or s, got {cfg['csv_time_unit']!r}")
    try:
        pattern = re.compile(cfg["label_pattern"])
    except re.error as exc:
        raise BenchError(f"{dataset.name}: setting label_pattern is not a valid regex ({exc})") from None
    if not {"stim", "window"} <= set(pattern.groupindex):
        raise BenchError(f"{dataset.name}: setting label_pattern needs named groups 'stim' and 'window'")
    clip_s = float(dataset.spec["clip_seconds"])
    clip_samples = dataset.clip_samples

    source = require_dir(Path(source).expanduser(), "Brain2Sound --source", "point it at the SoundReconstruction folder")
    if stimuli is None:
        raise BenchError(f"{dataset.name} needs --stimuli: the folder of VGGSound clips named like {cfg['audio_pattern']}")
    stimuli = require_dir(Path(stimuli).expanduser(), "Brain2Sound --stimuli (VGGSound clips)")
    fmri_dir = next((d for d in (source / "data" / "fmri_data", source / "fmri_data", source) if d.is_dir()
                     and any(d.glob("*.h5"))), None)
    if fmri_dir is None:
        raise BenchError(f"no BData .h5 files under {source}/data/fmri_data (nor {source}); is --source the SoundReconstruction folder?")
    csv_path = cfg["stimulus_csv"] or next(
        (p for p in (source / "data" / CSV_NAME, source / CSV_NAME, fmri_dir.parent / CSV_NAME) if p.is_file()),
        source / "data" / CSV_NAME,
    )
    table = read_stimulus_csv(require_file(Path(csv_path), "stimulus CSV", "set stimulus_csv"), cfg["csv_time_unit"])

    wanted = resolve_subjects(dataset, subjects)
    files = {s: (fmri_dir / cfg["train_file"].format(subject=s), fmri_dir / cfg["test_file"].format(subject=s)) for s in wanted}
    found = []
    for s, (tr, te) in files.items():
        if tr.is_file() and te.is_file():
            found.append(s)
        elif tr.is_file() or te.is_file():
            raise BenchError(f"{te if tr.is_file() else tr} is missing ({s} has only one of its training and test files)")
    report_missing_subjects(dataset.name, wanted, found, fmri_dir)

    # -- plan: labels, stimuli, audio -----------------------------------------------------------
    raw_plans = {s: (_scan_file(files[s][0], cfg, pattern, table, "decoder_train", clip_s),
                     _scan_file(files[s][1], cfg, pattern, table, "decoder_test", clip_s)) for s in found}
    used_train = sorted({k[0] for tr, _ in raw_plans.values() for k in tr.keys})
    used_test = sorted({k[0] for _, te in raw_plans.values() for k in te.keys})
    needed: dict[int, float] = {}  # stimulus -> seconds of audio its windows need
    for tr, te in raw_plans.values():
        for i, w in set(tr.keys) | set(te.keys):
            needed[i] = max(needed.get(i, 0.0), w * cfg["stride_s"] + clip_s)
    audio: dict[int, Path] = {}
    missing_train = []
    for i in sorted(needed):
        path = stimuli / _audio_name(cfg["audio_pattern"], table[i])
        if not path.is_file():
            if i in used_test:
                raise BenchError(f"test stimulus {table[i].ytid} ({table[i].label}) has no audio: {path} is missing")
            missing_train.append(path.name)
            continue
        check_audio_span(path, needed[i], cfg["short_audio_tolerance_s"], cfg["expect_sample_rate"])
        audio[i] = path
    if missing_train:
        warn(f"{dataset.name}: {len(missing_train)} of {len(used_train)} training stimuli have no audio under {stimuli} "
             f"(e.g. {', '.join(missing_train[:3])}); their samples are skipped, as in the paper (footnote 4)")
    plans = {}
    for s, (tr, te) in raw_plans.items():
        keep = np.array([k[0] in audio for k in tr.keys], dtype=bool)
        tr.skipped_rows = int((~keep).sum())
        tr.rows = tr.rows[keep]
        tr.keys = [k for k, ok in zip(tr.keys, keep) if ok]
        tr.labels = [lb for lb, ok in zip(tr.labels, keep) if ok]
        if not tr.keys:
            raise BenchError(f"{tr.path}: no training sample has audio under {stimuli}")
        _check_same_voxels(s, tr, te)
        plans[s] = _SubjectPlan(s, tr, te)

    fmri_files = [f for s in found for f in files[s]]
    if _inside(csv_path, source):
        sources = describe_files([csv_path] + fmri_files, source, "source", cfg["checksums"])
    else:
        sources = describe_files(fmri_files, source, "source", cfg["checksums"])
        sources += describe_files([csv_path], Path(csv_path).parent, "stimulus_csv", cfg["checksums"])
    sources += describe_files(audio.values(), stimuli, "stimuli", cfg["checksums"])

    # -- clips ----------------------------------------------------------------------------------
    keys = sorted({k for p in plans.values() for fp in (p.train, p.test) for k in fp.keys})
    index = {k: i for i, k in enumerate(keys)}
    root = data_root(root)
    with Scratch(root, dataset.name) as scratch:
        writer = scratch.writer("clips", (len(keys), clip_samples))
        current, a16 = None, None
        for stim_i, w in keys:
            if current != stim_i:
                current = stim_i
                a16 = read_audio_16k(audio[stim_i], cfg["expect_sample_rate"])
            writer.write(cut_clip(a16, w * cfg["stride_s"], clip_samples, audio[stim_i], cfg["short_audio_tolerance_s"]))
        del a16
        clip_audio = writer.close()
        clips = ClipTable(
            audio=clip_audio,
            stim_id=np.array([table[i].stim_id for i, _ in keys], dtype=object),
            onset_s=np.array([w * cfg["stride_s"] for _, w in keys], dtype=np.float64),
            label=np.array([table[i].label for i, _ in keys], dtype=object),
            source=np.array([audio[i].name for i, _ in keys], dtype=object),
        )

        def build(subject: str) -> PreparedSubject:
            return _build_subject(plans[subject], scratch, index)

        streamed = StreamedSubjects(found, build, scratch, release=[clip_audio])
        try:
            folder = write_prepared(
                root, dataset.name, dataset.version(), clips, streamed,
                settings={"preparer": __name__, "subjects": found, **manifest_settings(cfg),
                          "stimulus_csv": str(csv_path), "missing_training_audio": len(missing_train)},
                sources=sources,
            )
        finally:
            streamed.close()
            release_pages(clip_audio)
            del clips, clip_audio
    return folder


# ----------------------------------------------------------------------------------------------
# stimulus CSV


def read_stimulus_csv(path: Path, unit: str = "auto") -> list[Stimulus]:
    """The stimulus table; start/end converted to integer milliseconds (see ``unit``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchError(f"stimulus CSV {path} is not UTF-8 text ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    rows = [(n, r) for n, r in enumerate(rows, start=1) if r and "".join(r).strip()]
    if not rows:
        raise BenchError(f"stimulus CSV {path} is empty")
    header = [h.strip().lower() for h in rows[0][1]]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise BenchError(f"stimulus CSV {path} lacks column(s) {', '.join(missing)} (header: {','.join(rows[0][1])})")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    raw = []
    for n, r in rows[1:]:
        if len(r) != len(header):
            raise BenchError(f"stimulus CSV {path} line {n}: {len(r)} fields, the header has {len(header)} "
                             f"(labels with commas must be quoted)")
        try:
            start, end = float(r[col["start seconds"]]), float(r[col["end seconds"]])
        except ValueError:
            raise BenchError(f"stimulus CSV {path} line {n}: start/end {r[col['start seconds']]!r}, "
                             f"{r[col['end seconds']]!r} are not numbers") from None
        if not end > start >= 0:
            raise BenchError(f"stimulus CSV {path} line {n}: end {end} must be after start {start} >= 0")
        raw.append((n, r[col["youtube id"]].strip(), start, end, r[col["label"]].strip(), r[col["split"]].strip()))
    if not raw:
        raise BenchError(f"stimulus CSV {path} lists no stimuli")
    if unit == "auto":
        unit = "ms" if float(np.median([e - s for _, _, s, e, _, _ in raw])) > 100 else "s"
    scale = 1.0 if unit == "ms" else 1000.0
    return [Stimulus(y, int(round(s * scale)), int(round(e * scale)), lab, sp, n) for n, y, s, e, lab, sp in raw]


def _lookup(table: list[Stimulus]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(table):
        names = {s.ytid, f"{s.ytid}_{s.start_ms}", s.stim_id}
        if s.start_ms % 1000 == 0:
            names |= {f"{s.ytid}_{s.start_ms // 1000}", f"{s.ytid}_{s.start_ms // 1000:06d}"}
        for name in names:
            out.setdefault(name, []).append(i)
    return out


def _audio_name(pattern: str, s: Stimulus) -> str:
    try:
        return pattern.format(ytid=s.ytid, start_s=s.start_ms // 1000, start_ms=s.start_ms, end_ms=s.end_ms)
    except (KeyError, IndexError, ValueError) as exc:
        raise BenchError(f"setting audio_pattern {pattern!r} is invalid ({exc}); fields: ytid, start_s, start_ms, end_ms") from None


# ----------------------------------------------------------------------------------------------
# BData


def _text(x) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode("utf-8")
    if isinstance(x, np.ndarray) and x.shape == ():
        return _text(x[()])
    return str(x)


class BData:
    """Read-only access to a bdpy BData HDF5 file without bdpy."""

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise BenchError(f"BData file {self.path} cannot be read as HDF5 ({exc}); it may be truncated") from None
        try:
            f = self._f
            ds_name = "dataset" if "dataset" in f else "dataSet" if "dataSet" in f else None
            md_name = "metadata" if "metadata" in f else "metaData" if "metaData" in f else None
            if ds_name is None or md_name is None:
                raise BenchError(f"BData file {self.path} lacks /dataset or /metadata (has: {', '.join(f.keys())})")
            self.data = f[ds_name]
            if self.data.ndim != 2:
                raise BenchError(f"BData file {self.path}: /{ds_name} must be 2-D (samples x columns)")
            md = f[md_name]
            for part in ("key", "value"):
                if part not in md:
                    raise BenchError(f"BData file {self.path} lacks /{md_name}/{part}")
            self.keys = [_text(k).strip() for k in md["key"][()]]
            self._values = md["value"]  # (keys, columns): read one key's row at a time
            if self._values.ndim != 2 or self._values.shape != (len(self.keys), self.data.shape[1]):
                raise BenchError(
                    f"BData file {self.path}: /{md_name}/value is {self._values.shape}, expected "
                    f"({len(self.keys)} keys, {self.data.shape[1]} columns)"
                )
            self.vmap = {}
            if "vmap" in f:
                for key in f["vmap"]:
                    group = f["vmap"][key]
                    self.vmap[key] = {float(k): _text(group[k][()]) for k in group}
        except OSError as exc:
            self._f.close()
            raise BenchError(f"BData file {self.path} cannot be read ({exc}); it may be truncated") from None
        except BenchError:
            self._f.close()
            raise

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "BData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def value_row(self, key: str) -> np.ndarray:
        """The metadata values of ``key`` over all columns (NaN where the key does not apply)."""
        try:
            return np.asarray(self._values[self.keys.index(key)], dtype=np.float64)
        except OSError as exc:
            raise BenchError(f"BData file {self.path} cannot be read ({exc}); it may be truncated") from None

    def columns(self, key: str) -> np.ndarray:
        row = self.value_row(key)
        return np.flatnonzero(np.isfinite(row) & (row > 0))

    def column_values(self, key: str, columns: np.ndarray) -> np.ndarray:
        return self.value_row(key)[columns]

    def read_column(self, column: int) -> np.ndarray:
        try:
            return np.asarray(self.data[:, int(column)], dtype=np.float64)
        except OSError as exc:
            raise BenchError(f"BData file {self.path} cannot be read ({exc}); it may be truncated") from None

    def blocks(self, columns: np.ndarray, block_bytes: int = 64 << 20):
        """Yield (first_row, rows x columns float64) a few MB at a time."""
        step = max(1, block_bytes // max(1, self.data.shape[1] * self.data.dtype.itemsize))
        try:
            for r0 in range(0, self.data.shape[0], step):
                yield r0, np.asarray(self.data[r0 : r0 + step], dtype=np.float64)[:, columns]
        except OSError as exc:
            raise BenchError(f"BData file {self.path} cannot be read ({exc}); it may be truncated") from None


def _roi_keys(keys: list[str], rois: list[str]) -> list[str]:
    out = []
    for name in rois:
        if name in keys:
            out.append(name)
            continue
        rx = re.compile(rf"(^|[._])[LR]_{re.escape(name)}_ROI$")
        out += [k for k in keys if rx.search(k)]
    return list(dict.fromkeys(out))


def _scan_file(path: Path, cfg: dict, pattern: re.Pattern, table: list[Stimulus], split: str, clip_s: float) -> _FilePlan:
    """Labels, stimuli and voxel columns of one BData file (reads only the label column)."""
    lookup = _lookup(table)
    with BData(path) as bd:
        rois = _roi_keys(bd.keys, cfg["rois"])
        if not rois:
            examples = [k for k in bd.keys if "ROI" in k][:4]
            raise BenchError(f"{path} has none of the ROIs {', '.join(cfg['rois'])} (ROI keys there: "
                             f"{', '.join(examples) or 'none'}); set rois")
        cols = np.unique(np.concatenate([bd.columns(k) for k in rois]))
        if cfg["voxel_key"] in bd.keys:
            cols = np.intersect1d(cols, bd.columns(cfg["voxel_key"]))
        if cols.size == 0:
            raise BenchError(f"{path}: the ROIs {', '.join(rois)} select no voxel columns")
        key = cfg["label_key"]
        if key not in bd.keys:
            raise BenchError(f"{path} has no metadata key {key!r} (setting label_key)")
        lcols = bd.columns(key)
        if lcols.size != 1:
            raise BenchError(f"{path}: metadata {key!r} marks {lcols.size} columns, expected one")
        if key not in bd.vmap:
            raise BenchError(f"{path} has no /vmap/{key}: its sample labels cannot be read")
        codes = bd.read_column(int(lcols[0]))
        coord_keys = [k for k in ("voxel_x", "voxel_y", "voxel_z") if k in bd.keys]
        coords = np.stack([bd.column_values(k, cols) for k in coord_keys]) if coord_keys else None
        vmap = bd.vmap[key]
        n_columns = bd.data.shape[1]
    keys, labels = [], []
    cache: dict[str, tuple[int, int]] = {}
    for code in codes:
        if not np.isfinite(code) or float(code) not in vmap:
            raise BenchError(f"{path}: sample label code {code!r} is not in /vmap/{key}")
        label = vmap[float(code)]
        if label not in cache:
            m = pattern.match(label)
            if m is None:
                raise BenchError(f"{path}: sample label {label!r} does not match the setting label_pattern {pattern.pattern!r}")
            stim, window = m.group("stim"), int(m.group("window"))
            cands = lookup.get(stim, [])
            if len(cands) > 1:
                cands = [i for i in cands if table[i].split == split] or cands
            if not cands:
                raise BenchError(f"{path}: sample label {label!r} names stimulus {stim!r}, which is not in the stimulus CSV")
            if len(cands) > 1:
                lines = ", ".join(str(table[i].line) for i in cands)
                raise BenchError(f"{path}: sample label {label!r} matches several stimulus CSV rows (lines {lines}); "
                                 f"adjust label_pattern so the label names the start time")
            s = table[cands[0]]
            if window * cfg["stride_s"] + clip_s > (s.end_ms - s.start_ms) / 1000 + 1e-6:
                raise BenchError(f"{path}: sample label {label!r}: window {window} ends past the {s.end_ms - s.start_ms} ms clip")
            cache[label] = (cands[0], window)
        keys.append(cache[label])
        labels.append(label)
    return _FilePlan(path, len(codes), np.arange(len(codes)), keys, labels, n_columns, cols, rois, coords)


def _check_same_voxels(subject: str, train: _FilePlan, test: _FilePlan) -> None:
    if train.voxel_columns.size != test.voxel_columns.size:
        raise BenchError(f"{subject}: {train.path.name} selects {train.voxel_columns.size} ROI voxels but "
                         f"{test.path.name} selects {test.voxel_columns.size}; the files disagree")
    if train.coords is not None and test.coords is not None and train.coords.shape == test.coords.shape:
        if not np.allclose(train.coords, test.coords, equal_nan=True):
            raise BenchError(f"{subject}: {train.path.name} and {test.path.name} hold different ROI voxels (voxel coordinates differ)")


def _inside(path: Path, base: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(base).resolve())
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------


def _build_subject(plan: _SubjectPlan, scratch: Scratch, index: dict) -> PreparedSubject:
    nans: dict = {}
    tr = plan.train
    v = int(tr.voxel_columns.size)
    writer = scratch.writer(f"{plan.subject}.train", (len(tr.rows), v))
    keep = np.zeros(tr.n_rows, dtype=bool)
    keep[tr.rows] = True
    with BData(tr.path) as bd:
        for r0, block in bd.blocks(tr.voxel_columns):
            sel = keep[r0 : r0 + block.shape[0]]
            if sel.any():
                writer.write(clean_nans(block[sel], tr.path, nans))
    train_index = np.array([index[k] for k in tr.keys], dtype=np.int64)

    te = plan.test
    groups = sorted(set(te.keys), key=lambda k: index[k])
    row_of = {k: i for i, k in enumerate(groups)}
    sums = np.zeros((len(groups), v), np.float64)
    counts = np.zeros(len(groups), np.int64)
    target = np.array([row_of[k] for k in te.keys], dtype=np.int64)
    with BData(te.path) as bd:
        for r0, block in bd.blocks(te.voxel_columns):
            block = clean_nans(block, te.path, nans).astype(np.float64)
            np.add.at(sums, target[r0 : r0 + block.shape[0]], block)
            np.add.at(counts, target[r0 : r0 + block.shape[0]], 1)
    warn_nans(nans)
    test = (sums / counts[:, None]).astype(np.float32)
    info = {
        "rois": tr.rois,
        "skipped_train_samples": tr.skipped_rows,
        "test_repetitions": {"min": int(counts.min()), "max": int(counts.max())},
    }
    splits = {
        "train": (writer.close(), train_index),
        "test": (test, np.array([index[k] for k in groups], dtype=np.int64)),
    }
    return PreparedSubject(splits=splits, info=info)

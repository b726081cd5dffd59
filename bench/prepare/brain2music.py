"""Brain2Music (Nakai et al. 2022, OpenNeuro ds003720) + GTZAN -> the prepared format.

Source layout (``--source`` is the ds003720 folder, ``--stimuli`` the GTZAN ``genres`` folder, or
the folder holding ``genres/``)::

    sub-00X/func/sub-00X_task-Training_run-NN_bold.nii[.gz]    raw BOLD, int16, TR 1.5 s
    sub-00X/func/sub-00X_task-Training_run-NN_events.tsv       onset duration genre track start end
    sub-00X/func/sub-00X_task-Test_run-NN_{bold.nii[.gz],events.tsv}
    <stimuli>/<genre>/<genre>.<NNNNN>.wav                      GTZAN, 22,050 Hz mono, 30 s

events.tsv quirks handled: CRLF line ends, no final newline, genres quoted (``'disco'``) and
malformed (``classical'``), a UTF-8 BOM. Each run's clip at onset 0 is a warm-up repeat of an
earlier clip and is dropped. Each remaining 15-s clip covers 10 volumes; segment ``j`` (the GTZAN
span ``[start + 1.5 j, start + 1.5 (j + 1))`` s) is paired with volume ``onset / 1.5 + j + d``,
where ``d`` is the setting ``hrf_delay_volumes``.

Haemodynamic delay: the paper does not state one. The default is **3 volumes (4.5 s)**: the volume
nearest the peak of the canonical haemodynamic response (about 5 s) and the nearest multiple of the
TR to the 4-s lag the paper uses for Brain2Speech. It is a setting; 0 pairs each segment with the
volume acquired while it played. Segments whose delayed volume falls past the end of a run are
dropped with a warning naming the run.

Responses. The release is raw (not preprocessed), so the suite does the minimum itself:

1. brain mask (per subject, shared by all runs): the mean over runs of each run's temporal mean
   image, thresholded at ``p2 + mask_fraction * (p98 - p2)`` of its voxel values (2nd and 98th
   percentiles; FSL's "10 % of the robust range" rule for EPI, ``mask_fraction`` = 0.1). With
   ``fmriprep_dir``, the intersection of the runs' ``desc-brain_mask`` images is used instead;
2. per run and voxel: linear detrending (``scipy.signal.detrend``, type "linear") over the run's
   volumes, then z-scoring (mean 0, standard deviation 1, ddof 0); a voxel constant within a run
   is set to 0 for that run. Detrending and z-scoring make the NIfTI scale factor irrelevant;
3. training samples: one row per (presentation, segment); test samples: the rows of a clip's
   segment averaged over its presentations (4 per clip in the release).

No motion correction or registration is done on raw data (runs are assumed aligned in scanner
space); pass ``fmriprep_dir`` (``*_desc-preproc_bold.nii.gz`` + ``*_desc-brain_mask.nii.gz``,
``fmriprep_space`` to choose among spaces) to use fMRIPrep's output instead.

Clips: one per (track, segment): ``stim_id`` ``f"{genre}.{track:05d}"``, ``onset_s`` the segment's
start in the track, ``label`` the genre. Training: 480 clips x 10 segments = 4,800 samples; test:
60 x 10 = 600 (fewer if segments are dropped at run ends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data import ClipTable, PreparedSubject, data_root, write_prepared
from bench.errors import BenchError, UnavailableError
from bench.prepare.common import (
    Scratch,
    Setting,
    StreamedSubjects,
    check_audio_span,
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
)

SETTINGS: dict[str, Setting] = {
    "hrf_delay_volumes": Setting(3, "int", "volumes between a segment and the response paired with it (3 = 4.5 s)"),
    "mask_fraction": Setting(0.1, "float", "brain mask threshold: p2 + mask_fraction * (p98 - p2) of the mean image"),
    "fmriprep_dir": Setting(None, "path", "fMRIPrep derivatives folder (use its preprocessed BOLD and brain masks)"),
    "fmriprep_space": Setting(None, "str", "fMRIPrep space entity to use when several exist (e.g. T1w)"),
    "train_task": Setting("Training", "str", "BIDS task name of the training runs"),
    "test_task": Setting("Test", "str", "BIDS task name of the test runs"),
    "drop_warmup": Setting(True, "bool", "drop each run's clip at onset 0 (a repeat of an earlier clip)"),
    "audio_pattern": Setting("{genre}/{genre}.{track:05d}.wav", "str", "GTZAN file under --stimuli"),
    "expect_sample_rate": Setting(None, "int", "fail when a GTZAN wav has another rate (GTZAN: 22050)"),
    "short_audio_tolerance_s": Setting(0.05, "float", "a wav may fall short of a segment's end by this much (zero-padded)"),
    "checksums": Setting(True, "bool", "record sha256 of every source file in the manifest"),
}

EVENT_COLUMNS = ("onset", "duration", "genre", "track", "start", "end")


@dataclass(frozen=True)
class Event:
    onset: float
    duration: float
    genre: str
    track: int
    start: float
    end: float
    line: int


@dataclass
class _Run:
    task: str
    run: str
    events_path: Path
    bold_path: Path
    mask_path: Path | None
    n_volumes: int
    samples: list  # (volume, clip key)
    dropped: int = 0


@dataclass
class _SubjectPlan:
    subject: str
    runs: list[_Run]
    shape: tuple
    info: dict = field(default_factory=dict)


def prepare(dataset, *, source, stimuli=None, root=None, subjects=None, **settings) -> Path:
    """Prepare Brain2Music from ds003720 (or fMRIPrep derivatives) and GTZAN; returns the prepared folder."""
    cfg = resolve_settings(dataset.name, SETTINGS, settings)
    if cfg["hrf_delay_volumes"] < 0:
        raise BenchError(f"{dataset.name}: setting hrf_delay_volumes must be >= 0, got {cfg['hrf_delay_volumes']}")
    if not 0 <= cfg["mask_fraction"] < 1:
        raise BenchError(f"{dataset.name}: setting mask_fraction must be in [0, 1), got {cfg['mask_fraction']}")
    tr = float(dataset.spec.get("tr_seconds", 1.5))
    seg_samples = dataset.clip_samples
    seg_s = float(dataset.spec["clip_seconds"])

    source = require_dir(Path(source).expanduser(), "Brain2Music --source", "point it at the ds003720 folder")
    if stimuli is None:
        raise BenchError(f"{dataset.name} needs --stimuli: the GTZAN genres folder (<genre>/<genre>.<NNNNN>.wav)")
    stimuli = require_dir(Path(stimuli).expanduser(), "Brain2Music --stimuli (GTZAN genres folder)")
    fmriprep = cfg["fmriprep_dir"]
    if fmriprep is not None:
        fmriprep = require_dir(Path(fmriprep), "fMRIPrep folder (setting fmriprep_dir)")

    wanted = resolve_subjects(dataset, subjects)
    found = [s for s in wanted if (source / s).is_dir()]
    report_missing_subjects(dataset.name, wanted, found, source)

    # -- plan and validate --------------------------------------------------------------------
    clip_info: dict[tuple, dict] = {}
    plans = {s: _plan_subject(s, source, fmriprep, cfg, tr, clip_info) for s in found}
    audio = {}
    for key in sorted({(c["genre"], c["track"]) for c in clip_info.values()}):
        genre, track = key
        path = _gtzan_path(stimuli, cfg["audio_pattern"], genre, track)
        need = max(c["onset_s"] for c in clip_info.values() if (c["genre"], c["track"]) == key) + seg_s
        check_audio_span(path, need, cfg["short_audio_tolerance_s"], cfg["expect_sample_rate"])
        audio[key] = path

    sources = describe_files([r.events_path for p in plans.values() for r in p.runs]
                             + ([r.bold_path for p in plans.values() for r in p.runs] if fmriprep is None else []),
                             source, "source", cfg["checksums"])
    if fmriprep is not None:
        sources += describe_files([f for p in plans.values() for r in p.runs for f in (r.bold_path, r.mask_path)],
                                  fmriprep, "fmriprep_dir", cfg["checksums"])
    sources += describe_files(audio.values(), stimuli, "stimuli", cfg["checksums"])

    # -- clips ----------------------------------------------------------------------------------
    keys = sorted(clip_info)
    index = {k: i for i, k in enumerate(keys)}
    root = data_root(root)
    with Scratch(root, dataset.name) as scratch:
        writer = scratch.writer("clips", (len(keys), seg_samples))
        current, a16 = None, None
        for k in keys:
            c = clip_info[k]
            if current != (c["genre"], c["track"]):
                current = (c["genre"], c["track"])
                a16 = read_audio_16k(audio[current], cfg["expect_sample_rate"])
            writer.write(cut_clip(a16, c["onset_s"], seg_samples, audio[current], cfg["short_audio_tolerance_s"]))
        del a16
        clip_audio = writer.close()
        clips = ClipTable(
            audio=clip_audio,
            stim_id=np.array([k[0] for k in keys], dtype=object),
            onset_s=np.array([clip_info[k]["onset_s"] for k in keys], dtype=np.float64),
            label=np.array([clip_info[k]["genre"] for k in keys], dtype=object),
            source=np.array([str(audio[(clip_info[k]["genre"], clip_info[k]["track"])].relative_to(stimuli)) for k in keys],
                            dtype=object),
        )

        def build(subject: str) -> PreparedSubject:
            return _build_subject(plans[subject], scratch, index, cfg)

        streamed = StreamedSubjects(found, build, scratch, release=[clip_audio])
        try:
            folder = write_prepared(
                root, dataset.name, dataset.version(), clips, streamed,
                settings={"preparer": __name__, "subjects": found, **manifest_settings(cfg),
                          "mask": "fmriprep brain masks (intersection)" if fmriprep else "intensity: p2 + mask_fraction*(p98-p2)",
                          "detrend": "linear per run (scipy.signal.detrend)", "zscore": "per run and voxel, ddof 0"},
                sources=sources,
            )
        finally:
            streamed.close()
            release_pages(clip_audio)
            del clips, clip_audio
    return folder


# ----------------------------------------------------------------------------------------------
# events


def read_events(path: Path) -> list[Event]:
    """Parse a ds003720 events.tsv (CRLF, no final newline, quoted or malformed genre values, BOM)."""
    path = require_file(Path(path), "events file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchError(f"events file {path} is not UTF-8 text ({exc})") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise BenchError(f"events file {path} is empty")
    header = [h.strip().strip("'\"") for h in lines[0].split("\t")]
    missing = [c for c in EVENT_COLUMNS if c not in header]
    if missing:
        raise BenchError(f"events file {path} lacks column(s) {', '.join(missing)} (header: {' '.join(header)})")
    col = {c: header.index(c) for c in EVENT_COLUMNS}
    events = []
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise BenchError(f"events file {path} line {n}: {len(cells)} fields, the header has {len(header)}")

        def num(name: str) -> float:
            raw = cells[col[name]].strip().strip("'\"")
            try:
                value = float(raw)
            except ValueError:
                raise BenchError(f"events file {path} line {n}: {name} {raw!r} is not a number") from None
            if not np.isfinite(value):
                raise BenchError(f"events file {path} line {n}: {name} {raw!r} is not finite")
            return value

        genre = cells[col["genre"]].strip().strip("'\"").strip()
        if not genre:
            raise BenchError(f"events file {path} line {n}: empty genre")
        track = num("track")
        if not float(track).is_integer() or track < 0:
            raise BenchError(f"events file {path} line {n}: track {track!r} is not a non-negative integer")
        events.append(Event(num("onset"), num("duration"), genre, int(track), num("start"), num("end"), n))
    if not events:
        raise BenchError(f"events file {path} lists no events")
    return sorted(events, key=lambda e: e.onset)


# ----------------------------------------------------------------------------------------------
# planning


_RUN = re.compile(r"_run-(?P<run>[0-9]+)_")


def _find_runs(source: Path, subject: str, task: str) -> list[tuple[str, Path]]:
    func = source / subject / "func"
    found = sorted(func.glob(f"{subject}_task-{task}_run-*_events.tsv"))
    if not found:  # BIDS inheritance: task-level events at the top of the dataset
        found = sorted(source.glob(f"task-{task}_run-*_events.tsv"))
    out = []
    for p in found:
        m = _RUN.search(p.name)
        if m:
            out.append((m.group("run"), p))
    return sorted(out, key=lambda x: int(x[0]))


def _raw_bold(source: Path, subject: str, task: str, run: str) -> Path:
    stem = source / subject / "func" / f"{subject}_task-{task}_run-{run}_bold"
    for ext in (".nii", ".nii.gz"):
        if Path(str(stem) + ext).is_file():
            return Path(str(stem) + ext)
    raise BenchError(f"BOLD file {stem}.nii (or .nii.gz) is missing")


def _fmriprep_files(fmriprep: Path, subject: str, task: str, run: str, space: str | None) -> tuple[Path, Path]:
    folders = [fmriprep / subject / "func"] + sorted(fmriprep.glob(f"{subject}/ses-*/func"))
    cands = []
    for folder in folders:
        cands += sorted(folder.glob(f"{subject}*_task-{task}_run-{run}_*desc-preproc_bold.nii*"))
    if space is not None:
        cands = [c for c in cands if f"_space-{space}_" in c.name]
    if not cands:
        raise BenchError(
            f"fMRIPrep file {folders[0]}/{subject}_task-{task}_run-{run}_*desc-preproc_bold.nii.gz is missing"
            + (f" for space {space}" if space else "")
        )
    if len(cands) > 1:
        raise BenchError(
            f"several fMRIPrep outputs for {subject} {task} run-{run} ({', '.join(c.name for c in cands)}); "
            f"choose one with the setting fmriprep_space"
        )
    bold = cands[0]
    mask = bold.with_name(re.sub(r"desc-preproc_bold\.nii(\.gz)?$", r"desc-brain_mask.nii\1", bold.name))
    if not mask.is_file():
        alt = [m for m in bold.parent.glob(bold.name.split("desc-preproc_bold")[0] + "desc-brain_mask.nii*")]
        if not alt:
            raise BenchError(f"fMRIPrep brain mask {mask} is missing")
        mask = alt[0]
    return bold, mask


def _nifti(path: Path):
    try:
        import nibabel as nib
    except ImportError:
        raise UnavailableError("preparing Brain2Music reads NIfTI files with nibabel: pip install nibabel") from None
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise BenchError(f"NIfTI file {path} is missing") from None
    except Exception as exc:  # nibabel raises several types for corrupt headers
        raise BenchError(f"NIfTI file {path} cannot be read ({exc.__class__.__name__}: {exc})") from None


def _plan_subject(subject: str, source: Path, fmriprep: Path | None, cfg: dict, tr: float, clip_info: dict) -> _SubjectPlan:
    runs: list[_Run] = []
    shape = None
    delay = cfg["hrf_delay_volumes"]
    for task in (cfg["train_task"], cfg["test_task"]):
        found = _find_runs(source, subject, task)
        if not found:
            raise BenchError(
                f"no {task} runs for {subject}: expected {source / subject / 'func'}/{subject}_task-{task}_run-NN_events.tsv"
            )
        for run, events_path in found:
            if fmriprep is None:
                bold, mask = _raw_bold(source, subject, task, run), None
            else:
                bold, mask = _fmriprep_files(fmriprep, subject, task, run, cfg["fmriprep_space"])
            img = _nifti(bold)
            if len(img.shape) != 4:
                raise BenchError(f"BOLD file {bold} is {len(img.shape)}-D, expected 4-D (x, y, z, volumes)")
            if shape is not None and tuple(img.shape[:3]) != shape:
                raise BenchError(f"BOLD file {bold} has a {img.shape[:3]} grid, but {subject}'s other runs have {shape}")
            shape = tuple(img.shape[:3])
            if mask is not None:
                mimg = _nifti(mask)
                if tuple(mimg.shape[:3]) != shape:
                    raise BenchError(f"brain mask {mask} has a {mimg.shape[:3]} grid, but its BOLD {bold} has {shape}")
            r = _Run(task, run, events_path, bold, mask, int(img.shape[3]), [])
            for e in read_events(events_path):
                if cfg["drop_warmup"] and abs(e.onset) < 1e-6:
                    continue
                v0 = e.onset / tr
                if abs(v0 - round(v0)) > 1e-3:
                    raise BenchError(f"events file {events_path} line {e.line}: onset {e.onset} s is not a multiple of the TR ({tr} s)")
                n_seg = int(round(e.duration / tr))
                if n_seg < 1 or abs(n_seg * tr - e.duration) > 1e-3 or abs((e.end - e.start) - e.duration) > 1e-2:
                    raise BenchError(
                        f"events file {events_path} line {e.line}: duration {e.duration} s and span [{e.start}, {e.end}) "
                        f"do not make whole {tr}-s segments"
                    )
                stim = f"{e.genre}.{e.track:05d}"
                for j in range(n_seg):
                    onset = round(e.start + j * tr, 6)
                    key = (stim, onset)
                    clip_info.setdefault(key, {"genre": e.genre, "track": e.track, "onset_s": onset})
                    v = int(round(v0)) + j + delay
                    if v >= r.n_volumes:
                        r.dropped += 1
                        continue
                    r.samples.append((v, key))
            if not r.samples:
                raise BenchError(f"events file {events_path} leaves no samples (all clips dropped or past the run's end)")
            runs.append(r)
    short = [r for r in runs if r.dropped]
    if short:
        warn(f"{subject}: {sum(r.dropped for r in short)} segment(s) in {len(short)} run(s) need volumes past the run's end "
             f"(e.g. {short[0].bold_path} has {short[0].n_volumes}; hrf_delay_volumes={delay}); dropped")
    return _SubjectPlan(subject, runs, shape)


def _gtzan_path(stimuli: Path, pattern: str, genre: str, track: int) -> Path:
    try:
        rel = pattern.format(genre=genre, track=track)
    except (KeyError, IndexError, ValueError) as exc:
        raise BenchError(f"setting audio_pattern {pattern!r} is invalid ({exc}); fields: genre, track") from None
    for base in (stimuli, stimuli / "genres"):
        if (base / rel).is_file():
            return base / rel
    raise BenchError(f"GTZAN file {stimuli / rel} is missing (stimulus {genre}.{track:05d}); pass --stimuli GTZAN_GENRES_DIR")


# ----------------------------------------------------------------------------------------------
# responses


def _unscaled(img) -> np.ndarray:
    try:
        return np.asarray(img.dataobj.get_unscaled())
    except AttributeError:
        return np.asarray(img.dataobj)


def _brain_mask(plan: _SubjectPlan, fraction: float) -> np.ndarray:
    """Intensity mask (raw) or the intersection of fMRIPrep masks; see the module docstring."""
    if plan.runs[0].mask_path is not None:
        mask = np.ones(plan.shape, bool)
        for r in plan.runs:
            m = np.asarray(_nifti(r.mask_path).dataobj)
            mask &= (m[..., 0] if m.ndim == 4 else m) > 0
    else:
        total = np.zeros(plan.shape, np.float64)
        for r in plan.runs:
            img = _nifti(r.bold_path)
            try:
                mean = np.mean(_unscaled(img), axis=3, dtype=np.float64)
            except (OSError, EOFError, ValueError) as exc:
                raise BenchError(f"BOLD file {r.bold_path} cannot be read ({exc}); it may be truncated") from None
            slope, inter = img.header.get_slope_inter()
            total += mean * (1.0 if slope is None else slope) + (0.0 if inter is None else inter)
        total /= len(plan.runs)
        finite = np.isfinite(total)
        lo, hi = np.percentile(total[finite], [2, 98])
        mask = finite & (total > lo + fraction * (hi - lo))
    if not mask.any():
        raise BenchError(f"the brain mask of {plan.subject} is empty (check its BOLD files or the setting mask_fraction)")
    return mask


def _run_matrix(run: _Run, mask: np.ndarray) -> np.ndarray:
    """(volumes, voxels) float32: masked, linearly detrended and z-scored over the run."""
    from scipy.signal import detrend

    img = _nifti(run.bold_path)
    try:
        data = _unscaled(img)
        ts = np.asarray(data[mask], dtype=np.float64).T  # (T, V)
    except (OSError, EOFError, ValueError) as exc:
        raise BenchError(f"BOLD file {run.bold_path} cannot be read ({exc}); it may be truncated") from None
    del data
    if ts.shape[0] != run.n_volumes:
        raise BenchError(f"BOLD file {run.bold_path} holds {ts.shape[0]} volumes, its header says {run.n_volumes}")
    if not np.isfinite(ts).all():
        bad = int((~np.isfinite(ts)).sum())
        warn(f"{run.bold_path}: {bad} NaN/inf value(s) in brain voxels replaced by 0 before detrending")
        ts = np.nan_to_num(ts, nan=0.0, posinf=0.0, neginf=0.0)
    if ts.shape[0] >= 2:
        ts = detrend(ts, axis=0, type="linear")
    ts -= ts.mean(axis=0)
    sd = ts.std(axis=0)
    ok = sd > 1e-8 * max(1.0, float(np.abs(ts).max(initial=0.0)))
    ts[:, ok] /= sd[ok]
    ts[:, ~ok] = 0.0
    return ts.astype(np.float32)


def _build_subject(plan: _SubjectPlan, scratch: Scratch, index: dict, cfg: dict) -> PreparedSubject:
    mask = _brain_mask(plan, cfg["mask_fraction"])
    v = int(mask.sum())
    train_runs = [r for r in plan.runs if r.task == cfg["train_task"]]
    test_runs = [r for r in plan.runs if r.task == cfg["test_task"]]
    n_train = sum(len(r.samples) for r in train_runs)
    train = scratch.writer(f"{plan.subject}.train", (n_train, v))
    train_index = np.empty(n_train, dtype=np.int64)
    pos = 0
    for r in train_runs:
        ts = _run_matrix(r, mask)
        vols = np.array([s[0] for s in r.samples])
        train.write(ts[vols])
        train_index[pos : pos + len(vols)] = [index[s[1]] for s in r.samples]
        pos += len(vols)
        del ts
    test_keys = sorted({s[1] for r in test_runs for s in r.samples}, key=lambda k: index[k])
    row = {k: i for i, k in enumerate(test_keys)}
    sums = np.zeros((len(test_keys), v), np.float64)
    counts = np.zeros(len(test_keys), np.int64)
    for r in test_runs:
        ts = _run_matrix(r, mask)
        for vol, key in r.samples:
            sums[row[key]] += ts[vol]
            counts[row[key]] += 1
        del ts
    test = (sums / counts[:, None]).astype(np.float32)
    del sums
    info = {
        "mask": "fmriprep" if plan.runs[0].mask_path is not None else "intensity",
        "mask_voxels": v,
        "grid": list(plan.shape),
        "runs": {cfg["train_task"]: len(train_runs), cfg["test_task"]: len(test_runs)},
        "dropped_segments": int(sum(r.dropped for r in plan.runs)),
        "test_presentations": {"min": int(counts.min()), "max": int(counts.max())} if counts.size else {},
    }
    splits = {
        "train": (train.close(), train_index),
        "test": (test, np.array([index[k] for k in test_keys], dtype=np.int64)),
    }
    return PreparedSubject(splits=splits, info=info)

"""Brain2Speech (LeBel et al. 2023, OpenNeuro ds003020) -> the prepared format.

Source layout (``--source`` is the ds003020 folder)::

    derivative/preprocessed_data/<UTSxx>/<story>.hf5   dataset "data": (n_TR - 20, n_voxels)
    derivative/respdict.json                           {story: n_TR}
    stimuli/<story>.wav                                 (or ``--stimuli FOLDER`` holding <story>.wav)

Alignment (the paper's, appendix A.1): row ``k`` of a story's ``data`` is the volume whose TR starts
``2k + 10`` s into the story's wav (the lab's trimming); it is paired with the 2-s clip from 4 s
earlier, i.e. the clip starting at ``2k + 6`` s. Every (story, k) is one clip: ``stim_id`` = story,
``onset_s`` = 2k + 6, ``label`` = the speaker's gender.

Splits: the test stories (default hangtime and wheretheressmoke) give ``test``, except the last 10
clips of each, which give ``prompt`` (audio prompts, never scored); the 25 other core stories the
subject has give ``train``. With hangtime n_TR 344 and wheretheressmoke n_TR 311 this is
324 + 291 - 20 = 595 test samples, the paper's Table 4.

Responses are stored as found (float32; NaN -> 0 with a warning naming the file). An optional
voxel-index file per subject (``voxel_index_dir/<subject>.npy`` or ``.txt``: integer indices or a
boolean mask) selects a subset, e.g. the auditory-cortex voxels the paper used (836-2093 voxels;
those masks are not in the release). Stories are streamed one at a time into a per-subject scratch
memory map, so memory scales with one subject, not the dataset.
"""

from __future__ import annotations

import csv
import json
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
    load_voxel_index,
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

CORE_STORIES = (
    "adollshouse adventuresinsayingyes alternateithicatom avatar buck exorcism eyespy fromboyhoodtofatherhood "
    "hangtime haveyoumethimyet howtodraw inamoment itsabox legacy life myfirstdaywiththeyankees naked "
    "odetostepfather sloth souls stagefright swimmingwithastronauts thatthingonmyarm theclosetthatateeverything "
    "tildeath undertheinfluence wheretheressmoke"
).split()
"""The 27 stories every paper subject heard (UTS05-08 have exactly these)."""

TEST_STORIES = ("hangtime", "wheretheressmoke")

SPEAKER_GENDER = {"hangtime": "male", "wheretheressmoke": "female"}
"""Genders the paper states (appendix A.1); other stories need a ``labels`` CSV, else "unknown"."""

SETTINGS: dict[str, Setting] = {
    "test_stories": Setting(list(TEST_STORIES), "strlist", "stories for the test (and prompt) split"),
    "train_stories": Setting(None, "strlist", "training stories (default: the 27 core stories minus the test ones)"),
    "n_prompt": Setting(10, "int", "last clips of each test story set aside as audio prompts"),
    "lag_s": Setting(4.0, "float", "seconds between a clip's start and its TR (the paper: 4)"),
    "first_row_onset_s": Setting(10.0, "float", "where row 0's TR starts in the story wav (the lab's trimming)"),
    "trimmed_trs": Setting(20, "int", "rows of data = respdict n_TR minus this"),
    "voxel_index_dir": Setting(None, "path", "folder of <subject>.npy/.txt voxel indices (default: all voxels)"),
    "labels": Setting(None, "path", "CSV of story,gender for the probes' speaker-gender labels"),
    "expect_sample_rate": Setting(None, "int", "fail when a story wav has another rate (default: accept any)"),
    "short_audio_tolerance_s": Setting(0.05, "float", "a wav may fall short of a clip's end by this much (zero-padded)"),
    "checksums": Setting(True, "bool", "record sha256 of every source file in the manifest"),
}


@dataclass
class _SubjectPlan:
    subject: str
    files: dict[str, Path]  # story -> .hf5
    train: list[str]
    test: list[str]
    n_voxels: int
    voxel_index: np.ndarray | None = None
    voxel_index_file: Path | None = None
    info: dict = field(default_factory=dict)


def prepare(dataset, *, source, stimuli=None, root=None, subjects=None, **settings) -> Path:
    """Prepare Brain2Speech from ds003020; returns the prepared folder.

    Settings (``**settings``, e.g. from ``bench data prepare --set KEY=VALUE``): see :data:`SETTINGS`.
    """
    cfg = resolve_settings(dataset.name, SETTINGS, settings)
    if cfg["n_prompt"] < 0:
        raise BenchError(f"{dataset.name}: setting n_prompt must be >= 0, got {cfg['n_prompt']}")
    tr = float(dataset.spec.get("tr_seconds", 2.0))
    clip_s = float(dataset.spec["clip_seconds"])
    clip_samples = dataset.clip_samples

    source = require_dir(Path(source).expanduser(), "Brain2Speech --source", "point it at the ds003020 folder")
    pre = require_dir(source / "derivative" / "preprocessed_data", "Brain2Speech folder",
                      "--source must hold derivative/preprocessed_data/<subject>/<story>.hf5")
    respdict_path = require_file(source / "derivative" / "respdict.json", "Brain2Speech respdict",
                                 "it comes with derivative/ in ds003020")
    respdict = _read_respdict(respdict_path)
    wav_dir = Path(stimuli).expanduser() if stimuli is not None else source / "stimuli"
    require_dir(wav_dir, "Brain2Speech story audio folder", "pass --stimuli FOLDER holding <story>.wav")

    test_stories = list(cfg["test_stories"])
    train_stories = list(cfg["train_stories"] or [s for s in CORE_STORIES if s not in test_stories])
    overlap = sorted(set(test_stories) & set(train_stories))
    if overlap:
        raise BenchError(f"{dataset.name}: stories {', '.join(overlap)} are in both train_stories and test_stories")
    genders = _gender_table(cfg["labels"])

    wanted = resolve_subjects(dataset, subjects)
    found = [s for s in wanted if (pre / s).is_dir()]
    report_missing_subjects(dataset.name, wanted, found, pre)

    # -- plan and validate everything before the heavy work ---------------------------------
    plans = {s: _plan_subject(s, pre / s, train_stories, test_stories, respdict, respdict_path, cfg) for s in found}
    clip_stories = [s for s in train_stories + test_stories if any(s in p.files for p in plans.values())]
    rows = {s: respdict[s] - cfg["trimmed_trs"] for s in clip_stories}

    def onset(k):
        return cfg["first_row_onset_s"] + tr * k - cfg["lag_s"]

    if onset(0) < 0:
        raise BenchError(f"{dataset.name}: lag_s={cfg['lag_s']} puts row 0's clip before the story starts")
    wavs = {}
    for story in clip_stories:
        wavs[story] = wav_dir / f"{story}.wav"
        check_audio_span(wavs[story], onset(rows[story] - 1) + clip_s, cfg["short_audio_tolerance_s"], cfg["expect_sample_rate"])

    stim_base, stim_tag = (source, "source") if _inside(wav_dir, source) else (wav_dir, "stimuli")
    sources = describe_files([respdict_path] + [p for pl in plans.values() for p in pl.files.values()],
                             source, "source", cfg["checksums"])
    sources += describe_files(wavs.values(), stim_base, stim_tag, cfg["checksums"])
    extra_files = [p.voxel_index_file for p in plans.values() if p.voxel_index_file is not None]
    if extra_files:
        sources += describe_files(extra_files, Path(cfg["voxel_index_dir"]), "voxel_index_dir", cfg["checksums"])
    if cfg["labels"] is not None:
        sources += describe_files([cfg["labels"]], Path(cfg["labels"]).parent, "labels", cfg["checksums"])

    # -- clips -------------------------------------------------------------------------------
    offsets, n_clips = {}, 0
    for story in clip_stories:
        offsets[story] = n_clips
        n_clips += rows[story]
    stim_id = np.empty(n_clips, dtype=object)
    onset_s = np.empty(n_clips, dtype=np.float64)
    label = np.empty(n_clips, dtype=object)
    src = np.empty(n_clips, dtype=object)
    root = data_root(root)
    with Scratch(root, dataset.name) as scratch:
        writer = scratch.writer("clips", (n_clips, clip_samples))
        for story in clip_stories:
            a16 = read_audio_16k(wavs[story], cfg["expect_sample_rate"])
            rel = str(wavs[story].relative_to(stim_base))
            for k in range(rows[story]):
                i = offsets[story] + k
                writer.write(cut_clip(a16, onset(k), clip_samples, wavs[story], cfg["short_audio_tolerance_s"]))
                stim_id[i], onset_s[i], label[i], src[i] = story, onset(k), genders.get(story, "unknown"), rel
            del a16
        audio = writer.close()
        clips = ClipTable(audio=audio, stim_id=stim_id, onset_s=onset_s, label=label, source=src)

        def build(subject: str) -> PreparedSubject:
            return _build_subject(plans[subject], scratch, offsets, rows, cfg["n_prompt"])

        streamed = StreamedSubjects(found, build, scratch, release=[audio])
        try:
            folder = write_prepared(
                root, dataset.name, dataset.version(), clips, streamed,
                settings={"preparer": __name__, "subjects": found, **manifest_settings(cfg),
                          "test_stories": test_stories, "train_stories": train_stories},
                sources=sources,
            )
        finally:
            streamed.close()
            release_pages(audio)
            del clips, audio
    return folder


# ----------------------------------------------------------------------------------------------


def _inside(path: Path, base: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(base).resolve())
        return True
    except ValueError:
        return False


def _read_respdict(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"respdict {path} is not valid JSON ({exc}); it may be truncated") from None
    if not isinstance(raw, dict):
        raise BenchError(f"respdict {path} must map story names to n_TR")
    out = {}
    for story, n in raw.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)) or float(n) != int(n) or int(n) <= 0:
            raise BenchError(f"respdict {path}: story {story!r} has n_TR {n!r}, expected a positive integer")
        out[str(story)] = int(n)
    return out


def _gender_table(path: Path | None) -> dict[str, str]:
    table = dict(SPEAKER_GENDER)
    if path is None:
        return table
    path = require_file(Path(path), "speaker-gender labels CSV (setting labels)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchError(f"labels CSV {path} is not UTF-8 text ({exc})") from None
    norm = {"m": "male", "man": "male", "f": "female", "woman": "female"}
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if n == 1 and row[0].strip().lower() == "story":
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise BenchError(f"labels CSV {path} line {n}: expected 'story,gender', got {','.join(row)!r}")
        g = row[1].strip().lower()
        table[row[0].strip()] = norm.get(g, g)
    return table


def _plan_subject(subject, folder: Path, train_stories, test_stories, respdict, respdict_path, cfg) -> _SubjectPlan:
    files: dict[str, Path] = {}
    n_voxels = None

    def check(story: str, path: Path) -> None:
        nonlocal n_voxels
        if story not in respdict:
            raise BenchError(f"respdict {respdict_path} has no entry for story {story!r} (needed for {path})")
        expected = respdict[story] - cfg["trimmed_trs"]
        shape = _hf5_shape(path)
        if shape[0] != expected:
            raise BenchError(
                f"{path}: 'data' has {shape[0]} rows, but respdict.json gives {story} n_TR={respdict[story]}, "
                f"so {expected} rows (n_TR - {cfg['trimmed_trs']}) are expected"
            )
        if n_voxels is not None and shape[1] != n_voxels:
            raise BenchError(f"{path}: 'data' has {shape[1]} voxels, but {subject}'s other stories have {n_voxels}")
        n_voxels = shape[1]
        files[story] = path

    for story in test_stories:
        path = folder / f"{story}.hf5"
        if not path.is_file():
            raise BenchError(f"{path} is missing: test story {story} is needed for every subject")
        check(story, path)
        if respdict[story] - cfg["trimmed_trs"] <= cfg["n_prompt"]:
            raise BenchError(f"{path}: test story {story} has no rows left after the last {cfg['n_prompt']} prompt clips")
    missing = []
    for story in train_stories:
        path = folder / f"{story}.hf5"
        if not path.is_file():
            missing.append(story)
            continue
        check(story, path)
    train = [s for s in train_stories if s in files]
    if not train:
        raise BenchError(f"{folder} holds none of the training stories ({', '.join(train_stories[:4])}, ...)")
    if missing:
        names = ", ".join(f"{s}.hf5" for s in missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        warn(f"{subject}: {len(missing)} training stories missing from {folder} ({names}); training on its other {len(train)}")

    plan = _SubjectPlan(subject, files, train, list(test_stories), int(n_voxels))
    if cfg["voxel_index_dir"] is not None:
        vdir = require_dir(Path(cfg["voxel_index_dir"]), "voxel-index folder (setting voxel_index_dir)")
        cands = [vdir / f"{subject}.npy", vdir / f"{subject}.txt"]
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            raise BenchError(f"voxel-index file for {subject} is missing: expected {cands[0]} or {cands[1]}")
        plan.voxel_index = load_voxel_index(path, plan.n_voxels)
        plan.voxel_index_file = path
    return plan


def _hf5_shape(path: Path) -> tuple[int, int]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise BenchError(f"{path} has no dataset 'data' (has: {', '.join(f.keys()) or 'nothing'})")
            d = f["data"]
            if not isinstance(d, h5py.Dataset) or d.ndim != 2:
                raise BenchError(f"{path}: 'data' must be a 2-D (TRs x voxels) dataset")
            return int(d.shape[0]), int(d.shape[1])
    except OSError as exc:
        raise BenchError(f"{path} cannot be read as HDF5 ({exc}); the file may be truncated") from None


def _read_rows(path: Path, index: np.ndarray | None, nans: dict, block_bytes: int = 64 << 20):
    """Yield (first_row, float32 block) of a story's responses, a few MB at a time."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            d = f["data"]
            step = max(1, block_bytes // max(1, d.shape[1] * d.dtype.itemsize))
            for r0 in range(0, d.shape[0], step):
                block = d[r0 : r0 + step]
                if index is not None:
                    block = block[:, index]
                yield r0, clean_nans(block, path, nans)
    except OSError as exc:
        raise BenchError(f"{path} cannot be read ({exc}); the file may be truncated") from None


def _build_subject(plan: _SubjectPlan, scratch: Scratch, offsets, rows, n_prompt) -> PreparedSubject:
    v = plan.n_voxels if plan.voxel_index is None else int(plan.voxel_index.size)
    counts = {
        "train": sum(rows[s] for s in plan.train),
        "test": sum(rows[s] - n_prompt for s in plan.test),
        "prompt": n_prompt * len(plan.test),
    }
    fmri = {k: scratch.writer(f"{plan.subject}.{k}", (n, v)) for k, n in counts.items()}
    index = {k: np.empty(n, dtype=np.int64) for k, n in counts.items()}
    pos = dict.fromkeys(counts, 0)
    nans: dict = {}

    def put(split: str, block: np.ndarray, clip0: int) -> None:
        p, n = pos[split], block.shape[0]
        fmri[split].write(block)
        index[split][p : p + n] = clip0 + np.arange(n)
        pos[split] = p + n

    for story in plan.train:
        for r0, block in _read_rows(plan.files[story], plan.voxel_index, nans):
            put("train", block, offsets[story] + r0)
    for story in plan.test:
        cut = rows[story] - n_prompt  # rows >= cut are prompts
        for r0, block in _read_rows(plan.files[story], plan.voxel_index, nans):
            k = np.arange(r0, r0 + block.shape[0])
            t = k < cut
            if t.any():
                put("test", block[t], offsets[story] + r0)
            if (~t).any():
                put("prompt", block[~t], offsets[story] + int(k[~t][0]))
    warn_nans(nans)
    assert pos == counts, (pos, counts)
    splits = {k: (fmri[k].close(), index[k]) for k in ("train", "test", "prompt")}
    info = {
        "train_stories": plan.train,
        "test_stories": plan.test,
        "n_voxels_source": plan.n_voxels,
        "voxel_index_file": plan.voxel_index_file.name if plan.voxel_index_file else None,
    }
    return PreparedSubject(splits=splits, info=info)

"""Tiny fixtures in the exact on-disk formats of the three public releases.

- Brain2Speech (ds003020): ``derivative/preprocessed_data/<UTSxx>/<story>.hf5`` (h5py, dataset "data",
  float64, n_TR - 20 rows), ``derivative/respdict.json``, ``stimuli/<story>.wav`` (44.1 kHz 16-bit stereo).
- Brain2Music (ds003720): ``sub-00X/func/sub-00X_task-{Training,Test}_run-NN_{bold.nii,events.tsv}``
  (nibabel int16 NIfTI-1; events with CRLF line ends, no final newline, ``'genre'`` quoted, and the
  malformed ``classical'`` rows of Training run-04), GTZAN ``genres/<genre>/<genre>.<NNNNN>.wav``
  (22,050 Hz mono 16-bit); optional fMRIPrep derivatives (``*_desc-preproc_bold.nii.gz`` + brain mask).
- Brain2Sound (KamitaniLab): BData HDF5 written exactly as ``bdpy.BData.save`` does
  (``/dataset``, ``/metadata/{key,description,value}``, ``/vmap/<key>/<float>``; optionally the older
  ``metaData``/``dataSet`` names), the stimulus CSV (ms despite the header, quoted labels with
  commas), and VGGSound clips ``<ytid>_<start_seconds:06d>.wav``.

Every region of every fixture wav holds its own tone (see ``tone_hz``), and every fMRI value encodes
where it came from, so tests can check exactly which audio and which row each sample points at.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------------
# audio


def tone_hz(source_id: int, region: int) -> float:
    """The tone in ``region`` of fixture audio file ``source_id`` (distinct, >= 12 Hz apart)."""
    return 150.0 + 12.0 * region + 1.0 * (source_id % 11)


def write_tone_wav(path: Path, source_id: int, seconds: float, region_s: float, sr: int, channels: int) -> np.ndarray:
    """A 16-bit wav whose ``region_s``-long regions hold tones ``tone_hz(source_id, r)``; returns the float signal."""
    import soundfile as sf

    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    region = np.floor(t / region_s).astype(int)
    freq = 150.0 + 12.0 * region + 1.0 * (source_id % 11)
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([x, 0.8 * x][:channels], axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype="PCM_16")
    return x


def dominant_hz(clip: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(clip * np.hanning(clip.size)))
    return float(np.fft.rfftfreq(clip.size, 1 / sr)[np.argmax(spec)])


def resampled_16k(path: Path) -> np.ndarray:
    """Reference: whole file -> channel mean -> scipy.signal.resample_poly to 16 kHz."""
    import math

    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = x.mean(axis=1)
    g = math.gcd(sr, 16000)
    return resample_poly(mono.astype(np.float64), 16000 // g, sr // g).astype(np.float32)


def expected_clip(path: Path, onset_s: float, n_samples: int, cache: dict | None = None) -> np.ndarray:
    """Reference clip: :func:`resampled_16k` cut at ``onset_s`` (zero-padded past the end)."""
    y = cache.setdefault(str(path), None) if cache is not None else None
    if y is None:
        y = resampled_16k(path)
        if cache is not None:
            cache[str(path)] = y
    start = int(round(onset_s * 16000))
    out = np.zeros(n_samples, np.float32)
    seg = y[start : start + n_samples]
    out[: seg.size] = seg
    return out


# ----------------------------------------------------------------------------------------------
# Brain2Speech


def speech_value(subject_i: int, story_i: int, row: int, voxel: int) -> float:
    """The fixture response of row ``row``, voxel ``voxel``: encodes subject, story, row and voxel."""
    return subject_i * 1e6 + story_i * 1e4 + row + voxel * 1e-3


@dataclass
class SpeechFixture:
    source: Path
    stories: dict[str, int]  # story -> n_TR
    subjects: list[str]
    n_voxels: dict[str, int]
    story_ids: dict[str, int] = field(default_factory=dict)

    def rows(self, story: str) -> int:
        return self.stories[story] - 20

    def value(self, subject: str, story: str, row: int, voxel: int) -> float:
        return speech_value(self.subjects.index(subject), self.story_ids[story], row, voxel)


def write_brain2speech(
    source: Path,
    stories: dict[str, int],
    subjects=("UTS01",),
    n_voxels: int | dict = 6,
    sr: int = 44100,
    channels: int = 2,
    skip: dict | None = None,
    nan: list | None = None,
    wav_seconds: dict | None = None,
    wav: bool = True,
) -> SpeechFixture:
    """ds003020 layout. ``skip``: {subject: [stories without an .hf5]}; ``nan``: [(subject, story, row, voxel)]."""
    import h5py

    source = Path(source)
    deriv = source / "derivative"
    (deriv / "preprocessed_data").mkdir(parents=True, exist_ok=True)
    (deriv / "respdict.json").write_text(json.dumps(stories), encoding="utf-8")
    subjects = list(subjects)
    nv = n_voxels if isinstance(n_voxels, dict) else {s: n_voxels for s in subjects}
    fx = SpeechFixture(source, dict(stories), subjects, nv, {s: i for i, s in enumerate(stories)})
    for si, subject in enumerate(subjects):
        sub = deriv / "preprocessed_data" / subject
        sub.mkdir(parents=True, exist_ok=True)
        for story, n_tr in stories.items():
            if story in (skip or {}).get(subject, []):
                continue
            rows = n_tr - 20
            k = np.arange(rows)[:, None]
            v = np.arange(nv[subject])[None, :]
            data = speech_value(si, fx.story_ids[story], k, v).astype(np.float64)
            for s_, st_, r_, v_ in nan or []:
                if s_ == subject and st_ == story:
                    data[r_, v_] = np.nan
            with h5py.File(sub / f"{story}.hf5", "w") as f:
                f.create_dataset("data", data=data)
    if wav:
        for story, n_tr in stories.items():
            seconds = (wav_seconds or {}).get(story, 2 * n_tr - 20)
            write_tone_wav(source / "stimuli" / f"{story}.wav", fx.story_ids[story], seconds, 2.0, sr, channels)
    return fx


# ----------------------------------------------------------------------------------------------
# Brain2Music


EVENTS_HEADER = ["onset", "duration", "genre", "track", "start", "end"]


def write_events_tsv(path: Path, events: list[tuple], malformed: set[int] = frozenset()) -> None:
    """events.tsv as released: CRLF, no final newline, genres as ``'disco'`` (``classical'`` where malformed).

    ``events``: (onset, duration, genre, track, start, end); ``malformed``: row numbers (0-based) whose genre
    lacks the opening quote.
    """
    lines = ["\t".join(EVENTS_HEADER)]
    for i, (onset, dur, genre, track, start, end) in enumerate(events):
        g = f"{genre}'" if i in malformed else f"'{genre}'"
        lines.append("\t".join([_num(onset), _num(dur), g, str(track), _num(start), _num(end)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("\r\n".join(lines).encode("utf-8"))


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass
class MusicFixture:
    source: Path
    stimuli: Path
    subjects: list[str]
    runs: dict  # (task, run) -> list of (onset, dur, genre, track, start, end), warm-up first
    shape: tuple
    brain: np.ndarray  # boolean (X, Y, Z) brain mask the fixture paints
    n_volumes: dict  # (task, run) -> T
    track_ids: dict = field(default_factory=dict)  # (genre, track) -> source id for tones


def music_design(train_runs=2, test_runs=1, clips_per_train_run=3, genres=("blues", "classical")):
    """A small ds003720-like design: training runs of unique clips, test runs of 2 clips x 4 presentations.

    Each run starts with a warm-up clip (onset 0) repeating the run's last clip, as in the release.
    """
    runs = {}
    pool = [(g, t) for t in range(0, 20) for g in genres]
    used = 0
    for r in range(1, train_runs + 1):
        clips = pool[used : used + clips_per_train_run]
        used += clips_per_train_run
        order = [clips[-1]] + clips  # warm-up repeats a clip
        runs[("Training", r)] = [(15.0 * i, 15.0, g, t, 15.0 * (t % 2), 15.0 * (t % 2) + 15) for i, (g, t) in enumerate(order)]
    for r in range(1, test_runs + 1):
        clips = pool[used : used + 2]
        used += 2
        order = [clips[1]] + clips * 4
        runs[("Test", r)] = [(15.0 * i, 15.0, g, t, 0.0, 15.0) for i, (g, t) in enumerate(order)]
    return runs


def write_brain2music(
    source: Path,
    stimuli: Path,
    subjects=("sub-001",),
    runs: dict | None = None,
    shape=(6, 5, 4),
    extra_volumes: int = 4,
    gz: bool = False,
    fmriprep: Path | None = None,
    malformed_run: tuple = ("Training", 2),
    seed: int = 0,
    write_audio: bool = True,
    slope: float | None = None,
) -> MusicFixture:
    """ds003720 layout (raw int16 BOLD) plus GTZAN wavs; ``fmriprep``: also write fMRIPrep derivatives there."""
    import nibabel as nib

    source, stimuli = Path(source), Path(stimuli)
    runs = runs or music_design()
    rng = np.random.default_rng(seed)
    brain = np.zeros(shape, bool)
    brain[1:-1, 1:-1, :] = True  # the painted brain: bright interior, dark border
    n_volumes = {}
    for key, events in runs.items():
        n_volumes[key] = int(round(max(e[0] + e[1] for e in events) / 1.5)) + extra_volumes
    fx = MusicFixture(source, stimuli, list(subjects), runs, tuple(shape), brain, n_volumes)
    for si, subject in enumerate(subjects):
        func = source / subject / "func"
        func.mkdir(parents=True, exist_ok=True)
        for (task, run), events in runs.items():
            stem = f"{subject}_task-{task}_run-{run:02d}"
            write_events_tsv(func / f"{stem}_events.tsv", events,
                             malformed={1, 2} if (task, run) == tuple(malformed_run) else set())
            t = n_volumes[(task, run)]
            drift = np.linspace(0, 30, t)[None, None, None, :]
            data = np.where(brain[..., None], 1000.0 + drift + 40 * rng.standard_normal(shape + (t,)), 8 * rng.random(shape + (t,)))
            img = nib.Nifti1Image(np.round(data).astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
            img.header.set_xyzt_units("mm", "sec")
            img.header["pixdim"][4] = 1.5
            if slope is not None:
                img.header.set_slope_inter(slope, 0.0)
            nib.save(img, str(func / f"{stem}_bold.nii{'.gz' if gz else ''}"))
            (func / f"{stem}_bold.json").write_text(json.dumps({"RepetitionTime": 1.5}), encoding="utf-8")
            if fmriprep is not None:
                ff = Path(fmriprep) / subject / "func"
                ff.mkdir(parents=True, exist_ok=True)
                pre = f"{stem}_space-T1w"
                mask = brain.copy()
                mask[1, 1, 0] = False  # fMRIPrep's mask differs from the intensity mask
                pdata = np.where(brain[..., None], 500.0 + 20 * rng.standard_normal(shape + (t,)), 0.0).astype(np.float32)
                nib.save(nib.Nifti1Image(pdata, np.eye(4)), str(ff / f"{pre}_desc-preproc_bold.nii.gz"))
                nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(ff / f"{pre}_desc-brain_mask.nii.gz"))
    tracks = sorted({(e[2], e[3]) for ev in runs.values() for e in ev})
    fx.track_ids = {gt: i for i, gt in enumerate(tracks)}
    if write_audio:
        for (genre, track), i in fx.track_ids.items():
            write_tone_wav(stimuli / "genres" / genre / f"{genre}.{track:05d}.wav", i, 30.0, 1.5, 22050, 1)
    return fx


def zscore_detrend_reference(ts: np.ndarray) -> np.ndarray:
    """Reference for one run's (T, V) series: least-squares line removed, then z-scored (ddof 0)."""
    t = np.arange(ts.shape[0], dtype=np.float64)
    a = np.stack([t, np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(a, ts.astype(np.float64), rcond=None)
    r = ts - a @ coef
    sd = r.std(axis=0)
    return np.where(sd > 0, r / np.where(sd > 0, sd, 1), 0.0)


# ----------------------------------------------------------------------------------------------
# Brain2Sound


def write_bdata(path: Path, dataset: np.ndarray, keys: list[str], descriptions: list[str], values: np.ndarray,
                vmap: dict[str, dict[float, str]], header: dict | None = None, old_names: bool = False) -> None:
    """Write a BData HDF5 file the way ``bdpy.BData.save`` (HDF5 branch) does.

    ``/dataset`` (n_samples, n_columns); ``/metadata/key`` and ``/metadata/description`` as UTF-8 byte
    strings; ``/metadata/value`` (n_meta, n_columns) float64; ``/vmap/<key>/<str(float)>`` byte strings.
    ``old_names`` uses the older ``metaData``/``dataSet`` names.
    """
    import h5py

    ds_name, md_name = ("dataSet", "metaData") if old_names else ("dataset", "metadata")
    with h5py.File(path, "w") as f:
        f.create_dataset("/" + ds_name, data=np.asarray(dataset, dtype=np.float64))
        f.create_group("/" + md_name)
        f.create_dataset(f"/{md_name}/key", data=[k.encode("utf-8") for k in keys])
        f.create_dataset(f"/{md_name}/description", data=[d.encode("utf-8") for d in descriptions])
        f.create_dataset(f"/{md_name}/value", data=np.asarray(values, dtype=np.float64))
        if header:
            f.create_group("/header")
            for k, v in header.items():
                f.create_dataset("/header/" + k, data=str(v).encode("utf-8"))
        f.create_group("/vmap")
        for mk, vm in vmap.items():
            f.create_group("/vmap/" + mk)
            for k, v in vm.items():
                f.create_dataset("/vmap/" + mk + "/" + str(float(k)), data=v.encode("utf-8"))


# ROI layout of the fixture's voxel columns: (metadata key, voxel positions)
SOUND_ROIS = [
    ("hcp180_r_lh.L_A1_ROI", [0, 1, 2]),
    ("hcp180_r_rh.R_A1_ROI", [2, 3]),
    ("hcp180_r_lh.L_LBelt_ROI", [4]),
    ("hcp180_r_rh.R_STSvp_ROI", [6]),
    ("hcp180_r_lh.L_V1_ROI", [5, 7, 8]),  # not auditory
]
SOUND_AUDITORY_VOXELS = [0, 1, 2, 3, 4, 6]


def sound_value(stim_i: int, window: int, rep: int, voxel: int, test: bool) -> float:
    return (5e5 if test else 0) + stim_i * 1000 + window * 100 + rep * 10 + voxel * 0.01


@dataclass
class SoundFixture:
    source: Path
    stimuli: Path
    subjects: list[str]
    train: list[tuple]  # (ytid, start_ms, label) in CSV order
    test: list[tuple]
    reps_train: int
    reps_test: int
    n_voxels: int


SOUND_TRAIN = [
    ("--U7joUcTCo", 0, "playing electronic organ"),
    ("0-jDld11jhw", 164000, "playing cornet"),
    ("00QQLLcny14", 83000, "electric shaver, electric razor shaving"),
    ("0Br877mW7_c", 10000, "blowtorch igniting"),
]
SOUND_TEST = [
    ("02Ak1eIyj3M", 30000, "donkey, ass braying"),
    ("0BauNGmZtTU", 250000, "female speech, woman speaking"),
]


def write_brain2sound(
    source: Path,
    stimuli: Path,
    subjects=("S1",),
    train=SOUND_TRAIN,
    test=SOUND_TEST,
    reps_train: int = 2,
    reps_test: int = 3,
    missing_audio: tuple = (),
    old_names: bool = False,
    n_voxels: int = 9,
    audio_seconds: float = 8.0,
    label_fmt: str = "{ytid}_{split}_slide{w}",
    extra_csv_rows: tuple = (),
) -> SoundFixture:
    """KamitaniLab layout: data/fmri_data/<S>_VGGishish{Train,Test}_volume_native.h5, the stimulus CSV, wavs."""
    source, stimuli = Path(source), Path(stimuli)
    fdir = source / "data" / "fmri_data"
    fdir.mkdir(parents=True, exist_ok=True)
    # CSV exactly like the release: header says seconds, values are ms, quoted labels with commas.
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["YouTube ID", "start seconds", "end seconds", "label", "split"])
    for ytid, start, label in train:
        w.writerow([ytid, start, start + 8000, label, "decoder_train"])
    for row in extra_csv_rows:
        w.writerow(row)
    for ytid, start, label in test:
        w.writerow([ytid, start, start + 8000, label, "decoder_test"])
    (source / "data" / "SoundReconstruction_stimulus.csv").write_text(buf.getvalue(), encoding="utf-8")
    for i, (ytid, start, _) in enumerate(list(train) + list(test)):
        if ytid in missing_audio:
            continue
        write_tone_wav(stimuli / f"{ytid}_{start // 1000:06d}.wav", i, audio_seconds, 2.0, 44100, 2)
    for subject in subjects:
        for split, stims, reps in (("train", train, reps_train), ("test", test, reps_test)):
            offset = 0 if split == "train" else len(train)
            labels, rows = [], []
            for rep in range(reps):
                for si, (ytid, start, _) in enumerate(stims):
                    for win in range(3):
                        labels.append(label_fmt.format(ytid=ytid, start=start // 1000, split=split, w=win))
                        rows.append([sound_value(offset + si, win, rep, v, split == "test") for v in range(n_voxels)])
            codes = {lab: float(i + 1) for i, lab in enumerate(dict.fromkeys(labels))}
            n_meta_cols = 2  # sample_name, Run
            ncol = n_voxels + n_meta_cols
            data = np.zeros((len(rows), ncol))
            data[:, :n_voxels] = np.asarray(rows)
            data[:, n_voxels] = [codes[lab] for lab in labels]
            data[:, n_voxels + 1] = np.repeat(np.arange(reps) + 1, len(stims) * 3)
            keys, desc, vals = [], [], []

            def meta(key, d, cols, value=1.0):
                row = np.full(ncol, np.nan)
                row[cols] = value
                keys.append(key)
                desc.append(d)
                vals.append(row)

            meta("VoxelData", "1 = voxel data", list(range(n_voxels)))
            meta("sample_name", "Sample name", [n_voxels])
            meta("Run", "Run number", [n_voxels + 1])
            for key, cols in SOUND_ROIS:
                meta(key, f"1 = ROI {key}", cols)
            meta("voxel_x", "voxel x coordinate", list(range(n_voxels)), value=np.arange(n_voxels, dtype=float))
            write_bdata(fdir / f"{subject}_VGGishish{split.capitalize()}_volume_native.h5", data, keys, desc,
                        np.stack(vals), {"sample_name": {v: k for k, v in codes.items()}},
                        header={"creator": "fixture"}, old_names=old_names)
    return SoundFixture(source, stimuli, list(subjects), list(train), list(test), reps_train, reps_test, n_voxels)

"""Brain2Music preparation from fixtures in the exact ds003720 (+ GTZAN, fMRIPrep) on-disk formats."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from bench.datasets import get_dataset
from bench.errors import BenchError
from bench.prepare.brain2music import read_events
from bench.prepare.common import PrepareWarning
from tests.fixtures_real import (
    dominant_hz,
    expected_clip,
    music_design,
    tone_hz,
    write_brain2music,
    write_events_tsv,
    zscore_detrend_reference,
)

TR = 1.5


@pytest.fixture(scope="module")
def music_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2music")
    return write_brain2music(root / "ds003720", root / "gtzan", subjects=["sub-001", "sub-002"])


def _prepare(fx, tmp_path, source=None, **kw):
    kw.setdefault("subjects", fx.subjects)
    return get_dataset("brain2music").prepare(source=source or fx.source, stimuli=fx.stimuli / "genres",
                                              root=tmp_path / "data", **kw)


def _reference(fx, subject, delay, mask=None, bold_name="{stem}_bold.nii", base=None):
    """Expected train rows (in run/event order) and test rows (averaged, keyed by (stim_id, onset))."""
    import nibabel as nib

    mask = fx.brain if mask is None else mask
    train, test = [], {}
    for (task, run), events in sorted(fx.runs.items(), key=lambda kv: (kv[0][0] != "Training", kv[0][1])):
        stem = f"{subject}_task-{task}_run-{run:02d}"
        path = (base or fx.source / subject / "func") / bold_name.format(stem=stem)
        data = np.asarray(nib.load(str(path)).dataobj)
        ref = zscore_detrend_reference(data[mask].T.astype(np.float64))
        for onset, dur, genre, track, start, _ in events[1:]:  # warm-up dropped
            for j in range(int(dur / TR)):
                v = int(onset / TR) + j + delay
                if v >= ref.shape[0]:
                    continue
                key = (f"{genre}.{track:05d}", start + j * TR)
                if task == "Training":
                    train.append((key, ref[v]))
                else:
                    test.setdefault(key, []).append(ref[v])
    return train, {k: np.mean(v, axis=0) for k, v in test.items()}


def test_samples_volumes_audio_and_test_averaging(music_src, tmp_path):
    fx = music_src
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrepareWarning)
        folder = _prepare(fx, tmp_path)
    ds = get_dataset("brain2music")
    for subject in fx.subjects:
        tr = ds.load_split(subject, "train", data_root=tmp_path / "data")
        te = ds.load_split(subject, "test", data_root=tmp_path / "data")
        assert tr.n_samples == 2 * 3 * 10 and te.n_samples == 2 * 10  # warm-ups dropped; 4 presentations averaged
        assert tr.n_voxels == te.n_voxels == fx.brain.sum()  # the intensity mask finds the painted brain
        train_ref, test_ref = _reference(fx, subject, delay=3)
        assert [(s, o) for s, o in zip(tr.stim_id, tr.onset_s)] == [k for k, _ in train_ref]
        np.testing.assert_allclose(tr.fmri, np.stack([r for _, r in train_ref]), atol=2e-5)
        for i in range(te.n_samples):
            np.testing.assert_allclose(te.fmri[i], test_ref[(te.stim_id[i], te.onset_s[i])], atol=2e-5)
        assert te.info["test_presentations"] == {"min": 4, "max": 4}
    # genre labels survive the quoting quirks (Training run-02 holds the malformed rows)
    assert set(tr.label) == {"blues", "classical"} and all(s.split(".")[0] == lab for s, lab in zip(tr.stim_id, tr.label))
    # audio: the 1.5-s GTZAN span [start + 1.5 j, ...) resampled 22,050 -> 16,000 Hz
    cache: dict = {}
    for i in range(0, tr.n_samples, 7):
        genre, track = tr.stim_id[i].split(".")
        wav = fx.stimuli / "genres" / genre / f"{genre}.{track}.wav"
        np.testing.assert_allclose(tr.audio[i], expected_clip(wav, tr.onset_s[i], 24000, cache), atol=1e-6)
        region = int(round(tr.onset_s[i] / TR))
        assert dominant_hz(tr.audio[i][1500:-1500]) == pytest.approx(tone_hz(fx.track_ids[(genre, int(track))], region), abs=1.5)
    assert 15.0 in set(tr.onset_s)  # tracks whose span starts at 15 s
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["settings"]["hrf_delay_volumes"] == 3 and "detrend" in manifest["settings"]
    paths = {e["path"] for e in manifest["sources"]}
    assert "sub-001/func/sub-001_task-Training_run-02_events.tsv" in paths and "blues/blues.00000.wav" in paths


def test_events_tsv_quirks(tmp_path):
    f = tmp_path / "ev.tsv"
    write_events_tsv(f, [(0, 15, "disco", 3, 0, 15), (15, 15, "classical", 12, 15, 30)], malformed={1})
    raw = f.read_bytes()
    assert b"\r\n" in raw and not raw.endswith(b"\n") and b"classical'\t" in raw and b"'disco'" in raw
    f.write_bytes(b"\xef\xbb\xbf" + raw)  # a BOM too
    ev = read_events(f)
    assert [(e.genre, e.track, e.start, e.end) for e in ev] == [("disco", 3, 0.0, 15.0), ("classical", 12, 15.0, 30.0)]
    f.write_bytes(raw + b"\r\n30\t15\t'rock'\t1\t0")
    with pytest.raises(BenchError, match=r"ev\.tsv line 4: 5 fields, the header has 6"):
        read_events(f)
    f.write_bytes(raw + b"\r\nthirty\t15\t'rock'\t1\t0\t15")
    with pytest.raises(BenchError, match=r"ev\.tsv line 4: onset 'thirty' is not a number"):
        read_events(f)
    f.write_bytes(b"onset\tduration\tgenre\r\n0\t15\tx")
    with pytest.raises(BenchError, match=r"ev\.tsv lacks column\(s\) track, start, end"):
        read_events(f)


def test_hrf_delay_drops_segments_past_the_run_end(tmp_path):
    fx = write_brain2music(tmp_path / "src", tmp_path / "gtzan", extra_volumes=1)
    with pytest.warns(PrepareWarning, match=r"sub-001: 6 segment\(s\) in 3 run\(s\) need volumes past the run's end \(e\.g\. .*task-Training_run-01_bold\.nii has 41; hrf_delay_volumes=3\)"):
        _prepare(fx, tmp_path)
    ds = get_dataset("brain2music")
    te = ds.load_split("sub-001", "test", data_root=tmp_path / "data")
    assert ds.load_split("sub-001", "train", data_root=tmp_path / "data").n_samples == 60 - 2 * 2
    assert te.n_samples == 20 and te.info["test_presentations"] == {"min": 3, "max": 4}
    _, test_ref = _reference(fx, "sub-001", delay=3)
    for i in range(te.n_samples):
        np.testing.assert_allclose(te.fmri[i], test_ref[(te.stim_id[i], te.onset_s[i])], atol=2e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrepareWarning)
        _prepare(fx, tmp_path, hrf_delay_volumes=0)
    tr0 = ds.load_split("sub-001", "train", data_root=tmp_path / "data")
    train_ref, _ = _reference(fx, "sub-001", delay=0)
    np.testing.assert_allclose(tr0.fmri, np.stack([r for _, r in train_ref]), atol=2e-5)


def test_gzipped_scaled_bold(tmp_path):
    fx = write_brain2music(tmp_path / "src", tmp_path / "gtzan", gz=True, slope=2.0, runs=music_design(1, 1, 2))
    _prepare(fx, tmp_path)
    tr = get_dataset("brain2music").load_split("sub-001", "train", data_root=tmp_path / "data")
    train_ref, _ = _reference(fx, "sub-001", delay=3, bold_name="{stem}_bold.nii.gz")
    np.testing.assert_allclose(tr.fmri, np.stack([r for _, r in train_ref]), atol=2e-5)


def test_fmriprep_derivatives(tmp_path):
    fx = write_brain2music(tmp_path / "src", tmp_path / "gtzan", runs=music_design(1, 1, 2), fmriprep=tmp_path / "fmriprep")
    _prepare(fx, tmp_path, fmriprep_dir=tmp_path / "fmriprep")
    tr = get_dataset("brain2music").load_split("sub-001", "train", data_root=tmp_path / "data")
    mask = fx.brain.copy()
    mask[1, 1, 0] = False  # the fixture's fMRIPrep brain mask
    assert tr.n_voxels == mask.sum() and tr.info["mask"] == "fmriprep"
    train_ref, _ = _reference(fx, "sub-001", delay=3, mask=mask, base=tmp_path / "fmriprep" / "sub-001" / "func",
                              bold_name="{stem}_space-T1w_desc-preproc_bold.nii.gz")
    np.testing.assert_allclose(tr.fmri, np.stack([r for _, r in train_ref]), atol=2e-5)
    with pytest.raises(BenchError, match=r"fMRIPrep file .*sub-001_task-Training_run-01_\*desc-preproc_bold\.nii\.gz is missing for space MNI"):
        _prepare(fx, tmp_path, fmriprep_dir=tmp_path / "fmriprep", fmriprep_space="MNI")
    next((tmp_path / "fmriprep" / "sub-001" / "func").glob("*Test*brain_mask*")).unlink()
    with pytest.raises(BenchError, match=r"fMRIPrep brain mask .*task-Test_run-01_space-T1w_desc-brain_mask\.nii\.gz is missing"):
        _prepare(fx, tmp_path, fmriprep_dir=tmp_path / "fmriprep")


def test_bad_inputs(music_src, tmp_path):
    fx = music_src
    src = tmp_path / "src"
    shutil.copytree(fx.source, src)
    func = src / "sub-001" / "func"
    with pytest.raises(BenchError, match=r"needs --stimuli"):
        get_dataset("brain2music").prepare(source=src, root=tmp_path / "data")
    with pytest.raises(BenchError, match=r"blues\.00000\.wav is sampled at 22050 Hz, but the setting expect_sample_rate pins 44100"):
        _prepare(fx, tmp_path, source=src, expect_sample_rate=44100)
    with pytest.raises(BenchError, match=r"unknown preparation setting\(s\) hrf_delay; known"):
        _prepare(fx, tmp_path, source=src, hrf_delay=2)
    bold = func / "sub-001_task-Training_run-01_bold.nii"
    bold.write_bytes(bold.read_bytes()[:-200])  # truncated
    with pytest.raises(BenchError, match=r"BOLD file .*task-Training_run-01_bold\.nii cannot be read"):
        _prepare(fx, tmp_path, source=src, subjects=["sub-001"])
    bold.unlink()
    with pytest.raises(BenchError, match=r"BOLD file .*sub-001_task-Training_run-01_bold\.nii \(or \.nii\.gz\) is missing"):
        _prepare(fx, tmp_path, source=src, subjects=["sub-001"])
    shutil.copy(fx.source / "sub-001" / "func" / bold.name, bold)
    for p in func.glob("*task-Test*"):
        p.unlink()
    with pytest.raises(BenchError, match=r"no Test runs for sub-001"):
        _prepare(fx, tmp_path, source=src, subjects=["sub-001"])
    with pytest.warns(PrepareWarning, match=r"subject\(s\) sub-003, sub-004, sub-005 not found"):
        _prepare(fx, tmp_path, subjects=None)
    with pytest.raises(BenchError, match=r"none of the subjects sub-004 was found"):
        _prepare(fx, tmp_path, subjects=["sub-004"])


def test_missing_gtzan_file_and_bad_events(music_src, tmp_path):
    fx = music_src
    gtzan = tmp_path / "gtzan"
    shutil.copytree(fx.stimuli / "genres", gtzan)
    (gtzan / "classical" / "classical.00001.wav").unlink()
    with pytest.raises(BenchError, match=r"GTZAN file .*classical/classical\.00001\.wav is missing \(stimulus classical\.00001\)"):
        get_dataset("brain2music").prepare(source=fx.source, stimuli=gtzan, root=tmp_path / "data", subjects=["sub-001"])
    src = tmp_path / "src"
    shutil.copytree(fx.source, src)
    ev = src / "sub-002" / "func" / "sub-002_task-Training_run-01_events.tsv"
    ev.write_bytes(ev.read_bytes().replace(b"\r\n15\t", b"\r\n16\t", 1))
    with pytest.raises(BenchError, match=r"run-01_events\.tsv line 3: onset 16(\.0)? s is not a multiple of the TR"):
        _prepare(fx, tmp_path, source=src)


def test_load_split_end_to_end(music_src, tmp_path):
    _prepare(music_src, tmp_path, subjects=["sub-002"])
    sp = get_dataset("brain2music").load_split("sub-002", "train", data_root=tmp_path / "data")
    assert sp.audio.shape == (60, 24000) and sp.fmri.dtype == np.float32 and set(sp.label) == {"blues", "classical"}


def test_nibabel_missing_is_a_clear_error(music_src, tmp_path, monkeypatch):
    import sys

    from bench.errors import UnavailableError

    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(UnavailableError, match=r"reads NIfTI files with nibabel: pip install nibabel"):
        _prepare(music_src, tmp_path)

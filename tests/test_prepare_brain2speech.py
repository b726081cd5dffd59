"""Brain2Speech preparation from fixtures in the exact ds003020 on-disk format."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from bench.datasets import get_dataset
from bench.errors import BenchError
from bench.prepare import brain2speech
from bench.prepare.common import PrepareWarning
from tests.fixtures_real import dominant_hz, expected_clip, tone_hz, write_brain2speech

# rows = n_TR - 20: avatar 8, buck 6, hangtime 14 (4 test + 10 prompt), wheretheressmoke 13 (3 + 10)
STORIES = {"avatar": 28, "buck": 26, "hangtime": 34, "wheretheressmoke": 33}
SUBJECTS = ["UTS01", "UTS02"]
TRAIN = ["avatar", "buck"]


@pytest.fixture(scope="module")
def speech_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2speech")
    return write_brain2speech(root / "ds003020", STORIES, subjects=SUBJECTS, n_voxels={"UTS01": 5, "UTS02": 7})


def _prepare(src, tmp_path, **kw):
    kw.setdefault("subjects", SUBJECTS)
    kw.setdefault("train_stories", TRAIN)
    return get_dataset("brain2speech").prepare(source=src, root=tmp_path / "data", **kw)


def _copy(fx, tmp_path):
    dst = tmp_path / "src"
    shutil.copytree(fx.source, dst)
    return dst


def test_rows_labels_and_audio_each_sample_points_at(speech_src, tmp_path):
    fx = speech_src
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrepareWarning)
        folder = _prepare(fx.source, tmp_path)
    ds = get_dataset("brain2speech")
    expected_n = {"train": 8 + 6, "test": 4 + 3, "prompt": 20}
    for subject in SUBJECTS:
        for split, n in expected_n.items():
            sp = ds.load_split(subject, split, data_root=tmp_path / "data")
            assert sp.n_samples == n and sp.fmri.dtype == np.float32
            assert sp.n_voxels == fx.n_voxels[subject]
            for i in range(sp.n_samples):
                story, onset = sp.stim_id[i], sp.onset_s[i]
                k = int(round((onset - 6.0) / 2.0))  # clip at 2k + 6 s <-> row k
                assert onset == 2 * k + 6
                want = [fx.value(subject, story, k, v) for v in range(sp.n_voxels)]
                np.testing.assert_allclose(sp.fmri[i], np.float32(want), rtol=0, atol=0)
            labels = dict(zip(sp.stim_id, sp.label))
            assert labels.get("hangtime", "male") == "male" and labels.get("wheretheressmoke", "female") == "female"
            assert labels.get("avatar", "unknown") == "unknown"
    # prompts are the last 10 rows of each test story, never in test
    pr = ds.load_split("UTS01", "prompt", data_root=tmp_path / "data")
    te = ds.load_split("UTS01", "test", data_root=tmp_path / "data")
    assert list(pr.onset_s[:10]) == [2 * k + 6 for k in range(4, 14)]
    assert list(pr.onset_s[10:]) == [2 * k + 6 for k in range(3, 13)]
    assert not set(zip(te.stim_id, te.onset_s)) & set(zip(pr.stim_id, pr.onset_s))
    # the audio: 16 kHz mono of the 44.1-kHz stereo wav, exactly the resampled span, tone of region k + 3
    tr = ds.load_split("UTS02", "train", data_root=tmp_path / "data")
    for i in (0, 5, tr.n_samples - 1):
        story, onset = tr.stim_id[i], tr.onset_s[i]
        clip = tr.audio[i]
        assert clip.shape == (32000,)
        np.testing.assert_allclose(clip, expected_clip(fx.source / "stimuli" / f"{story}.wav", onset, 32000), atol=1e-6)
        assert dominant_hz(clip[2000:-2000]) == pytest.approx(tone_hz(fx.story_ids[story], int(onset // 2)), abs=1.0)
    # clips are unique per (story, k) and shared by subjects
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["n_clips"] == 8 + 6 + 14 + 13
    assert manifest["settings"]["lag_s"] == 4.0 and manifest["settings"]["test_stories"] == ["hangtime", "wheretheressmoke"]
    src = {e["path"]: e for e in manifest["sources"]}
    assert "derivative/respdict.json" in src and "stimuli/hangtime.wav" in src
    assert len(src["derivative/preprocessed_data/UTS01/avatar.hf5"]["sha256"]) == 64
    assert not list((tmp_path / "data" / "brain2speech").glob(".*")), "scratch or temporary folders left behind"


def test_paper_test_count_595(tmp_path):
    """hangtime n_TR 344 and wheretheressmoke 311 give 324 + 291 - 20 = 595 test samples (Table 4)."""
    fx = write_brain2speech(tmp_path / "src", {"avatar": 25, "hangtime": 344, "wheretheressmoke": 311},
                            subjects=["UTS05"], n_voxels=2, sr=1000, channels=1)
    get_dataset("brain2speech").prepare(source=fx.source, root=tmp_path / "data", subjects=["UTS05"], train_stories=["avatar"])
    ds = get_dataset("brain2speech")
    test = ds.load_split("UTS05", "test", data_root=tmp_path / "data")
    prompt = ds.load_split("UTS05", "prompt", data_root=tmp_path / "data")
    train = ds.load_split("UTS05", "train", data_root=tmp_path / "data")
    assert test.n_samples == 595 and prompt.n_samples == 20 and train.n_samples == 5
    assert (test.stim_id == "hangtime").sum() == 314 and (test.stim_id == "wheretheressmoke").sum() == 281
    assert prompt.onset_s.max() == 2 * 323 + 6  # hangtime's last row


def test_labels_csv_and_voxel_index_files(speech_src, tmp_path):
    labels = tmp_path / "genders.csv"
    labels.write_text("story,gender\navatar,F\nbuck,male\n", encoding="utf-8")
    vdir = tmp_path / "voxels"
    vdir.mkdir()
    np.save(vdir / "UTS01.npy", np.array([4, 1]))
    (vdir / "UTS02.txt").write_text("0\n6\n2\n", encoding="utf-8")
    _prepare(speech_src.source, tmp_path, labels=labels, voxel_index_dir=vdir)
    ds = get_dataset("brain2speech")
    tr1 = ds.load_split("UTS01", "train", data_root=tmp_path / "data")
    tr2 = ds.load_split("UTS02", "train", data_root=tmp_path / "data")
    assert tr1.n_voxels == 2 and tr2.n_voxels == 3
    k = int((tr1.onset_s[0] - 6) / 2)
    np.testing.assert_array_equal(tr1.fmri[0], np.float32([speech_src.value("UTS01", tr1.stim_id[0], k, v) for v in (4, 1)]))
    assert dict(zip(tr1.stim_id, tr1.label)) == {"avatar": "female", "buck": "male"}
    assert tr2.info["voxel_index_file"] == "UTS02.txt"


def test_voxel_index_errors(speech_src, tmp_path):
    vdir = tmp_path / "voxels"
    vdir.mkdir()
    np.save(vdir / "UTS01.npy", np.array([0, 5]))
    with pytest.raises(BenchError, match=r"UTS01\.npy has indices outside 0\.\.4"):
        _prepare(speech_src.source, tmp_path, voxel_index_dir=vdir, subjects=["UTS01"])
    with pytest.raises(BenchError, match=r"voxel-index file for UTS02 is missing"):
        _prepare(speech_src.source, tmp_path, voxel_index_dir=vdir, subjects=["UTS02"])


def test_nan_voxels_are_zeroed_with_a_warning_naming_the_file(tmp_path):
    fx = write_brain2speech(tmp_path / "src", STORIES, subjects=["UTS01"], n_voxels=3, nan=[("UTS01", "buck", 2, 1)],
                            sr=8000, channels=1)
    with pytest.warns(PrepareWarning, match=r"UTS01/buck\.hf5: 1 NaN"):
        _prepare(fx.source, tmp_path, subjects=["UTS01"])
    tr = get_dataset("brain2speech").load_split("UTS01", "train", data_root=tmp_path / "data")
    i = np.flatnonzero((tr.stim_id == "buck") & (tr.onset_s == 2 * 2 + 6))[0]
    assert tr.fmri[i, 1] == 0 and tr.fmri[i, 0] == np.float32(fx.value("UTS01", "buck", 2, 0))


def test_rows_must_match_respdict(speech_src, tmp_path):
    src = _copy(speech_src, tmp_path)
    (src / "derivative" / "respdict.json").write_text(json.dumps({**STORIES, "buck": 27}))
    with pytest.raises(BenchError, match=r"UTS01/buck\.hf5: 'data' has 6 rows, but respdict\.json gives buck n_TR=27"):
        _prepare(src, tmp_path)
    (src / "derivative" / "respdict.json").write_text(json.dumps({k: v for k, v in STORIES.items() if k != "buck"}))
    with pytest.raises(BenchError, match=r"respdict .* has no entry for story 'buck'"):
        _prepare(src, tmp_path)
    (src / "derivative" / "respdict.json").write_text('{"avatar": 28, ')
    with pytest.raises(BenchError, match=r"respdict .*respdict\.json is not valid JSON"):
        _prepare(src, tmp_path)


def test_missing_and_truncated_files(speech_src, tmp_path):
    src = _copy(speech_src, tmp_path)
    (src / "derivative" / "preprocessed_data" / "UTS02" / "hangtime.hf5").unlink()
    with pytest.raises(BenchError, match=r"UTS02/hangtime\.hf5 is missing: test story hangtime"):
        _prepare(src, tmp_path)
    shutil.copy(speech_src.source / "derivative/preprocessed_data/UTS02/hangtime.hf5", src / "derivative/preprocessed_data/UTS02/")
    f = src / "derivative" / "preprocessed_data" / "UTS01" / "avatar.hf5"
    f.write_bytes(f.read_bytes()[:1500])
    with pytest.raises(BenchError, match=r"UTS01/avatar\.hf5 cannot be read as HDF5 .*truncated"):
        _prepare(src, tmp_path)
    f.unlink()
    with pytest.warns(PrepareWarning, match=r"UTS01: 1 training stories missing .*avatar\.hf5.*training on its other 1"):
        _prepare(src, tmp_path)
    assert get_dataset("brain2speech").load_split("UTS01", "train", data_root=tmp_path / "data").n_samples == 6
    (src / "stimuli" / "buck.wav").unlink()
    with pytest.raises(BenchError, match=r"audio file .*buck\.wav is missing"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PrepareWarning)
        _prepare(src, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match=r"Brain2Speech folder .*preprocessed_data does not exist"):
        _prepare(tmp_path / "empty", tmp_path)
    with pytest.raises(BenchError, match=r"Brain2Speech --source .*nowhere does not exist"):
        _prepare(tmp_path / "nowhere", tmp_path)


def test_short_wav_and_pinned_sample_rate(speech_src, tmp_path):
    src = _copy(speech_src, tmp_path)
    write_brain2speech(tmp_path / "short", {"buck": 26}, subjects=[], sr=44100, wav_seconds={"buck": 17.0})
    shutil.copy(tmp_path / "short" / "stimuli" / "buck.wav", src / "stimuli" / "buck.wav")
    with pytest.raises(BenchError, match=r"buck\.wav is 17\.000 s long, shorter than the 18\.000 s"):
        _prepare(src, tmp_path)
    wav = src / "stimuli" / "avatar.wav"
    wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])  # truncated: libsndfile sees half the frames
    with pytest.raises(BenchError, match=r"avatar\.wav is 18\.000 s long, shorter than the 22\.000 s"):
        _prepare(src, tmp_path)
    with pytest.raises(BenchError, match=r"avatar\.wav is sampled at 44100 Hz, but the setting expect_sample_rate pins 16000"):
        _prepare(speech_src.source, tmp_path, expect_sample_rate=16000)


def test_subjects_missing_from_source(speech_src, tmp_path):
    with pytest.warns(PrepareWarning, match=r"subject\(s\) UTS03, UTS05, UTS06, UTS07, UTS08 not found"):
        folder = _prepare(speech_src.source, tmp_path, subjects=None)
    assert sorted(json.loads((folder / "manifest.json").read_text())["subjects"]) == SUBJECTS
    with pytest.raises(BenchError, match=r"none of the subjects UTS07 was found"):
        _prepare(speech_src.source, tmp_path, subjects=["UTS07"])
    with pytest.raises(BenchError, match=r"subject\(s\) UTS04 not in the catalogue"):
        _prepare(speech_src.source, tmp_path, subjects=["UTS04"])


def test_settings_are_checked(speech_src, tmp_path):
    with pytest.raises(BenchError, match=r"unknown preparation setting\(s\) lag; known: .*lag_s"):
        _prepare(speech_src.source, tmp_path, lag=4)
    with pytest.raises(BenchError, match=r"setting n_prompt='ten' is not a valid int"):
        _prepare(speech_src.source, tmp_path, n_prompt="ten")
    with pytest.raises(BenchError, match=r"stories hangtime are in both train_stories and test_stories"):
        _prepare(speech_src.source, tmp_path, train_stories=["avatar", "hangtime"])
    with pytest.raises(BenchError, match=r"test story hangtime has no rows left after the last 14 prompt clips"):
        _prepare(speech_src.source, tmp_path, n_prompt=14)
    with pytest.raises(BenchError, match=r"labels CSV .* line 2: expected 'story,gender'"):
        bad = tmp_path / "labels.csv"
        bad.write_text("story,gender\navatar\n")
        _prepare(speech_src.source, tmp_path, labels=bad)


def test_streams_one_subject_at_a_time_and_fails_atomically(speech_src, tmp_path, monkeypatch):
    folder = _prepare(speech_src.source, tmp_path)
    before = (folder / "manifest.json").read_text()
    seen = []
    real = brain2speech._build_subject

    def spy(plan, scratch, *a):
        seen.append(sorted(p.name for p in scratch.path.iterdir()))
        if plan.subject == "UTS02":
            raise BenchError("simulated failure while streaming UTS02")
        return real(plan, scratch, *a)

    monkeypatch.setattr(brain2speech, "_build_subject", spy)
    with pytest.raises(BenchError, match="simulated failure"):
        _prepare(speech_src.source, tmp_path)
    # UTS02 was built only after UTS01 was written and its scratch files deleted
    assert seen == [["clips.npy"], ["clips.npy"]]
    assert (folder / "manifest.json").read_text() == before  # the old preparation is intact
    assert not list((tmp_path / "data" / "brain2speech").glob(".*")), "scratch or temporary folders left behind"


def test_load_split_end_to_end(speech_src, tmp_path):
    _prepare(speech_src.source, tmp_path)
    sp = get_dataset("brain2speech").load_split("UTS01", "train", data_root=tmp_path / "data")
    assert sp.audio.shape == (14, 32000) and sp.fmri.shape == (14, 5) and set(sp.stim_id) == {"avatar", "buck"}

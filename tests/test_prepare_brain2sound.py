"""Brain2Sound preparation from fixtures in the exact KamitaniLab (BData HDF5, stimulus CSV) formats."""

from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest

from bench.datasets import get_dataset
from bench.errors import BenchError
from bench.prepare.brain2sound import BData, read_stimulus_csv
from bench.prepare.common import PrepareWarning
from tests.fixtures_real import (
    SOUND_AUDITORY_VOXELS,
    SOUND_TEST,
    SOUND_TRAIN,
    dominant_hz,
    expected_clip,
    sound_value,
    tone_hz,
    write_brain2sound,
)


@pytest.fixture(scope="module")
def sound_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2sound")
    return write_brain2sound(root / "SoundReconstruction", root / "vggsound", subjects=["S1", "S2"])


def _prepare(fx, tmp_path, source=None, stimuli=None, **kw):
    kw.setdefault("subjects", fx.subjects)
    return get_dataset("brain2sound").prepare(source=source or fx.source, stimuli=stimuli or fx.stimuli,
                                              root=tmp_path / "data", **kw)


def _copy(fx, tmp_path):
    shutil.copytree(fx.source, tmp_path / "src")
    return tmp_path / "src"


def test_roi_union_windows_labels_and_test_averaging(sound_src, tmp_path):
    fx = sound_src
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrepareWarning)
        folder = _prepare(fx, tmp_path)
    ds = get_dataset("brain2sound")
    ytid_index = {y: i for i, (y, _, _) in enumerate(fx.train + fx.test)}
    for subject in fx.subjects:
        tr = ds.load_split(subject, "train", data_root=tmp_path / "data")
        te = ds.load_split(subject, "test", data_root=tmp_path / "data")
        assert tr.n_samples == 4 * 3 * 2 and te.n_samples == 2 * 3  # every repetition / averaged by label
        assert tr.n_voxels == len(SOUND_AUDITORY_VOXELS)  # A1 (both), LBelt, STSvp; not V1
        want = [[sound_value(ytid_index[_ytid(s)], int(o // 2), rep, v, False)
                 for v in SOUND_AUDITORY_VOXELS]
                for rep, (s, o) in zip(np.repeat(np.arange(2), 12), zip(tr.stim_id, tr.onset_s))]
        np.testing.assert_allclose(tr.fmri, np.float32(want), rtol=1e-7)
        for i in range(te.n_samples):
            reps = [sound_value(ytid_index[_ytid(te.stim_id[i])], int(te.onset_s[i] // 2), r, 0, True) for r in range(3)]
            assert te.fmri[i, 0] == pytest.approx(np.mean(reps), rel=1e-7)
        assert te.info["test_repetitions"] == {"min": 3, "max": 3}
    # labels from the CSV (quoted, with commas); stim ids <ytid>_<start s>; windows [2w, 2w + 4) s
    assert dict(zip(te.stim_id, te.label)) == {"02Ak1eIyj3M_000030": "donkey, ass braying",
                                               "0BauNGmZtTU_000250": "female speech, woman speaking"}
    assert list(tr.onset_s[:3]) == [0.0, 2.0, 4.0] and tr.stim_id[3] == "0-jDld11jhw_000164"
    cache: dict = {}
    for i in range(0, tr.n_samples, 5):
        wav = fx.stimuli / f"{tr.stim_id[i]}.wav"
        clip = tr.audio[i]
        assert clip.shape == (64000,)
        np.testing.assert_allclose(clip, expected_clip(wav, tr.onset_s[i], 64000, cache), atol=1e-6)
        region = int(tr.onset_s[i] // 2)
        assert dominant_hz(clip[1000:31000]) == pytest.approx(tone_hz(ytid_index[_ytid(tr.stim_id[i])], region), abs=1.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["subjects"]["S1"]["rois"] == ["hcp180_r_lh.L_A1_ROI", "hcp180_r_rh.R_A1_ROI",
                                                  "hcp180_r_lh.L_LBelt_ROI", "hcp180_r_rh.R_STSvp_ROI"]
    paths = {e["path"] for e in manifest["sources"]}
    assert {"data/SoundReconstruction_stimulus.csv", "data/fmri_data/S1_VGGishishTrain_volume_native.h5",
            "0-jDld11jhw_000164.wav"} <= paths


def _ytid(stim_id: str) -> str:
    return stim_id.rsplit("_", 1)[0]


def test_missing_training_audio_is_skipped_missing_test_audio_fails(tmp_path):
    fx = write_brain2sound(tmp_path / "src", tmp_path / "vgg", missing_audio=("0Br877mW7_c",))
    with pytest.warns(PrepareWarning, match=r"1 of 4 training stimuli have no audio .*0Br877mW7_c_000010\.wav.*footnote 4"):
        _prepare(fx, tmp_path)
    tr = get_dataset("brain2sound").load_split("S1", "train", data_root=tmp_path / "data")
    assert tr.n_samples == 3 * 3 * 2 and "0Br877mW7_c_000010" not in set(tr.stim_id)
    assert tr.info["skipped_train_samples"] == 6
    (fx.stimuli / "02Ak1eIyj3M_000030.wav").unlink()
    with pytest.raises(BenchError, match=r"test stimulus 02Ak1eIyj3M \(donkey, ass braying\) has no audio: .*02Ak1eIyj3M_000030\.wav is missing"):
        _prepare(fx, tmp_path)


def test_old_bdata_names_and_roi_setting(tmp_path):
    fx = write_brain2sound(tmp_path / "src", tmp_path / "vgg", old_names=True)
    _prepare(fx, tmp_path, rois=["A1"])
    tr = get_dataset("brain2sound").load_split("S1", "train", data_root=tmp_path / "data")
    np.testing.assert_allclose(tr.fmri[0], np.float32([sound_value(0, 0, 0, v, False) for v in (0, 1, 2, 3)]))
    _prepare(fx, tmp_path, rois="hcp180_r_lh.L_V1_ROI")
    tr = get_dataset("brain2sound").load_split("S1", "train", data_root=tmp_path / "data")
    np.testing.assert_allclose(tr.fmri[0], np.float32([sound_value(0, 0, 0, v, False) for v in (5, 7, 8)]))
    with pytest.raises(BenchError, match=r"S1_VGGishishTrain_volume_native\.h5 has none of the ROIs Heschl \(ROI keys there: hcp180_r_lh\.L_A1_ROI"):
        _prepare(fx, tmp_path, rois=["Heschl"])


def test_bdata_reader_matches_bdpy_layout(sound_src):
    with BData(sound_src.source / "data" / "fmri_data" / "S1_VGGishishTest_volume_native.h5") as bd:
        assert bd.data.shape == (2 * 3 * 3, 11) and len(bd.keys) == 9 and bd.value_row("Run")[10] == 1
        assert bd.vmap["sample_name"][1.0] == "02Ak1eIyj3M_test_slide0"
        assert list(bd.columns("VoxelData")) == list(range(9)) and list(bd.columns("sample_name")) == [9]


def test_labels_with_start_times_and_ambiguous_labels(tmp_path):
    dup = [("0-jDld11jhw", 93000, 101000, "playing cornet", "decoder_train")]
    fx = write_brain2sound(tmp_path / "a", tmp_path / "vgg", extra_csv_rows=dup)
    with pytest.raises(BenchError, match=r"label '0-jDld11jhw_train_slide0' matches several stimulus CSV rows \(lines 3, 6\)"):
        _prepare(fx, tmp_path)
    fx = write_brain2sound(tmp_path / "b", tmp_path / "vgg", extra_csv_rows=dup, label_fmt="{ytid}_{start}_{split}_slide{w}")
    _prepare(fx, tmp_path)
    tr = get_dataset("brain2sound").load_split("S1", "train", data_root=tmp_path / "data")
    assert "0-jDld11jhw_000164" in set(tr.stim_id) and "0-jDld11jhw_000093" not in set(tr.stim_id)
    fx = write_brain2sound(tmp_path / "c", tmp_path / "vgg", label_fmt="{ytid}-{w}")
    with pytest.raises(BenchError, match=r"sample label '--U7joUcTCo-0' does not match the setting label_pattern"):
        _prepare(fx, tmp_path)


def test_stimulus_csv_quirks(tmp_path):
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('YouTube ID,start seconds,end seconds,label,split\nabc,30000,38000,"a, b",decoder_train\n')
    assert read_stimulus_csv(csv_path)[0].start_ms == 30000 and read_stimulus_csv(csv_path)[0].label == "a, b"
    csv_path.write_text("YouTube ID,start seconds,end seconds,label,split\nabc,30,38,x,decoder_test\n")
    assert read_stimulus_csv(csv_path)[0].end_ms == 38000  # real seconds are accepted too (auto)
    csv_path.write_text("YouTube ID,start seconds,end seconds,label,split\nabc,30000,38000,a, b,decoder_train\n")
    with pytest.raises(BenchError, match=r"s\.csv line 2: 6 fields, the header has 5 \(labels with commas must be quoted\)"):
        read_stimulus_csv(csv_path)
    csv_path.write_text("YouTube ID,start,end,label\n")
    with pytest.raises(BenchError, match=r"s\.csv lacks column\(s\) start seconds, end seconds, split"):
        read_stimulus_csv(csv_path)


def test_bad_inputs(sound_src, tmp_path):
    fx = sound_src
    src = _copy(fx, tmp_path)
    fdir = src / "data" / "fmri_data"
    with pytest.raises(BenchError, match=r"needs --stimuli"):
        get_dataset("brain2sound").prepare(source=src, root=tmp_path / "data")
    with pytest.raises(BenchError, match=r"0-jDld11jhw_000164\.wav is sampled at 44100 Hz, but the setting expect_sample_rate pins 16000|"
                                         r"--U7joUcTCo_000000\.wav is sampled at 44100 Hz"):
        _prepare(fx, tmp_path, source=src, expect_sample_rate=16000)
    f = fdir / "S2_VGGishishTrain_volume_native.h5"
    f.write_bytes(f.read_bytes()[:3000])
    with pytest.raises(BenchError, match=r"BData file .*S2_VGGishishTrain_volume_native\.h5 cannot be read as HDF5 .*truncated"):
        _prepare(fx, tmp_path, source=src)
    f.unlink()
    with pytest.raises(BenchError, match=r"S2_VGGishishTrain_volume_native\.h5 is missing \(S2 has only one"):
        _prepare(fx, tmp_path, source=src)
    (fdir / "S2_VGGishishTest_volume_native.h5").unlink()
    with pytest.warns(PrepareWarning, match=r"subject\(s\) S2 not found"):
        _prepare(fx, tmp_path, source=src)
    with pytest.raises(BenchError, match=r"none of the subjects S3 was found"):
        _prepare(fx, tmp_path, source=src, subjects=["S3"])
    # a label whose stimulus is not in the CSV
    with h5py.File(fdir / "S1_VGGishishTest_volume_native.h5", "r+") as h:
        del h["vmap/sample_name/1.0"]
        h["vmap/sample_name/1.0"] = b"zzzzzzzzzzz_test_slide0"
    with pytest.raises(BenchError, match=r"label 'zzzzzzzzzzz_test_slide0' names stimulus 'zzzzzzzzzzz', which is not in the stimulus CSV"):
        _prepare(fx, tmp_path, source=src, subjects=["S1"])


def test_nan_voxels_and_short_audio(tmp_path):
    fx = write_brain2sound(tmp_path / "src", tmp_path / "vgg")
    with h5py.File(fx.source / "data/fmri_data/S1_VGGishishTrain_volume_native.h5", "r+") as h:
        d = h["dataset"][()]
        d[4, 1] = np.nan
        h["dataset"][...] = d
    with pytest.warns(PrepareWarning, match=r"S1_VGGishishTrain_volume_native\.h5: 1 NaN/inf voxel value\(s\) replaced by 0"):
        _prepare(fx, tmp_path)
    tr = get_dataset("brain2sound").load_split("S1", "train", data_root=tmp_path / "data")
    assert tr.fmri[4, 1] == 0 and tr.fmri[4, 0] == np.float32(sound_value(1, 1, 0, 0, False))
    short = write_brain2sound(tmp_path / "short", tmp_path / "vgg_short", audio_seconds=7.0)
    with pytest.raises(BenchError, match=r"--U7joUcTCo_000000\.wav is 7\.000 s long, shorter than the 8\.000 s"):
        _prepare(short, tmp_path)


def test_load_split_end_to_end(sound_src, tmp_path):
    _prepare(sound_src, tmp_path, subjects=["S2"])
    sp = get_dataset("brain2sound").load_split("S2", "test", data_root=tmp_path / "data")
    assert sp.audio.shape == (6, 64000) and sp.fmri.shape == (6, 6)
    assert set(sp.label) == {lab for _, _, lab in SOUND_TEST} and len(SOUND_TRAIN) == 4

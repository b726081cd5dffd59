"""bench.simulate: shapes, labels, determinism, splits, noise ceiling, decodability, parameter checks.

Sizes are kept small (a few seconds in all); the default and paper scales are checked by arithmetic.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bench.data import ClipTable, PreparedSubject
from bench.errors import BenchError
from bench.simulate import GENRES, SCALES, SIM_VERSION, SOUND_LABELS, simulate

SMALL = {
    "sound": {"n_train_stimuli": 16, "n_test_stimuli": 8, "n_train_reps": 2, "n_test_reps": 3, "n_voxels": 80},
    "music": {"n_train_per_genre": 1, "n_test_per_genre": 1, "n_test_reps": 2, "n_voxels": 60},
    "speech": {"n_train_stories": 2, "n_train_clips": 30, "test_story_clips": [12, 10], "n_prompt_clips": 3, "n_voxels": 50},
}


def params(kind: str, **over) -> dict:
    p = dict(SCALES[kind]["default"])
    p.update(SMALL[kind])
    p.update(over)
    return p


@pytest.fixture(scope="module")
def small():
    """One small run per kind, shared by the read-only tests."""
    return {kind: simulate(kind, ["s1", "s2"], 3, params(kind)) for kind in SCALES}


def _check_common(clips: ClipTable, subjects: dict, settings: dict, kind: str, samples: int):
    assert isinstance(clips, ClipTable)
    assert clips.audio.dtype == np.float32 and clips.audio.shape[1] == samples
    assert np.isfinite(clips.audio).all() and np.abs(clips.audio).max() <= 1.0
    assert clips.audio.std(1).min() > 1e-3  # no silent clip
    assert set(subjects) == {"s1", "s2"}
    for sub in subjects.values():
        assert isinstance(sub, PreparedSubject)
        n_vox = {fmri.shape[1] for fmri, _ in sub.splits.values()}
        assert n_vox == {settings["n_voxels"]}
        for fmri, idx in sub.splits.values():
            assert fmri.dtype == np.float32 and idx.dtype == np.int64 and fmri.shape[0] == idx.shape[0]
            assert np.isfinite(fmri).all()
            assert 80 < fmri.mean() < 120  # BOLD-like scale: methods must normalise
            assert idx.min() >= 0 and idx.max() < clips.n_clips
        info = sub.info
        assert info["n_low"] + info["n_high"] + info["n_null"] == settings["n_voxels"]
        assert set(info["noise_ceiling"]) >= {"analytic_r", "empirical_r", "snr", "test_reps"}
    assert settings["sim_version"] == SIM_VERSION and settings["kind"] == kind and settings["seed"] == 3
    assert set(settings["noise_ceiling"]) == {"s1", "s2"}
    json.dumps(settings)  # goes into the manifest
    for s in subjects.values():
        json.dumps(s.info)


def test_scales_have_the_same_keys_and_paper_sizes():
    for kind, scales in SCALES.items():
        assert set(scales) == {"default", "paper"}
        assert set(scales["default"]) == set(scales["paper"])
    s = SCALES["sound"]["paper"]
    assert s["n_train_stimuli"] * 3 * s["n_train_reps"] == 14_400 and s["n_test_stimuli"] * 3 == 150
    assert s["n_voxels"] == 6662
    m = SCALES["music"]["paper"]
    assert 10 * m["n_train_per_genre"] * 10 == 4_800 and 10 * m["n_test_per_genre"] * 10 == 600
    assert m["n_voxels"] == 60_784
    sp = SCALES["speech"]["paper"]
    assert sp["n_train_clips"] == 9_137 and sp["n_train_stories"] == 25
    assert sum(sp["test_story_clips"]) - 2 * sp["n_prompt_clips"] == 595
    d = SCALES["sound"]["default"]
    assert d["n_train_stimuli"] * 3 * d["n_train_reps"] == 600 and d["n_test_stimuli"] * 3 == 60


def test_sound_layout(small):
    clips, subjects, settings = small["sound"]
    _check_common(clips, subjects, settings, "sound", 4 * 16000)
    n_tr, n_te = SMALL["sound"]["n_train_stimuli"], SMALL["sound"]["n_test_stimuli"]
    assert clips.n_clips == 3 * (n_tr + n_te)
    assert all(re.fullmatch(r"snd-\d{4}", s) for s in clips.stim_id)
    assert set(clips.label) == set(SOUND_LABELS)
    np.testing.assert_array_equal(clips.onset_s, np.tile([0.0, 2.0, 4.0], n_tr + n_te))
    # windows overlap by 2 s: the second half of window 0 is the first half of window 1
    np.testing.assert_array_equal(clips.audio[0, 32000:], clips.audio[1, :32000])
    np.testing.assert_array_equal(clips.audio[1, 32000:], clips.audio[2, :32000])
    for sub in subjects.values():
        (_, tr), (_, te) = sub.splits["train"], sub.splits["test"]
        assert set(sub.splits) == {"train", "test"}
        assert tr.shape[0] == 3 * n_tr * SMALL["sound"]["n_train_reps"]
        assert np.all(np.bincount(tr, minlength=3 * n_tr)[: 3 * n_tr] == SMALL["sound"]["n_train_reps"])
        np.testing.assert_array_equal(np.sort(te), np.arange(3 * n_tr, 3 * (n_tr + n_te)))
        assert not set(clips.stim_id[tr]) & set(clips.stim_id[te])
        assert set(clips.label[te]) == set(SOUND_LABELS)  # every category tested


def test_music_layout(small):
    clips, subjects, settings = small["music"]
    _check_common(clips, subjects, settings, "music", 24000)
    assert clips.n_clips == 10 * 10 * 2
    assert all(re.fullmatch(r"[a-z]+\.\d{5}", s) for s in clips.stim_id)
    assert all(s.split(".")[0] == lab for s, lab in zip(clips.stim_id, clips.label))
    assert set(clips.label) == set(GENRES)
    np.testing.assert_allclose(clips.onset_s, np.tile(np.arange(10) * 1.5, 20))
    for sub in subjects.values():
        (_, tr), (_, te) = sub.splits["train"], sub.splits["test"]
        assert tr.shape[0] == 100 and te.shape[0] == 100
        assert not set(clips.stim_id[tr]) & set(clips.stim_id[te])
        # a clip's ten segments are presented consecutively, in order
        for k in range(0, 100, 10):
            assert len(set(clips.stim_id[tr[k : k + 10]])) == 1
            np.testing.assert_array_equal(np.diff(tr[k : k + 10]), 1)


def test_speech_layout_and_prompts(small):
    clips, subjects, settings = small["speech"]
    _check_common(clips, subjects, settings, "speech", 32000)
    p = SMALL["speech"]
    assert clips.n_clips == p["n_train_clips"] + sum(p["test_story_clips"])
    assert all(re.fullmatch(r"story\d{2}", s) for s in clips.stim_id)
    stories = list(dict.fromkeys(clips.stim_id))
    assert len(stories) == p["n_train_stories"] + 2
    for story in stories:
        rows = np.where(clips.stim_id == story)[0]
        np.testing.assert_array_equal(np.diff(rows), 1)
        np.testing.assert_allclose(clips.onset_s[rows], 2.0 * np.arange(rows.shape[0]))
        assert len(set(clips.label[rows])) == 1  # one speaker per story
    for sub in subjects.values():
        assert set(sub.splits) == {"train", "test", "prompt"}
        tr, te, pr = (sub.splits[k][1] for k in ("train", "test", "prompt"))
        assert tr.shape[0] == p["n_train_clips"]
        assert te.shape[0] == sum(p["test_story_clips"]) - 2 * p["n_prompt_clips"]
        test_stories = list(dict.fromkeys(clips.stim_id[te]))
        assert len(test_stories) == 2 and sorted(clips.label[te][[0, -1]]) == ["female", "male"]
        assert not set(clips.stim_id[tr]) & set(test_stories)
        for story in test_stories:
            rows = np.where(clips.stim_id == story)[0]
            np.testing.assert_array_equal(pr[np.isin(pr, rows)], rows[-p["n_prompt_clips"] :])
            np.testing.assert_array_equal(te[np.isin(te, rows)], rows[: -p["n_prompt_clips"]])


@pytest.mark.parametrize("kind", sorted(SCALES))
def test_deterministic(small, kind):
    """Same (kind, subjects, seed, params) -> bit-identical arrays and settings."""
    c1, s1, st1 = small[kind]
    c2, s2, st2 = simulate(kind, ["s1", "s2"], 3, params(kind))
    np.testing.assert_array_equal(c1.audio, c2.audio)
    np.testing.assert_array_equal(c1.onset_s, c2.onset_s)
    assert list(c1.stim_id) == list(c2.stim_id) and list(c1.label) == list(c2.label)
    for subj in ("s1", "s2"):
        assert set(s1[subj].splits) == set(s2[subj].splits)
        for split in s1[subj].splits:
            np.testing.assert_array_equal(s1[subj].splits[split][0], s2[subj].splits[split][0])
            np.testing.assert_array_equal(s1[subj].splits[split][1], s2[subj].splits[split][1])
        assert s1[subj].info == s2[subj].info
    assert st1 == st2


def test_subjects_and_seeds():
    p = params("speech", n_train_clips=8, test_story_clips=[5, 5], n_prompt_clips=1, n_voxels=20)
    c1, s1, _ = simulate("speech", ["a", "b"], 11, p)
    # subjects differ from each other, and a subject does not depend on who else is simulated
    assert not np.array_equal(s1["a"].splits["train"][0], s1["b"].splits["train"][0])
    c3, s3, _ = simulate("speech", ["b"], 11, p)
    np.testing.assert_array_equal(c3.audio, c1.audio)
    np.testing.assert_array_equal(s3["b"].splits["test"][0], s1["b"].splits["test"][0])
    # another seed gives other audio and other responses
    c4, s4, _ = simulate("speech", ["a"], 12, p)
    assert not np.array_equal(c4.audio, c1.audio)
    assert not np.array_equal(s4["a"].splits["train"][0], s1["a"].splits["train"][0])


def test_test_averaging_lowers_noise():
    """The empirical noise ceiling tracks the analytic one, and rises with the number of test repetitions."""
    base = {"n_train_stimuli": 4, "n_test_stimuli": 16, "n_train_reps": 1, "n_voxels": 300, "frac_null": 0.0}
    ceilings = {}
    for reps in (1, 8):
        _, subjects, settings = simulate("sound", ["s"], 2, params("sound", n_test_reps=reps, **base))
        nc = subjects["s"].info["noise_ceiling"]
        assert nc == settings["noise_ceiling"]["s"] and nc["test_reps"] == reps
        assert abs(nc["empirical_r"] - nc["analytic_r"]) < 0.06
        ceilings[reps] = nc
    assert ceilings[8]["analytic_r"] > ceilings[1]["analytic_r"] + 0.1
    assert ceilings[8]["empirical_r"] > ceilings[1]["empirical_r"] + 0.1
    # same subject, same SNR: only the averaging differs
    assert ceilings[8]["snr"] == ceilings[1]["snr"]


def test_higher_snr_raises_the_ceiling():
    small_design = {"n_train_stimuli": 4, "n_test_stimuli": 8, "n_voxels": 40}
    lo = simulate("sound", ["s"], 2, params("sound", snr=0.05, **small_design))[2]["noise_ceiling"]["s"]
    hi = simulate("sound", ["s"], 2, params("sound", snr=2.0, **small_design))[2]["noise_ceiling"]["s"]
    assert hi["analytic_r"] > lo["analytic_r"] and hi["empirical_r"] > lo["empirical_r"]


@pytest.mark.parametrize("kind", ["sound", "music"])
def test_category_decodable_from_fmri(small, kind):
    """A ridge classifier on train responses beats chance on the test responses."""
    from sklearn.linear_model import RidgeClassifier

    clips, subjects, _ = small[kind]
    (x_tr, i_tr), (x_te, i_te) = subjects["s1"].splits["train"], subjects["s1"].splits["test"]
    mu, sd = x_tr.mean(0), x_tr.std(0)
    clf = RidgeClassifier(alpha=100.0).fit((x_tr - mu) / sd, clips.label[i_tr])
    acc = float(np.mean(clf.predict((x_te - mu) / sd) == clips.label[i_te]))
    chance = 1.0 / len(set(clips.label))
    assert acc > chance + 0.25, (acc, chance)


def test_invalid_params():
    p = params("sound")
    with pytest.raises(BenchError, match=r"unknown simulation parameter 'n_trian_stimuli'.*valid keys: n_train_stimuli"):
        simulate("sound", ["a"], 0, {**p, "n_trian_stimuli": 3})
    with pytest.raises(BenchError, match=r"'n_voxels' must be an integer"):
        simulate("sound", ["a"], 0, {**p, "n_voxels": "400"})
    with pytest.raises(BenchError, match=r"'n_voxels' must be an integer"):
        simulate("sound", ["a"], 0, {**p, "n_voxels": 400.0})
    with pytest.raises(BenchError, match=r"'n_train_reps' must be an integer"):
        simulate("sound", ["a"], 0, {**p, "n_train_reps": True})
    with pytest.raises(BenchError, match=r"'snr' must be a finite number"):
        simulate("sound", ["a"], 0, {**p, "snr": "high"})
    with pytest.raises(BenchError, match=r"'snr' must be > 0"):
        simulate("sound", ["a"], 0, {**p, "snr": 0.0})
    with pytest.raises(BenchError, match=r"'frac_null' must be in \[0, 1\)"):
        simulate("sound", ["a"], 0, {**p, "frac_null": 1.0})
    with pytest.raises(BenchError, match=r"lack n_voxels"):
        simulate("sound", ["a"], 0, {k: v for k, v in p.items() if k != "n_voxels"})
    with pytest.raises(BenchError, match=r"unknown simulation parameter 'hrf'"):
        simulate("sound", ["a"], 0, {**p, "hrf": [1.0]})
    m = params("music")
    with pytest.raises(BenchError, match=r"'hrf' must be a list of numbers"):
        simulate("music", ["a"], 0, {**m, "hrf": ["x"]})
    with pytest.raises(BenchError, match=r"'hrf' must be a non-empty list"):
        simulate("music", ["a"], 0, {**m, "hrf": 0.5})
    s = params("speech")
    with pytest.raises(BenchError, match=r"'test_story_clips' must be a list of integers"):
        simulate("speech", ["a"], 0, {**s, "test_story_clips": [10.5, 10]})
    with pytest.raises(BenchError, match=r"must exceed 'n_prompt_clips'"):
        simulate("speech", ["a"], 0, {**s, "test_story_clips": [3, 10]})
    with pytest.raises(BenchError, match=r"'test_story_clips' must list 2 stories"):
        simulate("speech", ["a"], 0, {**s, "test_story_clips": [12, 12, 12]})
    with pytest.raises(BenchError, match=r"unknown simulation kind 'noise'"):
        simulate("noise", ["a"], 0, p)
    with pytest.raises(BenchError, match=r"seed must be a non-negative integer"):
        simulate("sound", ["a"], -1, p)
    with pytest.raises(BenchError, match=r"subjects must be unique"):
        simulate("sound", ["a", "a"], 0, p)
    with pytest.raises(BenchError, match=r"subjects must be a non-empty list"):
        simulate("sound", "a", 0, p)

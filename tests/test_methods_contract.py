"""The method contract, shared by every direct decoder: fit/predict shapes, features, determinism, not-fitted."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import BenchError
from methods import get_method

FAST = {"mlp": {"max_epochs": 3}, "bilstm": {"epochs": 2}, "transformer": {"epochs": 2}, "lir": {}}


@pytest.fixture
def speech(tiny_catalogue):
    from bench.datasets import get_dataset

    ds = get_dataset("tiny-speech")
    return ds.load_split("sim01", "train"), ds.load_split("sim01", "test")


@pytest.mark.parametrize("name", sorted(FAST))
def test_fit_predict_contract_and_determinism(name, speech):
    train, test = speech
    cls = get_method(name)
    a = cls.from_profile("tiny", FAST[name]).fit(train, random_state=3).predict(test)
    b = cls.from_profile("tiny", FAST[name]).fit(train, random_state=3).predict(test)
    assert a.audio.shape == (test.n_samples, 32000) and a.audio.dtype == np.float32
    assert a.mel.shape == (test.n_samples, 64, 201)
    assert a.features["mel"].shape == (test.n_samples, 64 * 201)
    np.testing.assert_array_equal(a.audio, b.audio)
    truth = cls.from_profile("tiny", FAST[name]).target_features(test)
    assert truth["mel"].shape == a.features["mel"].shape


@pytest.mark.parametrize("name", sorted(FAST))
def test_predict_before_fit_and_wrong_voxels(name, speech):
    train, test = speech
    method = get_method(name).from_profile("tiny", FAST[name])
    with pytest.raises(BenchError, match="not fitted yet"):
        method.predict(test)


def test_wrong_voxel_count_is_named(speech):
    import dataclasses

    train, test = speech
    method = get_method("lir").from_profile("tiny").fit(train)
    narrow = dataclasses.replace(test, fmri=test.fmri[:, :10])
    with pytest.raises(BenchError, match="test.fmri has 10 voxels but the method was fitted on 50"):
        method.predict(narrow)


def test_unknown_profile(speech):
    with pytest.raises(BenchError, match="has no profile 'huge'"):
        get_method("mlp").from_profile("huge")

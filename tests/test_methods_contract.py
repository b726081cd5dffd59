"""The method contract, over every registered method (tiny profile, tiny data): fit/predict shapes, features,
determinism, the not-fitted and wrong-voxel errors, parameter validation before any work, pickling, defaults that
live once, shared setting names, and the registry's name check."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from bench.errors import BenchError
from bench.registry import Registry
from methods import METHODS, get_method
from methods.base import Interval, Method, check_method_class

# Fewer epochs / steps where the tiny profile still takes seconds; any other registered method runs its tiny profile.
FAST = {"mlp": {"epochs": 3}, "bilstm": {"epochs": 2}, "transformer": {"epochs": 2}, "c2f_decoder": {"epochs": 1},
        "fine_ldm": {"ddim_steps": 1}, "c2f_ldm": {"ddim_steps": 1}}
SLOW = {"c2f_decoder", "fine_ldm", "c2f_ldm"}  # two fits each take more than ~5 s on 2 cores
NAMES = METHODS.names()


def _param(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


@pytest.fixture
def speech(tiny_catalogue):
    from bench.datasets import get_dataset

    ds = get_dataset("tiny-speech")
    return ds.load_split("sim01", "train"), ds.load_split("sim01", "test")


_FITTED: dict[str, Method] = {}


def fitted(name, train) -> Method:
    """One fitted instance per method for the whole module (fits are the expensive part)."""
    if name not in _FITTED:
        _FITTED[name] = get_method(name).from_profile("tiny", FAST.get(name, {})).fit(train, random_state=3)
    return _FITTED[name]


def test_the_registry_lists_the_paper_methods():
    assert {"lir", "mlp", "bilstm", "transformer", "c2f_decoder", "fine_ldm", "c2f_ldm"} <= set(NAMES)


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_fit_predict_contract_and_determinism(name, speech):
    train, test = speech
    method = fitted(name, train)
    assert method.fitted_ and method.random_state_ == 3 and method.device_ == "cpu"
    a = method.predict(test)
    b = get_method(name).from_profile("tiny", FAST.get(name, {})).fit(train, random_state=3).predict(test)
    n_audio = test.clips.audio.shape[1]
    assert a.audio.shape == (test.n_samples, n_audio) and a.audio.dtype == np.float32
    assert np.isfinite(a.audio).all()
    if a.mel is not None:
        assert a.mel.shape[:2] == (test.n_samples, 64) and a.mel.dtype == np.float32
    np.testing.assert_array_equal(a.audio, b.audio)
    truth = method.target_features(test)
    assert a.features, "a method decodes at least one feature (probes and identification score them)"
    for key, value in a.features.items():
        assert value.shape[0] == test.n_samples and value.dtype == np.float32, key
        assert key in truth and truth[key].shape == value.shape, key
    assert isinstance(method.describe_components(), dict)


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_wrong_voxel_count_is_named(name, speech):
    train, test = speech
    method = fitted(name, train)
    narrow = dataclasses.replace(test, fmri=test.fmri[:, :10])
    with pytest.raises(BenchError, match=f"test.fmri has 10 voxels but the method was fitted on {train.fmri.shape[1]}"):
        method.predict(narrow)


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_a_fitted_method_pickles_and_predicts_the_same(name, speech):
    train, test = speech
    method = fitted(name, train)
    copy = pickle.loads(pickle.dumps(method))
    assert type(copy) is type(method)
    np.testing.assert_array_equal(copy.predict(test).audio, method.predict(test).audio)


@pytest.mark.parametrize("name", NAMES)
def test_predict_before_fit_is_named(name, speech):
    _, test = speech
    with pytest.raises(BenchError, match="not fitted yet"):
        get_method(name).from_profile("tiny").predict(test)


@pytest.mark.parametrize("name", NAMES)
def test_fit_validates_parameters_before_any_work(name):
    cls = get_method(name)
    if not cls.param_constraints:
        pytest.skip(f"{name} has no parameters to validate")
    key = sorted(cls.param_constraints)[0]
    method = cls.from_profile("tiny", {key: object()})
    # train=None: a method that touched the data before validating would fail with another error
    with pytest.raises(BenchError, match=f"parameter '{key}' must be"):
        method.fit(None)
    assert not getattr(method, "fitted_", False)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_live_once_and_profiles_state_only_differences(name):
    cls = get_method(name)
    assert cls.name == name and cls.display_name
    defaults = cls.defaults()
    assert set(defaults) == set(cls.param_names()), "every parameter has its default in __init__"
    assert set(cls.param_constraints) == set(cls.param_names()), "every parameter is validated"
    assert {"tiny", "paper"} <= set(cls.profiles)
    for profile, values in cls.profiles.items():
        same = sorted(k for k, v in values.items() if v == defaults[k] or (isinstance(v, list) and tuple(v) == defaults[k]))
        assert not same, f"{name} profile {profile!r} repeats the __init__ defaults of {same}"
        params = cls.from_profile(profile).get_params()
        for key, value in params.items():
            expected = values.get(key, defaults[key])
            if expected == "auto" and key == "vocoder":
                continue  # resolved when configured
            assert value == expected, (profile, key)


OLD_NAMES = {"max_epochs", "n_epochs", "learning_rate", "learning_rate_init", "n_iter_no_change", "early_stopping",
             "l2", "wd", "batch", "num_epochs"}


@pytest.mark.parametrize("name", NAMES)
def test_the_same_setting_has_the_same_name_everywhere(name):
    params = set(get_method(name).param_names())
    assert not params & OLD_NAMES, f"{name} uses {sorted(params & OLD_NAMES)}; use epochs, lr, patience, batch_size, weight_decay"


def test_overriding_fit_is_an_error_at_class_creation():
    with pytest.raises(TypeError, match="implement _fit"):
        type("Bad", (Method,), {"fit": lambda self, train: self})


def test_a_profile_naming_an_unknown_parameter_is_an_error_at_class_creation():
    def init(self, lr=0.1):
        self.lr = lr

    with pytest.raises(TypeError, match=r"profile 'tiny' sets \['rate'\]"):
        type("Bad", (Method,), {"__init__": init, "profiles": {"tiny": {"rate": 1.0}}})


class _Mean(Method):
    name = "mean"
    display_name = "Mean"
    profiles = {"tiny": {}, "paper": {}}
    param_constraints = {"scale": Interval(low=0.0)}

    def __init__(self, scale=1.0):
        self.scale = scale

    def _fit(self, train, *, progress=False):
        self.seen_ = (self.device_, self.random_state_, self.work_dir_)


def test_fit_wraps_the_subclass_fitting():
    method = _Mean().fit("train", device="cpu", random_state=5, work_dir="w")
    assert method.fitted_ and method.seen_ == ("cpu", 5, "w")
    with pytest.raises(BenchError, match="parameter 'scale' must be a number in"):
        _Mean(scale=-1.0).fit("train")


def test_a_name_that_differs_from_the_registry_key_is_an_error():
    reg = Registry("method", check=check_method_class)
    reg.register("mean", _Mean)
    with pytest.raises(BenchError, match="has name 'mean' but is registered as 'average'"):
        reg.register("average", _Mean)
    reg.register("avg", f"{__name__}:_Mean")  # lazy: checked when first imported
    with pytest.raises(BenchError, match="registered as 'avg'"):
        reg.get("avg")
    with pytest.raises(BenchError, match="not a subclass of methods.base.Method"):
        reg.register("dict", dict)


def test_unknown_profile():
    with pytest.raises(BenchError, match="has no profile 'huge'"):
        get_method("mlp").from_profile("huge")

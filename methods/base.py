"""The method contract: a class with ``fit(train)`` and ``predict(test) -> Reconstruction``.

Like scikit-learn estimators, ``__init__`` only stores hyperparameters, and its defaults are the only
defaults: a profile (``tiny``, ``paper``) states only the parameters it changes. ``Method.fit`` does the
bookkeeping around the subclass's ``_fit``: it validates the parameters against ``param_constraints``
(one dict per class, so the CLI and the tests show the same messages), resolves the device, records
``random_state_`` and ``work_dir_``, calls ``_fit`` and marks the method fitted. Subclasses implement
``_fit`` (overriding ``fit`` is an error at class creation). Randomness comes only from ``random_state``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from bench.errors import BenchError


@dataclass
class Reconstruction:
    """What a method returns for a test split.

    audio: (n, samples) float32 at 16 kHz, the reconstructed waveforms
    mel: (n, 64, frames) float32, the vocoder log-mel the audio was made from (None if none)
    features: decoded intermediate features by name, each (n, d) float32; the same names appear
        in ``Method.target_features(split)`` with the ground-truth values, so probes and
        identification can score them
    info: anything else worth keeping in the record (e.g. chosen alpha, epochs run)
    """

    audio: np.ndarray
    mel: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# parameter constraints


@dataclass(frozen=True)
class Interval:
    """A number in [low, high] (either bound may be None); ``integer`` requires an int."""

    low: float | None = None
    high: float | None = None
    integer: bool = False

    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer and not isinstance(value, Integral):
            return False
        if not isinstance(value, Real):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"{kind} in [{lo}, {hi}]"


@dataclass(frozen=True)
class Options:
    values: tuple

    def check(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class ListOf:
    """A non-empty list/tuple whose items satisfy ``item``."""

    item: Any
    min_len: int = 1

    def check(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and len(value) >= self.min_len and all(self.item.check(v) for v in value)

    def describe(self) -> str:
        return f"a list of {self.item.describe()}"


@dataclass(frozen=True)
class Boolean:
    def check(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "true or false"


# ----------------------------------------------------------------------------------------------


class Method:
    """Base class. Subclasses set ``name`` (their registry key), ``profiles`` and ``param_constraints`` and
    implement ``_fit(train, *, progress)`` and ``predict(test)``."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    param_constraints: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if "fit" in cls.__dict__:
            raise TypeError(f"{where} overrides fit(); implement _fit(train, *, progress) instead "
                            "(Method.fit validates parameters and marks the method fitted around it)")
        params = set(cls.param_names())
        for profile, values in cls.profiles.items():
            unknown = sorted(set(values) - params)
            if unknown:
                raise TypeError(f"{where}: profile {profile!r} sets {unknown}, which are not __init__ parameters")
        unknown = sorted(set(cls.param_constraints) - params)
        if unknown:
            raise TypeError(f"{where}: param_constraints names {unknown}, which are not __init__ parameters")

    # -- sklearn-style parameter handling ---------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [k for k, p in sig.parameters.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The ``__init__`` defaults: the one place a parameter's default value is written."""
        sig = inspect.signature(cls.__init__)
        return {k: p.default for k, p in sig.parameters.items() if k in cls.param_names() and p.default is not p.empty}

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    @classmethod
    def from_profile(cls, profile: str, overrides: dict[str, Any] | None = None) -> "Method":
        """The ``__init__`` defaults, changed by the profile's entries, then by ``overrides`` (``--set``)."""
        if profile not in cls.profiles:
            raise BenchError(f"method {cls.name} has no profile {profile!r}; choose from {', '.join(cls.profiles)}")
        params = dict(cls.profiles[profile])
        unknown = sorted(set(overrides or {}) - set(cls.param_names()))
        if unknown:
            raise BenchError(
                f"method {cls.name} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {', '.join(cls.param_names())}"
            )
        params.update(overrides or {})
        if params.get("vocoder") == "auto":
            # resolved here so the config (and its hash) names the vocoder that made the audio
            from bench.networks.vocoder import resolve_vocoder

            params["vocoder"] = resolve_vocoder("auto")
        return cls(**params)

    def validate_params(self) -> None:
        for key, constraint in self.param_constraints.items():
            value = getattr(self, key)
            if not constraint.check(value):
                raise BenchError(
                    f"method {self.name}: parameter {key!r} must be {constraint.describe()}, "
                    f"got {value!r} ({type(value).__name__}); fix it with --set {key}=..."
                )

    def check_is_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise BenchError(f"this {type(self).__name__} instance is not fitted yet; call fit(train) first")

    # -- the contract ------------------------------------------------------------------------
    def fit(self, train, *, device: str = "cpu", random_state: int = 0, progress: bool = False, work_dir=None) -> "Method":
        """Validate the parameters, learn from ``train`` (the subclass's ``_fit``) and return ``self``, fitted.

        device: auto, cpu or cuda (resolved into ``device_``); random_state: the only seed (``random_state_``);
        work_dir: a folder for checkpoints, so an interrupted fit resumes (``work_dir_``, may be None).
        """
        from bench.device import resolve_device

        self.fitted_ = False
        self.validate_params()
        self.device_ = resolve_device(device)
        self.random_state_ = int(random_state)
        self.work_dir_ = work_dir
        self._fit(train, progress=progress)
        self.fitted_ = True
        return self

    def _fit(self, train, *, progress: bool = False) -> None:
        """Learn from ``train``; ``self.device_``, ``self.random_state_`` and ``self.work_dir_`` are set."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit(train, *, progress)")

    def predict(self, test) -> Reconstruction:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(test)")

    def target_features(self, split) -> dict[str, np.ndarray]:
        """Ground-truth values of the features this method decodes, by the names ``predict`` uses."""
        return {}

    def describe_components(self) -> dict[str, Any]:
        """The parts the method is made of (class names, checkpoints), kept in the record."""
        return {}

    def sim_networks(self, simulated: bool) -> tuple[str, ...]:
        """Catalogue entries trained on the simulator (``bench weights train-sim``) that ``fit`` loads when the data
        is ``simulated``; ``bench run`` trains the missing ones before its cells, several at once (one it is not told
        of is still trained at its first use, one after another)."""
        return ()


def check_method_class(key: str, cls: Any) -> None:
    """A registered method must be a ``Method`` subclass whose ``name`` is its registry key."""
    where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchError(f"method {key!r} is registered to {where}, which is not a subclass of methods.base.Method")
    if cls.name != key:
        raise BenchError(f"method class {where} has name {cls.name!r} but is registered as {key!r}; "
                         f"set name = {key!r} (records and leaderboards use the name)")
    if not cls.profiles:
        raise BenchError(f"method class {where} has no profiles; give it at least profiles = {{'tiny': {{}}}}")


def check_fmri(X: np.ndarray, input_name: str = "fmri", n_voxels: int | None = None) -> np.ndarray:
    """Validate an fMRI array: (n_samples, n_voxels), finite; returns it as float32."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise BenchError(f"{input_name} must be 2-D (n_samples, n_voxels), got shape {X.shape}")
    if n_voxels is not None and X.shape[1] != n_voxels:
        raise BenchError(f"{input_name} has {X.shape[1]} voxels but the method was fitted on {n_voxels}")
    if X.shape[0] < 2:
        raise BenchError(f"{input_name} has {X.shape[0]} samples; need at least 2")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise BenchError(f"{input_name} contains NaN or inf values; clean the prepared data")
    return X


def set_seed(random_state: int) -> np.random.Generator:
    """Seed torch (if imported: a method that never imports it stays torch-free) and return a numpy Generator."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(random_state)
    return np.random.default_rng(random_state)


# Constraints of the shared training-loop settings (bench.training), used by every neural method.
TRAINING_CONSTRAINTS = {
    "lr": Interval(low=0.0, high=1.0),
    "weight_decay": Interval(low=0.0),
    "batch_size": Interval(low=1, integer=True),
    "epochs": Interval(low=1, integer=True),
    "grad_accum": Interval(low=1, integer=True),
    "patience": Interval(low=0, integer=True),
    "validation_fraction": Interval(low=0.0, high=0.5),
}


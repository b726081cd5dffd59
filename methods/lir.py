"""LiR: ridge regression from fMRI to the vocoder mel (the paper's "Linear Regression")."""

from __future__ import annotations

import numpy as np

from bench.networks.vocoder import VOCODER_PARAM_VALUES
from methods.base import Interval, ListOf, Options
from methods.direct import DirectMelDecoder

_ALPHAS = [10.0**k for k in range(0, 7)]


class LiR(DirectMelDecoder):
    """Ridge from z-scored fMRI (n, V) to the flattened vocoder log-mel (n, 64 * frames).

    The ridge penalty is chosen on the training set only, by generalized cross-validation over
    ``alphas`` from one eigendecomposition of the Gram matrix (:class:`bench.ridge.RidgeGCV`);
    the paper used sklearn's Ridge without stating alpha.
    """

    name = "lir"
    display_name = "LiR"
    profiles = {
        "tiny": {"alphas": _ALPHAS, "alpha_per_target": False, "vocoder": "griffin-lim", "griffin_lim_iters": 8},
        "paper": {"alphas": _ALPHAS, "alpha_per_target": False, "vocoder": "auto", "griffin_lim_iters": 32},
    }
    param_constraints = {
        "alphas": ListOf(Interval(low=0.0), min_len=1),
        "alpha_per_target": Options((True, False)),
        "vocoder": Options(VOCODER_PARAM_VALUES),
        "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
    }

    def __init__(self, alphas=tuple(_ALPHAS), alpha_per_target=False, vocoder="griffin-lim", griffin_lim_iters=32):
        self.alphas = alphas
        self.alpha_per_target = alpha_per_target
        self.vocoder = vocoder
        self.griffin_lim_iters = griffin_lim_iters

    def _fit_regressor(self, X, Y, *, rng, groups, progress):
        from bench.ridge import RidgeGCV

        # X is already z-scored by the base class.
        self.ridge_ = RidgeGCV(
            alphas=tuple(float(a) for a in self.alphas),
            alpha_per_target=self.alpha_per_target,
            standardize_X=False,
            device=self.device_,
        ).fit(X, Y)

    def _predict_regressor(self, X):
        return self.ridge_.predict(X)

    def _predict_info(self) -> dict:
        alpha = self.ridge_.alpha_
        if np.ndim(alpha):
            return {"alpha_median": float(np.median(alpha))}
        return {"alpha": float(alpha)}

    def describe_components(self):
        return {"regressor": "bench.ridge.RidgeGCV", "vocoder": self.vocoder}

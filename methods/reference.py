"""Reference rows: where each metric's ceiling and floor lie, computed by the same metric code as every method.

- ``oracle``: the ground-truth stimulus through the vocoder (its vocoder mel, vocoded): the best a mel-decoding
  method can reach with that vocoder.
- ``chance``: the ground-truth audio of *another* test stimulus (stimuli shuffled within the split, no stimulus
  mapped to itself): audio of the right kind that carries no information about the brain response.

Neither looks at the fMRI; both are "fitted" only to learn the clip length. They are registered like methods so
the runner, records and leaderboards treat them alike, and ``bench run`` adds them to every dataset it runs.
"""

from __future__ import annotations

import numpy as np

from bench.networks.vocoder import VOCODER_PARAM_VALUES
from bench.targets import vocoder_mels
from methods.base import Interval, Method, Options, Reconstruction, check_fmri

REFERENCE_METHODS = ("oracle", "chance")
"""The registered names of the reference rows (records mark them ``method_info["reference"]``)."""


class _Reference(Method):
    reference = True  # tabulated apart from the methods

    def _fit(self, train, *, progress: bool = False) -> None:
        self.n_samples_audio_ = int(train.clips.audio.shape[1])
        self.n_voxels_in_ = int(check_fmri(train.fmri, "train.fmri").shape[1])  # the contract every method keeps

    def target_features(self, split) -> dict[str, np.ndarray]:
        mels = vocoder_mels(split)
        return {"mel": mels.reshape(len(mels), -1)}


class Oracle(_Reference):
    """The stimulus's own vocoder mel through the vocoder: (n, 64, frames) -> (n, samples) at 16 kHz."""

    name = "oracle"
    display_name = "Ground truth (vocoder)"
    profiles = {"tiny": {"griffin_lim_iters": 8}, "paper": {"vocoder": "auto"}}
    param_constraints = {"vocoder": Options(VOCODER_PARAM_VALUES), "griffin_lim_iters": Interval(low=1, high=1000, integer=True)}

    def __init__(self, vocoder="griffin-lim", griffin_lim_iters=32):
        self.vocoder = vocoder
        self.griffin_lim_iters = griffin_lim_iters

    def predict(self, test) -> Reconstruction:
        from bench.networks.vocoder import get_vocoder

        self.check_is_fitted()
        check_fmri(test.fmri, "test.fmri", n_voxels=self.n_voxels_in_)
        mel = vocoder_mels(test)
        vocoder = get_vocoder(self.vocoder, n_iter=self.griffin_lim_iters, seed=self.random_state_, device=self.device_)
        audio = vocoder.mel_to_audio(mel, self.n_samples_audio_)
        return Reconstruction(audio=audio, mel=mel, features={"mel": mel.reshape(len(mel), -1)},
                              info={"vocoder": vocoder.config()})


def shuffled_rows(stim_id: np.ndarray, onset_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each sample, the row of a sample of a *different* stimulus (a random derangement of the stimuli; windows
    matched by their rank in onset order, clipped to the other stimulus's window count). Needs >= 2 stimuli."""
    stim_id = np.asarray(stim_id).astype(str)
    stimuli = np.unique(stim_id)
    if len(stimuli) < 2:
        from bench.errors import BenchError

        raise BenchError("the chance row needs at least 2 test stimuli to shuffle")
    order = rng.permutation(len(stimuli))
    target = {stimuli[order[k]]: stimuli[order[(k + 1) % len(stimuli)]] for k in range(len(stimuli))}
    rows_of = {s: np.flatnonzero(stim_id == s)[np.argsort(onset_s[stim_id == s], kind="stable")] for s in stimuli}
    out = np.empty(len(stim_id), dtype=np.int64)
    for s, rows in rows_of.items():
        other = rows_of[target[s]]
        for rank, row in enumerate(rows):
            out[row] = other[min(rank, len(other) - 1)]
    return out


class Chance(_Reference):
    """Each sample gets the ground-truth audio of another test stimulus (seeded by the cell's seed)."""

    name = "chance"
    display_name = "Chance (shuffled stimuli)"
    profiles = {"tiny": {}, "paper": {}}
    param_constraints = {}

    def predict(self, test) -> Reconstruction:
        self.check_is_fitted()
        check_fmri(test.fmri, "test.fmri", n_voxels=self.n_voxels_in_)
        rows = shuffled_rows(test.stim_id, np.asarray(test.onset_s, dtype=np.float64),
                             np.random.default_rng(self.random_state_))
        audio = np.asarray(test.audio[rows], dtype=np.float32)
        mel = vocoder_mels(test)[rows]
        return Reconstruction(audio=audio, mel=mel, features={"mel": mel.reshape(len(mel), -1)},
                              info={"shuffled_rows": rows.tolist()})

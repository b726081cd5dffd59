"""Direct decoders: fMRI -> vocoder mel by a regressor, then a vocoder to audio.

LiR and MLP (and the sequence models) differ only in the regressor; this base class owns the
shared steps: mel targets from the training audio, training-set normalisation of the fMRI,
reshaping, vocoding, and the ground-truth features used by probes and identification.
"""

from __future__ import annotations

import numpy as np

from bench.targets import vocoder_mels
from methods.base import Method, Reconstruction, check_fmri


class DirectMelDecoder(Method):
    """Subclasses implement ``_fit_regressor(X, Y, rng)`` and ``_predict_regressor(X) -> Y``.

    X: (n, n_voxels) float32, z-scored with training statistics
    Y: (n, 64 * frames) float32, flattened vocoder log-mel
    """

    def fit(self, train, *, device: str = "cpu", random_state: int = 0, progress: bool = False, work_dir=None):
        from bench.device import resolve_device
        from methods.base import set_seed

        self.validate_params()
        self.work_dir_ = work_dir
        self.device_ = resolve_device(device)
        self.random_state_ = random_state
        rng = set_seed(random_state)
        X = check_fmri(train.fmri, "train.fmri")
        mels = vocoder_mels(train)  # (n, 64, T)
        self.mel_shape_ = mels.shape[1:]
        self.n_samples_audio_ = train.clips.audio.shape[1]
        # Normalisation is the method's job, with training statistics only.
        self.x_mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = X.std(axis=0, dtype=np.float64)
        self.x_scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        self.n_voxels_in_ = X.shape[1]
        Xz = (X - self.x_mean_) / self.x_scale_
        self._fit_regressor(Xz, mels.reshape(len(mels), -1), rng=rng, groups=train.stim_id, progress=progress)
        self.fitted_ = True
        return self

    def predict(self, test) -> Reconstruction:
        from bench.networks.vocoder import get_vocoder

        self.check_is_fitted()
        X = check_fmri(test.fmri, "test.fmri", n_voxels=self.n_voxels_in_)
        Y = self._predict_regressor((X - self.x_mean_) / self.x_scale_)
        mel = Y.reshape(len(Y), *self.mel_shape_).astype(np.float32)
        vocoder = get_vocoder(self.vocoder, n_iter=self.griffin_lim_iters, seed=self.random_state_, device=self.device_)
        audio = vocoder.mel_to_audio(mel, self.n_samples_audio_)
        return Reconstruction(
            audio=audio,
            mel=mel,
            features={"mel": mel.reshape(len(mel), -1)},
            info={"vocoder": vocoder.config(), **self._predict_info()},
        )

    def target_features(self, split) -> dict[str, np.ndarray]:
        mels = vocoder_mels(split)
        return {"mel": mels.reshape(len(mels), -1)}

    def _predict_info(self) -> dict:
        return {}

    def _fit_regressor(self, X, Y, *, rng, groups, progress):  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_regressor(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

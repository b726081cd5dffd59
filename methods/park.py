"""Park et al. (2023): fMRI -> VGGishish conv5_3 (fastl2lir ridge) -> SpecVQGAN transformer -> MelGAN.

The facts come from KamitaniLab/SoundReconstruction and its SpecVQGAN fork (condensed in the project's reference
notes, ``park.md``); what this module does, step by step:

1. **Auditory features.** conv5_3 of VGGishish (:mod:`bench.networks.vggishish`) before its ReLU, of each clip's
   4-s window: SpecVQGAN's [0, 1] mel at 22.05 kHz, centre-cropped to 336 frames, standardised per mel bin;
   (512, 5, 21) = 53,760 units (paper), flattened channel-major.
2. **Decoding.** X is z-scored with the training samples' mean / std (ddof 1); Y (the clips' conv5_3) with the mean /
   std over the UNIQUE training clips (ddof 1); ``SelectiveRidge(alpha=100, n_feat=500)`` (fastl2lir: per unit, the
   500 voxels of largest |r|, the bias penalised too; ``n_feat`` is capped at the number of voxels). Test trials of
   the same clip are averaged in voxel space before z-scoring; predictions are mapped back as y * std + mean.
3. **Reconstruction.** The decoded features are inflated around the training mean by sqrt(n_repetitions) (the test
   repetitions averaged: ``n_repetitions="auto"`` reads them from the prepared split, else 1), non-finite units are
   replaced by the training mean (as SR does), and the (C, 5, 21) map becomes 21 condition frames of C * 5 (index
   c * 5 + f). The SpecVQGAN GPT (:mod:`bench.networks.specvqgan`) samples 105 codes in column-major order
   (temperature 1, top-k 512 = n_codes / 2) from a ``torch.Generator`` seeded by the cell's seed; the codebook decodes
   them to an 80 x 336 mel in [-1, 1]; (x + 1) / 2 goes to MelGAN (22.05 kHz, 86,016 samples), resampled to 16 kHz and
   cut or zero-padded to the clip length. ``vocoder="griffin-lim"`` (the tiny profile) / ``"hifigan"`` instead map
   the mel to the suite's vocoder mel (``park_mel_to_vocoder_mel``) and use those vocoders.
4. **Other clip lengths** (this suite's adaptation; Park et al. only had 4-s windows): a clip shorter than 4 s
   (Brain2Music 1.5 s, Brain2Speech 2 s) is looped end to end to 4 s before its features are computed, so the
   networks see the window they were built for (21 condition frames, a 5 x 21 code grid) and SR's temporal resampling
   never divides by zero; the reconstructed 4-s audio is cut back to the clip's first ``clip_seconds``. Clips longer
   than 4 s are refused with a one-line error. Only Brain2Sound has a reported Park et al. row.
5. **Park's evaluation.** The decoded conv5_3 features are returned as ``features["conv5_3"]`` with their ground
   truth, so the suite's ``ident`` metric reports ``ident:conv5_3``: pairwise identification of each decoded window
   against all test windows (mean over windows, hence over each clip's windows), as Park et al. report it.

Profiles: ``paper`` uses the published networks (catalogue entries ``vggishish``, ``vggishish-mel-stats``,
``park-conv5_3-transformer`` (which embeds its codebook) and ``melgan-vggsound``); the conv5_3 transformer's own
configuration is not public, so its sizes are SpecVQGAN's VGGSound transformer defaults (24 layers, 16 heads, width
1024, block size 477), a mismatch being reported key by key at load. ``tiny`` uses small networks trained on the
simulator (:mod:`bench.networks.park_sim`), Griffin-Lim and top-k 4 (see ``_TINY``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from bench.errors import BenchError
from methods.base import Interval, Method, Options, Reconstruction, check_fmri

VOCODER_VALUES = ("melgan", "griffin-lim", "hifigan")
ENTRIES = ("vggishish", "vggishish-mel-stats", "park-conv5_3-transformer", "melgan-vggsound")

_PAPER: dict = {}  # the published setting is __init__'s defaults
# tiny: top-k 4 of the 64 simulator codes, not n_codes / 2: the simulator GPT (trained for a minute on the CPU) puts
# the tail of its distribution on noise, and sampling from it washes out the stimulus (measured on sim-sound: PCC
# 0.051 vs 0.027 shuffled with top-k 32, 0.075 vs 0.032 with top-k 4).
_TINY = {"backbone": "sim", "top_k": 4, "vocoder": "griffin-lim", "griffin_lim_iters": 8}


class _RepetitionsConstraint:
    def check(self, value) -> bool:
        return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)

    def describe(self) -> str:
        return "'auto' or an int >= 1"


class Networks:
    """The frozen networks of one fit: features (AuditoryFeatures), net (Net2NetTransformer), melgan or None."""

    def __init__(self, features, net, melgan, key: str, sources: dict, weights: str):
        self.features, self.net, self.melgan, self.key, self.sources, self.weights = features, net, melgan, key, sources, weights


ENTRIES_ENV = "BENCH_PARK_ENTRIES"


def entry_names() -> dict[str, str]:
    """The catalogue entry of each Park network role: the published entries, or the ones ``$BENCH_PARK_ENTRIES``
    names (``role=entry,...``, e.g. ``vggishish=my-vggishish`` for a checkpoint of your own in the local catalogue)."""
    chosen = {role: role for role in ENTRIES}
    spec = os.environ.get(ENTRIES_ENV, "").strip()
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        role, sep, entry = pair.partition("=")
        if not sep or role.strip() not in chosen or not entry.strip():
            raise BenchError(f"${ENTRIES_ENV}: {pair!r} must be ROLE=ENTRY with ROLE one of {', '.join(ENTRIES)}; fix it")
        chosen[role.strip()] = entry.strip()
    return chosen


def load_networks(backbone: str, *, vocoder: str, device: str, sim_seed: int = 0) -> Networks:
    """``pretrained``: the catalogue files (a missing one is a one-line error naming it); ``sim``: the simulator-trained
    files (trained once, see bench.networks.park_sim). Networks are built from each entry's architecture."""
    from bench.networks import specvqgan as S
    from bench.networks import vggishish as V

    if backbone == "sim":
        from bench.networks.park_sim import sim_weights

        folder, entries = sim_weights(int(sim_seed))
        paths = {name: folder / e["file"] for name, e in entries.items() if name in ENTRIES}
        arch = {name: e["arch"] for name, e in entries.items()}
        key, weights = f"park-sim-{folder.name}", "simulator-trained"
    elif backbone == "pretrained":
        from bench.networks import weights as W

        needed = ENTRIES if vocoder == "melgan" else ENTRIES[:3]
        chosen = entry_names()
        found = {role: W.require(chosen[role], f"Park et al. (methods.park, {role})") for role in needed}
        digests = {role: W.check(f).sha256[:12] for role, f in found.items()}
        paths = {role: f.load_path for role, f in found.items()}
        arch = {role: W.architecture(chosen[role]) for role in needed}
        key, weights = "park-" + "-".join(digests[n] for n in ENTRIES[:3]), "pretrained"
    else:
        raise BenchError(f"unknown Park backbone {backbone!r}; use 'pretrained' or 'sim'")
    vcfg = V.VGGishishConfig.from_arch(arch.get("vggishish"))
    mean, std = V.read_mel_stats(paths["vggishish-mel-stats"])
    features = V.AuditoryFeatures(V.load_vggishish(paths["vggishish"], vcfg, device=device), mean, std, device=device)
    t_arch = dict(arch.get("park-conv5_3-transformer") or {})
    ccfg = S.CodebookConfig.from_arch(t_arch.pop("codebook", None))
    tcfg = S.TransformerConfig.from_arch(t_arch)
    net = S.load_transformer(paths["park-conv5_3-transformer"], tcfg, ccfg, device=device)
    if tcfg.feat_dim != vcfg.widths[-1] * vcfg.conv5_3_shape()[1]:
        raise BenchError(f"the transformer expects {tcfg.feat_dim}-d condition frames but VGGishish conv5_3 gives "
                         f"{vcfg.widths[-1]} x {vcfg.conv5_3_shape()[1]}; the checkpoints do not belong together")
    melgan = None
    if vocoder == "melgan":
        if "melgan-vggsound" not in paths:
            raise BenchError("vocoder 'melgan' needs the pretrained MelGAN (backbone=pretrained); the simulator profile "
                             "has none: use --set vocoder=griffin-lim")
        from bench.networks.melgan import MelGanConfig, MelGanVocoder, load_melgan

        melgan = MelGanVocoder(load_melgan(paths["melgan-vggsound"], MelGanConfig.from_arch(arch.get("melgan-vggsound")),
                                           device=device), str(paths["melgan-vggsound"]), device=device)
    return Networks(features, net, melgan, key, {k: str(v) for k, v in paths.items()}, weights)


def clip_seconds(split) -> float:
    return split.clips.audio.shape[1] / 16_000.0


def check_clip_length(split, what: str) -> float:
    """The split's clip length in seconds if the 4-s adaptation can serve it; else a one-line BenchError."""
    from bench.networks.vggishish import WINDOW_SECONDS

    seconds = clip_seconds(split)
    if seconds > WINDOW_SECONDS + 1e-9:
        raise BenchError(f"{what}: {split.dataset} has {seconds:g}-s clips, longer than Park et al.'s {WINDOW_SECONDS:g}-s "
                         f"window; the park method serves clips up to {WINDOW_SECONDS:g} s (cut the clips into windows "
                         f"via clip_seconds in datasets.yaml)")
    return seconds


def resolve_repetitions(setting, split) -> tuple[int, str]:
    """(n_repetitions, where it came from): an int setting as is; 'auto' from the prepared split's info."""
    if setting != "auto":
        return int(setting), "parameter n_repetitions"
    info = getattr(split, "info", {}) or {}
    reps = info.get("test_repetitions")
    if isinstance(reps, dict) and reps.get("max"):
        return int(reps["max"]), "prepared test_repetitions (max)"
    settings = info.get("settings") or {}
    if settings.get("n_test_reps"):
        return int(settings["n_test_reps"]), "simulation n_test_reps"
    return 1, "unknown (1 assumed; set --set n_repetitions=N)"


def prepare_condition(decoded: np.ndarray, y_mean: np.ndarray, n_repetitions: int) -> tuple[np.ndarray, int]:
    """SR's feature preparation: (decoded - mean) * sqrt(n_rep) + mean, non-finite units -> mean.

    decoded (n, D), y_mean (D,). Returns (prepared (n, D) float32, number of units filled). A sample with no finite
    unit has nothing to condition on: a one-line error."""
    d = np.asarray(decoded, dtype=np.float64)
    bad = ~np.isfinite(d)
    if bad.any():
        dead = np.flatnonzero(bad.all(axis=1))
        if len(dead):
            raise BenchError(f"decoded conv5_3 features of {len(dead)} test sample(s) (first: row {dead[0]}) are all NaN/inf; "
                             f"check the fMRI and the parameter alpha (> 0) and refit")
    out = (d - y_mean) * math.sqrt(n_repetitions) + y_mean
    out = np.where(np.isfinite(out), out, np.broadcast_to(y_mean, out.shape))
    return out.astype(np.float32), int(bad.sum())


class Park(Method):
    """Park et al. (2023): decoded VGGishish conv5_3 features condition SpecVQGAN's transformer; MelGAN vocodes."""

    name = "park"
    display_name = "Park et al."
    profiles = {"tiny": dict(_TINY), "paper": dict(_PAPER)}
    param_constraints = {
        "backbone": Options(("pretrained", "sim")),
        "alpha": Interval(low=0.0),
        "n_feat": Interval(low=1, integer=True),
        "temperature": Interval(low=1e-6),
        "top_k": Interval(low=1, integer=True),
        "n_repetitions": _RepetitionsConstraint(),
        "vocoder": Options(VOCODER_VALUES),
        "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
        "batch_size": Interval(low=1, integer=True),
        "sim_seed": Interval(low=0, integer=True),
    }

    def __init__(self, backbone="pretrained", alpha=100.0, n_feat=500, temperature=1.0, top_k=512, n_repetitions="auto",
                 vocoder="melgan", griffin_lim_iters=32, batch_size=32, sim_seed=0):
        self.backbone, self.alpha, self.n_feat, self.temperature, self.top_k = backbone, alpha, n_feat, temperature, top_k
        self.n_repetitions, self.vocoder, self.griffin_lim_iters = n_repetitions, vocoder, griffin_lim_iters
        self.batch_size, self.sim_seed = batch_size, sim_seed

    # -- features ---------------------------------------------------------------------------------
    def _clip_features(self, split):
        """(conv5_3 of the split's unique clips (u, D) float32, row of each sample in them (n,))."""
        from bench.networks.vggishish import loop_to_window
        from bench.targets import clip_view

        view, _, rows = clip_view(split)
        feats = self.networks_.features

        def compute(audio):
            return feats.conv5_3(loop_to_window(audio, 16_000)).reshape(len(audio), -1)

        from bench.targets import clip_targets

        return clip_targets(view, f"park-conv5_3-{self.networks_.key}", compute, batch=32), rows

    # -- the contract -------------------------------------------------------------------------------
    def _fit(self, train, *, progress: bool = False) -> None:
        from bench.ridge import SelectiveRidge

        if self.backbone == "sim" and self.vocoder == "melgan":
            raise BenchError("method park: vocoder 'melgan' needs backbone=pretrained (no simulator MelGAN); "
                             "use --set vocoder=griffin-lim")
        self.clip_seconds_ = check_clip_length(train, "method park")
        X = check_fmri(train.fmri, "train.fmri")
        self.networks_ = load_networks(self.backbone, vocoder=self.vocoder, device=self.device_, sim_seed=self.sim_seed)
        Y_clips, rows = self._clip_features(train)
        if not np.isfinite(Y_clips).all():
            raise BenchError(f"VGGishish conv5_3 features of the training clips contain NaN/inf; check the mel statistics "
                             f"file {self.networks_.sources.get('vggishish-mel-stats')} (stds must be > 0)")
        self.feature_shape_ = tuple(self.networks_.features.net.config.conv5_3_shape())
        self.n_voxels_in_ = X.shape[1]
        self.x_mean_ = X.mean(0, dtype=np.float64).astype(np.float32)
        xsd = X.std(0, ddof=1, dtype=np.float64)
        self.x_scale_ = np.where(xsd > 0, xsd, 1.0).astype(np.float32)
        self.y_mean_ = Y_clips.mean(0, dtype=np.float64).astype(np.float32)
        ysd = Y_clips.std(0, ddof=1, dtype=np.float64) if len(Y_clips) > 1 else np.ones(Y_clips.shape[1])
        self.y_scale_ = np.where(ysd > 0, ysd, 1.0).astype(np.float32)
        Xz = (X - self.x_mean_) / self.x_scale_
        Yz = (Y_clips[rows] - self.y_mean_) / self.y_scale_
        self.n_feat_ = int(min(self.n_feat, X.shape[1]))
        self.ridge_ = SelectiveRidge(alpha=float(self.alpha), n_feat=self.n_feat_, device=self.device_).fit(Xz, Yz)

    def decode_features(self, fmri, clip_index) -> tuple[np.ndarray, np.ndarray]:
        """Decoded conv5_3 (u, D) of the unique clips in ``clip_index`` (their trials averaged first), and the row of
        each sample in them (n,)."""
        X = check_fmri(fmri, "test.fmri", n_voxels=self.n_voxels_in_)
        unique, rows = np.unique(np.asarray(clip_index), return_inverse=True)
        Xavg = np.zeros((len(unique), X.shape[1]), dtype=np.float64)
        np.add.at(Xavg, rows, X)
        Xavg /= np.bincount(rows, minlength=len(unique))[:, None]
        Xz = ((Xavg.astype(np.float32) - self.x_mean_) / self.x_scale_).astype(np.float32)
        return self.ridge_.predict(Xz) * self.y_scale_ + self.y_mean_, rows

    def predict(self, test) -> Reconstruction:
        import torch

        from bench.networks import specvqgan as S

        self.check_is_fitted()
        check_clip_length(test, "method park")
        decoded, rows = self.decode_features(test.fmri, test.clip_index)
        n_rep, rep_source = resolve_repetitions(self.n_repetitions, test)
        cond_flat, n_filled = prepare_condition(decoded, self.y_mean_, n_rep)
        cond = S.conditioning_tokens(cond_flat.reshape(len(cond_flat), *self.feature_shape_))
        net = self.networks_.net
        gen = torch.Generator().manual_seed(self.random_state_)
        top_k = int(min(self.top_k, net.transformer.config.vocab_size))
        codes = S.sample_codes(net, cond, top_k=top_k, temperature=float(self.temperature), generator=gen,
                               batch_size=self.batch_size, device=self.device_)
        mel01 = (S.decode_codes(net, codes, device=self.device_) + 1.0) / 2.0  # (u, 80, 336) in [0, 1]
        from bench.networks.vggishish import WINDOW_SECONDS

        n_samples = test.clips.audio.shape[1]
        window = int(round(WINDOW_SECONDS * 16_000))  # the 4-s audio of a window, cut back to the clip below
        mel = None
        if self.vocoder == "melgan":
            audio_u = self.networks_.melgan.mel_to_audio(mel01, window)
            vocoder_cfg = self.networks_.melgan.config()
        else:
            from bench.networks.vggishish import park_mel_to_vocoder_mel
            from bench.networks.vocoder import get_vocoder

            vmel = park_mel_to_vocoder_mel(mel01, window)
            voc = get_vocoder(self.vocoder, n_iter=self.griffin_lim_iters, seed=self.random_state_, device=self.device_)
            audio_u = voc.mel_to_audio(vmel, window)
            vocoder_cfg = voc.config()
            mel = vmel[rows][:, :, : n_samples // 160 + 1]
        audio = np.ascontiguousarray(audio_u[rows][:, :n_samples], dtype=np.float32)
        from methods.c2f import rowwise_pcc

        truth_u, _ = self._clip_features(test)  # unique clips in sorted order, as decoded
        pattern = rowwise_pcc(decoded, truth_u)
        info = {
            "vocoder": vocoder_cfg,
            "backbone_weights": self.networks_.weights,
            "backbone_sources": dict(self.networks_.sources),
            "n_feat": self.n_feat_,
            "n_repetitions": n_rep, "n_repetitions_source": rep_source,
            "nonfinite_units_filled": n_filled,
            "conv5_3_pattern_corr": float(np.nanmean(pattern)),
            "clip_seconds": self.clip_seconds_,
            "adaptation": "none (4-s clips)" if abs(self.clip_seconds_ - 4.0) < 1e-9
                          else f"{self.clip_seconds_:g}-s clips looped to 4 s; output cut to {self.clip_seconds_:g} s",
            "top_k": top_k,
            "codes_used": int(len(np.unique(codes))),
        }
        return Reconstruction(audio=audio, mel=mel, features={"conv5_3": decoded[rows].astype(np.float32)}, info=info)

    def target_features(self, split) -> dict[str, np.ndarray]:
        self.check_is_fitted()
        vals, rows = self._clip_features(split)
        return {"conv5_3": vals[rows]}

    def describe_components(self):
        return {"features": "VGGishish conv5_3 (pre-ReLU)",
                "decoder": f"SelectiveRidge(alpha={self.alpha}, n_feat={self.n_feat}) (fastl2lir)",
                "generator": f"SpecVQGAN codebook + conv5_3 GPT (top-k {self.top_k}, T={self.temperature})",
                "vocoder": self.vocoder, "backbone": self.backbone, "clip_adaptation": "loop to 4 s, cut back"}


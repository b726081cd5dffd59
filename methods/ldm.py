"""Fine-LDM and C2F-LDM (paper sections 2.2, 2.3, 3.4): fMRI -> decoded AudioMAE features c -> AudioLDM2 LDM -> mel -> audio.

1. Acoustic stage (``methods.c2f.fit_acoustic_stage``): C2F-LDM uses the semantic CLAP ridge + acoustic Transformer
   (with ``p_gt``); Fine-LDM the acoustic decoder without the semantic token (``use_semantic=False``).
2. LDM (``bench.networks.audioldm2``): the decoded c (n, N_patch, 768) is the UNet's cross-attention condition,
   trained with the paper's eq. 4 loss ||eps(z_t, t, c) - eps||^2 + ||eps(z_t, t, c_gt) - eps||^2 on the training
   stimuli's VAE latents, with c = D^Aco(training fMRI) and c_gt = the AudioMAE features of the stimulus.
   ``finetune_acoustic=True`` (both profiles; the paper): D^Aco is trained jointly with the UNet (+ the condition
   projection, when widths differ) through that loss, at ``acoustic_lr``, after its own pre-training with eq. 1
   (``fit_acoustic_stage``, ``acoustic_epochs``), and P_gt keeps applying to its semantic input. ``False`` freezes
   D^Aco after eq. 1 and trains the UNet alone on its fixed decodings (an ablation). VAE and vocoder are frozen.
3. Sampling: DDIM with ``ddim_steps`` and classifier-free ``guidance_scale`` (zeros as the null condition), seeded
   from ``random_state``; audio by the HiFiGAN vocoder of the LDM (``vocoder="hifigan"``; random-init in the tiny
   profile) or Griffin-Lim.
4. Prompts (2.3, C2F-LDM only): "text" -> CLAP text embedding of the dataset's ``text_prompts`` filled with each test
   sample's label; "audio" -> CLAP audio embeddings of the dataset's ``prompt`` split, averaged into one vector. The
   prompt embedding replaces the decoded semantic embedding s as the acoustic decoder's input.

Profiles: ``tiny`` (tiny AudioMAE / CLAP / LDM, CPU seconds, 5 DDIM steps: on simulated data the simulator-trained
sim-audiomae, sim-clap, sim-audioldm2-vae and -unet of ``bench weights train-sim``, labelled ``sim-pretrained``;
random-init elsewhere or with ``BENCH_SIM_WEIGHTS=off``); ``paper`` (pretrained
AudioMAE, CLAP and AudioLDM2: cvssp/audioldm2 for sound and music, anhnct/audioldm2_gigaspeech for speech; the
LDM lr 1e-4, batch 8, 30 epochs, 200 DDIM steps, guidance 2.5 -- AudioLDM2's defaults, not stated in the paper).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from bench.errors import BenchError
from methods.base import Boolean, Interval, Method, Options, Reconstruction, check_fmri

_CONSTRAINTS = {
    "backbone": Options(("tiny", "pretrained")),
    "ldm_weights": Options(("auto", "audioldm2", "gigaspeech")),
    "p_gt": Options((0.0, 0.25, 0.5)),
    "prompt": Options(("none", "text", "audio")),
    "ddim_steps": Interval(low=1, high=1000, integer=True),
    "guidance_scale": Interval(low=0.0),
    "lr": Interval(low=0.0, high=1.0),
    "weight_decay": Interval(low=0.0),
    "batch_size": Interval(low=1, integer=True),
    "epochs": Interval(low=0, integer=True),
    "grad_accum": Interval(low=1, integer=True),
    "uncond_prob": Interval(low=0.0, high=1.0),
    "acoustic_epochs": Interval(low=1, integer=True),
    "acoustic_lr": Interval(low=0.0, high=1.0),
    "vocoder": Options(("hifigan", "griffin-lim")),
    "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
    "amp": Boolean(),
    "finetune_acoustic": Boolean(),
}

# The defaults (__init__) are the paper's setting; the tiny profile runs random-init backbones on CPU in seconds.
_TINY = {"backbone": "tiny", "ddim_steps": 5, "guidance_scale": 2.0, "lr": 1e-3, "batch_size": 16, "epochs": 1,
         "acoustic_epochs": 1, "acoustic_lr": 1e-3, "vocoder": "griffin-lim", "griffin_lim_iters": 4}
# tiny uses Griffin-Lim: a random-init HiFiGAN gives near-silent audio, which makes the metrics meaningless
# (``--set vocoder=hifigan`` runs the HiFiGAN path anyway).


def _batch_seed(seed: int, idx) -> int:
    """Noise seed of one training batch: a function of the run seed and the batch's sample order, so a resumed
    fit (fit_model restores its permutation generator) draws the same noise as an uninterrupted one."""
    h = hashlib.sha256(np.asarray(idx.cpu(), dtype=np.int64).tobytes() + int(seed).to_bytes(8, "little"))
    return int.from_bytes(h.digest()[:8], "little") & (2**63 - 1)


def _text_prompts(test, labels) -> list[str]:
    """The text prompt of each label, from the split's ``text_prompts`` (the dataset's catalogue entry)."""
    dataset = test.dataset
    spec = test.info.get("text_prompts")
    if spec is None:
        raise BenchError(f"prompt='text' needs `text_prompts` for dataset {dataset} in datasets.yaml; it has none")
    out = []
    for lab in labels:
        lab = str(lab)
        if isinstance(spec, dict):
            if lab not in spec:
                raise BenchError(f"dataset {dataset}: label {lab!r} has no entry in text_prompts ({', '.join(spec)})")
            out.append(str(spec[lab]))
        else:
            out.append(str(spec).format(genre=lab, label=lab))
    return out


class _LDMMethod(Method):
    use_semantic: bool = True
    profiles = {"tiny": dict(_TINY), "paper": {}}
    param_constraints = dict(_CONSTRAINTS)

    def __init__(self, backbone="pretrained", ldm_weights="auto", p_gt=0.25, prompt="none", ddim_steps=200,
                 guidance_scale=2.5, lr=1e-4, weight_decay=1e-2, batch_size=8, epochs=30, grad_accum=1, uncond_prob=0.1,
                 acoustic_epochs=30, acoustic_lr=1e-6, vocoder="hifigan", griffin_lim_iters=32, amp=True,
                 finetune_acoustic=True):
        self.backbone, self.ldm_weights, self.p_gt, self.prompt = backbone, ldm_weights, p_gt, prompt
        self.ddim_steps, self.guidance_scale, self.lr, self.batch_size = ddim_steps, guidance_scale, lr, batch_size
        self.weight_decay = weight_decay
        self.epochs, self.grad_accum, self.uncond_prob = epochs, grad_accum, uncond_prob
        self.acoustic_epochs, self.acoustic_lr = acoustic_epochs, acoustic_lr
        self.vocoder, self.griffin_lim_iters, self.amp = vocoder, griffin_lim_iters, amp
        self.finetune_acoustic = finetune_acoustic

    def validate_params(self) -> None:
        super().validate_params()
        if not self.use_semantic and self.prompt != "none":
            raise BenchError(f"method {self.name}: prompts replace the semantic embedding, which {self.display_name} does "
                             f"not use; use c2f_ldm for prompt={self.prompt!r}")

    # -- parts -------------------------------------------------------------------------------
    def _acoustic_config(self):
        from methods.c2f import C2FDecoder

        base = dict(C2FDecoder.profiles["tiny" if self.backbone == "tiny" else "paper"])
        base.update(backbone=self.backbone, use_semantic=self.use_semantic, p_gt=float(self.p_gt),
                    epochs=self.acoustic_epochs, lr=self.acoustic_lr)
        return C2FDecoder(**base).acoustic_config()

    def _ldm_parts(self, dataset: str, seed: int, simulated: bool = False):
        import torch

        from bench.networks.audioldm2 import build_ldm, load_ldm
        from methods.c2f import uses_sim_backbones

        if uses_sim_backbones(self.backbone, simulated):
            from bench.errors import UnavailableError
            from bench.networks.simtrain import load_sim_ldm

            try:
                parts, names = load_sim_ldm(f"method {self.name} on simulated data (tiny profile)", seed=seed)
            except UnavailableError as exc:
                raise BenchError(f"{exc} (or BENCH_SIM_WEIGHTS=off for a random-init LDM)") from None
            return parts, "sim-pretrained", {"ldm": f"{names['vae']} + {names['unet']} (vocoder random-init)"}, "as-is"
        if self.backbone == "tiny":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                parts = build_ldm("tiny")
            return parts, "random-init", {"ldm": "random-init tiny (bench.networks.audioldm2.TINY)"}, "as-is"
        from bench.networks import weights as W

        kind = self.ldm_weights
        if kind == "auto":
            kind = "gigaspeech" if "speech" in dataset.lower() else "audioldm2"
        name = "audioldm2-gigaspeech" if kind == "gigaspeech" else "audioldm2"
        found = W.find(name)
        if found is None:
            raise BenchError(W.missing_reason(W.get_spec(name), f"method {self.name} ({kind} LDM)"))
        parts = load_ldm(found.path, kind=kind)
        return parts, "pretrained", {"ldm": str(found.path)}, ("tile" if kind == "gigaspeech" else "as-is")

    # -- fit ---------------------------------------------------------------------------------
    def _fit(self, train, *, progress: bool = False) -> None:
        import torch
        import torch.nn as nn

        from bench.networks.audioldm2 import LatentDiffusion
        from bench.targets import vocoder_mels
        from bench.training import TrainConfig, fit_model
        from methods.base import set_seed
        from methods.c2f import check_pretrained_available, fit_acoustic_stage, mix_semantic

        if self.backbone == "pretrained":
            check_pretrained_available()
        X = check_fmri(train.fmri, "train.fmri")
        parts, self.ldm_weights_state_, self.ldm_sources_, cond_tokens = self._ldm_parts(
            train.dataset, self.random_state_, simulated=bool(getattr(train, "info", {}).get("simulated", False)))
        self.stage_ = fit_acoustic_stage(train, config=self._acoustic_config(), device=self.device_,
                                         random_state=self.random_state_, work_dir=self.work_dir_, progress=progress)
        rng = set_seed(self.random_state_ + 1)
        Cgt = self.stage_.c_gt(train)  # (n, N_patch, D)
        mels = vocoder_mels(train)  # (n, 64, T)
        self.mel_shape_ = mels.shape[1:]
        self.n_samples_audio_ = train.clips.audio.shape[1]
        dev = torch.device(self.device_)
        torch.manual_seed(int(rng.integers(2**31)))
        self.ldm_ = LatentDiffusion(*parts, cond_dim=Cgt.shape[-1], cond_tokens=cond_tokens,
                                    uncond_prob=self.uncond_prob).to(dev)
        Z = []
        with torch.no_grad():
            for i in range(0, len(mels), 16):
                Z.append(self.ldm_.mel_to_latent(torch.from_numpy(mels[i : i + 16]).to(dev)).float())
        Z = torch.cat(Z)
        Cgt_t = torch.from_numpy(np.ascontiguousarray(Cgt)).to(dev)
        ldm = self.ldm_
        seed = int(rng.integers(2**31))
        joint = bool(self.finetune_acoustic)
        modules = {"unet": ldm.unet, "proj": ldm.proj}
        groups = [{"params": [p for m in modules.values() for p in m.parameters()], "lr": self.lr}]
        if joint:
            # D^Aco trained on through eq. 4, with its own (smaller) learning rate and P_gt on its semantic input.
            tok, s_dec, s_gt = self.stage_.training_inputs(train)
            tok_t = torch.from_numpy(tok).to(dev)
            sdec_t = None if s_dec is None else torch.from_numpy(s_dec).to(dev)
            sgt_t = None if s_gt is None else torch.from_numpy(s_gt).to(dev)
            acoustic = self.stage_.acoustic
            acoustic.requires_grad_(True)
            modules["acoustic"] = acoustic
            groups.append({"params": list(acoustic.parameters()), "lr": self.acoustic_lr})
        else:  # fixed decodings of the training fMRI
            C_t = torch.from_numpy(self.stage_.decode(X)).to(dev)
        trainable = nn.ModuleDict(modules)
        p_gt = float(self.p_gt)

        def loss_fn(model, idx, training):
            gen = torch.Generator().manual_seed(_batch_seed(seed, idx))
            if not joint:
                return ldm.loss(Z[idx], C_t[idx], Cgt_t[idx], generator=gen)
            s = None
            if sdec_t is not None:
                s = sdec_t[idx]
                if training and p_gt > 0:
                    s, _ = mix_semantic(s, sgt_t[idx], p_gt, gen)
            c = model["acoustic"](tok_t[idx], s).float()
            return ldm.loss(Z[idx], c, Cgt_t[idx], generator=gen)

        self.history_ = {"epochs_run": 0, "train_loss": []}
        self.train_samples_per_second_ = None
        if self.epochs:
            cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                              grad_accum=self.grad_accum, patience=0, amp=self.amp)
            t0 = time.perf_counter()
            self.history_ = fit_model(trainable, loss_fn, np.arange(len(Z)), np.array([], dtype=np.int64), cfg,
                                      device=self.device_, seed=seed, work_dir=self.work_dir_,
                                      tag=f"{self.name}-{'joint' if joint else 'unet'}", progress=progress,
                                      params=groups)
            elapsed = time.perf_counter() - t0
            self.train_samples_per_second_ = round(len(Z) * self.history_["epochs_run"] / max(elapsed, 1e-9), 3)
        ldm.eval()
        if joint:
            self.stage_.acoustic.requires_grad_(False)
            self.stage_.net_.eval()

    # -- predict -----------------------------------------------------------------------------
    def _semantic(self, test, X):
        st = self.stage_
        if not self.use_semantic:
            return None
        if self.prompt == "none":
            return st.decode_semantic(X)
        clap = st.backbones.clap
        try:
            if self.prompt == "text":
                emb = clap.text_embeddings(_text_prompts(test, test.label))
            else:
                from bench.networks.clap import prepare_waveform

                try:
                    prompt = test.sibling("prompt")  # same prepared folder (data root, scale) as the test split
                except (BenchError, FileNotFoundError, KeyError) as exc:
                    raise BenchError(f"prompt='audio' needs the dataset's prompt split ({exc})") from None
                audio = np.asarray(prompt.clips.audio[prompt.unique_clips()], dtype=np.float32)
                emb = clap.audio_embeddings(prepare_waveform(audio, 16000), batch_size=16).mean(0, keepdims=True)
                emb = np.repeat(emb, len(X), axis=0)
        except BenchError:
            raise
        except Exception as exc:  # e.g. no tokenizer files offline
            raise BenchError(f"method {self.name}: CLAP {self.prompt} prompt embedding failed ({type(exc).__name__}: {exc})") from None
        return np.asarray(emb, dtype=np.float32)

    def predict(self, test) -> Reconstruction:
        from bench.networks.vocoder import get_vocoder

        self.check_is_fitted()
        st = self.stage_
        X = check_fmri(test.fmri, "test.fmri", n_voxels=st.n_voxels_in_)
        s = self._semantic(test, X)
        c = st.decode(X, semantic=s)
        frames = self.mel_shape_[1]
        t0 = time.perf_counter()
        mel = self.ldm_.generate(c, frames, steps=self.ddim_steps, guidance_scale=self.guidance_scale,
                                 seed=self.random_state_, batch_size=self.batch_size)
        gen_sps = round(len(c) / max(time.perf_counter() - t0, 1e-9), 3)
        if self.vocoder == "hifigan":  # the LDM's own (frozen) HiFiGAN
            from bench.networks.vocoder import HifiGan

            vocoder = HifiGan(self.ldm_.vocoder, source=self.ldm_weights_state_, device=self.device_)
        else:
            vocoder = get_vocoder(self.vocoder, n_iter=self.griffin_lim_iters, seed=self.random_state_, device=self.device_)
        audio = vocoder.mel_to_audio(mel, self.n_samples_audio_)
        voc_info = vocoder.config()
        features = {"acoustic": c.reshape(len(c), -1).astype(np.float32), "mel": mel.reshape(len(mel), -1)}
        if s is not None:
            features["semantic"] = s
        weights = st.backbones.weights if st.backbones.weights == self.ldm_weights_state_ else "random-init"
        h = self.history_
        info = {"backbone_weights": weights, "vocoder": voc_info, "prompt": self.prompt, "p_gt": self.p_gt,
                "ddim_steps": self.ddim_steps, "guidance_scale": self.guidance_scale,
                "samples_per_second": {"train": self.train_samples_per_second_, "generate": gen_sps},
                "ldm_sources": dict(self.ldm_sources_), "acoustic_stage": st.describe(),
                "epochs_run": h["epochs_run"], "final_train_loss": h["train_loss"][-1] if h["train_loss"] else None}
        return Reconstruction(audio=audio, mel=mel, features=features, info=info)

    def target_features(self, split) -> dict[str, np.ndarray]:
        from bench.targets import vocoder_mels

        self.check_is_fitted()
        c = self.stage_.c_gt(split)
        mels = vocoder_mels(split)
        out = {"acoustic": c.reshape(len(c), -1), "mel": mels.reshape(len(mels), -1)}
        if self.use_semantic:
            out["semantic"] = self.stage_.semantic(split)
        return out

    def describe_components(self):
        return {"acoustic": "methods.c2f acoustic stage" + ("" if self.use_semantic else " (no semantic token)"),
                "generator": "AudioLDM2 latent diffusion (UNet fine-tuned on decoded c"
                             + (", jointly with D^Aco" if self.finetune_acoustic else "") + "; VAE, vocoder frozen)",
                "backbone": self.backbone, "ldm_weights": self.ldm_weights, "vocoder": self.vocoder}

    def sim_networks(self, simulated: bool) -> tuple[str, ...]:
        """The acoustic stage's sim backbones, and the sim VAE and UNet (tiny profile on simulated data)."""
        from methods.c2f import sim_backbone_entries

        stage = sim_backbone_entries(self.backbone, simulated)  # empty exactly when the LDM is not the sim one either
        return stage + ("sim-audioldm2-vae", "sim-audioldm2-unet") if stage else ()


class FineLDM(_LDMMethod):
    """Acoustic decoder without the semantic stage -> LDM."""

    name = "fine_ldm"
    display_name = "Fine-LDM"
    use_semantic = False
    profiles = {"tiny": dict(_TINY), "paper": {}}


class C2FLDM(_LDMMethod):
    """Coarse-to-fine: semantic CLAP ridge + acoustic decoder -> LDM; optional text / audio prompts."""

    name = "c2f_ldm"
    display_name = "C2F-LDM"
    use_semantic = True
    profiles = {"tiny": dict(_TINY), "paper": {}}

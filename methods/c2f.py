"""Coarse-to-fine brain decoding (paper section 2.1) and the C2F-Decoder method (appendix A.4).

Stages
------
1. Semantic decoder D^Sem (2.1.1): s_gt = CLAP audio embedding of the stimulus (512-d, computed once per
   clip and cached with ``bench.targets.clip_targets``). X (fMRI) and Y (s_gt) are z-scored with training
   statistics (as Park et al. 2023 do with fastl2lir), then ``SelectiveRidge(alpha, n_feat=500)`` (fastl2lir's
   per-output voxel selection + ridge) gives the sparse W (V, 512) and b; s = x W + b, mapped back to CLAP
   units with the training mean / std of s_gt.
2. Voxel selection for the fMRI token: "768 voxels with the highest responses based on the mapping matrix W".
   Our definition: score_v = sum_j |W_vj| (row-wise sum of absolute weights over the 512 outputs, W in z-scored
   units so voxels are comparable); the ``n_token_voxels`` (768) voxels with the largest score, ties broken by
   the lower voxel index. If V < 768 all V voxels are used (ordered by score) and the token is zero-padded to
   768 (recorded in ``info``: ``fmri_token_padding``).
3. Acoustic decoder D^Aco (2.1.2, Figure 2b): semantic token s' = Linear(512 -> d_model)(s); fMRI token x' =
   the 768 selected (z-scored) voxels, used directly when d_model == n_token_voxels == 768 (the paper) and
   through Linear(768 -> d_model) otherwise; a learned token-type embedding tells the two tokens apart;
   Transformer encoder over [s', x'] -> n; learned queries q (N_patch, d_model) attend to n through a
   Transformer decoder; Linear(d_model -> 768) -> c (N_patch, 768), AudioMAE's latent width (the tiny
   random-init AudioMAE of the tiny profile has width 32, so there c is (N_patch, 32)).
   ``use_semantic=False`` drops the semantic token: the fine-grained-only decoder of Fine-LDM (the
   semantic ridge is still fitted, because its W selects the voxels of the fMRI token).
4. Training (equation 1): L = L_cond + L_perceptual + L_mel with
   L_cond = mse(c, c_gt);
   L_perceptual = sum over the AudioMAE decoder blocks i of mse(D_i(c), D_i(c_gt)) (block outputs from
   ``AudioMAE.decode(return_hidden=True)``; the c_gt branch is the target, detached);
   L_mel = mse(m_upp, m) + mse(m_recon, m) on the first 16 * N_patch / 8 frames (the rows c covers).
   Each term is a mean over elements (the paper's squared L2 norms up to constant factors).
   Units of m: AudioMAE's normalised fbank (``bench.fbank.audiomae_input`` of the clip tiled to 10 s), i.e.
   (fbank + 4.27) / (2 * 4.57). The pretrained decoder predicts norm_pix units (each patch standardised);
   since the paper fine-tunes D^A with this mel loss, we train it towards plain normalised-fbank units, so
   m^A is a spectrogram whose absolute level is meaningful for the ridge to the vocoder mel.
   The AudioMAE encoder is frozen, the decoder is fine-tuned together with D^Aco (AdamW; the paper's lr 1e-6,
   batch 8, 30 / 40 / 30 epochs for sound / music / speech: the paper profile has 30, use ``--set epochs=40``
   for Brain2Music). With probability ``p_gt`` (0.25) per training sample the ground-truth s_gt replaces the
   decoded s (Liu et al. 2023b's trick). The P_gt draws come from a generator seeded once per fit; after a
   resume from a checkpoint the draws differ from those of an uninterrupted run (the model state does not).
5. C2F-Decoder (A.4): m^A = unpatchify(D^A(c)) (first frames of the clip, 128-bin fbank units) is mapped to the
   64-bin vocoder log-mel by ridge (``RidgeGCV``) fitted on the training stimuli's m^A (= m_upp from the
   fine-tuned decoder on c_gt) and vocoder mels. Both use a 10 ms hop, so the ridge is per frame: vocoder frame t
   is predicted from m^A frames t - k .. t + k (``mel_context`` k; clamped at 0). Frames beyond the ones c
   covers (only in tiny configurations, whose AudioMAE sees 128 frames) reuse m^A frame t mod F, as the clip is
   tiled before AudioMAE. Then the vocoder (Griffin-Lim offline).

Backbones: ``backbone="pretrained"`` (paper profile) loads AudioMAE (catalogue entry "audiomae") and LAION CLAP
(``bench.networks.cache.weights_name("clap")``) and raises a one-line BenchError naming the missing file;
``backbone="tiny"`` on simulated data loads the simulator-trained sim-audiomae and sim-clap (``bench weights
train-sim``, trained on first use; records say ``backbone_weights: sim-pretrained``), elsewhere (or with
``BENCH_SIM_WEIGHTS=off``) builds random-init tiny ones (``AudioMAEConfig.tiny()``, ``bench.networks.clap.tiny_config``
with a 512-d projection) from the seed; records say ``backbone_weights: random-init``.

API for the LDM methods (fine_ldm / c2f_ldm)::

    stage = fit_acoustic_stage(train, config=AcousticConfig(...), device=..., random_state=..., work_dir=..., progress=...)
    c = stage.decode(test.fmri)                  # (n, N_patch, 768) decoded AudioMAE features
    c = stage.decode(test.fmri, semantic=s)      # with a given semantic embedding (CLAP units, (n, 512))
    s = stage.decode_semantic(test.fmri)         # (n, 512) decoded CLAP embedding
    stage.c_gt(split), stage.semantic(split)     # ground truths: c_gt (n, N_patch, 768), s_gt (n, 512)
    stage.mel_from_c(c)                          # m^A (n, frames, 128) through the fine-tuned AudioMAE decoder
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.errors import BenchError
from bench.networks.vocoder import VOCODER_PARAM_VALUES
from bench.targets import clip_view
from methods.base import TRAINING_CONSTRAINTS, Boolean, Interval, Method, Options, Reconstruction, check_fmri

SEMANTIC_DIM = 512
LATENT_DIM = 768
N_TOKEN_VOXELS = 768


# ----------------------------------------------------------------------------------------------
# small pure helpers (tested directly)


def select_token_voxels(W: np.ndarray, n_token: int = N_TOKEN_VOXELS) -> np.ndarray:
    """Indices of the ``n_token`` voxels with the largest row-wise sum of |W| (W: (V, m)), best first.

    Ties go to the lower voxel index. With V < n_token all V voxels are returned (the caller zero-pads).
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise BenchError(f"W must be (n_voxels, n_outputs), got shape {W.shape}")
    score = np.abs(W.astype(np.float64)).sum(axis=1)
    order = np.lexsort((np.arange(len(score)), -score))  # primary: score descending; then index
    return order[: min(int(n_token), len(score))].astype(np.int64)


def fmri_token(Xz: np.ndarray, voxels: np.ndarray, n_token: int = N_TOKEN_VOXELS) -> np.ndarray:
    """(n, V) z-scored fMRI -> (n, n_token) float32: the selected voxels, zero-padded when fewer."""
    out = np.zeros((Xz.shape[0], n_token), dtype=np.float32)
    out[:, : len(voxels)] = Xz[:, voxels]
    return out


def mix_semantic(s_dec, s_gt, p_gt: float, generator=None):
    """Per sample, s_gt replaces s_dec with probability ``p_gt``. Returns (mixed, mask (B,) bool)."""
    mask = torch.rand(s_dec.shape[0], generator=generator) < float(p_gt)
    mask = mask.to(s_dec.device)
    return torch.where(mask[:, None], s_gt, s_dec), mask


def rowwise_pcc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per sample of two (n, ...) arrays, flattened per sample."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), 0.0)


class AcousticDecoder(nn.Module):
    """D^Aco: (fMRI token (B, n_token), semantic (B, semantic_dim) or None) -> c (B, n_patch, out_dim)."""

    def __init__(self, n_patch: int, d_model: int = 768, n_heads: int = 12, n_enc_layers: int = 4,
                 n_dec_layers: int = 4, semantic_dim: int = SEMANTIC_DIM, n_token: int = N_TOKEN_VOXELS,
                 out_dim: int = LATENT_DIM, use_semantic: bool = True, dropout: float = 0.1):
        from methods.seq import query_transformer

        super().__init__()
        if d_model % n_heads:
            raise BenchError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_patch, self.d_model, self.use_semantic, self.n_token = n_patch, d_model, use_semantic, n_token
        self.semantic_proj = nn.Linear(semantic_dim, d_model) if use_semantic else None
        # The paper: the 768 voxels form the fMRI token directly (d_model = 768).
        self.fmri_proj = nn.Identity() if n_token == d_model else nn.Linear(n_token, d_model)
        self.token_type = nn.Parameter(torch.randn(1, 2 if use_semantic else 1, d_model) * 0.02)
        self.encoder, self.queries, self.decoder = query_transformer(
            d_model, n_heads, n_enc_layers, n_dec_layers, n_patch, dropout)
        self.head = nn.Linear(d_model, out_dim)

    def forward(self, x_token, semantic=None):
        tokens = [self.fmri_proj(x_token)[:, None]]
        if self.use_semantic:
            if semantic is None:
                raise BenchError("this AcousticDecoder uses a semantic token: pass semantic (B, semantic_dim)")
            tokens.insert(0, self.semantic_proj(semantic)[:, None])
        memory = self.encoder(torch.cat(tokens, dim=1) + self.token_type)
        return self.head(self.decoder(self.queries.expand(x_token.shape[0], -1, -1), memory))


class C2FTrainable(nn.Module):
    """What the acoustic stage trains: D^Aco and the AudioMAE (whose decoder is fine-tuned, encoder frozen)."""

    def __init__(self, acoustic: AcousticDecoder, audiomae: nn.Module):
        super().__init__()
        self.acoustic = acoustic
        self.audiomae = audiomae


# ----------------------------------------------------------------------------------------------
# backbones


@dataclass
class Backbones:
    audiomae: object
    clap: object  # ClapNetwork
    weights: str  # "pretrained" or "random-init"
    audiomae_id: str
    clap_id: str
    sources: dict = field(default_factory=dict)


def check_pretrained_available() -> None:
    """Raise a one-line BenchError naming the missing AudioMAE / CLAP file (before any work is done)."""
    from bench.networks import weights as W
    from bench.networks.cache import weights_name

    W.require("audiomae", "C2F decoding (AudioMAE, methods.c2f)")
    W.require(weights_name("clap"), "C2F decoding (CLAP semantic targets, methods.c2f)")


def uses_sim_backbones(kind: str, simulated: bool) -> bool:
    """The tiny backbones on simulated data are the simulator-trained ones, unless ``$BENCH_SIM_WEIGHTS=off``."""
    from bench.networks.simtrain import sim_mode

    return kind == "tiny" and simulated and sim_mode() != "off"


def sim_backbone_entries(kind: str, simulated: bool) -> tuple[str, ...]:
    """The simulator-trained entries :func:`load_backbones` loads: sim-audiomae, and sim-clap unless
    ``$BENCH_CLAP_WEIGHTS`` names another CLAP."""
    from bench.networks.cache import SIM_WEIGHTS, weights_name

    if not uses_sim_backbones(kind, simulated):
        return ()
    return ("sim-audiomae",) + ((SIM_WEIGHTS["clap"],) if weights_name("clap", simulated=True) == SIM_WEIGHTS["clap"] else ())


def load_backbones(kind: str, *, device: str, seed: int, simulated: bool = False) -> Backbones:
    """``simulated`` (the training data is simulated): the tiny backbones are the simulator-trained sim-audiomae and
    sim-clap (``bench weights train-sim``; unless ``$BENCH_SIM_WEIGHTS=off``), else random-init."""
    import torch

    from bench.networks.audiomae import AudioMAE, AudioMAEConfig, load_audiomae

    if uses_sim_backbones(kind, simulated):
        from bench.errors import UnavailableError
        from bench.networks.cache import load_network
        from bench.networks.simtrain import load_sim_audiomae

        what = "C2F decoding on simulated data (tiny profile)"
        try:
            mae, mae_spec = load_sim_audiomae(what, device=device)
            net = load_network("clap", what, device=device, simulated=True)
        except UnavailableError as exc:
            raise BenchError(f"{exc} (or BENCH_SIM_WEIGHTS=off for random-init backbones)") from None
        return Backbones(mae, net.model, "sim-pretrained", f"audiomae-{mae_spec.sha256[:16]}", net.key,
                         {"audiomae": mae_spec.name, "clap": net.weights})

    if kind == "pretrained":
        from bench.networks import weights as W
        from bench.networks.cache import load_network

        check_pretrained_available()
        found = W.require("audiomae", "C2F decoding (AudioMAE, methods.c2f)")
        state = W.check(found)
        mae = load_audiomae(found.load_path, device=device)
        net = load_network("clap", "C2F decoding (CLAP semantic targets, methods.c2f)", device=device)
        return Backbones(mae, net.model, "pretrained", f"audiomae-{state.sha256[:16]}", net.key,
                         {"audiomae": str(found.load_path), "clap": net.source})
    if kind != "tiny":
        raise BenchError(f"unknown backbone {kind!r}; use 'tiny' or 'pretrained'")
    from bench.networks.clap import ClapNetwork, build_model, tiny_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mae = AudioMAE(AudioMAEConfig.tiny()).to(device).eval()
        cfg = tiny_config()
        cfg.projection_dim = SEMANTIC_DIM
        cfg.audio_config.projection_dim = SEMANTIC_DIM
        cfg.text_config.projection_dim = SEMANTIC_DIM
        clap = ClapNetwork(build_model(cfg).to(device))
        clap.byte_tokens = True  # random-init text tower: no real tokenizer needed for smoke runs
    return Backbones(mae, clap, "random-init", f"audiomae-tiny-s{seed}", f"clap-tiny-s{seed}",
                     {"audiomae": "random-init AudioMAEConfig.tiny()", "clap": "random-init tiny_config() 512-d"})


def n_patch_for(split, mae_config) -> int:
    """N_patch for the split's clip length (208 / 80 / 112 for 4 / 1.5 / 2 s), capped by the AudioMAE's grid."""
    from bench.fbank import n_patch_for_seconds

    seconds = split.clips.audio.shape[1] / 16000.0
    return int(min(n_patch_for_seconds(seconds, max_frames=mae_config.img_size[0]), mae_config.num_patches))


# ----------------------------------------------------------------------------------------------
# the acoustic stage


@dataclass
class AcousticConfig:
    """The acoustic stage's settings: C2FDecoder's parameters of the same names (its __init__ defaults and profiles hold the values)."""

    backbone: str
    semantic_alpha: float
    semantic_n_feat: int
    n_token_voxels: int
    d_model: int
    n_heads: int
    n_enc_layers: int
    n_dec_layers: int
    dropout: float
    use_semantic: bool
    p_gt: float
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    grad_accum: int
    patience: int
    validation_fraction: float
    perceptual_weight: float
    mel_weight: float
    finetune_audiomae_decoder: bool = True


class AcousticStage:
    """A fitted semantic ridge + voxel selection + acoustic decoder + (fine-tuned) AudioMAE decoder."""

    def __init__(self, config: AcousticConfig, backbones: Backbones, device: str):
        self.config, self.backbones, self.device = config, backbones, device

    # -- ground truths -------------------------------------------------------------------------
    def semantic(self, split) -> np.ndarray:
        """s_gt: (n, 512) CLAP audio embeddings of the clips the samples heard."""
        from bench.networks.clap import prepare_waveform

        view, _, rows = clip_view(split)
        clap = self.backbones.clap
        vals = clip_targets_(view, f"c2f-sgt-{self.backbones.clap_id}",
                             lambda a: clap.audio_embeddings(prepare_waveform(a, 16000), batch_size=16))
        return vals[rows]

    def _c_gt_clips(self, split):
        mae, n_patch = self.backbones.audiomae, self.n_patch

        def compute(a):
            return mae.features(a, n_patch, batch_size=8).float().cpu().numpy()

        view, unique, rows = clip_view(split)
        return clip_targets_(view, f"c2f-cgt-{self.backbones.audiomae_id}-n{n_patch}", compute), rows

    def c_gt(self, split) -> np.ndarray:
        """c_gt: (n, N_patch, 768) AudioMAE encoder features (frozen encoder) of the clips the samples heard."""
        vals, rows = self._c_gt_clips(split)
        return vals[rows]

    def _fbank_clips(self, split):
        from bench.fbank import audiomae_input, repeat_to_seconds
        from bench.networks.audiomae import CLIP_SECONDS

        frames, img = self.n_frames, self.backbones.audiomae.config.img_size[0]

        def compute(a):
            return audiomae_input(repeat_to_seconds(a, CLIP_SECONDS), target_frames=img)[:, :frames].numpy()

        view, _, rows = clip_view(split)
        return clip_targets_(view, f"c2f-fbank-{img}-{frames}", compute), rows

    # -- decoding ------------------------------------------------------------------------------
    def _xz(self, fmri):
        X = check_fmri(fmri, "fmri", n_voxels=self.n_voxels_in_)
        return (X - self.x_mean_) / self.x_scale_

    def decode_semantic(self, fmri) -> np.ndarray:
        """s = x W + b (z-scored x), in CLAP units: (n, 512)."""
        sz = self.ridge_.predict(self._xz(fmri)).astype(np.float32)
        return sz * self.s_scale_ + self.s_mean_

    def training_inputs(self, split):
        """D^Aco's inputs on ``split``, for training it further (the LDM methods' joint phase):
        (fMRI token (n, n_token_voxels), decoded s (n, 512) or None, s_gt (n, 512) or None), all float32 and
        z-scored with the training statistics, as ``decode`` feeds them. s is None without a semantic token."""
        tok, s_dec = self._inputs(split.fmri)
        if s_dec is None:
            return tok, None, None
        s_gt = ((self.semantic(split) - self.s_mean_) / self.s_scale_).astype(np.float32)
        return tok, s_dec, s_gt

    def _inputs(self, fmri, decode_semantic: bool = True):
        """(fMRI token (n, n_token_voxels), decoded s z-scored (n, 512); None without a semantic token or when
        not ``decode_semantic``)."""
        Xz = self._xz(fmri)
        tok = fmri_token(Xz, self.voxels_, self.config.n_token_voxels)
        s_z = self.ridge_.predict(Xz).astype(np.float32) if self.config.use_semantic and decode_semantic else None
        return tok, s_z

    @property
    def acoustic(self):
        """D^Aco, the torch module (``forward(token, semantic_z)`` -> c (B, N_patch, 768))."""
        return self.net_.acoustic

    def decode(self, fmri, semantic=None, batch_size: int = 64) -> np.ndarray:
        """Decoded acoustic features c: (n, N_patch, 768) float32. ``semantic``: (n, 512) in CLAP units, or None
        to decode it from ``fmri`` (ignored when the decoder has no semantic token)."""
        tok, s = self._inputs(fmri, decode_semantic=semantic is None)
        if self.config.use_semantic and semantic is not None:
            s = np.asarray(semantic, dtype=np.float32)
            if s.shape != (len(tok), SEMANTIC_DIM):
                raise BenchError(f"semantic must be ({len(tok)}, {SEMANTIC_DIM}), got shape {s.shape}")
            s = (s - self.s_mean_) / self.s_scale_
        dev = torch.device(self.device)
        out = []
        self.net_.eval()
        with torch.no_grad():
            for i in range(0, len(tok), batch_size):
                xb = torch.from_numpy(tok[i : i + batch_size]).to(dev)
                sb = None if s is None else torch.from_numpy(np.ascontiguousarray(s[i : i + batch_size])).to(dev)
                out.append(self.net_.acoustic(xb, sb).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def mel_from_c(self, c, batch_size: int = 16) -> np.ndarray:
        """m^A = unpatchify(D^A(c))[:, :frames]: (n, 16 * N_patch / 8, 128) in normalised-fbank units."""
        mae = self.backbones.audiomae
        mae.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(c), batch_size):
                cb = torch.as_tensor(np.asarray(c[i : i + batch_size], dtype=np.float32)).to(mae.device)
                out.append(mae.upper_bound_mel(cb, self.n_frames).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def describe(self) -> dict:
        return {"n_patch": self.n_patch, "n_voxels": self.n_voxels_in_, "n_token_voxels_selected": int(len(self.voxels_)),
                "fmri_token_padding": int(self.config.n_token_voxels - len(self.voxels_)),
                "semantic_n_feat": self.n_feat_, "backbone_weights": self.backbones.weights,
                "backbone_sources": dict(self.backbones.sources), "history": self.history_}


def clip_targets_(view, kind, compute):
    from bench.targets import clip_targets

    return clip_targets(view, kind, compute, batch=32)


def fit_acoustic_stage(train, *, config: AcousticConfig, device: str = "cpu", random_state: int = 0, work_dir=None,
                       progress: bool = False, backbones: Backbones | None = None) -> AcousticStage:
    """Fit the semantic ridge, select the token voxels and train D^Aco (+ fine-tune D^A) on ``train``."""
    from bench.ridge import SelectiveRidge
    from bench.training import TrainConfig, fit_model, split_by_group
    from methods.base import set_seed
    
    cfg = config
    rng = set_seed(random_state)
    if backbones is None:
        backbones = load_backbones(cfg.backbone, device=device, seed=int(random_state),
                                   simulated=bool(getattr(train, "info", {}).get("simulated", False)))
    stage = AcousticStage(cfg, backbones, device)
    mae = backbones.audiomae
    stage.n_patch = n_patch_for(train, mae.config)
    stage.n_frames = 16 * stage.n_patch // mae.config.grid[1]
    X = check_fmri(train.fmri, "train.fmri")
    stage.n_voxels_in_ = X.shape[1]
    stage.x_mean_ = X.mean(0, dtype=np.float64).astype(np.float32)
    sd = X.std(0, dtype=np.float64)
    stage.x_scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
    Xz = (X - stage.x_mean_) / stage.x_scale_

    # 1. semantic ridge on z-scored X and Y
    S = stage.semantic(train)
    stage.s_mean_ = S.mean(0).astype(np.float32)
    ssd = S.std(0)
    stage.s_scale_ = np.where(ssd > 0, ssd, 1.0).astype(np.float32)
    Sz = ((S - stage.s_mean_) / stage.s_scale_).astype(np.float32)
    stage.n_feat_ = int(min(cfg.semantic_n_feat, X.shape[1]))
    stage.ridge_ = SelectiveRidge(alpha=cfg.semantic_alpha, n_feat=stage.n_feat_, device=device).fit(Xz, Sz)
    Sdec_z = stage.ridge_.predict(Xz).astype(np.float32)

    # 2. the fMRI token
    stage.voxels_ = select_token_voxels(stage.ridge_.coef_, cfg.n_token_voxels)
    tok = fmri_token(Xz, stage.voxels_, cfg.n_token_voxels)

    # 3. targets per clip
    Cgt_clips, rows = stage._c_gt_clips(train)
    M_clips, _ = stage._fbank_clips(train)

    dev = torch.device(device)
    torch.manual_seed(int(rng.integers(2**31)))
    acoustic = AcousticDecoder(stage.n_patch, d_model=cfg.d_model, n_heads=cfg.n_heads, n_enc_layers=cfg.n_enc_layers,
                               n_dec_layers=cfg.n_dec_layers, n_token=cfg.n_token_voxels, use_semantic=cfg.use_semantic,
                               dropout=cfg.dropout, out_dim=mae.config.embed_dim).to(dev)
    for name, p in mae.named_parameters():
        # encoder frozen; decoder (embed, mask token, blocks, norm, pred) fine-tuned; sin-cos tables fixed
        is_decoder = name.startswith(("decoder_", "mask_token")) and name != "decoder_pos_embed"
        p.requires_grad_(bool(is_decoder and cfg.finetune_audiomae_decoder))
    model = C2FTrainable(acoustic, mae)
    stage.net_ = model
    params = [p for p in model.parameters() if p.requires_grad]

    tok_t = torch.from_numpy(tok).to(dev)
    sdec_t = torch.from_numpy(Sdec_z).to(dev)
    sgt_t = torch.from_numpy(Sz).to(dev)
    cgt_t = torch.from_numpy(np.ascontiguousarray(Cgt_clips))  # per clip, on the CPU (paper scale: GBs)
    m_t = torch.from_numpy(np.ascontiguousarray(M_clips))
    rows_t = torch.from_numpy(rows.astype(np.int64))
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    nf = stage.n_frames
    mse = torch.nn.functional.mse_loss

    def loss_fn(m, idx, training):
        icpu = idx.cpu()
        s = None
        if cfg.use_semantic:
            s = sdec_t[idx]
            if training and cfg.p_gt > 0:
                s, _ = mix_semantic(s, sgt_t[idx], cfg.p_gt, gen)
        c = m.acoustic(tok_t[idx], s).float()
        cg = cgt_t[rows_t[icpu]].to(dev)
        loss = mse(c, cg)
        if cfg.perceptual_weight or cfg.mel_weight:
            p_rec, h_rec = m.audiomae.decode(c, return_hidden=True)
            p_upp, h_upp = m.audiomae.decode(cg, return_hidden=True)
            if cfg.perceptual_weight:
                loss = loss + cfg.perceptual_weight * sum(mse(a.float(), b.detach().float()) for a, b in zip(h_rec, h_upp))
            if cfg.mel_weight:
                target = m_t[rows_t[icpu]].to(dev)
                m_rec = m.audiomae.unpatchify(p_rec)[:, :nf].float()
                m_upp = m.audiomae.unpatchify(p_upp)[:, :nf].float()
                loss = loss + cfg.mel_weight * (mse(m_upp, target) + mse(m_rec, target))
        return loss

    train_idx, val_idx = split_by_group(train.stim_id, cfg.validation_fraction, rng)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       grad_accum=cfg.grad_accum, patience=cfg.patience)
    tag = "c2f-acoustic" + ("" if cfg.use_semantic else "-nosem")
    stage.history_ = fit_model(model, loss_fn, train_idx, val_idx, tcfg, device=device, seed=int(rng.integers(2**31)),
                               work_dir=work_dir, tag=tag, progress=progress, params=params)
    model.requires_grad_(False)  # fitted: D^Aco and D^A are inference-only unless a caller trains them on
    model.eval()
    return stage


# ----------------------------------------------------------------------------------------------
# the C2F-Decoder method


def _frame_design(mA: np.ndarray, n_out_frames: int, context: int) -> np.ndarray:
    """m^A (n, F, 128) -> per-frame design (n * T, 128 * (2k + 1)) for T output frames."""
    n, F, B = mA.shape
    t = np.arange(n_out_frames)
    cols = []
    for d in range(-context, context + 1):
        src = np.clip(t + d, 0, None) % F
        cols.append(mA[:, src, :])  # (n, T, B)
    return np.concatenate(cols, axis=2).reshape(n * n_out_frames, B * (2 * context + 1))


_CONSTRAINTS = {
    "backbone": Options(("tiny", "pretrained")),
    "semantic_alpha": Interval(low=0.0),
    "semantic_n_feat": Interval(low=1, integer=True),
    "n_token_voxels": Interval(low=1, integer=True),
    "d_model": Interval(low=2, integer=True),
    "n_heads": Interval(low=1, integer=True),
    "n_enc_layers": Interval(low=1, integer=True),
    "n_dec_layers": Interval(low=1, integer=True),
    "dropout": Interval(low=0.0, high=0.9),
    "use_semantic": Boolean(),
    "p_gt": Interval(low=0.0, high=1.0),
    **TRAINING_CONSTRAINTS,
    "perceptual_weight": Interval(low=0.0),
    "mel_weight": Interval(low=0.0),
    "mel_context": Interval(low=0, high=10, integer=True),
    "vocoder": Options(VOCODER_PARAM_VALUES),
    "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
}

# The defaults (__init__) are the paper's setting; the tiny profile runs random-init backbones on CPU in seconds.
_TINY = {"backbone": "tiny", "d_model": 32, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 1, "dropout": 0.0,
         "lr": 1e-3, "batch_size": 16, "epochs": 2, "griffin_lim_iters": 4}


class C2FDecoder(Method):
    """fMRI -> CLAP s (ridge) -> AudioMAE c (acoustic Transformer) -> m^A (AudioMAE decoder) -> vocoder mel (ridge) -> audio."""

    name = "c2f_decoder"
    display_name = "C2F-Decoder"
    profiles = {"tiny": dict(_TINY), "paper": {"vocoder": "auto"}}
    param_constraints = dict(_CONSTRAINTS)

    def __init__(self, backbone="pretrained", semantic_alpha=100.0, semantic_n_feat=500, n_token_voxels=768, d_model=768,
                 n_heads=12, n_enc_layers=4, n_dec_layers=4, dropout=0.1, use_semantic=True, p_gt=0.25, lr=1e-6,
                 weight_decay=1e-2, batch_size=8, epochs=30, grad_accum=1, patience=0, validation_fraction=0.1,
                 perceptual_weight=1.0, mel_weight=1.0, mel_context=1, vocoder="griffin-lim", griffin_lim_iters=32):
        self.backbone, self.semantic_alpha, self.semantic_n_feat = backbone, semantic_alpha, semantic_n_feat
        self.n_token_voxels, self.d_model, self.n_heads = n_token_voxels, d_model, n_heads
        self.n_enc_layers, self.n_dec_layers, self.dropout = n_enc_layers, n_dec_layers, dropout
        self.use_semantic, self.p_gt, self.lr, self.weight_decay = use_semantic, p_gt, lr, weight_decay
        self.batch_size, self.epochs, self.grad_accum, self.patience = batch_size, epochs, grad_accum, patience
        self.validation_fraction, self.perceptual_weight, self.mel_weight = validation_fraction, perceptual_weight, mel_weight
        self.mel_context, self.vocoder, self.griffin_lim_iters = mel_context, vocoder, griffin_lim_iters

    def validate_params(self) -> None:
        super().validate_params()
        if self.d_model % self.n_heads:
            raise BenchError(f"method {self.name}: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    def acoustic_config(self) -> AcousticConfig:
        names = AcousticConfig.__dataclass_fields__
        return AcousticConfig(**{k: v for k, v in self.get_params().items() if k in names})

    def _fit(self, train, *, progress: bool = False) -> None:
        from bench.ridge import RidgeGCV
        from bench.targets import vocoder_mels

        if self.backbone == "pretrained":
            check_pretrained_available()
        check_fmri(train.fmri, "train.fmri")
        self.stage_ = fit_acoustic_stage(train, config=self.acoustic_config(), device=self.device_,
                                         random_state=self.random_state_, work_dir=self.work_dir_, progress=progress)
        # m^A of the training stimuli (fine-tuned decoder on c_gt) -> vocoder mel, per frame.
        Cgt_clips, _ = self.stage_._c_gt_clips(train)
        view, _, _ = clip_view(train)
        mV = vocoder_mels(view)  # (n_clips, 64, T)
        mA = self.stage_.mel_from_c(Cgt_clips)
        self.mel_shape_ = mV.shape[1:]
        T = mV.shape[2]
        Xd = _frame_design(mA, T, self.mel_context)
        Yd = mV.transpose(0, 2, 1).reshape(-1, mV.shape[1])
        self.mel_map_ = RidgeGCV(device=self.device_).fit(Xd, Yd)
        pred = self.mel_map_.predict(Xd).reshape(len(mV), T, -1).transpose(0, 2, 1)
        self.mel_map_train_pcc_ = float(rowwise_pcc(pred, mV).mean())
        self.n_samples_audio_ = train.clips.audio.shape[1]

    def _mel(self, mA: np.ndarray) -> np.ndarray:
        T = self.mel_shape_[1]
        Y = self.mel_map_.predict(_frame_design(mA, T, self.mel_context))
        return Y.reshape(len(mA), T, -1).transpose(0, 2, 1).astype(np.float32)

    def predict(self, test) -> Reconstruction:
        from bench.networks.vocoder import get_vocoder

        self.check_is_fitted()
        st = self.stage_
        X = check_fmri(test.fmri, "test.fmri", n_voxels=st.n_voxels_in_)
        s = st.decode_semantic(X)
        c = st.decode(X, semantic=s if self.use_semantic else None)
        mel = self._mel(st.mel_from_c(c))
        vocoder = get_vocoder(self.vocoder, n_iter=self.griffin_lim_iters, seed=self.random_state_, device=self.device_)
        audio = vocoder.mel_to_audio(mel, self.n_samples_audio_)
        c_true = st.c_gt(test)
        s_true = st.semantic(test)
        h = st.history_
        info = {
            "vocoder": vocoder.config(),
            "backbone_weights": st.backbones.weights,
            "backbone_sources": dict(st.backbones.sources),
            "acoustic_feature_pcc": float(rowwise_pcc(c, c_true).mean()),
            "semantic_feature_pcc": float(rowwise_pcc(s, s_true).mean()),
            "mel_map_alpha": float(np.asarray(self.mel_map_.alpha_).mean()),
            "mel_map_train_pcc": self.mel_map_train_pcc_,
            "n_patch": st.n_patch,
            "n_token_voxels_selected": int(len(st.voxels_)),
            "fmri_token_padding": int(self.n_token_voxels - len(st.voxels_)),
            "semantic_n_feat": st.n_feat_,
            "epochs_run": h["epochs_run"], "best_epoch": h["best_epoch"],
            "final_train_loss": h["train_loss"][-1] if h["train_loss"] else None,
        }
        return Reconstruction(audio=audio, mel=mel,
                              features={"semantic": s.astype(np.float32), "acoustic": c.reshape(len(c), -1),
                                        "mel": mel.reshape(len(mel), -1)},
                              info=info)

    def target_features(self, split) -> dict[str, np.ndarray]:
        from bench.targets import vocoder_mels

        self.check_is_fitted()
        c = self.stage_.c_gt(split)
        mels = vocoder_mels(split)
        return {"semantic": self.stage_.semantic(split), "acoustic": c.reshape(len(c), -1),
                "mel": mels.reshape(len(mels), -1)}

    def describe_components(self):
        return {"semantic": f"SelectiveRidge(alpha={self.semantic_alpha}, n_feat={self.semantic_n_feat}) to CLAP 512-d",
                "acoustic": f"Transformer d{self.d_model} {self.n_enc_layers}+{self.n_dec_layers} h{self.n_heads}"
                            f"{'' if self.use_semantic else ' (no semantic token)'}",
                "generator": "AudioMAE decoder (fine-tuned) + per-frame ridge to vocoder mel",
                "backbone": self.backbone, "vocoder": self.vocoder}

    def sim_networks(self, simulated: bool) -> tuple[str, ...]:
        return sim_backbone_entries(self.backbone, simulated)

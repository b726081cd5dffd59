"""AudioLDM2 latent diffusion backbone (diffusers classes, built offline), conditioned on decoded AudioMAE features.

``build_ldm("tiny" | "paper" | dict)`` builds (unet, vae, vocoder, scheduler) from configs with random weights;
``load_ldm(folder, kind)`` builds them from a diffusers-format folder (unet/, vae/, vocoder/, scheduler/) and loads
every weight strictly (``bench.networks.checkpoints.strict_load``: a BenchError names missing, unexpected and
mis-shaped keys). ``LatentDiffusion`` wraps them:

- condition: c (B, N, C) -- the decoded acoustic feature (AudioMAE space, C = 768 in the paper) -- goes to the
  UNet's cross-attention as ``encoder_hidden_states`` (the "LOA" slot, cross_attention_dim index 1), through a
  trainable Linear when C differs from the checkpoint's width (identity otherwise). Slots with index > 1 (T5 text,
  1024-d in cvssp/audioldm2) get one all-zero token: the paper conditions on c only, and zeros are the null condition.
- token count: cross-attention has no positional embedding, so any N works. The gigaspeech checkpoint was trained
  on unpooled 512-token AudioMAE sequences of 10-s clips; our clips are repeated to 10 s before AudioMAE and only
  the first N tokens kept, so ``cond_tokens="tile"`` repeats c in time and crops to 512 tokens (what the full
  repeated clip would give, approximately). ``"as-is"`` (default for audioldm2 and tiny) passes the N tokens.
- mel <-> latent: the vocoder log-mel (B, 64, T) is the VAE's 1-channel image (B, 1, T, 64) (time is the image
  height, as in AudioLDM2); T is padded with the silence value log(1e-5) to a multiple of the VAE and UNet
  downsampling factors and cropped after decoding; latents are scaled by the VAE's ``scaling_factor``.
- diffusion: 1000 steps, betas 0.0015 -> 0.0195 on the square-root scale (latent-diffusion's "linear" schedule is
  diffusers' ``scaled_linear``), epsilon prediction; DDIM sampling with ``steps``, eta 0, classifier-free guidance
  with the all-zero condition as the unconditional branch, seeded by a torch.Generator.
- training loss (paper eq. 4): ||eps(z_t, t, c) - eps||^2 + ||eps(z_t, t, c_gt) - eps||^2, both terms with the same
  z_t, t and eps; with probability ``uncond_prob`` a sample's conditions are replaced by zeros (AudioLDM's
  condition dropout, which classifier-free guidance needs).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError

LOG_FLOOR = math.log(1e-5)  # the vocoder log-mel of silence
SCALING_FACTOR = 0.4110932946205139

_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                  prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)

PAPER = {
    # cvssp/audioldm2 layout (converted from audioldm2-full: model_channels 128, channel_mult 1,2,3,5, attention at
    # downsampling 2, 4, 8, context dims [768 (AudioMAE / LOA), 1024 (T5)], conv proj_in / proj_out).
    "unet": dict(sample_size=256, in_channels=8, out_channels=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 block_out_channels=(128, 256, 384, 640), layers_per_block=2, cross_attention_dim=[[None, 768, 1024]] * 4,
                 attention_head_dim=8, use_linear_projection=False, norm_num_groups=32, transformer_layers_per_block=1),
    "vae": dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(128, 256, 512),
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                layers_per_block=2, norm_num_groups=32, sample_size=1024, scaling_factor=SCALING_FACTOR),
    "vocoder": dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
                    upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
                    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], normalize_before=False),
    "scheduler": dict(_SCHEDULER),
}

TINY = {
    # diffusers-test-sized: CPU seconds. Same interfaces: 64 mel bins, 16 kHz, hop 160 (vocoder 5*4*8).
    "unet": dict(sample_size=16, in_channels=8, out_channels=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(16, 32), layers_per_block=1,
                 cross_attention_dim=[[None, 16, 8]] * 2, attention_head_dim=2, norm_num_groups=8,
                 use_linear_projection=False),
    "vae": dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=SCALING_FACTOR),
    "vocoder": dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[5, 4, 8],
                    upsample_kernel_sizes=[10, 8, 16], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                    normalize_before=False),
    "scheduler": dict(_SCHEDULER),
}

_CONFIGS = {"tiny": TINY, "paper": PAPER}


def _config(config) -> dict:
    if isinstance(config, str):
        if config not in _CONFIGS:
            raise BenchError(f"unknown LDM config {config!r}; use 'tiny', 'paper' or a dict with unet/vae/vocoder/scheduler")
        return copy.deepcopy(_CONFIGS[config])
    if not isinstance(config, dict) or set(config) - {"unet", "vae", "vocoder", "scheduler"}:
        raise BenchError("an LDM config dict has the keys unet, vae, vocoder, scheduler (each optional, a dict of kwargs)")
    out = copy.deepcopy(TINY)
    for key, value in config.items():
        out[key] = dict(value)
    return out


def build_ldm(config="tiny"):
    """(unet, vae, vocoder, scheduler) with random weights (seed them with torch.manual_seed beforehand)."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    cfg = _config(config)
    unet = AudioLDM2UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"]))
    scheduler = DDIMScheduler(**cfg["scheduler"])
    return unet, vae, vocoder, scheduler


# ----------------------------------------------------------------------------------------------
# strict loading of a diffusers folder


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"LDM folder: {path} is missing") from None
    except ValueError as exc:
        raise BenchError(f"LDM folder: {path} is not valid JSON ({exc})") from None


def _weights_file(sub: Path) -> Path:
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin", "pytorch_model.bin"):
        if (sub / name).is_file():
            return sub / name
    raise BenchError(f"LDM folder: no weights file in {sub} (looked for diffusion_pytorch_model.safetensors / "
                     f"model.safetensors / *.bin; sharded checkpoints are not supported)")


def _load_state(path: Path) -> dict:
    from bench.networks.weights import load_checkpoint_file

    obj = load_checkpoint_file(path)
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def load_ldm(folder, kind: str = "audioldm2"):
    """(unet, vae, vocoder, scheduler) from a diffusers AudioLDM2 folder, every weight loaded strictly.

    kind: "audioldm2" (cvssp/audioldm2) or "gigaspeech" (anhnct/audioldm2_gigaspeech); both are read from the
    folder's own configs, ``kind`` only labels errors and sets the condition defaults in ``LatentDiffusion``.
    """
    from diffusers import AutoencoderKL, DDIMScheduler
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

    from bench.networks.checkpoints import strict_load

    if kind not in ("audioldm2", "gigaspeech"):
        raise BenchError(f"load_ldm kind must be 'audioldm2' or 'gigaspeech', got {kind!r}")
    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"LDM folder {root} ({kind}) does not exist")
    unet_cfg = _read_json(root / "unet" / "config.json")
    unet = AudioLDM2UNet2DConditionModel.from_config(unet_cfg)
    strict_load(unet, _load_state(_weights_file(root / "unet")), f"{kind} unet", str(root / "unet"), optional_suffixes=())
    vae = AutoencoderKL.from_config(_read_json(root / "vae" / "config.json"))
    strict_load(vae, _load_state(_weights_file(root / "vae")), f"{kind} vae", str(root / "vae"), optional_suffixes=())
    vocoder = load_vocoder(root, what=kind)
    sched_path = root / "scheduler" / "scheduler_config.json"
    sched_cfg = _read_json(sched_path) if sched_path.exists() else dict(_SCHEDULER)
    scheduler = DDIMScheduler.from_config(sched_cfg)
    return unet, vae, vocoder, scheduler


def load_vocoder(folder, what: str = "audioldm2"):
    """SpeechT5HifiGan from ``<folder>/vocoder`` (config.json + weights) of an AudioLDM2 folder, loaded strictly."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from bench.networks.checkpoints import strict_load

    sub = Path(folder) / "vocoder"
    voc_cfg = {k: v for k, v in _read_json(sub / "config.json").items() if not k.startswith("_")}
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**voc_cfg))
    strict_load(vocoder, _load_state(_weights_file(sub)), f"{what} vocoder", str(sub), optional_suffixes=())
    return vocoder.eval()


def save_ldm(folder, unet, vae, vocoder, scheduler) -> Path:
    """Write a diffusers-format folder (used by tests, and to keep fine-tuned weights)."""
    root = Path(folder)
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    vocoder.save_pretrained(root / "vocoder")
    scheduler.save_pretrained(root / "scheduler")
    return root


# ----------------------------------------------------------------------------------------------
# the conditioned latent diffusion model


def _cross_dims(unet) -> tuple[int, int | None]:
    """(width of encoder_hidden_states, width of encoder_hidden_states_1 or None) from the UNet config."""
    dims = unet.config.cross_attention_dim
    blocks = [dims] if isinstance(dims, int) else list(dims)
    first, second = None, None
    for block in blocks:
        entries = (block,) if isinstance(block, int) else tuple(block)
        for idx, d in enumerate(entries):
            if d is None:
                continue
            if idx <= 1 and first is None:
                first = int(d)
            elif idx > 1 and second is None:
                second = int(d)
    if first is None:
        raise BenchError(f"the UNet has no cross-attention slot for encoder_hidden_states (cross_attention_dim={dims})")
    return first, second


class LatentDiffusion(nn.Module):
    """unet + condition projection (trainable), vae + vocoder (frozen), DDIM scheduler."""

    def __init__(self, unet, vae, vocoder, scheduler, cond_dim: int = 768, cond_tokens: str = "as-is",
                 uncond_prob: float = 0.1):
        super().__init__()
        if cond_tokens not in ("as-is", "tile"):
            raise BenchError(f"cond_tokens must be 'as-is' or 'tile', got {cond_tokens!r}")
        self.unet = unet
        self.vae, self.vocoder = vae, vocoder
        for part in (vae, vocoder):
            part.requires_grad_(False)
            part.eval()
        self.scheduler = scheduler
        self.cross_dim, self.cross_dim_1 = _cross_dims(unet)
        self.cond_dim = int(cond_dim)
        self.proj = nn.Identity() if self.cond_dim == self.cross_dim else nn.Linear(self.cond_dim, self.cross_dim)
        self.cond_tokens = cond_tokens
        self.uncond_prob = float(uncond_prob)
        self.vae_factor = vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(unet.config.block_out_channels) - 1)
        self.frame_multiple = vae_factor * unet_factor
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", SCALING_FACTOR))
        self.n_mels = int(vocoder.config.model_in_dim)
        if self.n_mels % self.frame_multiple and self.n_mels % vae_factor:
            raise BenchError(f"{self.n_mels} mel bins do not fit the VAE/UNet downsampling ({self.frame_multiple})")
        alphas = 1.0 - scheduler.betas.double()
        self.register_buffer("alphas_cumprod", alphas.cumprod(0).float(), persistent=False)

    def trainable_parameters(self):
        return list(self.unet.parameters()) + list(self.proj.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()
        self.vocoder.eval()
        return self

    # -- condition ------------------------------------------------------------------------
    def condition(self, c):
        """c (B, N, cond_dim) -> (encoder_hidden_states, encoder_hidden_states_1)."""
        if c.ndim != 3 or c.shape[-1] != self.cond_dim:
            raise BenchError(f"the LDM condition must be (B, N, {self.cond_dim}), got {tuple(c.shape)}")
        if self.cond_tokens == "tile" and c.shape[1] < 512:
            reps = -(-512 // c.shape[1])
            c = c.repeat(1, reps, 1)[:, :512]
        h = self.proj(c.to(next(self.unet.parameters()).dtype))
        h1 = None
        if self.cross_dim_1 is not None:
            h1 = torch.zeros(len(c), 1, self.cross_dim_1, dtype=h.dtype, device=h.device)
        return h, h1

    def eps(self, z_t, t, h, h1):
        return self.unet(z_t, t, encoder_hidden_states=h, encoder_hidden_states_1=h1).sample

    # -- mel <-> latent -------------------------------------------------------------------
    def padded_frames(self, frames: int) -> int:
        return -(-int(frames) // self.frame_multiple) * self.frame_multiple

    def mel_to_latent(self, mel, generator=None, sample: bool = False):
        """mel (B, n_mels, T) vocoder log-mel -> scaled latents (B, C, T'/f, n_mels/f)."""
        if mel.ndim != 3 or mel.shape[1] != self.n_mels:
            raise BenchError(f"the LDM mel must be (B, {self.n_mels}, frames), got {tuple(mel.shape)}")
        frames = mel.shape[2]
        x = F.pad(mel, (0, self.padded_frames(frames) - frames), value=LOG_FLOOR)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, T, n_mels): time is the image height
        with torch.no_grad():
            dist = self.vae.encode(x.to(next(self.vae.parameters()).dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        return z * self.scaling_factor

    def latent_to_mel(self, z, frames: int):
        with torch.no_grad():
            x = self.vae.decode(z / self.scaling_factor).sample  # (B, 1, T', n_mels)
        return x[:, 0, :frames, :].transpose(1, 2).float()

    # -- training ---------------------------------------------------------------------------
    def loss(self, z0, c, c_gt=None, generator=None, t_power: float = 1.0, weight_cap: float | None = None):
        """Paper eq. 4: ||eps(z_t,t,c) - eps||^2 + ||eps(z_t,t,c_gt) - eps||^2 (mean squared errors).

        Defaults: t uniform over the scheduler's steps, plain eps-MSE (the paper; the methods' fine-tuning).
        ``t_power`` p > 1 draws t = floor(T u^(1/p)), favouring noisy steps, where the condition decides the sample;
        ``weight_cap`` w weights each sample's MSE by min(1/alpha_bar_t, w) (v-prediction's weighting, capped). The
        simulator pretraining uses both: with plain eps-MSE the sim UNet learned to ignore its condition (issue 12,
        ``benchmarks/sim_ldm_condition.py``).
        """
        dev = z0.device
        b = len(z0)
        n_t = len(self.alphas_cumprod)
        noise = torch.randn(z0.shape, generator=generator).to(dev, z0.dtype)
        u = torch.rand(b, generator=generator)
        t = (u ** (1.0 / float(t_power)) * n_t).long().clamp(max=n_t - 1).to(dev)
        keep = (torch.rand(b, generator=generator) >= self.uncond_prob).to(dev)
        a = self.alphas_cumprod.to(dev)[t].view(b, 1, 1, 1).to(z0.dtype)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        weight = None if weight_cap is None else (1.0 / a.view(b).float()).clamp(max=float(weight_cap))
        total = 0.0
        for cond in (c, c_gt):
            if cond is None:
                continue
            h, h1 = self.condition(cond)
            h = h * keep.view(b, 1, 1).to(h.dtype)
            err = (self.eps(z_t, t, h, h1).float() - noise.float()) ** 2
            total = total + (err.mean() if weight is None else (weight * err.mean((1, 2, 3))).mean())
        return total

    # -- sampling ---------------------------------------------------------------------------
    @property
    def device(self):
        return next(self.unet.parameters()).device

    def latent_shape(self, n: int, frames: int) -> tuple[int, int, int, int]:
        """(n, latent channels, latent frames, latent bins) of n clips of ``frames`` mel frames (padded)."""
        f = self.vae_factor
        return (n, int(self.vae.config.latent_channels), self.padded_frames(frames) // f, self.n_mels // f)

    def sample_latents(self, c, frames: int, steps: int = 200, guidance_scale: float = 2.5, generator=None):
        """DDIM (eta 0) from N(0, I) given c (B, N, cond_dim); classifier-free guidance against zeros."""
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(int(steps))
        dev = self.device
        shape = self.latent_shape(len(c), frames)
        dtype = next(self.unet.parameters()).dtype
        z = torch.randn(shape, generator=generator, dtype=torch.float32).to(dev, dtype) * sched.init_noise_sigma
        with torch.no_grad():
            h, h1 = self.condition(c.to(dev))
            guided = guidance_scale is not None and guidance_scale != 1.0
            if guided:
                h = torch.cat([torch.zeros_like(h), h])
                h1 = None if h1 is None else torch.cat([h1, h1])
            for t in sched.timesteps:
                inp = torch.cat([z, z]) if guided else z
                inp = sched.scale_model_input(inp, t)
                e = self.eps(inp, t.to(dev), h, h1)
                if guided:
                    e_u, e_c = e.chunk(2)
                    e = e_u + guidance_scale * (e_c - e_u)
                z = sched.step(e, t, z, eta=0.0).prev_sample
        return z

    def generate(self, c, frames: int, steps: int = 200, guidance_scale: float = 2.5, seed: int = 0,
                 batch_size: int = 8):
        """c (n, N, cond_dim) -> mel (n, n_mels, frames) float32, batched; the seed fixes every batch's noise."""
        out = []
        gen = torch.Generator().manual_seed(int(seed))
        for start in range(0, len(c), batch_size):
            cb = torch.as_tensor(np.asarray(c[start : start + batch_size]), dtype=torch.float32)
            z = self.sample_latents(cb, frames, steps, guidance_scale, gen)
            out.append(self.latent_to_mel(z, frames).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

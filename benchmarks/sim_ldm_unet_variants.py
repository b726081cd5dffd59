"""Can another sim UNet recipe sample what its condition says? (issue 12's open item; not part of the test run)

    BENCH_DATA=<data root with trained sim weights> python benchmarks/sim_ldm_unet_variants.py --variant v-pred
    BENCH_DATA=... python benchmarks/sim_ldm_unet_variants.py --sampling     # the committed UNet, other samplers

``sim_ldm_ceiling.py`` showed that the fitted Fine-LDM / C2F-LDM UNet, sampling from the test clips' ground-truth
AudioMAE features, scores PCC at the chance row's level on sim-music and sim-speech. This retrains only the sim UNet
(``simtrain.train_audioldm2``'s clips and settings, its batches and noise drawn afresh; the weights folder's sim VAE and sim AudioMAE, so no VAE
retraining) under one ``--variant`` and measures, with no brain data, on fresh held-out clips
(``simtrain.world(777, 40)``):

- ``samples``: DDIM 5 steps (the tiny profile) from the ground-truth features at guidance 2 and 5, as (pairwise
  identification against the true vocoder mels, mean PCC with them);
- ``x0``: the UNet's one-step estimate of the clean latent from the true latent noised to t = 800 and 950 (the
  steps where the condition alone must decide the sample), as (identification of its decoded mel, latent MSE); the
  clean latents' variance is given beside it (an estimate with a larger MSE is worse than predicting zeros);
- ``ridge``: a per-kind ridge map from the flattened features to the latent (what the features hold).

``--sampling`` measures the committed sim UNet (no training) at 2, 3, 5, 10 and 20 DDIM steps, "leading" (the
scheduler's, as AudioLDM2) and "trailing" timestep spacing. One JSON line per result on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KINDS = ("sound", "music", "speech")
_CROSS3 = {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
           "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
           "block_out_channels": [16, 32, 64], "cross_attention_dim": [[None, 32, 8]] * 3}
VARIANTS = {
    "committed": {},  # LDM_CONFIG as trained by `bench weights train-sim`
    "epochs-30": {"unet_epochs": 30},
    "one-cycle": {"unet_lr": 4e-3, "one_cycle": True},  # OneCycle to 4e-3 over the same 15 epochs
    "wide": {"unet": {"block_out_channels": [32, 64], "attention_head_dim": 4}},
    "three-levels": {"unet": _CROSS3},
    "x0-weighting": {"weight_cap": 1000.0},  # min(1/alpha_bar, 1000): about the x0 error's weighting
    "x0-weighting-uniform-t": {"weight_cap": 1000.0, "t_power": 1.0},
    "v-pred": {"prediction": "v_prediction", "t_power": 1.0},
    "v-pred-coords": {"prediction": "v_prediction", "t_power": 1.0, "coords": True, "unet": {"in_channels": 10}},
    "coords": {"coords": True, "unet": {"in_channels": 10}},
}
"""coords: two extra input planes, the latent pixel's time and frequency position in [-1, 1] (CoordConv): the tiny
UNet's receptive field is too small for its cross-attention queries to know where in the clip they are."""


def _pcc(pred, true) -> float:
    """Mean per-sample PCC of mels (n, 64, frames), as the suite's ``pcc`` metric computes it, to 3 digits."""
    from metrics.spectral import pcc

    return round(float(np.nanmean(pcc(np.asarray(pred), np.asarray(true)))), 3)


def _latent_diffusion(unet, vae, vocoder, scheduler, *, coords: bool = False, **kwargs):
    """``LatentDiffusion``, or with ``coords`` one whose UNet input also gets the variant's two coordinate planes
    (the latent pixel's time and frequency position in [-1, 1]); training, x0 estimates and
    ``LatentDiffusion.generate`` all go through its ``eps``."""
    import torch

    from bench.networks.audioldm2 import LatentDiffusion

    class _WithCoords(LatentDiffusion):
        def eps(self, z_t, t, h, h1):
            b, _, frames, bins = z_t.shape
            ct = torch.linspace(-1, 1, frames).view(1, 1, frames, 1).expand(b, 1, frames, bins)
            cf = torch.linspace(-1, 1, bins).view(1, 1, 1, bins).expand(b, 1, frames, bins)
            return super().eps(torch.cat([z_t, ct.to(z_t), cf.to(z_t)], 1), t, h, h1)

    return (_WithCoords if coords else LatentDiffusion)(unet, vae, vocoder, scheduler, **kwargs)


def _samples(ldm, c, mels, steps: int) -> dict:
    """{guidance: (identification, PCC)} of ``steps``-step DDIM samples from features c against the true mels,
    at guidance 2 and 5, the noise seeded with 0 (all clips one batch)."""
    from sim_ldm_condition import mean_identification

    out = {}
    for g in (2.0, 5.0):
        m = ldm.generate(c, mels.shape[2], steps, g, seed=0, batch_size=len(c))
        out[g] = (mean_identification(m, mels), _pcc(m, mels))
    return out


def _data(ldm, mae, n: int):
    """Training latents and features of simtrain.world(0, n), held-out features and true mels of
    world(777, 40), per kind."""
    import torch

    from bench.networks import simtrain as S
    from sim_ldm_condition import _prepare

    _, e_conds, e_mels = _prepare(ldm, mae, S.world(777, 40), list(KINDS))
    if not n:
        return {}, {}, e_conds, e_mels
    images, conds, _ = _prepare(ldm, mae, S.world(0, n), list(KINDS))
    with torch.no_grad():
        latents = {k: torch.cat([ldm.vae.encode(images[k][i : i + 96]).latent_dist.mode() for i in range(0, n, 96)])
                   * ldm.scaling_factor for k in KINDS}
    return latents, conds, e_conds, e_mels


def _x0_rows(ldm, prediction: str, e_conds, e_mels) -> dict:
    import torch

    from sim_ldm_condition import mean_identification

    probe = torch.Generator().manual_seed(5)
    out = {}
    for k in KINDS:
        z0 = ldm.mel_to_latent(e_mels[k])
        row = {"latent_variance": round(float(z0.var()), 3)}
        for t in (800, 950):
            a = ldm.alphas_cumprod[t]
            z_t = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=probe)
            with torch.no_grad():
                o = ldm.eps(z_t, torch.full((len(z0),), t), *ldm.condition(e_conds[k]))
            x0 = a.sqrt() * z_t - (1 - a).sqrt() * o if prediction == "v_prediction" else (z_t - (1 - a).sqrt() * o) / a.sqrt()
            row[str(t)] = (mean_identification(ldm.latent_to_mel(x0, e_mels[k].shape[2]), e_mels[k]),
                           round(float(((x0 - z0) ** 2).mean()), 3))
        out[k] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="committed")
    ap.add_argument("--sampling", action="store_true", help="the committed sim UNet at other DDIM steps and spacings")
    ap.add_argument("--epochs", type=int, help="UNet epochs instead of the variant's (a quick check of the script)")
    ap.add_argument("--clips", type=int, help="training clips per kind instead of the trainer's (a quick check)")
    args = ap.parse_args()

    import torch
    from diffusers import DDIMScheduler

    from bench.networks import simtrain as S
    from bench.networks.audioldm2 import build_ldm
    from sim_ldm_condition import mean_identification, ridge_latents

    torch.set_num_threads(1)  # as the trainer (one per core with --jobs 2)
    what = "benchmarks/sim_ldm_unet_variants.py"
    mae, _ = S.load_sim_audiomae(what)
    (unet, vae, vocoder, scheduler), _ = S.load_sim_ldm(what)
    clock = time.perf_counter()
    if args.sampling:
        ldm = _latent_diffusion(unet, vae, vocoder, scheduler, cond_dim=mae.config.embed_dim).eval()
        _, _, e_conds, e_mels = _data(ldm, mae, 0)
        for spacing in ("leading", "trailing"):
            # a second LatentDiffusion on the same UNet: its condition projection is the identity (simtrain.ldm_arch
            # gives the UNet the sim AudioMAE's width), so it holds no weights of its own
            spaced = _latent_diffusion(unet, vae, vocoder, DDIMScheduler.from_config(scheduler.config, timestep_spacing=spacing),
                                       cond_dim=mae.config.embed_dim).eval()
            for steps in (2, 3, 5, 10, 20):
                row = {k: _samples(spaced, e_conds[k], e_mels[k], steps) for k in KINDS}
                print(json.dumps({"sampling": {"spacing": spacing, "steps": steps}, "samples": row}), flush=True)
        return
    knobs = dict(S.LDM_CONFIG)
    over = copy.deepcopy(VARIANTS[args.variant])
    arch = S.ldm_arch()
    arch["unet"].update(over.pop("unet", {}))
    prediction = over.pop("prediction", "epsilon")
    coords, one_cycle = over.pop("coords", False), over.pop("one_cycle", False)
    knobs.update(over)
    arch["scheduler"]["prediction_type"] = prediction
    torch.manual_seed(0)
    unet, _, _, scheduler = build_ldm(arch)
    ldm = _latent_diffusion(unet, vae, vocoder, scheduler, coords=coords, cond_dim=mae.config.embed_dim,
                            uncond_prob=knobs["uncond"])
    if args.epochs is not None:
        knobs["unet_epochs"] = args.epochs
    knobs["n_per_kind"] = args.clips or knobs["n_per_kind"]
    latents, conds, e_conds, e_mels = _data(ldm, mae, knobs["n_per_kind"])
    data_s = time.perf_counter() - clock
    gen = torch.Generator().manual_seed(2)
    opt = torch.optim.AdamW(unet.parameters(), lr=knobs["unet_lr"], weight_decay=1e-2)
    n, batch = knobs["n_per_kind"], knobs["batch_size"]
    n_steps = knobs["unet_epochs"] * len(KINDS) * -(-n // batch)
    lr_plan = torch.optim.lr_scheduler.OneCycleLR(opt, knobs["unet_lr"], total_steps=n_steps, pct_start=0.1) if one_cycle else None

    def step(kind, idx):
        # LatentDiffusion.loss's t draw and weighting, against the scheduler's target (noise, or v)
        z0, c = latents[kind][idx], conds[kind][idx]
        b, n_t = len(z0), len(ldm.alphas_cumprod)
        noise = torch.randn(z0.shape, generator=gen)
        t = (torch.rand(b, generator=gen) ** (1.0 / knobs["t_power"]) * n_t).long().clamp(max=n_t - 1)
        a = ldm.alphas_cumprod[t].view(b, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        err = (ldm.eps(z_t, t, *ldm.condition(c)) - (a.sqrt() * noise - (1 - a).sqrt() * z0 if prediction == "v_prediction" else noise)) ** 2
        weight = 1.0 if prediction == "v_prediction" else (1.0 / a.view(b)).clamp(max=knobs["weight_cap"])
        loss = (weight * err.mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if lr_plan is not None:
            lr_plan.step()
        return float(loss.detach())

    clock = time.perf_counter()
    unet.train()
    history = S.interleaved_rounds(knobs["unet_epochs"], {k: n for k in KINDS}, batch, step, gen)
    unet.eval()
    train_s = time.perf_counter() - clock
    ridge = {k: mean_identification(ldm.latent_to_mel(ridge_latents(conds[k], latents[k], e_conds[k]), e_mels[k].shape[2]),
                                    e_mels[k]) for k in KINDS}
    samples = {k: _samples(ldm, e_conds[k], e_mels[k], 5) for k in KINDS}
    print(json.dumps({"variant": args.variant, "settings": VARIANTS[args.variant],
                      "unet_parameters": sum(p.numel() for p in unet.parameters()), "final_loss": history[-1],
                      "samples": samples, "x0": _x0_rows(ldm, prediction, e_conds, e_mels), "ridge": ridge,
                      "seconds": {"data": round(data_s, 1), "train": round(train_s, 1)}}), flush=True)


if __name__ == "__main__":
    main()

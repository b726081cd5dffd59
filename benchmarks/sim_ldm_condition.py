"""Does the simulator-pretrained AudioLDM2 UNet use its condition? (issue 12's open item; not part of the test run)

    BENCH_SIM_WEIGHTS=auto python benchmarks/sim_ldm_condition.py --out cond.json [--epochs 15] [--t-power 3]
        [--weight-cap 20] [--uncond 0] [--n-unet 480] [--standardise] [--ridge-only] [--clap]

Retrains the tiny VAE + UNet the way ``bench.networks.simtrain.train_audioldm2`` does (same clips, seed, VAE
settings, kinds interleaved per batch, ``LatentDiffusion.loss``), each knob defaulting to the trainer's
``LDM_CONFIG``, then measures, on fresh held-out clips (``simtrain.world(777, n_eval)``) and with no brain data
involved:

1. ``ridge``: the ceiling -- a ridge map from the flattened ground-truth AudioMAE features to the VAE latent,
   pairwise identification of its decoded mel against the true vocoder mel (the condition's information);
2. ``loss_gap``: on training clips, the UNet's epsilon MSE at fixed timesteps with the clip's own condition, a
   shuffled one (rolled by one clip) and the all-zero one (a UNet that ignores c gives three equal numbers);
3. ``identification``: the UNet's samples (DDIM 5 steps, as the tiny profile) given the ground-truth features,
   identified against the true mels at guidance 1, 2 and 5;
4. with ``--clap``, ``clap_identification``: the same mels vocoded (Griffin-Lim, 32 iterations) and identified
   among the held-out clips by their sim-CLAP audio embeddings, as the suite's ``clap:ident`` does: the true mel
   (the vocoder's ceiling), the VAE round trip, the ridge map and the UNet's samples at guidance 2 (does the
   generated audio carry what the clip is, not only its spectral envelope?).

Knobs: ``--n-unet`` UNet training clips per kind; ``--n-vae`` and ``--vae-epochs`` the VAE's clips per kind (the
first ones) and epochs (default: the trainer's ``n_used`` and ``vae_epochs``);
``--t-power p`` draws t = T u^(1/p) (p > 1 favours noisy steps, where c matters); ``--weight-cap w`` weights each
sample's eps-MSE by min(1/alpha_bar_t, w) (the v-prediction weighting, capped; 1 = plain eps loss);
``--standardise`` z-scores the features per channel (training statistics) before the UNet; ``--uncond`` is the
condition dropout. The JSON (written atomically) holds the knobs, the numbers and the seconds each stage took.
(The committed 2026-12-05 results predate the trainer's adoption of these settings; their VAE trained on all 480
clips per kind.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMESTEPS = (100, 300, 500, 700, 900)


def _prepare(ldm, mae, data: dict, kinds: list[str]):
    """{kind: padded mel image (n, 1, T', 64)}, {kind: features (n, N, C)}, {kind: vocoder mel (n, 64, T)}."""
    import torch
    import torch.nn.functional as F

    from bench.audio import vocoder_mel
    from bench.fbank import n_patch_for_seconds
    from bench.networks.audioldm2 import LOG_FLOOR

    images, conds, mels = {}, {}, {}
    for kind in kinds:
        audio = data[kind]["audio"]
        mel = torch.from_numpy(vocoder_mel(audio))
        mels[kind] = mel
        pad = ldm.padded_frames(mel.shape[2]) - mel.shape[2]
        images[kind] = F.pad(mel, (0, pad), value=LOG_FLOOR).transpose(1, 2)[:, None]
        n_patch = min(n_patch_for_seconds(audio.shape[1] / 16_000, max_frames=mae.config.img_size[0]),
                      mae.config.num_patches)
        conds[kind] = mae.features(audio, n_patch).float()
    return images, conds, mels


def ridge_latents(conds, latents, e_conds):
    """What the features hold: a ridge (alpha 10) from flattened training features (n, N, d) to latents
    (n, C, T, F), applied to held-out features (m, N, d); returns (m, C, T, F) float32 latents."""
    import torch
    from sklearn.linear_model import Ridge

    fit = Ridge(alpha=10.0).fit(conds.flatten(1).numpy(), latents.flatten(1).numpy())
    return torch.from_numpy(fit.predict(e_conds.flatten(1).numpy())).float().view(len(e_conds), *latents.shape[1:])


def mean_identification(pred, true) -> float:
    """Mean pairwise identification of pred (n, ...) against true (n, ...), to 3 digits (also used by
    park_sim_bottleneck.py)."""
    from metrics.identification import pairwise_identification

    return round(float(np.nanmean(pairwise_identification(np.asarray(pred), np.asarray(true)))), 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", default="sound,music,speech")
    ap.add_argument("--n-unet", type=int, default=None, help="UNet training clips per kind (default: the trainer's)")
    ap.add_argument("--n-eval", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=None, help="UNet epochs (default: the trainer's)")
    ap.add_argument("--vae-epochs", type=int, default=None, help="VAE epochs (default: the trainer's)")
    ap.add_argument("--n-vae", type=int, default=None, help="VAE training clips per kind (default: the trainer's)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--t-power", type=float, default=None)
    ap.add_argument("--weight-cap", type=float, default=None)
    ap.add_argument("--uncond", type=float, default=None)
    ap.add_argument("--standardise", action="store_true")
    ap.add_argument("--ridge-only", action="store_true")
    ap.add_argument("--clap", action="store_true", help="also identify by sim-CLAP embeddings of the vocoded mels")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from bench.networks import simtrain as S
    from bench.networks.audioldm2 import LatentDiffusion, build_ldm

    torch.set_num_threads(1)
    cfg = dict(S.LDM_CONFIG)
    n_unet = args.n_unet or cfg["n_per_kind"]
    epochs = cfg["unet_epochs"] if args.epochs is None else args.epochs
    vae_epochs = cfg["vae_epochs"] if args.vae_epochs is None else args.vae_epochs
    n_vae = min(args.n_vae or cfg["n_used"], n_unet)
    lr = args.lr or cfg["unet_lr"]
    t_power = cfg["t_power"] if args.t_power is None else args.t_power
    weight_cap = cfg["weight_cap"] if args.weight_cap is None else args.weight_cap
    uncond = cfg["uncond"] if args.uncond is None else args.uncond
    kinds = args.kinds.split(",")
    knobs = {"kinds": kinds, "n_unet": n_unet, "n_vae": n_vae, "n_eval": args.n_eval, "unet_epochs": epochs,
             "unet_lr": lr, "t_power": t_power, "weight_cap": weight_cap, "uncond": uncond,
             "standardise": args.standardise, "seed": args.seed, "vae_epochs": vae_epochs}
    out = {"knobs": knobs, "seconds": {}}
    clock = time.perf_counter()
    mae, _ = S.load_sim_audiomae("benchmarks/sim_ldm_condition.py")
    torch.manual_seed(args.seed)
    unet, vae, vocoder, scheduler = build_ldm(S.ldm_arch())
    ldm = LatentDiffusion(unet, vae, vocoder, scheduler, cond_dim=mae.config.embed_dim, uncond_prob=uncond)
    train = S.world(args.seed, n_unet)
    images, conds, _ = _prepare(ldm, mae, train, kinds)
    held_out = S.world(777, args.n_eval)
    e_images, e_conds, e_mels = _prepare(ldm, mae, held_out, kinds)
    out["seconds"]["data"] = round(time.perf_counter() - clock, 1)
    gen = torch.Generator().manual_seed(args.seed + 2)

    def rounds(n_epochs, step, n_per_kind):
        return S.interleaved_rounds(n_epochs, {k: n_per_kind for k in kinds}, cfg["batch_size"], step, gen)

    clock = time.perf_counter()
    vae.requires_grad_(True).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["vae_lr"], weight_decay=1e-4)

    def vae_step(kind, idx):
        x = images[kind][idx, :, : cfg["vae_frames"]]
        dist = vae.encode(x).latent_dist
        rec = vae.decode(dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)).sample
        loss = F.mse_loss(rec, x) + cfg["kl_weight"] * dist.kl().mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    out["vae_loss"] = rounds(vae_epochs, vae_step, n_vae)
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        latents = {k: vae.encode(images[k]).latent_dist.mode() * ldm.scaling_factor for k in kinds}
        e_latents = {k: vae.encode(e_images[k]).latent_dist.mode() * ldm.scaling_factor for k in kinds}
    out["seconds"]["vae"] = round(time.perf_counter() - clock, 1)

    out["ridge"], out["vae_identification"], ridge_mels, vae_mels = {}, {}, {}, {}
    for k in kinds:
        ridge_mels[k] = ldm.latent_to_mel(ridge_latents(conds[k], latents[k], e_conds[k]), e_mels[k].shape[2])
        vae_mels[k] = ldm.latent_to_mel(e_latents[k], e_mels[k].shape[2])
        out["ridge"][k] = mean_identification(ridge_mels[k], e_mels[k])
        out["vae_identification"][k] = mean_identification(vae_mels[k], e_mels[k])
    if not args.ridge_only:
        if args.standardise:
            flat = torch.cat([conds[k].flatten(0, 1) for k in kinds])
            mu, sd = flat.mean(0), flat.std(0)
            conds = {k: (v - mu) / sd for k, v in conds.items()}
            e_conds = {k: (v - mu) / sd for k, v in e_conds.items()}
        clock = time.perf_counter()
        ldm.unet.train()
        opt = torch.optim.AdamW(ldm.unet.parameters(), lr=lr, weight_decay=1e-2)

        def unet_step(kind, idx):
            loss = ldm.loss(latents[kind][idx], conds[kind][idx], generator=gen, t_power=t_power, weight_cap=weight_cap)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        out["unet_loss"] = rounds(epochs, unet_step, n_unet)
        ldm.eval()
        out["seconds"]["unet"] = round(time.perf_counter() - clock, 1)
        out["loss_gap"], out["identification"] = {}, {}
        probe = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for k in kinds:
                z0, c = latents[k][:64], conds[k][:64]
                rows = {}
                for step in TIMESTEPS:
                    noise = torch.randn(z0.shape, generator=probe)
                    t = torch.full((len(z0),), step)
                    a = ldm.alphas_cumprod[t].view(-1, 1, 1, 1)
                    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
                    rows[step] = {name: round(float(F.mse_loss(ldm.eps(z_t, t, *ldm.condition(cc)), noise)), 5)
                                  for name, cc in (("own", c), ("shuffled", c.roll(1, 0)), ("zero", torch.zeros_like(c)))}
                out["loss_gap"][k] = rows
        samples = {}
        for k in kinds:
            samples[k] = {g: ldm.generate(e_conds[k], e_mels[k].shape[2], steps=5, guidance_scale=g, seed=0) for g in (1.0, 2.0, 5.0)}
            out["identification"][k] = {str(g): mean_identification(mel, e_mels[k]) for g, mel in samples[k].items()}
    if args.clap:
        from bench.networks.cache import load_network
        from bench.networks.vocoder import get_vocoder
        from metrics.embeddings import embed_audio

        clock = time.perf_counter()
        net = load_network("clap", "benchmarks/sim_ldm_condition.py --clap", "cpu", simulated=True)
        voc = get_vocoder("griffin-lim", n_iter=32, seed=0)
        out["clap_identification"] = {}
        for k in kinds:
            audio = held_out[k]["audio"]
            ref = embed_audio(net, audio)["embedding"]

            def by_clap(mel):
                return mean_identification(embed_audio(net, voc.mel_to_audio(np.asarray(mel), audio.shape[1]))["embedding"], ref)

            row = {"vocoded_truth": by_clap(e_mels[k]), "vae": by_clap(vae_mels[k]), "ridge": by_clap(ridge_mels[k])}
            if not args.ridge_only:
                row["unet_guidance_2"] = by_clap(samples[k][2.0])
            out["clap_identification"][k] = row
        out["seconds"]["clap"] = round(time.perf_counter() - clock, 1)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps({k: out.get(k) for k in ("knobs", "ridge", "identification", "clap_identification", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CUDA checks and timings for a machine with a GPU (not part of the test run; CI has no GPU).

    python benchmarks/cuda_check.py --out cuda_check.json [--scale 1.0] [--device cuda]

1. ``RidgeGCV`` at the paper's Brain2Sound size (X 14,400 x 6,662 -> 25,664 outputs, 7 alphas) on the
   device against the two products X^T X and X^T Y on the same device; coefficients compared with the
   float64 CPU fit on a row/column subsample.
2. ``SelectiveRidge`` (14,400 x 6,662 -> 512, n_feat 500, alpha 100) on the device against fastl2lir's
   default fit on the CPU on the same arrays: time and max |dW|, |db|.
3. The full-size AudioLDM2 UNet + VAE + HiFiGAN (random weights): samples per second of the eq. 4 training
   step (AMP, batch 8, 4-s clips) and of DDIM sampling, and peak GPU memory.
4. Park et al.'s full decoding step on the device: ``SelectiveRidge(alpha=100, n_feat=500)`` on all 53,760 conv5_3
   units at Brain2Sound's size on the arrays of ``benchmarks/test_bench_park.py`` (``brain2sound_inputs``; its CPU
   run compares the fit with fastl2lir): fit time, its stages and peak GPU memory.

``--scale`` multiplies n, V and the outputs (e.g. 0.05 to try the script on a CPU). Each section
records its numbers or its error; the JSON is written atomically at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev):
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


def ridge_gcv(scale: float, dev) -> dict:
    import torch

    from bench.ridge import RidgeGCV

    n, V, m = int(14400 * scale), int(6662 * scale), int(25664 * scale)
    g = torch.Generator(device=dev).manual_seed(0)
    X = torch.randn(n, V, generator=g, device=dev)
    W = torch.randn(V, m, generator=g, device=dev) / V**0.5
    Y = X @ W + torch.randn(n, m, generator=g, device=dev)
    del W
    out = {"n": n, "V": V, "m": m}
    for _ in range(2):  # warm-up (cuBLAS handles, allocator), then the timed pair
        _, t_xtx = _timed(lambda: X.T @ X, dev)
        _, t_xty = _timed(lambda: X.T @ Y, dev)
    out.update(xtx_s=t_xtx, xty_s=t_xty)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model, t_fit = _timed(lambda: RidgeGCV(device=dev).fit(X, Y), dev)
    out.update(fit_s=t_fit, ratio_to_products=t_fit / (t_xtx + t_xty), alpha=float(model.alpha_),
               stages=dict(model.timings_))
    if dev.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    # parity: float64 CPU fit on a subsample (rows and columns) against the device float32 fit on it
    k = min(n, 2000), min(V, 800), min(m, 300)
    Xs, Ys = X[: k[0], : k[1]].cpu().numpy(), Y[: k[0], : k[2]].cpu().numpy()
    ref = RidgeGCV(device="cpu", dtype="float64").fit(Xs, Ys)
    got = RidgeGCV(device=dev).fit(Xs, Ys)
    out["parity_subsample"] = {"shape": k, "alpha_cpu64": float(ref.alpha_), "alpha_device32": float(got.alpha_),
                               "max_abs_dcoef": float(np.abs(ref.coef_ - got.coef_).max()),
                               "max_abs_coef": float(np.abs(ref.coef_).max())}
    return out


def selective_ridge(scale: float, dev, fastl2lir_path: str = "") -> dict:
    import torch

    from bench.ridge import SelectiveRidge

    n, V, m, n_feat = int(14400 * scale), int(6662 * scale), 512, max(1, int(500 * scale))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, V), dtype=np.float32)
    Y = (X[:, : min(V, 2000)] @ rng.standard_normal((min(V, 2000), m), dtype=np.float32) / 40
         + rng.standard_normal((n, m), dtype=np.float32)).astype(np.float32)
    out = {"n": n, "V": V, "m": m, "n_feat": n_feat, "alpha": 100.0}
    SelectiveRidge(alpha=100.0, n_feat=n_feat, device=dev).fit(X[:500], Y[:500, :8])  # warm-up
    model, t = _timed(lambda: SelectiveRidge(alpha=100.0, n_feat=n_feat, device=dev).fit(X, Y), dev)
    out.update(device_fit_s=t, stages=dict(model.timings_))
    # fastl2lir runs in a child process: it breaks on numpy >= 2.4, so ``fastl2lir_path`` can put an older
    # numpy first on that child's path without touching this process.
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/X.npy", X)
        np.save(f"{tmp}/Y.npy", Y)
        code = ("import sys, time, numpy as np, fastl2lir; X = np.load(sys.argv[1] + '/X.npy'); "
                "Y = np.load(sys.argv[1] + '/Y.npy'); t0 = time.perf_counter(); "
                f"m = fastl2lir.FastL2LiR().fit(X, Y, alpha=100.0, n_feat={n_feat}); t = time.perf_counter() - t0; "
                "np.save(sys.argv[1] + '/W.npy', np.asarray(m.W)); np.save(sys.argv[1] + '/b.npy', np.asarray(m.b)); "
                "print(t, np.__version__)")
        env = dict(os.environ)
        if fastl2lir_path:
            env["PYTHONPATH"] = fastl2lir_path + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, env=env)
        if proc.returncode:
            out["fastl2lir"] = "failed: " + proc.stderr.strip().splitlines()[-1]
            return out
        t_ref, np_version = proc.stdout.split()
        W, b = np.load(f"{tmp}/W.npy"), np.load(f"{tmp}/b.npy")
    out.update(fastl2lir_cpu_s=float(t_ref), fastl2lir_numpy=np_version, speedup=float(t_ref) / t)
    out["max_abs_dW"] = float(np.abs(W - model.coef_).max())
    out["max_abs_db"] = float(np.abs(b.reshape(-1) - model.intercept_).max())
    out["torch_threads"] = torch.get_num_threads()
    return out


def ldm_full_size(dev, steps: int = 3, ddim_steps: int = 20) -> dict:
    import torch

    from bench.networks.audioldm2 import LatentDiffusion, build_ldm

    torch.manual_seed(0)
    ld = LatentDiffusion(*build_ldm("paper"), cond_dim=768).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    b, frames, n_patch = 8, 401, 208  # Brain2Sound: 4-s clips, N_patch 208
    mel = torch.randn(b, 64, frames, device=dev) - 5.0
    z0 = ld.mel_to_latent(mel)
    c = torch.randn(b, n_patch, 768, device=dev)
    opt = torch.optim.AdamW(ld.trainable_parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")
    ld.train()

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
            loss = ld.loss(z0, c, c, generator=torch.Generator().manual_seed(1))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    step()  # warm-up
    losses, t = _timed(lambda: [step() for _ in range(steps)], dev)
    out = {"unet_params_M": sum(p.numel() for p in ld.unet.parameters()) / 1e6, "batch": b, "latent": list(z0.shape),
           "train_samples_per_s": b * steps / t, "train_losses": losses}
    ld.eval()
    mel_out, t = _timed(lambda: ld.generate(c.cpu().numpy(), frames, steps=ddim_steps, guidance_scale=2.5, seed=0,
                                            batch_size=b), dev)
    out.update(ddim_steps=ddim_steps, generate_samples_per_s=b / t, generated_shape=list(mel_out.shape),
               generated_finite=bool(np.isfinite(mel_out).all()))
    from bench.networks.vocoder import HifiGan

    hifigan = HifiGan(ld.vocoder, source="random-init", device=str(dev))
    wav, t = _timed(lambda: hifigan.mel_to_audio(mel_out, 64000), dev)
    out.update(hifigan_samples_per_s=b / t, audio_shape=list(wav.shape))
    if dev.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def park_decode(scale: float, dev) -> dict:
    import torch

    from bench.ridge import SelectiveRidge
    from test_bench_park import _sizes, brain2sound_inputs  # benchmarks/ is on sys.path when this runs as a script

    params = _sizes(scale)
    X, Y = brain2sound_inputs(params)
    out = {k: params[k] for k in ("n", "V", "m", "n_feat", "alpha", "presentations")}
    SelectiveRidge(alpha=params["alpha"], n_feat=params["n_feat"], device=dev).fit(X[:500], Y[:500, :8])  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model, t = _timed(lambda: SelectiveRidge(alpha=params["alpha"], n_feat=params["n_feat"], device=dev).fit(X, Y), dev)
    out.update(device_fit_s=t, stages=dict(model.timings_), coef_finite=bool(np.isfinite(model.coef_).all()))
    if dev.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def main() -> int:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: ridge,selective,ldm,park")
    ap.add_argument("--fastl2lir-path", default="", help="extra PYTHONPATH for the fastl2lir child (e.g. numpy < 2.4)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    report = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
              "cpu_threads": torch.get_num_threads(), "scale": args.scale}
    skip = set(filter(None, args.skip.split(",")))
    sections = [("ridge_gcv", "ridge", lambda: ridge_gcv(args.scale, dev)),
                ("selective_ridge", "selective", lambda: selective_ridge(args.scale, dev, args.fastl2lir_path)),
                ("ldm_full_size", "ldm", lambda: ldm_full_size(dev)),
                ("park_decode", "park", lambda: park_decode(args.scale, dev))]
    for key, short, fn in sections:
        if short in skip:
            continue
        t0 = time.perf_counter()
        try:
            report[key] = fn()
        except Exception as exc:  # record and go on: one failing section must not cost the others
            report[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        report[key]["section_s"] = time.perf_counter() - t0
        print(key, json.dumps(report[key], default=str)[:1500], flush=True)
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

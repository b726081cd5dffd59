"""What limits the LDM rows' PCC on the simulated data: the brain decoding, the sim UNet's sampling, or the sim VAE?
(issue 12's open item; not part of the test run)

    BENCH_DATA=<prepared sim data> python benchmarks/sim_ldm_ceiling.py --dataset sim-music --method fine_ldm > out.txt

Fits the method's tiny profile on one subject's training split (seed 0, the sim backbones of the data root's weights
folder), then scores on the test split, in the suite's domain (Griffin-Lim with the tiny profile's 4 iterations, then
the eval mel of the audio, as the ``pcc`` metric does) and in the vocoder-mel domain the LDM generates:

- the method's own output: samples from the brain-decoded condition, at guidance 2 (the tiny profile), 1 and 5;
- the same fitted UNet sampling from the *ground-truth* condition (the clip's own AudioMAE features), the most a
  perfect brain decoder could give it;
- the VAE round trip of the true mels (the ceiling of anything the UNet samples);
- references: the chance row (``methods.reference``: the test stimuli shuffled, seed 0) and the training clips'
  mean mel (no brain, no clip).

Each as the mean PCC and pairwise identification (``mean_identification``) against the true clips.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sim-music")
    ap.add_argument("--subject", default="sim01")
    ap.add_argument("--method", default="fine_ldm", choices=["fine_ldm", "c2f_ldm"])
    args = ap.parse_args()

    import torch

    from bench.audio import eval_mel
    from bench.datasets import get_dataset
    from bench.networks.vocoder import get_vocoder
    from bench.targets import clip_targets, vocoder_mels
    from methods import get_method
    from metrics.spectral import pcc
    from sim_ldm_condition import mean_identification  # benchmarks/ is on sys.path when this runs as a script

    ds = get_dataset(args.dataset)
    train, test = ds.load_split(args.subject, "train"), ds.load_split(args.subject, "test")
    cls = get_method(args.method)
    model = cls(**cls.profiles["tiny"])
    t0 = time.time()
    model.fit(train, device="cpu", random_state=0)
    print(args.dataset, args.subject, args.method, "fit", round(time.time() - t0, 1), "s", flush=True)

    truth = vocoder_mels(test)  # (n, 64, frames), one per test sample
    ref_eval = clip_targets(test, "eval_mel", eval_mel)
    clips = np.asarray(test.clip_index)
    first = np.unique(clips, return_index=True)[1]  # one sample per clip, for identification
    n_samples = test.clips.audio.shape[1]
    iters = int(model.griffin_lim_iters)

    def score(name, mel, audio=None):
        if audio is None:
            audio = get_vocoder("griffin-lim", n_iter=iters, seed=0).mel_to_audio(np.ascontiguousarray(mel, np.float32), n_samples)
        rec_eval = eval_mel(np.asarray(audio, dtype=np.float32))
        print(f"{name:26s} suite eval-mel: pcc {np.nanmean(pcc(rec_eval, ref_eval)):.3f} ident "
              f"{mean_identification(rec_eval[first], ref_eval[first]):.3f} | vocoder mel: pcc {np.nanmean(pcc(mel, truth)):.3f} "
              f"ident {mean_identification(mel[first], truth[first]):.3f}", flush=True)

    chance = get_method("chance")().fit(train, random_state=0).predict(test)  # the chance row's shuffle
    score("chance row (shuffled)", truth[np.asarray(chance.info["shuffled_rows"])], audio=chance.audio)
    score("training mean mel", np.broadcast_to(vocoder_mels(train).mean(0), truth.shape).copy())
    st = model.stage_
    c_dec = st.decode(test.fmri, semantic=model._semantic(test, test.fmri))
    c_gt = st.c_gt(test)
    frames = model.mel_shape_[1]
    for g in (2.0, 1.0, 5.0):
        for name, c in (("decoded", c_dec), ("ground-truth", c_gt)):
            mel = model.ldm_.generate(c, frames, steps=model.ddim_steps, guidance_scale=g, seed=0, batch_size=16)
            score(f"{name} condition, g {g:g}", mel)
    with torch.no_grad():
        rt = np.concatenate([model.ldm_.latent_to_mel(model.ldm_.mel_to_latent(torch.from_numpy(truth[i : i + 16])), frames)
                             .float().numpy() for i in range(0, len(truth), 16)])
    score("VAE round trip", rt)


if __name__ == "__main__":
    main()

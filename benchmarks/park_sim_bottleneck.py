"""Where Park et al.'s tiny (simulator-trained) pipeline loses the stimulus, without brain data.

On one simulated test split, in Park's own mel domain (80 x 336, [0, 1]), for every unique test clip:

- chance: the PCC between a clip's mel and the next clip's (what an unrelated real mel scores);
- codebook round trip: mel -> sim codebook codes -> decoded mel (the ceiling the GPT can reach);
- GPT from the ground-truth conv5_3: codes sampled from the sim GPT conditioned on the clip's own VGGishish
  conv5_3 (top-k 1, 4 and 64, seeded), decoded; with the share of codes equal to the round trip's;
- the same GPT conditioned on the next clip's conv5_3 (top-k 4), scored against this clip's and that clip's mel;
- teacher-forced on the held-out clips' own codes: cross-entropy (nats per code) and top-1 accuracy of the next code,
  given the clip's conv5_3 and given the next clip's, beside the entropy of the test codes' marginal (what a GPT
  that ignores both condition and context scores). A held-out loss far above the training loss with little gain
  from the right condition says the GPT memorised its few hundred training clips rather than learnt the mapping.

Each as mean PCC and pairwise identification (``metrics.identification``) against the clip's true mel. ``--gpt-epochs``
and ``--gpt-extra-clips`` retrain the sim networks with another GPT epoch count or number of extra sound clips (a
separate weights folder, by the config digest).

    BENCH_WEIGHTS=/tmp/w .venv/bin/python benchmarks/park_sim_bottleneck.py --out result.json [--gpt-epochs 120]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sim_ldm_condition import mean_identification  # benchmarks/ is on sys.path when this runs as a script


def _pcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean of the suite's PCC metric (per clip, over the flattened mel), to 3 digits."""
    from metrics.spectral import pcc

    return round(float(np.nanmean(pcc(pred, true))), 3)


def _teacher_forced(net, codes: np.ndarray, cond: np.ndarray) -> dict:
    """Held-out next-code cross-entropy (nats) and top-1 accuracy of the GPT given the true codes so far.
    codes: (n, H, W) int64 raster order; cond: (n, feat_dim, T_cond) float32."""
    import torch

    from bench.networks.specvqgan import next_code_logits

    seq = net.first_stage_permuter(torch.from_numpy(codes.reshape(len(codes), -1)))
    with torch.no_grad():
        logits = next_code_logits(net, seq, torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)))
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq.reshape(-1))
        acc = (logits.argmax(-1) == seq).float().mean()
    return {"cross_entropy": round(float(ce), 3), "top1": round(float(acc), 3)}


def _marginal_entropy(codes: np.ndarray) -> float:
    """Entropy (nats) of the codes' empirical distribution."""
    p = np.bincount(codes.ravel()) / codes.size
    p = p[p > 0]
    return round(float(-(p * np.log(p)).sum()), 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset", default="sim-sound")
    ap.add_argument("--subject", default="sim01")
    ap.add_argument("--gpt-epochs", type=int, default=None)
    ap.add_argument("--gpt-extra-clips", type=int, default=None, help="extra sound clips the GPT trains on")
    args = ap.parse_args(argv)

    import torch

    import bench.networks.park_sim as park_sim
    from bench.datasets import get_dataset
    from bench.io import write_json
    from bench.networks import specvqgan as S
    from bench.networks.vggishish import loop_to_window, park_mel
    from methods.park import load_networks

    if args.gpt_epochs is not None:
        park_sim.TRAINING["transformer"]["epochs"] = int(args.gpt_epochs)
    if args.gpt_extra_clips is not None:
        park_sim.TRAINING["gpt_extra_clips"]["sound"] = int(args.gpt_extra_clips)
    clock = time.perf_counter()
    nets = load_networks("sim", vocoder="griffin-lim", device="cpu", sim_seed=0)
    out: dict = {"dataset": args.dataset, "subject": args.subject, "training": park_sim.TRAINING,
                 "networks_s": round(time.perf_counter() - clock, 1)}
    test = get_dataset(args.dataset).load_split(args.subject, "test")
    windows = loop_to_window(test.clips.audio[np.asarray(test.unique_clips())], 16_000)
    mel = park_mel(windows)  # (u, 80, 336) in [0, 1]
    with torch.no_grad():
        codes = nets.net.first_stage_model.encode(torch.from_numpy(mel * 2 - 1).float()[:, None]).numpy()
    roundtrip = (S.decode_codes(nets.net, codes) + 1) / 2
    cond = S.conditioning_tokens(nets.features.conv5_3(windows))
    out["n_clips"] = len(mel)
    out["chance"] = {"pcc": _pcc(np.roll(mel, 1, 0), mel), "ident": 0.5}
    out["codebook_roundtrip"] = {"pcc": _pcc(roundtrip, mel), "ident": mean_identification(roundtrip, mel)}
    for k in (1, 4, 64):
        sampled = S.sample_codes(nets.net, cond, top_k=k, generator=torch.Generator().manual_seed(0))
        gen_mel = (S.decode_codes(nets.net, sampled) + 1) / 2
        out[f"gpt_from_true_conv5_3_topk{k}"] = {"pcc": _pcc(gen_mel, mel), "ident": mean_identification(gen_mel, mel),
                                                 "codes_as_roundtrip": round(float((sampled == codes).mean()), 3)}
    # The same GPT conditioned on the next clip's conv5_3: how much of the identification comes from the condition.
    shuffled = S.sample_codes(nets.net, np.roll(cond, 1, 0), top_k=4, generator=torch.Generator().manual_seed(0))
    gen_mel = (S.decode_codes(nets.net, shuffled) + 1) / 2
    out["gpt_from_other_clip_conv5_3_topk4"] = {"pcc": _pcc(gen_mel, mel), "ident": mean_identification(gen_mel, mel),
                                                "ident_vs_that_clip": mean_identification(gen_mel, np.roll(mel, 1, 0))}
    out["teacher_forced"] = {"true_conv5_3": _teacher_forced(nets.net, codes, cond),
                             "other_clip_conv5_3": _teacher_forced(nets.net, codes, np.roll(cond, 1, 0)),
                             "marginal_entropy": _marginal_entropy(codes)}
    _, entries = park_sim.sim_weights(0)
    out["networks"] = {name: e["description"] for name, e in entries.items()}
    write_json(Path(args.out), out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

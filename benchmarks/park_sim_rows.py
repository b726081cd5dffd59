"""Park et al.'s rows with another sim GPT training setting: what would its leaderboard PCC verdicts be?
(the measurement behind the 2026-12-07 Park trainer change; not part of the test run)

    python benchmarks/park_sim_rows.py --data-root <prepared data with sim weights> \
        --extra sound=320,music=0,speech=0 --gpt-epochs 40 > rows.txt

Sets ``park_sim.TRAINING``'s ``gpt_extra_clips`` (extra clips per kind the GPT trains on) and the transformer's
epochs in this process; any other setting than the trainer's changes the config digest, so the networks train into a
folder of their own (``<weights>/sim/park-s0-<digest>``) and the trainer's files are untouched. Then runs ``park``
and the chance row on the three simulated datasets (tiny profile, both subjects, seed 0) into
``<data root>/park-rows-<digest>`` and prints each cell's PCC and conv5_3 identification and every ``bench.learning``
verdict, as ``bench run --method park --dataset sim && bench learning`` would with that trainer setting, beside the
training time of the networks.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sim_ldm_vae_rows import print_rows  # benchmarks/ is on sys.path when this runs as a script


def _counts(text: str) -> dict[str, int]:
    pairs = (p.split("=") for p in text.split(","))
    return {kind.strip(): int(n) for kind, n in pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, type=Path, help="prepared simulated datasets (and their weights folder)")
    ap.add_argument("--extra", type=_counts, default=None, help="extra GPT clips per kind, e.g. sound=640,music=640,speech=640")
    ap.add_argument("--gpt-epochs", type=int, default=None, help="the GPT's epochs (trainer: TRAINING['transformer'])")
    args = ap.parse_args()
    os.environ["BENCH_DATA"] = str(args.data_root)
    os.environ["BENCH_SIM_WEIGHTS"] = "auto"

    from bench.networks import park_sim as P

    if args.extra is not None:
        kinds = P.TRAINING["gpt_extra_clips"]
        if set(args.extra) - set(kinds):
            raise SystemExit(f"--extra: unknown kind(s) {sorted(set(args.extra) - set(kinds))}; use {', '.join(kinds)}")
        P.TRAINING["gpt_extra_clips"] = {kind: args.extra.get(kind, 0) for kind in kinds}
    if args.gpt_epochs is not None:
        P.TRAINING["transformer"]["epochs"] = args.gpt_epochs
    print("setting", P.config_digest(), P.TRAINING, flush=True)
    t0 = time.time()
    folder, _ = P.sim_weights(0)
    print("networks", folder.name, round(time.time() - t0, 1), "s (0 if they were trained before)", flush=True)
    print_rows(["park"], args.data_root / f"park-rows-{P.config_digest()}", ["pcc", "ident:conv5_3"])
    print("total", round(time.time() - t0))


if __name__ == "__main__":
    main()

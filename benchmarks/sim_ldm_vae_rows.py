"""The LDM rows with another sim VAE setting: what would the leaderboards' Fine-LDM and C2F-LDM verdicts be?
(issue 12's open item; not part of the test run)

    python benchmarks/sim_ldm_vae_rows.py --weights /tmp/wvae --n-vae 240 [--vae-epochs 8] > rows.txt

``--weights`` is a weights folder of its own: copy a trained one there first (``bench weights train-sim`` in it)
so only the AudioLDM2 VAE + UNet retrain. Sets ``simtrain.LDM_CONFIG``'s ``n_used`` (the VAE's clips per world)
and ``vae_epochs`` in this process (a value other than the trainer's changes their config key, so the files land in a
folder of their own and the cache of the trainer's setting is untouched), retrains them, then runs Fine-LDM, C2F-LDM and the chance row on the
three simulated datasets (tiny profile, both subjects, seed 0) into ``<weights>/runs`` and prints each row's PCC,
mel identification, CLAP identification and CLAP score and every ``bench.learning`` verdict, as
``bench run --method fine_ldm,c2f_ldm --dataset sim && bench learning`` would with that trainer setting.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, type=Path, help="weights folder of this experiment")
    ap.add_argument("--n-vae", type=int, default=None, help="the VAE's clips per world (trainer: LDM_CONFIG n_used)")
    ap.add_argument("--vae-epochs", type=int, default=None, help="the VAE's epochs (trainer: LDM_CONFIG vae_epochs)")
    args = ap.parse_args()
    os.environ["BENCH_WEIGHTS"] = str(args.weights)
    os.environ["BENCH_SIM_WEIGHTS"] = "auto"

    from bench.networks import simtrain as S

    if args.n_vae is not None:
        S.LDM_CONFIG["n_used"] = args.n_vae
    if args.vae_epochs is not None:
        S.LDM_CONFIG["vae_epochs"] = args.vae_epochs
    t0 = time.time()
    out = S.train_sim(["audioldm2"], seed=0, log=print)
    print("train", round(time.time() - t0), {e: r["sha256"][:12] for e, r in out.items()}, flush=True)
    print_rows(["fine_ldm", "c2f_ldm"], args.weights / "runs", ["pcc", "ident:mel", "clap:ident", "clap"])
    print("total", round(time.time() - t0))


def print_rows(methods: list[str], runs: Path, keys: list[str]) -> None:
    """Run ``methods`` and the chance row on the three simulated datasets (tiny profile, both subjects, seed 0) into
    ``runs``; print each record's ``keys`` (metric values, None where not computed) and every bench.learning verdict."""
    from bench.learning import verdicts
    from bench.runner import plan_cells, run_cells

    cells = plan_cells([*methods, "chance"], ["sim-sound", "sim-music", "sim-speech"], ["sim01", "sim02"], [0], "tiny")
    records = [o.record for o in run_cells(cells, runs=runs, progress=False, echo=print).outcomes]
    for r in records:
        c, m = r["config"], r["metrics"]
        values = [(key, round(m[key]["value"], 3) if m.get(key, {}).get("status") == "ok" else None) for key in keys]
        print(c["dataset"], c["method"], c["subject"], *(f"{k} {v}" for k, v in values), flush=True)
    for v in verdicts(records):
        print("VERDICT", "learns" if v.passed else "FAILS ", v.where, v.check, v.detail, flush=True)


if __name__ == "__main__":
    main()

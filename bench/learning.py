"""Does a method learn? Verdicts on finished records, measured against the chance row of the same split.

A method's cell (dataset, subject, seed) is compared with the ``chance`` cell of the same split (the test stimuli
shuffled, ``methods/reference.py``):

- ``pcc``: the 95 % bootstrap CI (seed 0) of the per-sample difference PCC(method) - PCC(chance) lies above 0.
  Paired, because both rows score the same test stimuli: the unpaired reading (method CI above chance CI) would
  also count the chance row's own sampling spread twice.
- ``probe:semantic``: methods with a semantic stage; the SVM probe on the decoded CLAP embeddings beats its chance
  level (the majority-class rate the probe reports).
- ``ident:mel``: methods that generate with a diffusion model (Fine-LDM, C2F-LDM); pairwise identification of the
  reconstructions' eval mels above 0.6, i.e. the generated audio depends on the brain.
- ``clap:ident``: the same methods, the same identification on the reconstructions' CLAP audio embeddings (does the
  audio carry what the clip is, rather than its spectrum?); only where CLAP weights scored the record.

The verdicts are facts about the records, never tuned: ``bench check`` records them with the golden values, so a
change in either direction shows as drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANCE_METHOD = "chance"
IDENT_THRESHOLD = 0.6
GENERATIVE = ("fine_ldm", "c2f_ldm")
"""Methods whose output is sampled by a diffusion model: their ident:mel and clap:ident are checked against IDENT_THRESHOLD."""


@dataclass(frozen=True)
class Verdict:
    where: str  # "dataset/method/subject/seed<k>"
    check: str  # "pcc", "probe:semantic", "ident:mel" or "clap:ident"
    passed: bool
    detail: str

    def line(self) -> str:
        return f"  {'learns' if self.passed else 'FAILS '}  {self.where:<36} {self.check:<15} {self.detail}"


def _cell_key(record: dict) -> tuple:
    c = record["config"]
    return (c["dataset"], c["dataset_version"], c["subject"], int(c["seed"]), c["profile"], c["scale"])


def verdicts(records: list[dict]) -> list[Verdict]:
    """Verdicts for every non-reference record whose split has a chance record; sorted by where, check."""
    from bench.stats import bootstrap_ci
    from methods.reference import REFERENCE_METHODS

    chance = {_cell_key(r): r for r in records if r["config"]["method"] == CHANCE_METHOD}
    out = []
    for r in records:
        k = r["config"]
        if k["method"] in REFERENCE_METHODS or _cell_key(r) not in chance:
            continue
        where = f"{k['dataset']}/{k['method']}/{k['subject']}/seed{k['seed']}"
        m, c = r["metrics"], chance[_cell_key(r)]["metrics"]
        if m.get("pcc", {}).get("status") == "ok" and c.get("pcc", {}).get("status") == "ok":
            diff = np.asarray(m["pcc"]["per_sample"], float) - np.asarray(c["pcc"]["per_sample"], float)
            lo, hi = bootstrap_ci(diff)
            out.append(Verdict(where, "pcc", bool(lo > 0), f"PCC - chance PCC {np.nanmean(diff):+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}]"))
        else:
            out.append(Verdict(where, "pcc", False, "PCC unavailable"))
        probe = m.get("probe:semantic")
        if probe is not None:
            ok = probe.get("status") == "ok"
            level = (probe.get("extra") or {}).get("chance")
            passed = ok and level is not None and probe["value"] > level
            out.append(Verdict(where, "probe:semantic", bool(passed),
                               f"accuracy {probe['value']:.3f} vs chance {level:.3f}" if ok and level is not None else "unavailable"))
        if k["method"] in GENERATIVE:
            # ident:mel is always scored, so its absence fails; clap:ident needs CLAP weights: without them the
            # record says why, and there is no verdict
            for key, required in (("ident:mel", True), ("clap:ident", False)):
                ident = m.get(key, {})
                ok = ident.get("status") == "ok"
                if ok or required:
                    out.append(Verdict(where, key, bool(ok and ident["value"] > IDENT_THRESHOLD),
                                       f"identification {ident['value']:.3f} vs {IDENT_THRESHOLD}" if ok else "unavailable"))
    return sorted(out, key=lambda v: (v.where, v.check))

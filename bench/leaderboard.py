"""Leaderboards: markdown tables laid out like the paper's Tables 1-2, built from run records only.

Per dataset: one row per (method, profile), the mean over subjects of each subject's mean (seeds
averaged first) with the across-subject SD, best in bold by each metric's direction, the
paper's reported rows in a separate block, then per-subject tables with bootstrap 95% CIs over
test samples. Output depends only on the records (sorted, no timestamps), so the same records
give byte-identical markdown.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.io import write_text


def fmt_value(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def metric_value(metric: dict) -> float | None:
    if metric.get("status") != "ok":
        return None
    v = metric.get("value")
    return float(v) if v is not None else None


def _arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


_CONDITIONAL_KEYS = ("p_gt", "prompt")
_PROMPT_ORDER = {"none": 0, "text": 1, "audio": 2}


def row_name(rec: dict, drop: tuple = ()) -> str:
    info = rec.get("method_info", {})
    name = info.get("display_name") or rec["config"]["method"]
    extras = [rec["config"]["profile"]]
    extras += [f"{k}={v}" for k, v in sorted(rec["config"].get("overrides", {}).items()) if k not in drop]
    label = f"{name} ({'; '.join(extras)})"
    if info.get("backbone_weights") in ("random-init", "sim-pretrained"):
        label += f" [{info['backbone_weights']}]"
    return label


def is_random_init(rec: dict) -> bool:
    return rec.get("method_info", {}).get("backbone_weights") == "random-init"


_DISTRIBUTION_METRICS = ("fd", "fad")  # compare two sets of clips, not pairs


def is_reference(rec: dict) -> bool:
    return bool(rec.get("method_info", {}).get("reference"))


def _stale_note(rec: dict, current: dict) -> str | None:
    """Why a record is stale (computed by code other than the running code), or None when it is current.

    External reconstructions (``bench score``) have no suite code to compare and are never stale."""
    from bench import fingerprint

    code = rec.get("code")
    if rec.get("external"):
        return None
    method = rec["config"]["method"]
    if method not in current:
        try:
            current[method] = fingerprint.current(method)
        except Exception:  # a method no longer registered: its records cannot be current
            current[method] = None
    if code and code.get("fingerprint") == current[method]:
        return None
    if not code:
        return "computed before code fingerprints were recorded"
    try:
        changed = fingerprint.changed_modules(code, method)
    except Exception:
        changed = []
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return f"computed by other code (fingerprint {code['fingerprint'][:10]}; changed since: {shown or 'unknown'})"


def build_tables(records: list[dict]) -> dict[str, str]:
    """{dataset (with @scale when not default): markdown}."""
    from bench.datasets import catalogue
    from metrics import METRICS, metric_spec

    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        cfg = rec["config"]
        key = cfg["dataset"] if cfg.get("scale", "default") == "default" else f"{cfg['dataset']}@{cfg['scale']}"
        by_dataset[key].append(rec)
    cat = catalogue()["datasets"]
    out = {}
    for ds_key in sorted(by_dataset):
        recs = by_dataset[ds_key]
        ds_name = recs[0]["config"]["dataset"]
        out[ds_key] = _dataset_markdown(ds_key, cat.get(ds_name, {}), recs, cat, METRICS, metric_spec)
    return out


def _dataset_markdown(ds_key, spec, recs, cat, METRICS, metric_spec) -> str:
    from bench.stats import bootstrap_ci, spread

    # metric names present, paper columns first, then families (probe:*, ident:*) sorted
    from metrics.registry import paper_columns

    present = sorted({m for r in recs for m in r["metrics"]})
    paper_cols = []
    for m in paper_columns():
        if m in present or m in METRICS:
            # variants of a paper metric (e.g. kl:sigmoid) sit beside it
            paper_cols += [m] + [v for v in present if v.startswith(m + ":")]
    extra_cols = [m for m in present if m not in paper_cols]

    # (row) -> subject -> metric -> list over seeds
    table: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    per_sample: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    reasons: dict[str, set[str]] = defaultdict(set)  # metric -> distinct short n/a reasons
    compute: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    ceilings: dict[str, set[str]] = defaultdict(set)  # subject -> distinct noise ceilings (canonical JSON)
    versions, shas, n_seeds = set(), set(), defaultdict(set)
    random_rows: set[str] = set()
    sim_metrics: set[str] = set()  # computed with networks trained on the simulator
    feature_pcc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    conditional: dict[str, tuple] = {}  # row -> (row without p_gt / prompt, p_gt, prompt), for Table 3
    reference_rows: set[str] = set()
    # Shuffling the test stimuli leaves the set of clips unchanged: a set-level metric (FD, FAD) of the chance row
    # is 0 by construction and says nothing about a floor, so it is not shown.
    shuffled_rows: set[str] = set()
    set_level: set[str] = set()
    stale: dict[str, str] = {}
    current_fp: dict = {}
    for r in recs:
        row = row_name(r)
        info = r.get("method_info", {})
        if is_reference(r):
            reference_rows.add(row)
        if r["config"]["method"] == "chance":
            shuffled_rows.add(row)
        set_level.update(m for m, val in r["metrics"].items()
                         if m.split(":")[0] in _DISTRIBUTION_METRICS and val.get("status") == "ok")
        note = _stale_note(r, current_fp)
        if note:
            stale.setdefault(row, note)
        if "p_gt" in info and "prompt" in info:
            conditional[row] = (row_name(r, drop=_CONDITIONAL_KEYS), float(info["p_gt"]), str(info["prompt"]))
        if is_random_init(r):
            random_rows.add(row)
        if "acoustic_feature_pcc" in r.get("method_info", {}):
            feature_pcc[row][r["config"]["subject"]].append(float(r["method_info"]["acoustic_feature_pcc"]))
        subj = r["config"]["subject"]
        _collect_compute(compute[row][subj], r)
        if (r.get("dataset") or {}).get("noise_ceiling"):
            ceilings[subj].add(json.dumps(r["dataset"]["noise_ceiling"], sort_keys=True))
        n_seeds[row].add(r["config"]["seed"])
        versions.add(r["config"]["dataset_version"])
        shas.add(r["provenance"]["git"]["sha"][:10] + ("+dirty" if r["provenance"]["git"].get("dirty") else ""))
        for m, val in r["metrics"].items():
            table[row][subj][m].append(metric_value(val))
            if val.get("status") != "ok":
                reasons[m].add(_short_reason(val))
            elif val.get("extra", {}).get("weights_origin") == "sim-pretrained":
                sim_metrics.add(m)
            if "per_sample" in val:
                per_sample[row][subj][m].append(np.array([float(x) for x in val["per_sample"]], dtype=np.float64))

    def subject_mean(row, subj, m):
        vals = [v for v in table[row][subj].get(m, []) if v is not None]
        return float(np.mean(vals)) if vals else None

    all_rows = sorted(table)
    subjects = sorted({s for row in all_rows for s in table[row]})
    # Runs with random-initialised backbones are smoke tests: never ranked with pretrained ones.
    # Reference rows (ceiling and floor) are shown apart and never ranked with the methods.
    row_groups = [(r, h) for r, h in (
        ([r for r in all_rows if r not in random_rows and r not in reference_rows], ""),
        ([r for r in all_rows if r in reference_rows],
         " — reference rows: ground truth through the vocoder (ceiling), shuffled test stimuli (floor)"),
        ([r for r in all_rows if r in random_rows and r not in reference_rows],
         " — random-initialised backbones (smoke runs, not comparable)"),
    ) if r]

    def summary(row, m):
        if row in shuffled_rows and m in set_level:
            return None, None, 0
        vals = [subject_mean(row, s, m) for s in table[row]]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None, None, 0
        return float(np.mean(vals)), (spread(np.array(vals)) if len(vals) > 1 else None), len(vals)

    def best_rows(cols, value_of, rows):
        best = {}
        for m in cols:
            hib = metric_spec(m).higher_is_better
            vals = {row: value_of(row, m) for row in rows}
            vals = {k: v for k, v in vals.items() if v is not None and not math.isnan(v)}
            if vals:
                target = max(vals.values()) if hib else min(vals.values())
                best[m] = {k for k, v in vals.items() if v == target}
        return best

    lines = []
    title = spec.get("title", ds_key)
    lines.append(f"# {ds_key}: {title}")
    lines.append("")
    lines.append(
        f"Generated by `bench leaderboard` from {len(recs)} run record(s); dataset version(s) "
        f"{', '.join(sorted(versions))}; code at git {', '.join(sorted(shas))}. "
        "Each cell: mean over subjects of the per-subject mean (seeds averaged first), ± SD across subjects. "
        "**Bold** marks the best measured row."
    )
    if spec.get("kind") == "simulated":
        lines.append("")
        lines.append(
            f"Simulated data mirroring `{spec.get('mirrors', '?')}`: numbers are comparable between methods here, "
            "not with the paper's numbers on real fMRI."
        )
    if sim_metrics:
        lines.append("")
        lines.append(
            "Columns marked [sim-pretrained] are computed with small networks trained on the simulator "
            "(`bench weights train-sim`), not the published PANNs / VGGish / CLAP: comparable between methods here only."
        )
    lines.append("")
    lines.append(f"Listen and look: `bench report --dataset {ds_key}` writes `reports/{ds_key}/index.html` "
                 "(players and mel spectrograms per test stimulus, beside the ground truth).")
    lines.append("")

    def render(cols, heading, rows):
        best = best_rows(cols, lambda row, m: summary(row, m)[0], rows)
        header = ["Model"] + _headers(cols, metric_spec, sim_metrics) + ["subjects", "seeds"]
        out = [f"## {heading}", "", *_table_head(header)]
        for row in rows:
            ranked = len(rows) > 1 and not all(r in reference_rows for r in rows)
            cells, n_subj = _summary_cells(row, cols, summary, best if ranked else {})
            cells = [row + (" †" if row in stale else ""), *cells, str(n_subj or len(table[row])), str(len(n_seeds[row]))]
            out.append("| " + " | ".join(cells) + " |")
        return out

    for rows, suffix in row_groups:
        if suffix:
            lines.append("")
        lines += render(paper_cols, "Reconstruction (the paper's Tables 1-2 columns)" + suffix, rows)
    hidden = [m for m in paper_cols if m in set_level] if shuffled_rows else []
    if hidden:
        lines.append("")
        lines.append(f"Chance row: {', '.join(metric_spec(m).label for m in hidden)} compare the reconstructions and the "
                     "stimuli as two sets, which shuffling leaves equal (0 by construction), so they are not shown there.")
    if stale:
        lines.append("")
        lines.append("† stale: " + "; ".join(f"{row}: {note}" for row, note in sorted(stale.items()))
                     + ". Rerun `bench run` for these cells to recompute them with the current code.")
    lines += _na_footnotes(paper_cols, reasons, metric_spec)
    if extra_cols:
        lines.append("")
        for rows, suffix in row_groups:
            lines += render(extra_cols, "Decoded features: SVM probes and pairwise identification" + suffix, rows)
            lines.append("")
        lines.pop()
        lines += _na_footnotes(extra_cols, reasons, metric_spec)
        notes = []
        for m in extra_cols:
            chance = _collect_extra(recs, m, "chance")
            # The probe on ground-truth features is a reference level; decoded features can beat it.
            gt = _collect_extra(recs, m, "gt_features")
            if gt is None:
                gt = _collect_extra(recs, m, "upper_bound")  # records written before the rename
            bits = []
            if chance is not None:
                bits.append(f"chance {chance:.3f}")
            if gt is not None:
                above = [row for row in all_rows if row not in reference_rows and (summary(row, m)[0] or -math.inf) > gt]
                bits.append(f"ground-truth-feature reference {gt:.3f}"
                            + (f" (not an upper bound: {len(above)} row(s) exceed it)" if above else ""))
            if bits:
                notes.append(f"{m}: " + ", ".join(bits))
        if notes:
            lines.append("")
            lines.append("Reference levels (mean over records): " + "; ".join(notes) + ".")

    reported, where = _reported(spec, cat, "reported")
    if reported:
        lines += ["", f"## Reported in the paper ({reported.get('table', '')}) {where}", ""]
        lines += _reported_table(reported, "Model (reported)", metric_spec)
    if any(r["config"]["method"] == "park" for r in recs) and "Park et al." not in (reported or {}).get("rows", {}):
        lines += ["", "Park et al. has a reported row only for Brain2Sound (Table 1); here it runs through this "
                      "suite's adaptation (clips looped to its 4-s window), with nothing reported to compare with."]

    cuda = any((r.get("memory") or {}).get("cuda_peak_mb") is not None for r in recs)

    def subject_table(subj, cols, header, rows):
        out = _table_head(header + _COMPUTE_HEADERS[: 3 if cuda else 2])
        best = best_rows(cols, lambda row, m: subject_mean(row, subj, m), rows)
        for row in rows:
            cells = [row]
            for m in cols:
                mean = subject_mean(row, subj, m)
                txt = fmt_value(mean)
                samples = per_sample[row][subj].get(m)
                if mean is not None and samples:
                    lo, hi = bootstrap_ci(np.concatenate(samples), seed=0)
                    txt = f"{fmt_value(mean)} [{fmt_value(lo)}, {fmt_value(hi)}]"
                if mean is not None and row in best.get(m, set()) and len(rows) > 1:
                    txt = f"**{txt}**"
                cells.append(txt)
            cells += _compute_cells(compute[row][subj], cuda)
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines += _conditional_section(conditional, paper_cols, summary, best_rows, metric_spec, spec, cat)

    for rows, suffix in row_groups:
        rows = [row for row in rows if row in feature_pcc]
        if not rows:
            continue
        # Figure 8 of the paper: PCC between decoded and ground-truth AudioMAE features, per subject.
        lines.append("")
        lines.append("## Decoded acoustic features (the paper's Figure 8): PCC with the ground-truth AudioMAE latents" + suffix)
        lines.append("")
        lines.append("| Model | " + " | ".join(subjects) + " | mean |")
        lines.append("|" + "---|" * (len(subjects) + 2))
        for row in rows:
            per = [float(np.mean(feature_pcc[row][s])) if s in feature_pcc[row] else None for s in subjects]
            vals = [v for v in per if v is not None]
            lines.append("| " + " | ".join([row] + [fmt_value(v) for v in per] + [fmt_value(float(np.mean(vals)) if vals else None)]) + " |")

    # per-subject tables
    lines.append("")
    lines.append("## Per subject")
    lines.append("")
    lines.append("Per-sample metrics: mean [bootstrap 95% CI of the mean over test samples, seeds pooled]; set-level metrics (FD, FAD, probes) without a CI. "
                 "Fit time: seconds to train, mean over seeds; peak memory: the largest over seeds, in MiB "
                 "(resident memory of the whole process during the cell, loaded libraries included).")
    for subj in subjects:
        lines.append("")
        lines.append(f"### {subj}")
        lines.append("")
        for nc in sorted(ceilings.get(subj, ())):
            lines += [_ceiling_line(json.loads(nc)), ""]
        cols = paper_cols + extra_cols
        header = ["Model"] + _headers(cols, metric_spec, sim_metrics)
        for rows, _suffix in row_groups:
            rows = [row for row in rows if subj in table[row]]
            if rows:
                lines += subject_table(subj, cols, header, rows) + [""]
        lines.pop()
    lines.append("")
    return "\n".join(lines)


_COMPUTE_HEADERS = ["fit s", "peak RSS MiB", "peak CUDA MiB"]


def _collect_compute(into: dict[str, list], rec: dict) -> None:
    """Fit seconds and peak memory of one record, appended per seed."""
    timing, memory = rec.get("timing") or {}, rec.get("memory") or {}
    for key, value in (("fit_s", timing.get("fit_s")), ("peak_rss_mb", memory.get("peak_rss_mb")),
                       ("cuda_peak_mb", memory.get("cuda_peak_mb"))):
        if value is not None:
            into[key].append(float(value))


def _compute_cells(values: dict[str, list], cuda: bool) -> list[str]:
    fit = values.get("fit_s")
    cells = [f"{np.mean(sorted(fit)):.2f}" if fit else "n/a"]
    for key in ("peak_rss_mb", "cuda_peak_mb")[: 2 if cuda else 1]:
        cells.append(f"{max(values[key]):.0f}" if values.get(key) else "n/a")
    return cells


def _ceiling_line(nc: dict) -> str:
    """The dataset's noise ceiling for this subject's test responses (how well a perfect model could correlate)."""
    bits = [f"{name} r = {float(nc[key]):.3f}" for key, name in (("analytic_r", "analytic"), ("empirical_r", "empirical"))
            if isinstance(nc.get(key), (int, float))]
    where = f" over {nc['over']}" if nc.get("over") else ""
    reps = f", {nc['test_reps']} repetitions averaged" if nc.get("test_reps") else ""
    return f"Noise ceiling of the test responses{where}: {', '.join(bits)}{reps}."


def _short_reason(entry: dict) -> str:
    """An n/a reason short enough for a footnote; metrics missing the same weights share one."""
    import re

    if entry.get("weights"):
        return f"weights `{entry['weights']}` not found (`bench weights ls` says which file to put where)"
    return re.sub(r"^[A-Za-z][\w-]* needs ", "needs ", entry.get("reason", "") or "no reason recorded")


def _na_footnotes(cols, reasons: dict[str, set[str]], metric_spec) -> list[str]:
    """One footnote per distinct n/a reason, naming the columns it applies to (in column order)."""
    by_reason: dict[str, list[str]] = {}
    for m in cols:
        for reason in sorted(reasons.get(m, ())):
            by_reason.setdefault(reason, []).append(_headers([m], metric_spec)[0][:-2])
    if not by_reason:
        return []
    return ["", "n/a:", *(f"- {', '.join(labels)}: {reason}" for reason, labels in by_reason.items())]


def _conditional_section(conditional, cols, summary, best_rows, metric_spec, spec, cat) -> list[str]:
    """The paper's Table 3: one table per model whose runs cover more than one (P_gt, prompt) setting, rows
    ordered by P_gt then prompt (none, text, audio), then the paper's reported Table 3 rows."""
    groups: dict[str, dict[tuple, str]] = defaultdict(dict)
    for row, (base, p_gt, prompt) in conditional.items():
        groups[base][(p_gt, prompt)] = row
    lines: list[str] = []
    for base in sorted(groups):
        settings = groups[base]
        if len(settings) < 2:
            continue
        order = sorted(settings, key=lambda k: (k[0], _PROMPT_ORDER.get(k[1], 9), k[1]))
        rows = [settings[k] for k in order]
        best = best_rows(cols, lambda row, m: summary(row, m)[0], rows)
        header = ["P_gt", "prompt"] + _headers(cols, metric_spec) + ["subjects"]
        lines += ["", f"## Conditional reconstruction (the paper's Table 3): {base}", "", *_table_head(header)]
        for (p_gt, prompt), row in zip(order, rows):
            cells, n_subj = _summary_cells(row, cols, summary, best)
            lines.append("| " + " | ".join([f"{p_gt:g}", prompt, *cells, str(n_subj)]) + " |")
    if not lines:
        return lines
    reported, where = _reported(spec, cat, "reported_conditional")
    if reported:
        lines += ["", f"Reported in the paper ({reported.get('table', '')}, C2F-LDM) {where}:", ""]
        lines += _reported_table(reported, "Setting (reported)", metric_spec)
    return lines


def _headers(cols, metric_spec, sim_metrics=frozenset()) -> list[str]:
    """Column titles with direction arrows ("PCC ↑"); families such as probe:mel read "Probe acc (mel) ↑"; metrics
    computed with simulator-trained networks are marked "[sim-pretrained]"."""
    return [f"{metric_spec(m).label if ':' not in m else _family_label(m, metric_spec)} "
            f"{_arrow(metric_spec(m).higher_is_better)}" + (" [sim-pretrained]" if m in sim_metrics else "") for m in cols]


def _table_head(header: list[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def _summary_cells(row, cols, summary, best) -> tuple[list[str], int]:
    """"mean ± SD" per metric (bold where ``row`` is in ``best[metric]``) and the number of subjects."""
    cells, n_subj = [], 0
    for m in cols:
        mean, sd, n = summary(row, m)
        n_subj = max(n_subj, n)
        txt = fmt_value(mean) if sd is None or mean is None else f"{fmt_value(mean)} ± {fmt_value(sd)}"
        if mean is not None and row in best.get(m, set()):
            txt = f"**{txt}**"
        cells.append(txt)
    return cells, n_subj


def _reported(spec: dict, cat: dict, key: str) -> tuple[dict | None, str]:
    """The paper's numbers under ``key`` for this dataset (or the real dataset it mirrors), and where from."""
    mirror = spec.get("mirrors")
    reported = spec.get(key) or (cat.get(mirror, {}).get(key) if mirror else None)
    where = (f"on `{mirror}` (real fMRI, not comparable with these simulated numbers)"
             if spec.get("kind") == "simulated" else "on this dataset")
    return reported, where


def _reported_table(reported: dict, first: str, metric_spec) -> list[str]:
    from metrics.registry import paper_columns

    columns = paper_columns()
    lines = _table_head([first] + [f"{metric_spec(m).label} {_arrow(metric_spec(m).higher_is_better)}" for m in columns])
    for name, vals in reported["rows"].items():
        lines.append("| " + " | ".join([f"{name} (reported)"] + [fmt_value(vals.get(m)) for m in columns]) + " |")
    return lines


def _family_label(name: str, metric_spec) -> str:
    family, _, member = name.partition(":")
    return f"{metric_spec(family).label} ({member})"


def _collect_extra(recs, metric, key):
    vals = [r["metrics"][metric].get("extra", {}).get(key) for r in recs if metric in r["metrics"]]
    vals = [float(v) for v in vals if v is not None and not isinstance(v, str)]
    return float(np.mean(vals)) if vals else None


def write_leaderboards(records: list[dict], out_dir: Path) -> list[Path]:
    written = []
    for ds_key, md in build_tables(records).items():
        path = Path(out_dir) / f"{ds_key}.md"
        write_text(path, md)
        written.append(path)
    return written

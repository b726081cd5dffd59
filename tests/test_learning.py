"""bench.learning: verdicts against the chance row of the same split, on made-up records."""

from __future__ import annotations

import numpy as np

from bench.learning import IDENT_THRESHOLD, verdicts


def _record(method, pcc, subject="sim01", **metrics):
    config = {"dataset": "sim-x", "dataset_version": "1", "subject": subject, "seed": 0, "profile": "tiny",
              "scale": "default", "method": method}
    m = {"pcc": {"status": "ok", "value": float(np.mean(pcc)), "per_sample": list(map(float, pcc))}}
    m.update(metrics)
    return {"config": config, "metrics": m}


def test_pcc_is_compared_paired_with_the_chance_row():
    rng = np.random.default_rng(0)
    chance = rng.normal(0.0, 0.1, 60)
    good = chance + 0.2 + rng.normal(0, 0.05, 60)
    same = chance + rng.normal(0, 0.05, 60)
    out = verdicts([_record("chance", chance), _record("lir", good), _record("mlp", same), _record("oracle", good + 1)])
    got = {(v.where.split("/")[1], v.check): v.passed for v in out}
    assert got == {("lir", "pcc"): True, ("mlp", "pcc"): False}  # reference rows get no verdict
    assert "95% CI" in out[0].detail


def test_semantic_probe_and_generative_identification():
    chance = np.zeros(10)
    probe = {"status": "ok", "value": 0.3, "extra": {"chance": 0.25}}
    weak_probe = {"status": "ok", "value": 0.25, "extra": {"chance": 0.25}}
    ident = lambda v: {"status": "ok", "value": v}  # noqa: E731
    out = verdicts([_record("chance", chance),
                    _record("c2f_ldm", chance + 0.1, **{"probe:semantic": probe, "ident:mel": ident(IDENT_THRESHOLD + 0.01),
                                                         "clap:ident": ident(IDENT_THRESHOLD - 0.01)}),
                    _record("fine_ldm", chance + 0.1, **{"ident:mel": ident(IDENT_THRESHOLD),
                                                          "clap:ident": {"status": "unavailable", "reason": "no CLAP weights"}}),
                    _record("c2f_decoder", chance + 0.1, **{"probe:semantic": weak_probe, "clap:ident": ident(0.9)})])
    got = {(v.where.split("/")[1], v.check): v.passed for v in out}
    assert got[("c2f_ldm", "probe:semantic")] and got[("c2f_ldm", "ident:mel")]
    assert not got[("c2f_ldm", "clap:ident")]
    assert not got[("fine_ldm", "ident:mel")]  # at the threshold is not above it
    assert ("fine_ldm", "clap:ident") not in got  # unavailable metric: the record says why, no verdict
    assert not got[("c2f_decoder", "probe:semantic")]
    assert ("c2f_decoder", "ident:mel") not in got and ("c2f_decoder", "clap:ident") not in got  # only the diffusion methods


def test_no_chance_row_no_verdict_and_subjects_kept_apart():
    chance = np.zeros(10)
    out = verdicts([_record("chance", chance, subject="sim01"), _record("lir", chance + 1, subject="sim02")])
    assert out == []


def test_cli_prints_verdicts_and_fails_when_one_fails(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import bench.records
    from bench.cli import app

    chance = np.zeros(20)
    rng = np.random.default_rng(1)
    recs = [_record("chance", chance), _record("lir", chance + 0.3 + rng.normal(0, 0.01, 20)), _record("mlp", chance)]
    monkeypatch.setattr(bench.records, "iter_records", lambda runs: recs)
    res = CliRunner().invoke(app, ["learning", "--runs", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert "learns  sim-x/lir/sim01/seed0" in res.output and "FAILS   sim-x/mlp/sim01/seed0" in res.output
    assert "1 of 2 verdicts pass; 1 fail" in res.output
    res = CliRunner().invoke(app, ["learning", "--runs", str(tmp_path), "--dataset", "other"])
    from bench.errors import BenchError

    assert isinstance(res.exception, BenchError) and "no record in" in str(res.exception)  # main() prints it, exit 2

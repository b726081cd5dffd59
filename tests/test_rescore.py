"""bench rescore: metrics recomputed from stored predictions (sha256-checked), no refit; bench run points to it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.networks import weights as W
from bench.errors import BenchError
from bench.rescore import newly_available, rescore_record
from bench.runner import Cell, run_cell


@pytest.fixture
def record(tiny_catalogue, tmp_path):
    out = run_cell(Cell("lir", "tiny-speech", "sim01", 0, "tiny"), runs=tmp_path / "runs")
    return out.path


def _never_fit(monkeypatch):
    import methods.lir

    def no_fit(*_a, **_k):
        raise AssertionError("rescoring refitted the method")

    monkeypatch.setattr(methods.lir.LiR, "fit", no_fit)
    monkeypatch.setattr(methods.lir.LiR, "predict", no_fit)


def test_unavailable_metric_is_rescored_from_predictions_without_refit(record, monkeypatch):
    original = json.loads(record.read_text())
    edited = json.loads(record.read_text())
    edited["metrics"]["pcc"] = {"status": "unavailable", "reason": "pretend"}
    record.write_text(json.dumps(edited))
    _never_fit(monkeypatch)
    outcome = rescore_record(record, edited)
    assert outcome.status == "rescored" and set(outcome.changed) == {"pcc"}
    after = json.loads(record.read_text())
    assert after["metrics"]["pcc"] == original["metrics"]["pcc"]  # same code path, same number
    assert after["metrics"]["psnr"] == original["metrics"]["psnr"]
    assert after["rescored"]["metrics"] == ["pcc"]
    assert after["config_hash"] == original["config_hash"] and "_path" not in after
    assert not [p for p in record.parent.iterdir() if p.name.startswith(".")]  # written atomically, no temp left
    again = rescore_record(record, after)
    assert again.status == "up to date"  # fd/kl/clap still lack weights: unchanged, the record is not rewritten


def test_a_family_member_added_after_the_run_is_rescored_by_default():
    """A record scored before "clap:ident" existed has "clap" only: the clap entry is recomputed, nothing else."""
    from bench.rescore import select_metrics
    from metrics import METRICS

    ok = {"status": "ok", "value": 0.5}
    record = {"metrics": {name: ok for name in ("pcc", "psnr", "fd", "fad", "kl", "kl:sigmoid", "clap", "clap:ident",
                                                 "probe:mel", "ident:mel")}}
    assert select_metrics(record, None) == []
    del record["metrics"]["clap:ident"]
    assert select_metrics(record, None) == ["clap"]
    assert all(m.split(":")[0] == spec.name for spec in map(METRICS.get, METRICS.names()) for m in spec.members)


def test_changed_predictions_are_refused(record):
    rec = json.loads(record.read_text())
    pred = record.with_suffix(".npz")
    with np.load(pred) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["audio"][0, 0] += 0.5
    np.savez(pred, **arrays)
    before = record.read_text()
    with pytest.raises(BenchError, match=r"predictions .*\.npz do not match the sha256 in record .*--overwrite"):
        rescore_record(record, rec, metrics=["pcc"])
    assert record.read_text() == before
    pred.unlink()
    with pytest.raises(BenchError, match=r"predictions .*\.npz of record .* are missing"):
        rescore_record(record, rec, metrics=["pcc"])


def test_metrics_needing_the_fitted_method_keep_their_recorded_values(record, monkeypatch):
    import methods.lir

    def needs_fit(self, split):
        raise BenchError("this LiR instance is not fitted yet")

    monkeypatch.setattr(methods.lir.LiR, "target_features", needs_fit)
    rec = json.loads(record.read_text())
    outcome = rescore_record(record, rec, metrics=["probe", "pcc"])
    assert outcome.kept == ["probe"]
    assert json.loads(record.read_text())["metrics"]["probe:mel"] == rec["metrics"]["probe:mel"]


def test_unknown_metric_is_one_line_error(record):
    with pytest.raises(BenchError, match="unknown metric 'fdd'"):
        rescore_record(record, json.loads(record.read_text()), metrics=["fdd"])


def test_weights_added_after_a_run_rescore_and_run_points_to_it(record, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.networks import cache as E
    from bench.networks import panns as P

    rec = json.loads(record.read_text())
    assert rec["metrics"]["fd"]["status"] == "unavailable" and rec["metrics"]["fd"]["weights"] == "panns-cnn14-16k"
    assert newly_available(rec) == []
    import hashlib

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save({"model": P.Cnn14(**P.TINY).eval().state_dict()}, weights / "cnn14-tiny.pth")
    monkeypatch.setenv("BENCH_WEIGHTS", str(weights))
    # a Cnn14 of the user's own, added to the local catalogue and chosen for PANNs after the run
    W.add_local_entries([{"name": "tiny-panns", "file": "cnn14-tiny.pth", "network": "panns", "arch": P.TINY,
                          "sha256": hashlib.sha256((weights / "cnn14-tiny.pth").read_bytes()).hexdigest(),
                          "description": "random tiny Cnn14"}])
    monkeypatch.setenv("BENCH_PANNS_WEIGHTS", "tiny-panns")
    E.clear_loaded()
    runs = tmp_path / "runs"
    assert newly_available(rec) == ["fd", "kl", "kl:sigmoid"]
    args = ["run", "--method", "lir", "--dataset", "tiny-speech", "--no-references", "--runs", str(runs),
            "--no-leaderboard"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("1 skipped cell(s) recorded fd, kl, kl:sigmoid as unavailable and the weights are found now; "
            "score them without retraining: bench rescore --method lir --dataset tiny-speech") in result.output
    _never_fit(monkeypatch)
    result = CliRunner().invoke(app, ["rescore", "--method", "lir", "--dataset", "tiny-speech", "--runs", str(runs),
                                      "--out", str(tmp_path / "lb"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 rescored, 0 up to date" in result.output
    after = json.loads(record.read_text())
    assert after["metrics"]["fd"]["status"] == "ok" and after["metrics"]["kl:sigmoid"]["status"] == "ok"
    assert after["metrics"]["pcc"] == rec["metrics"]["pcc"]
    assert "FD" in (tmp_path / "lb" / "tiny-speech.md").read_text()
    E.clear_loaded()


def test_cli_rescore_errors_are_one_line(tiny_catalogue, tmp_path):
    from tests.test_cli import assert_one_line_error, bench

    assert_one_line_error(bench("rescore", "--runs", str(tmp_path / "none")), r"no run records for .* run `bench run` first")
    assert_one_line_error(bench("rescore", "--metrics", "fdd", "--runs", str(tmp_path / "none")), r"unknown metric 'fdd'")
    assert_one_line_error(bench("rescore", "--dataset", "tiny-sond", "--runs", str(tmp_path / "none")), r"unknown dataset 'tiny-sond'")

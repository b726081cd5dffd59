"""Numbers a paper can cite: records tied to their code, loud weight failures, audioldm_eval's FAD input, scoring
reconstructions made elsewhere, reference rows, one data-root rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bench import fingerprint
from bench.errors import BenchError
from bench.runner import Cell, run_cell, run_cells
from tests.test_cli import assert_one_line_error, bench


def _quiet(*_a, **_k):
    pass


# ----------------------------------------------------------------------------------------------- code identity


def test_fingerprint_follows_imports_not_the_whole_suite():
    lir = fingerprint.describe("lir")["modules"]
    assert {"methods.lir", "methods.direct", "methods.base", "bench.ridge", "metrics.spectral", "metrics.registry"} <= set(lir)
    assert "methods.mlp" not in lir and "methods.ldm" not in lir  # another method's edit leaves LiR current
    assert not {"bench.runner", "bench.cli", "bench.leaderboard"} & set(lir)  # the harness is not part of it
    assert fingerprint.current("lir") == fingerprint.describe("lir")["fingerprint"]
    assert fingerprint.current("lir") != fingerprint.current("mlp")


def test_imports_inside_functions_count():
    # methods.lir imports bench.ridge only inside _fit_regressor
    assert "bench.ridge" in fingerprint.imported_modules("methods.lir")


@pytest.mark.slow
def test_editing_a_method_recomputes_its_cells_only(tiny_catalogue, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    cells = [Cell("lir", "tiny-speech", "sim01", 0), Cell("mlp", "tiny-speech", "sim01", 0)]
    first = run_cells(cells, runs=runs, progress=False, echo=_quiet)
    assert [o.status for o in first.outcomes] == ["done", "done"]
    rec = json.loads(first.outcomes[1].path.read_text())
    assert rec["code"]["fingerprint"] == fingerprint.current("mlp") and "methods.mlp" in rec["code"]["modules"]

    real = fingerprint.source_sha256

    def edited(name):  # as if methods/mlp.py had been edited since
        return "0" * 64 if name == "methods.mlp" else real(name)

    monkeypatch.setattr(fingerprint, "source_sha256", edited)
    kept = run_cells(cells, runs=runs, progress=False, echo=_quiet, reuse_stale=True)
    assert [o.status for o in kept.outcomes] == ["skipped", "stale"]
    again = run_cells(cells, runs=runs, progress=False, echo=_quiet)
    assert [o.status for o in again.outcomes] == ["skipped", "done"]
    assert json.loads(again.outcomes[1].path.read_text())["code"]["fingerprint"] == fingerprint.current("mlp")


def test_leaderboard_marks_stale_rows(tiny_catalogue, tmp_path, monkeypatch):
    from bench.leaderboard import build_tables
    from bench.records import iter_records

    runs = tmp_path / "runs"
    run_cell(Cell("lir", "tiny-speech", "sim01", 0), runs=runs)
    assert "†" not in build_tables(iter_records(runs))["tiny-speech"]
    real = fingerprint.source_sha256
    monkeypatch.setattr(fingerprint, "source_sha256", lambda n: "0" * 64 if n == "bench.ridge" else real(n))
    md = build_tables(iter_records(runs))["tiny-speech"]
    assert "LiR (tiny) †" in md and "changed since: bench.ridge" in md


# ----------------------------------------------------------------------------------------------- loud weights


@pytest.mark.slow
def test_a_corrupt_checkpoint_stops_the_cell_through_bench_run(tiny_catalogue, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "Cnn14_16k_mAP=0.438.pth").write_bytes(b"garbage, not a checkpoint")
    env = {"BENCH_WEIGHTS": str(weights), "BENCH_RUNS": str(tmp_path / "runs")}
    args = ("run", "--method", "lir", "--dataset", "tiny-speech", "--no-references", "--no-leaderboard")
    assert_one_line_error(bench(*args, env=env), r"Cnn14_16k_mAP=0\.438\.pth")
    assert not list((tmp_path / "runs").rglob("*.json"))  # not recorded as n/a
    proc = bench(*args, "--error-score", "nan", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stdout and "Cnn14_16k_mAP=0.438.pth" in proc.stdout
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_absent_weights_stay_unavailable(tiny_catalogue, tmp_path):
    out = run_cell(Cell("lir", "tiny-speech", "sim01", 0), runs=tmp_path / "runs")
    fd = out.record["metrics"]["fd"]
    assert fd["status"] == "unavailable" and "Cnn14_16k_mAP=0.438.pth" in fd["reason"]


# ----------------------------------------------------------------------------------------------- FAD input


def _tiny_vggish():
    from bench.networks import vggish as V
    from bench.networks.cache import Network

    torch.manual_seed(0)
    model = V.VGGish(**V.TINY).eval()
    return Network("vggish", "test", "0" * 64, False, model, "cpu", "")


def test_vggish_gets_audioldm_evals_fad_input():
    from metrics.embeddings import embed_audio

    net = _tiny_vggish()
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((2, 24_000))).astype(np.float32) + 0.02  # 1.5 s with a DC offset
    out = embed_audio(net, clip)
    # Hand-checked: 1 + (24000 - 400) // 160 = 148 frames -> one 96-frame patch per clip (2 s padding would give 2).
    assert out["n_patches"].tolist() == [1, 1] and out["patches"].shape == (2, 8)
    with torch.no_grad():
        raw = net.model.embed(torch.from_numpy(clip)).reshape(2, -1).numpy()  # the waveform itself, untouched
    np.testing.assert_allclose(out["patches"], raw, rtol=1e-5, atol=1e-6)
    centred = embed_audio(net, clip - clip.mean(axis=1, keepdims=True))
    assert not np.allclose(centred["patches"], out["patches"])  # the DC offset reaches VGGish, as in audioldm_eval


def test_a_clip_shorter_than_one_patch_is_an_error():
    from metrics.embeddings import embed_audio

    with pytest.raises(BenchError, match=r"clip 0 is 0\.500 s long, shorter than one 0\.96-s VGGish patch"):
        embed_audio(_tiny_vggish(), np.zeros((1, 8000), np.float32))


# ----------------------------------------------------------------------------------------------- bench score


def _write_truth(folder: Path, test, sr: int = 16_000) -> None:
    from bench.audio import resample

    folder.mkdir(parents=True, exist_ok=True)
    for sid, audio in zip(test.sample_id, test.audio):
        sf.write(folder / f"{sid}.wav", resample(audio, 16_000, sr) if sr != 16_000 else audio, sr, subtype="FLOAT")


def test_scoring_the_ground_truth_gives_pcc_one(tiny_catalogue, tmp_path):
    from bench.datasets import load_split
    from bench.records import load_record
    from bench.score import score_external

    test = load_split("tiny-sound", "sim01", "test")
    assert len(set(test.sample_id)) == test.n_samples and "@" in test.sample_id[0]  # windows get @onset ids
    _write_truth(tmp_path / "truth", test)
    path, record = score_external("tiny-sound", "sim01", tmp_path / "truth", "truth", runs=tmp_path / "runs")
    assert load_record(path)["external"] is True
    pcc = np.array(record["metrics"]["pcc"]["per_sample"], dtype=float)
    np.testing.assert_allclose(pcc, 1.0, atol=1e-6)
    # identical mels: every per-sample PSNR is +inf, which audioldm_eval (and the suite) leave out of the mean
    assert set(record["metrics"]["psnr"]["per_sample"]) == {"inf"}
    assert record["metrics"]["fd"]["status"] == "unavailable"


def test_score_resamples_and_says_so(tiny_catalogue, tmp_path):
    from bench.datasets import load_split
    from bench.score import score_external

    test = load_split("tiny-speech", "sim01", "test")
    _write_truth(tmp_path / "in", test, sr=22_050)
    _, record = score_external("tiny-speech", "sim01", tmp_path / "in", "resampled", runs=tmp_path / "runs")
    assert record["method_info"]["resampled_from_hz"] == [22050]
    assert record["metrics"]["pcc"]["value"] > 0.99


@pytest.mark.parametrize("damage, pattern", [
    ("missing", r"no file for test sample"),
    ("unknown", r"'nosuch' is not a test sample id"),
    ("short", r"is 1\.0000 s at 16 kHz; the clip is 2 s"),
    ("not-audio", r"is not a readable audio file"),
    ("nan", r"has NaN or inf samples"),
])
def test_score_bad_input_is_one_line_and_writes_nothing(tiny_catalogue, tmp_path, damage, pattern):
    from bench.datasets import load_split

    test = load_split("tiny-speech", "sim01", "test")
    folder = tmp_path / "in"
    _write_truth(folder, test)
    first = folder / f"{test.sample_id[0]}.wav"
    if damage == "missing":
        first.unlink()
    elif damage == "unknown":
        sf.write(folder / "nosuch.wav", test.audio[0], 16_000)
    elif damage == "short":
        sf.write(first, test.audio[0][:16_000], 16_000)
    elif damage == "not-audio":
        first.write_text("this is text")
    elif damage == "nan":
        bad = test.audio[0].copy()
        bad[10] = np.nan
        sf.write(first, bad, 16_000, subtype="FLOAT")
    from bench.score import score_external

    with pytest.raises(BenchError, match=pattern):
        score_external("tiny-speech", "sim01", folder, "ext", runs=tmp_path / "runs")
    assert not list((tmp_path / "runs").rglob("*.*"))
    if damage == "nan":  # and through the CLI: one line, no traceback
        proc = bench("score", "--dataset", "tiny-speech", "--subject", "sim01", "--input", str(folder), "--name", "ext",
                     "--no-leaderboard", env={"BENCH_RUNS": str(tmp_path / "runs")})
        assert_one_line_error(proc, pattern)
        assert not list((tmp_path / "runs").rglob("*.*"))


# ----------------------------------------------------------------------------------------------- reference rows


@pytest.mark.slow
def test_oracle_and_chance_rows_bracket_a_method(tiny_catalogue, tmp_path):
    out = tmp_path / "lb"
    proc = bench("run", "--method", "lir", "--dataset", "tiny-speech", "--out", str(out),
                 env={"BENCH_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stderr
    md = (out / "tiny-speech.md").read_text()
    assert "Ground truth (vocoder) (tiny)" in md and "Chance (shuffled stimuli) (tiny)" in md
    from bench.records import iter_records

    records = iter_records(tmp_path / "runs")
    pcc = {r["config"]["method"]: r["metrics"]["pcc"]["value"] for r in records}
    assert pcc["oracle"] > pcc["lir"] > pcc["chance"]
    # FD compares two sets of clips: shuffling keeps the set, so the chance row's FD (0 by construction) is not shown
    from bench.leaderboard import build_tables

    for r in records:
        r["metrics"]["fd"] = {"status": "ok", "value": 0.0 if r["config"]["method"] == "chance" else 5.0}
    md = build_tables(records)["tiny-speech"]
    chance_row = next(line for line in md.splitlines() if line.startswith("| Chance (shuffled stimuli) (tiny)"))
    assert chance_row.split(" | ")[3] == "n/a" and "Chance row: FD compare" in md


def test_chance_never_maps_a_stimulus_to_itself():
    from methods.reference import shuffled_rows

    stim = np.repeat(np.array(["a", "b", "c", "d"]), 3)
    onset = np.tile([0.0, 2.0, 4.0], 4)
    rows = shuffled_rows(stim, onset, np.random.default_rng(0))
    assert (stim[rows] != stim).all()
    assert (onset[rows] == onset).all()  # windows matched by rank
    with pytest.raises(BenchError, match="at least 2 test stimuli"):
        shuffled_rows(np.array(["a", "a"]), np.array([0.0, 2.0]), np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------- data root


def test_one_data_root_rule_for_prompts_and_caches(tiny_catalogue, tmp_path):
    from bench.data import data_root, use_data_root
    from bench.datasets import get_dataset
    from metrics.embeddings import feature_path

    other = tmp_path / "elsewhere"
    test = get_dataset("tiny-speech").load_split("sim01", "test", data_root=other)
    prompt = test.sibling("prompt")  # what prompt='audio' reads: the same prepared folder
    assert prompt.folder == test.folder and str(test.folder).startswith(str(other))
    assert prompt.info.get("text_prompts") == {"male": "man speaking", "female": "woman speaking"}
    net = _tiny_vggish()
    assert str(feature_path(test, net, test.unique_clips())).startswith(str(other))
    with use_data_root(other):
        assert data_root() == other  # the weights hash cache and first-use generation follow it too
    assert data_root() != other

"""The HTML report, checked statically: links, players, files, byte-identical rebuilds and bad input.

The browser half (players load, sorting, filters) is tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.report import GROUND_TRUTH, SIZE_BUDGET_BYTES, build_report
from tests.report_records import LIR, LIR_SLUG, MLP, ORACLE, REPORT_DATASET, REPORT_SUBJECT

N_STIMULI = 4  # per subject, evenly spaced over the test split


class _Links(HTMLParser):
    """Every src / href value, the <audio> elements' attributes, and the text of the page."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.audio: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "audio":
            self.audio.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


@pytest.fixture
def report_dir(report_runs, tiny_catalogue, tmp_path):
    result = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "reports", max_stimuli=N_STIMULI)
    return result


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_links_players_and_files(report_dir):
    result = report_dir
    folder = result.path.parent
    html = result.path.read_text(encoding="utf-8")
    page = _parse(html)
    assert not re.search(r"https?://", html), "the page must not reach the network"
    for link in page.links:
        assert not link.startswith(("/", "file:", "data:")) and "://" not in link, link
        assert (folder / link).is_file(), f"{link} does not exist"
    # the ground truth and three rows (LiR, MLP, the oracle reference) per stimulus
    n_columns = 1 + 3
    assert result.n_stimuli == N_STIMULI and result.n_columns == n_columns
    assert len(page.audio) == N_STIMULI * n_columns == result.n_players
    assert all(a.get("preload") == "none" and "controls" in a for a in page.audio)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total == result.size_bytes <= SIZE_BUDGET_BYTES

    # audio/<stim>/<column>.wav: the same names in every stimulus folder, 16-bit mono clips of the test length
    stims = sorted((folder / "audio").iterdir())
    assert len(stims) == N_STIMULI
    names = {tuple(sorted(p.name for p in s.iterdir())) for s in stims}
    assert len(names) == 1
    (names,) = names
    assert f"{GROUND_TRUTH}.wav" in names and f"{LIR_SLUG}.wav" in names and len(names) == n_columns
    with wave.open(str(stims[0] / f"{LIR_SLUG}.wav")) as fh:
        assert (fh.getsampwidth(), fh.getnchannels(), fh.getframerate(), fh.getnframes()) == (2, 1, 16000, 64000)
    for stim in stims:
        for name in names:
            stem = name[: -len(".wav")]
            assert (folder / "img" / stim.name / f"{stem}.png").is_file()
            assert (folder / "img" / stim.name / f"{stem}-full.png").is_file()


def test_summary_provenance_and_reference_rows(report_dir, report_runs):
    html = report_dir.path.read_text(encoding="utf-8")
    text = " ".join(_parse(html).text)
    assert LIR in text and MLP in text and ORACLE in text
    # reference rows come in their own block, after the methods
    assert text.index("Reference rows") < text.index(ORACLE) and text.index(MLP) < text.index("Reference rows")
    assert "PCC ↑" in text and "PSNR ↑" in text
    # mean [lo, hi] per metric, from the record's per-sample values
    from bench.records import iter_records
    from bench.stats import bootstrap_ci

    lir = next(r for r in iter_records(report_runs) if r["config"]["method"] == "lir")
    values = np.array(lir["metrics"]["pcc"]["per_sample"], dtype=float)
    lo, hi = bootstrap_ci(values, seed=0)
    assert f"{values.mean():.3f} [{lo:.3f}, {hi:.3f}]" in text
    # provenance: config hashes, code fingerprints, record paths
    assert lir["config_hash"][:12] in text and lir["_path"] in text
    assert lir["code"]["fingerprint"][:12] in text
    # sort values are valid JSON for every stimulus row
    for match in re.finditer(r'data-sort="([^"]+)"', html):
        row = json.loads(match.group(1).replace("&#34;", '"'))
        assert row["subject"] == REPORT_SUBJECT and f"{LIR_SLUG}:pcc" in row


def test_rebuild_is_byte_identical_and_reuses_images(report_dir, report_runs, tmp_path, monkeypatch):
    first = _tree(report_dir.path.parent)
    # a second build into another folder (fresh image cache) gives the same bytes
    other = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "other", max_stimuli=N_STIMULI)
    assert _tree(other.path.parent) == first
    # a rebuild in place takes every mel image from the cache: no mel is computed again
    import bench.audio

    def no_mels(*_a, **_k):
        raise AssertionError("mel recomputed although its prediction file is cached")

    monkeypatch.setattr(bench.audio, "eval_mel", no_mels)
    again = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "reports", max_stimuli=N_STIMULI)
    assert _tree(again.path.parent) == first


def test_embed_writes_one_self_contained_file(report_runs, tiny_catalogue, tmp_path):
    result = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "r", max_stimuli=2, methods=["lir"], embed=True)
    assert result.path == tmp_path / "r" / f"{REPORT_DATASET}.html"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".cache", f"{REPORT_DATASET}.html"]
    html = result.path.read_text(encoding="utf-8")
    page = _parse(html)
    assert len(page.audio) == 2 * 2
    assert page.links and all(link.startswith("data:") for link in page.links)
    assert "data:audio/wav;base64," in html and not re.search(r"https?://", html)
    assert result.warnings == []


def test_selection_options(report_runs, tiny_catalogue, tmp_path):
    result = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path, methods=["mlp"], subject=REPORT_SUBJECT, seed=0, max_stimuli=3)
    assert result.n_stimuli == 3 and result.n_columns == 2
    with pytest.raises(BenchError, match=r"no records of method\(s\) c2f_ldm for tiny-sound; methods with records: lir, mlp, oracle"):
        build_report(REPORT_DATASET, runs=report_runs, out=tmp_path, methods=["c2f_ldm"])
    with pytest.raises(BenchError, match=r"no records with seed 3 .* seeds with records: 0"):
        build_report(REPORT_DATASET, runs=report_runs, out=tmp_path, seed=3)
    with pytest.raises(BenchError, match=r"no records of subject 'sim02'"):
        build_report(REPORT_DATASET, runs=report_runs, out=tmp_path, subject="sim02")


def test_row_labels_follow_the_leaderboard():
    from bench.leaderboard import row_name
    from bench.report import _row_label

    rec = {"config": {"method": "c2f_ldm", "profile": "tiny", "overrides": {"p_gt": 0.5}}, "method_info": {"display_name": "C2F-LDM"}}
    assert _row_label(rec, row_name) == "C2F-LDM (tiny; p_gt=0.5)"
    rec["method_info"]["backbone_weights"] = "random-init"
    assert _row_label(rec, row_name) == "C2F-LDM (tiny; p_gt=0.5) [random-init]"
    rec["method_info"]["backbone_weights"] = "sim-pretrained"
    assert _row_label(rec, row_name) == "C2F-LDM (tiny; p_gt=0.5) [sim-pretrained]"


def _copy_runs(report_runs, tmp_path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(report_runs, runs)
    return runs


def test_bad_predictions_are_named_and_nothing_is_written(report_runs, tiny_catalogue, tmp_path):
    runs = _copy_runs(report_runs, tmp_path)
    npz = sorted(runs.rglob("*.npz"))
    lir = next(p for p in npz if "/lir/" in str(p) and not p.name.endswith(".emb.npz"))  # the predictions
    data = lir.read_bytes()
    lir.write_bytes(data[:-10] + b"0" * 10)
    out = tmp_path / "reports"
    with pytest.raises(BenchError, match=rf"predictions {re.escape(str(lir))} do not match the sha256 in .*--overwrite"):
        build_report(REPORT_DATASET, runs=runs, out=out)
    lir.unlink()
    with pytest.raises(BenchError, match=rf"predictions {re.escape(str(lir))} of record .* are missing; rerun the cell with --overwrite"):
        build_report(REPORT_DATASET, runs=runs, out=out)
    assert not out.exists()


def test_no_records_and_unwritable_folder_are_one_line_errors(report_runs, tiny_catalogue, tmp_path):
    from tests.test_cli import assert_one_line_error, bench

    proc = bench("report", "--dataset", "tiny-speech", "--runs", str(report_runs), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, r"no run records for dataset 'tiny-speech' under .*; datasets with records: tiny-sound; run `bench run")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = bench("report", "--dataset", REPORT_DATASET, "--runs", str(report_runs), "--out", str(blocker / "r"))
    assert_one_line_error(proc, r"report folder .*file/r is not writable")


def test_cli_writes_the_report(report_runs, tiny_catalogue, tmp_path):
    from tests.test_cli import bench

    proc = bench("report", "--dataset", REPORT_DATASET, "--runs", str(report_runs), "--out", str(tmp_path / "r"),
                 "--methods", "lir", "--max-stimuli", "2", check=True)
    assert f"wrote {tmp_path / 'r' / REPORT_DATASET / 'index.html'} (2 stimuli x 2 players" in proc.stdout


def test_leaderboard_points_to_the_report(report_runs, tiny_catalogue):
    from bench.leaderboard import build_tables
    from bench.records import iter_records

    md = build_tables(iter_records(report_runs))[REPORT_DATASET]
    assert f"`bench report --dataset {REPORT_DATASET}` writes `reports/{REPORT_DATASET}/index.html`" in md

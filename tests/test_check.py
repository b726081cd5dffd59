"""bench check: passes on the committed golden values and fails when a metric moves."""

from __future__ import annotations

import copy
import json

import pytest

from bench.check import GOLDEN_FILE, compare, run_check


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN_FILE.read_text())


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Smoke records shared by this module: the second check reuses (skips) the finished cells."""
    return tmp_path_factory.mktemp("smoke-runs")


def test_check_passes_on_golden_values(smoke_runs):
    lines = []
    assert run_check(echo=lines.append, runs=smoke_runs) == 0, "\n".join(lines)
    assert lines[-1].startswith("ok:")


def test_compare_flags_a_perturbed_metric(golden):
    current = copy.deepcopy(golden["values"])
    where = sorted(current)[0]
    current[where]["pcc"] += 0.05
    drifts = compare(golden["values"], current)
    assert [(d.where, d.metric) for d in drifts] == [(where, "pcc")]
    assert "tolerance" in drifts[0].line()


def test_compare_within_tolerance_and_missing(golden):
    current = copy.deepcopy(golden["values"])
    where = sorted(current)[0]
    current[where]["psnr"] += 0.01  # below PSNR's 0.05 dB tolerance
    assert compare(golden["values"], current) == []
    del current[where]["psnr"]
    assert [d.metric for d in compare(golden["values"], current)] == ["psnr"]


def test_check_fails_with_perturbed_golden_file(tmp_path, golden, smoke_runs):
    perturbed = copy.deepcopy(golden)
    where = sorted(perturbed["values"])[-1]
    perturbed["values"][where]["psnr"] -= 1.0
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(perturbed))
    lines = []
    assert run_check(golden_file=path, echo=lines.append, runs=smoke_runs) == 1
    lines = [line for line in lines if not line.startswith(("done", "skipped"))]
    assert lines[0].startswith("DRIFT: 1 of")
    assert any(where in line and "psnr" in line for line in lines)


@pytest.mark.parametrize("content", ['{"smoke": {"meth', "", '{"smoke": {}, "values": {"a": {"pcc": "x"}}}'])
def test_damaged_golden_file_is_refused_before_any_smoke_cell(tmp_path, monkeypatch, content):
    import bench.check
    from bench.errors import BenchError

    def never(*_a, **_k):
        raise AssertionError("smoke cells ran before the golden file was checked")

    monkeypatch.setattr(bench.check, "collect_smoke_values", never)
    path = tmp_path / "smoke.json"
    path.write_text(content)
    with pytest.raises(BenchError, match=r"smoke\.json .*restore it from version control.*`bench check --update` only") as err:
        run_check(golden_file=path, echo=lambda *_: None)
    assert "delete it" not in str(err.value)
    with pytest.raises(BenchError, match="does not exist; restore it"):
        run_check(golden_file=tmp_path / "gone.json", echo=lambda *_: None)

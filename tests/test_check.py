"""bench check: passes on the committed golden values and fails when a metric moves."""

from __future__ import annotations

import copy
import json

import pytest

from bench.check import GOLDEN_FILE, compare, every_platforms, golden_file_for, run_check


@pytest.fixture(scope="module")
def golden():
    """This platform's golden values (the first file where none was recorded here: its SMOKE block is compared)."""
    return json.loads((golden_file_for() or GOLDEN_FILE).read_text())


@pytest.fixture
def platform_golden(golden):
    """Tests that pass a perturbed copy as ``golden_file`` compare every block: they need this platform's values."""
    if golden_file_for() is None or golden.get("every") is None:
        pytest.skip("no golden values of the EVERY block recorded on this CPU platform (bench check --update records them)")
    return golden


@pytest.fixture(scope="module")
def smoke_runs_dir(tmp_path_factory):
    """Smoke records shared by this module: the second check reuses (skips) the finished cells."""
    return tmp_path_factory.mktemp("smoke-runs")


@pytest.fixture
def smoke_runs(smoke_runs_dir, sim_weights, park_sim_folder, monkeypatch):
    """The EVERY block scores with the simulator-trained networks: the session's, not trained again (Park's by a
    link to the session's copy; they are deterministic, and the golden values would catch a difference)."""
    from bench.networks import cache

    link = sim_weights / "sim" / park_sim_folder.name
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(park_sim_folder, target_is_directory=True)
    monkeypatch.setenv("BENCH_WEIGHTS", str(sim_weights))
    cache.clear_loaded()
    yield smoke_runs_dir
    cache.clear_loaded()


@pytest.mark.slow
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


def test_metrics_and_checks_newer_than_the_golden_file_are_set_aside(golden):
    """A key no golden cell has was registered after the file: noted, not drift; one some cells have stays compared."""
    from bench.check import drop_unrecorded

    current = copy.deepcopy(golden["values"])
    learning = copy.deepcopy(golden.get("learning", {}))
    first, last = sorted(current)[0], sorted(current)[-1]
    current[first]["newmetric:x"] = 0.5
    learning.setdefault(first, {})["newcheck"] = True
    kept, kept_learning, names = drop_unrecorded(golden, current, learning)
    assert names == ["newmetric:x", "learning check newcheck"]
    assert compare(golden["values"], kept) == [] and "newcheck" not in kept_learning[first]
    # a recorded metric that one cell stops reporting is still drift
    del current[last]["pcc"]
    kept, _, _ = drop_unrecorded(golden, current, learning)
    assert [(d.where, d.metric) for d in compare(golden["values"], kept)] == [(last, "pcc")]


@pytest.mark.slow
def test_check_fails_with_perturbed_golden_file(tmp_path, platform_golden, smoke_runs):
    perturbed = copy.deepcopy(platform_golden)
    where = sorted(perturbed["values"])[-1]
    perturbed["values"][where]["psnr"] -= 1.0
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(perturbed))
    lines = []
    assert run_check(golden_file=path, echo=lines.append, runs=smoke_runs) == 1
    drift = [line for line in lines if line.startswith("DRIFT")]
    assert len(drift) == 1 and drift[0].startswith("DRIFT: 1 of"), lines
    assert any(where in line and "psnr" in line for line in lines)


@pytest.mark.slow
def test_check_fails_when_a_learning_verdict_changes(tmp_path, platform_golden, smoke_runs):
    perturbed = copy.deepcopy(platform_golden)
    where, checks = sorted(perturbed["learning"].items())[0]
    check = sorted(checks)[0]
    checks[check] = not checks[check]
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(perturbed))
    lines = []
    assert run_check(golden_file=path, echo=lines.append, runs=smoke_runs) == 1
    assert any(line.startswith(f"DRIFT: learning verdict {where} {check}") for line in lines), lines


@pytest.mark.slow
def test_other_platform_compares_the_smoke_block_and_says_the_rest_is_not_compared(smoke_runs, monkeypatch):
    """Simulator-trained networks differ across CPU vendors (bench/check.py says why): on a platform with no golden
    file the check still compares the SMOKE block, names what it did not compare, and a SMOKE drift still fails."""
    import bench.check as check

    monkeypatch.setattr(check, "cpu_platform", lambda: "NoSuchVendor-AVX2")
    lines = []
    assert run_check(echo=lines.append, runs=smoke_runs) == 0, "\n".join(lines)
    assert any(line.startswith("warning: no golden values for the simulator-trained block") and "NoSuchVendor-AVX2" in line
               for line in lines)
    assert lines[-1].startswith("ok:") and "smoke.json" in lines[-1]
    smoke_values = {w: v for w, v in json.loads(GOLDEN_FILE.read_text())["values"].items() if not w.startswith("sim-pretrained:")}
    assert lines[-1].startswith(f"ok: {sum(len(v) for v in smoke_values.values())} metric values")
    # a SMOKE value that moved still fails there (the first file perturbed in memory; nothing written to the package)
    first = json.loads(GOLDEN_FILE.read_text())
    where = sorted(smoke_values)[0]
    first["values"][where]["pcc"] += 0.05
    monkeypatch.setattr(check, "read_golden", lambda path=None: first)
    lines = []
    assert run_check(echo=lines.append, runs=smoke_runs) == 1
    assert any(where in line and "pcc" in line for line in lines)


def test_cpu_platform_names_vendor_and_capability():
    import torch

    from bench.check import golden_files
    from bench.provenance import cpu_platform

    key = cpu_platform()
    assert key.endswith("-" + torch.backends.cpu.get_cpu_capability()) and " " not in key and "/" not in key
    files = golden_files()
    assert files.get("GenuineIntel-AVX512") == GOLDEN_FILE  # the first golden file, as recorded in it
    assert all(path.name == ("smoke.json" if path == GOLDEN_FILE else f"smoke.{key_}.json") for key_, path in files.items())


def test_every_registered_method_is_in_the_drift_check():
    """A newly registered method without golden values would escape the check: each golden file that records the
    EVERY block (at least one does) names them all."""
    from methods import METHODS

    assert every_platforms(), "no shipped golden file records the EVERY block"
    for key in every_platforms():
        golden = json.loads(golden_file_for(key).read_text())
        assert golden["every"]["methods"] == sorted(METHODS.names())
        assert {w.split("/")[1] for w in golden["values"] if w.startswith("sim-pretrained:")} == set(METHODS.names())
        for where, metrics in golden["values"].items():
            if where.startswith("sim-pretrained:") and "/chance/" not in where:
                assert all(metrics.get(m) is not None for m in ("fd", "fad", "kl", "clap")), where


@pytest.mark.slow
def test_withdrawn_every_block_compares_the_smoke_block_and_says_so(tmp_path, golden, smoke_runs):
    """A golden file whose EVERY block was withdrawn ("every": null; bench/check.py says when) still compares the SMOKE
    block and names what it did not compare; EVERY values left in such a file are refused as damage."""
    from bench.check import EVERY_PREFIX
    from bench.errors import BenchError

    withdrawn = {**golden, "every": None, "learning": {},
                 "values": {w: v for w, v in golden["values"].items() if not w.startswith(EVERY_PREFIX)}}
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(withdrawn))
    lines = []
    assert run_check(golden_file=path, echo=lines.append, runs=smoke_runs) == 0, "\n".join(lines)
    assert any(line.startswith("warning: no golden values for the simulator-trained block") for line in lines)
    assert lines[-1].startswith(f"ok: {sum(len(v) for v in withdrawn['values'].values())} metric values")
    recorded = json.loads(golden_file_for(every_platforms()[0]).read_text())
    path.write_text(json.dumps({**recorded, "every": None}))
    with pytest.raises(BenchError, match="withdraws its EVERY block"):
        run_check(golden_file=path, echo=lambda *_: None)


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


def test_update_writes_through_a_symlinked_golden_file(tmp_path, monkeypatch):
    """In a checkout leaderboards/golden/smoke.json links to bench/golden/smoke.json: --update must rewrite the
    file the link points to and keep the link (an atomic rename onto the link would replace it)."""
    import bench.check as check

    real = tmp_path / "bench" / "smoke.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "smoke.json"
    link.symlink_to(real)
    values = {"sim-sound/lir/sim01/seed0": {"pcc": 0.5}}
    learning = {"sim-sound/lir/sim01/seed0": {"pcc": True}}
    monkeypatch.setattr(check, "collect_smoke_values", lambda *a, **k: (values, learning))
    assert run_check(update=True, golden_file=link, echo=lambda *a: None, runs=tmp_path / "runs") == 0
    assert link.is_symlink() and json.loads(real.read_text())["values"] == values
    assert json.loads(real.read_text())["learning"] == learning


def test_golden_values_ship_in_the_package():
    from importlib import resources
    from pathlib import Path

    from bench.check import SMOKE

    assert GOLDEN_FILE == Path(str(resources.files("bench") / "golden" / "smoke.json"))
    assert json.loads(GOLDEN_FILE.read_text())["smoke"] == SMOKE


def test_cells_run_with_the_checks_thread_count_not_the_machines(monkeypatch, tmp_path):
    """Golden values depend on torch's thread count: the blocks run with CHECK_THREADS whatever the machine has."""
    import torch

    from bench import check

    seen = []
    monkeypatch.setattr(check, "_run_block", lambda *a, **k: seen.append(torch.get_num_threads()) or [])
    n = torch.get_num_threads()
    torch.set_num_threads(1 if check.CHECK_THREADS != 1 else 3)
    try:
        check.collect_smoke_values(tmp_path)
    finally:
        torch.set_num_threads(n)
    assert seen == [check.CHECK_THREADS, check.CHECK_THREADS] and torch.get_num_threads() == n

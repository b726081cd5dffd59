"""The suite installed from its wheel works from any folder: every subpackage and data file ships.

The wheel is built from a copy of the checkout and installed (``--no-deps``) into a fresh venv made from the running
interpreter. Its dependencies (torch and the rest) come from the running environment through a ``.pth`` line
appended *after* the venv's own site-packages, so ``bench``, ``methods`` and ``metrics`` can only be imported from
the wheel: a file the wheel lacks is missing there, even though the checkout has it.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["bench/datasets.yaml", "bench/golden/smoke.json", "bench/golden/smoke.AuthenticAMD-AVX512.json", "bench/golden/smoke.AuthenticAMD-AVX2.json", "bench/py.typed", "methods/py.typed", "metrics/py.typed",
           "bench/prepare/brain2sound.py", "bench/networks/audiomae.py", "bench/networks/weights.py"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "tree"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, f"building the wheel failed (the test extra needs setuptools>=70.1):\n{built.stderr}"
    (path,) = out.glob("brain2audio_bench-*.whl")
    return path


def test_wheel_ships_every_subpackage_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in SHIPPED if f not in names]
    assert not missing, f"the wheel lacks {missing}"
    sources = {p.relative_to(ROOT).as_posix() for pkg in ("bench", "methods", "metrics") for p in (ROOT / pkg).rglob("*.py")}
    assert sources <= names, f"the wheel lacks {sorted(sources - names)}"
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "_test_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_DATASETS_YAML", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", BENCH_RUNS=str(tmp_path / "runs"), BENCH_DATA=str(tmp_path / "data"))

    def bench(*args: str) -> str:
        done = subprocess.run([str(env_dir / "bin" / "bench"), *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([str(python), "-c", "import bench, methods, metrics; print(bench.__file__, methods.__file__, "
                            "metrics.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert all(p.startswith(purelib) for p in where.stdout.split()), where.stdout
    assert "lir" in bench("list")
    listing = bench("data", "ls")
    assert "sim-sound" in listing and "brain2speech" in listing
    bench("run", "--method", "lir", "--dataset", "sim-sound", "--subjects", "sim01", "--device", "cpu", "--out", "lb",
          "--no-references")
    (record_path,) = (tmp_path / "runs").rglob("*.json")
    record = json.loads(record_path.read_text())
    assert record["config"]["method"] == "lir" and record["config"]["dataset"] == "sim-sound"
    assert record["metrics"]["pcc"]["status"] == "ok" and 0 < record["metrics"]["pcc"]["value"] <= 1
    assert record["provenance"]["git"]["sha"] == "unknown"  # not run from a checkout
    assert (elsewhere / "lb" / "sim-sound.md").exists()

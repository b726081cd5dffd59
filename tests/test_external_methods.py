"""Methods from outside the repository: the README's example by import path, and an installed entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The Python block of the README's "Your own method" section, as a user would copy it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Your own method"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder holding the README's mymethods.py, as the working directory; the registry is restored after."""
    from methods import METHODS

    (tmp_path / "mymethods.py").write_text(readme_example(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    METHODS._targets.pop("mean_mel", None)
    sys.modules.pop("mymethods", None)


def test_readme_example_is_about_twenty_lines():
    code = [line for line in readme_example().splitlines() if line.strip()]
    assert 15 <= len(code) <= 25, len(code)


@pytest.mark.slow
def test_readme_example_runs_by_import_path(tiny_catalogue, user_folder):
    from bench.cli import app

    result = CliRunner().invoke(app, ["run", "--method", "mymethods:MeanMel", "--dataset", "tiny-speech",
                                      "--subjects", "sim01", "--device", "cpu", "--no-leaderboard"])
    assert result.exit_code == 0, result.output
    (path,) = (Path(os.environ["BENCH_RUNS"]) / "tiny-speech" / "mean_mel" / "tiny").glob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["method"] == "mean_mel"
    assert record["metrics"]["pcc"]["status"] == "ok" and -1 <= record["metrics"]["pcc"]["value"] <= 1
    assert record["metrics"]["ident:mel"]["status"] == "ok"  # its decoded feature was scored against the truth


@pytest.mark.parametrize("spec, message", [
    ("nosuchmodule:X", "cannot import 'nosuchmodule'"),
    ("mymethods:Nope", "module mymethods has no attribute 'Nope'"),
    ("mymethods:np", "the class has no `name`"),
    ("mymethods:Reconstruction", "the class has no `name`"),
])
def test_a_bad_import_path_is_one_line(user_folder, spec, message):
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "--method", spec,
                           "--dataset", "sim-speech"], cwd=user_folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def _installed_package(folder: Path, entry_name: str) -> dict:
    """mymethods.py plus the dist-info of a package declaring it in the entry-point group; the env to see it."""
    (folder / "mymethods.py").write_text(readme_example(), encoding="utf-8")
    info = folder / "mymethods_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mymethods-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[brain2audio_bench.methods]\n{entry_name} = mymethods:MeanMel\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def test_an_entry_point_registers_a_method_by_name(tmp_path):
    env = _installed_package(tmp_path, "mean_mel")
    code = ("import sys; from methods import METHODS; print(' '.join(METHODS.names())); "
            "print(METHODS.get('mean_mel').__module__); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    names, module, torch_loaded = out.stdout.splitlines()
    assert "mean_mel" in names.split() and "lir" in names.split()
    assert module == "mymethods" and torch_loaded == "False"


def test_an_entry_point_that_takes_a_builtin_name_is_named(tmp_path):
    env = _installed_package(tmp_path, "lir")
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "mymethods-pkg declares method 'lir'" in done.stderr and "Traceback" not in done.stderr


def test_an_entry_point_whose_class_has_another_name_is_named(tmp_path):
    env = _installed_package(tmp_path, "average_mel")
    code = "from methods import METHODS; METHODS.get('average_mel')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "has name 'mean_mel' but is registered as 'average_mel'" in done.stderr

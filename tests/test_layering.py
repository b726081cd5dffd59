"""The layers of the suite, read from every import statement (module level and inside functions) with ``ast``.

harness (bench/cli.py, runner.py, ...)  >  methods/ , metrics/  >  toolkit (bench/networks/, data, audio, ...)

Each layer imports only from the layers below it; methods/ and metrics/ never import each other; no module
imports itself back through a circle. ``from pkg import mod`` counts as importing ``pkg.mod``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "metrics")

TOOLKIT = {
    "bench", "bench.networks", "bench.data", "bench.datasets", "bench.simulate", "bench.audio", "bench.fbank",
    "bench.ridge", "bench.training", "bench.targets", "bench.io", "bench.errors", "bench.stats", "bench.registry",
    "bench.device", "bench.prepare",
}
HARNESS = {
    "bench.cli", "bench.runner", "bench.leaderboard", "bench.check", "bench.weights_cli", "bench.records",
    "bench.provenance", "bench.fingerprint", "bench.report", "bench.rescore", "bench.score", "bench.executors",
    "bench.status", "bench.learning",
}


def _module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _module_files()


def _resolve(name: str) -> str | None:
    """The suite module ``name`` refers to (``pkg.mod.attr`` -> ``pkg.mod``), or None for outside modules."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Suite modules imported anywhere in ``module`` (top level, functions, TYPE_CHECKING blocks): the same reading
    of imports that code fingerprints use (``bench.fingerprint.imported_modules``)."""
    from bench.fingerprint import imported_modules

    return {m for m in imported_modules(module) if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top in ("methods", "metrics"):
        return top
    for name in TOOLKIT:
        if module == name or (name != "bench" and module.startswith(name + ".")):
            return "toolkit"
    for name in HARNESS:
        if module == name or module.startswith(name + "."):
            return "harness"
    return "unplaced"


def test_every_bench_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if layer_of(m) == "unplaced")
    assert not unplaced, f"place these modules in TOOLKIT or HARNESS in tests/test_layering.py: {unplaced}"


def test_the_scanner_sees_function_level_and_from_package_imports():
    # methods/__init__ imports bench.registry at the top; methods.base imports bench.device inside fit
    assert "bench.registry" in GRAPH["methods"]
    assert "bench.device" in GRAPH["methods.base"]
    assert "bench.networks.vocoder" in GRAPH["methods.base"]  # a function-level `from ... import`


ALLOWED = {
    "toolkit": {"toolkit"},
    "methods": {"toolkit", "methods"},
    "metrics": {"toolkit", "metrics"},
    "harness": {"toolkit", "methods", "metrics", "harness"},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_allowed_layers(module):
    layer = layer_of(module)
    bad = sorted(f"{t} ({layer_of(t)})" for t in GRAPH[module] if layer_of(t) not in ALLOWED.get(layer, set()))
    assert not bad, f"{module} ({layer}) may not import {', '.join(bad)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_direct_and_indirect_circles():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def _modules_loaded_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_importing_methods_and_metrics_loads_no_harness():
    loaded = _modules_loaded_by(
        "import methods, metrics\n"
        "for name in methods.METHODS.names(): methods.METHODS.get(name)\n"
        "metrics.METRICS.names()"
    )
    assert "methods.c2f" in loaded  # the lookups did import the method modules
    assert not loaded & {"bench.runner", "bench.cli", "bench.check", "bench.leaderboard"}


def test_bench_list_imports_no_torch():
    loaded = _modules_loaded_by(
        "from typer.testing import CliRunner\n"
        "from bench.cli import app\n"
        "result = CliRunner().invoke(app, ['list'])\n"
        "assert result.exit_code == 0 and 'lir' in result.output, result.output"
    )
    assert "bench.cli" in loaded
    assert "torch" not in loaded


def test_no_module_imports_another_modules_private_names():
    """A helper two modules share lives, public, in the layer both may import (e.g. bench.training.split_by_group)."""
    bad = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and _resolve(node.module) not in (None, module):
                bad += [f"{module}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_no_class_is_built_inside_a_function():
    """Classes live at module level, so they pickle, work with isinstance and are documented; laziness comes from
    the registries' lazy targets instead."""
    nested = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested += [f"{module}.{node.name}: class {sub.name}" for sub in ast.walk(node) if isinstance(sub, ast.ClassDef)]
    assert not nested, nested

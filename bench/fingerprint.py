"""Code fingerprints: which source code computed a record, so a finished cell is reused only by the same code.

Granularity (chosen so that editing one method does not invalidate every other method's GPU hours):

    fingerprint(method) = sha256 over (module name, sha256 of its source) of
        the method's module and every suite module it imports, directly or through others, at any depth
        (imports inside functions included), plus
        every module of ``metrics/`` and the suite modules they import.

"Suite modules" are those of the packages ``bench``, ``methods`` and ``metrics``, read from where they are
installed (a checkout or a wheel alike). The harness (CLI, runner, leaderboard, ...) is not imported by methods or
metrics (a test enforces the layering), so it is not part of the fingerprint: reformatting a table or adding a CLI
option reuses every record. Package ``__init__`` files count only when imported by name (``from bench import
SAMPLE_RATE``), so registering a new method does not invalidate the others. Dataset contents are identified
separately, by the dataset version in the config.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path

SUITE_PACKAGES = ("bench", "methods", "metrics")


@functools.lru_cache(maxsize=None)
def _package_root(top: str) -> Path | None:
    spec = importlib.util.find_spec(top)  # imports nothing below the top-level package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=None)
def module_file(name: str) -> Path | None:
    """The source file of suite module ``name`` (a package's ``__init__.py``), found on disk without importing it;
    None for modules outside the suite and names that are not modules."""
    top, *rest = name.split(".")
    if top not in SUITE_PACKAGES or (root := _package_root(top)) is None:
        return None
    base = root.joinpath(*rest)
    for path in (base / "__init__.py", base.with_suffix(".py") if rest else None):
        if path is not None and path.is_file():
            return path
    return None


def _is_package(name: str) -> bool:
    path = module_file(name)
    return path is not None and path.name == "__init__.py"


@functools.lru_cache(maxsize=None)
def imported_modules(name: str) -> tuple[str, ...]:
    """Suite modules that module ``name`` imports anywhere in its source (sorted).

    ``from pkg import mod`` counts as importing ``pkg.mod`` when that is a module, else ``pkg`` itself.
    """
    path = module_file(name)
    if path is None:
        return ()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            for alias in node.names:
                child = f"{parent}.{alias.name}"
                found.add(child if module_file(child) is not None else parent)
    return tuple(sorted(m for m in found if m.split(".")[0] in SUITE_PACKAGES and module_file(m) is not None))


def closure(roots: list[str]) -> list[str]:
    """``roots`` and every suite module they import, transitively (sorted)."""
    seen: set[str] = set()
    todo = [r for r in roots if module_file(r) is not None]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(m for m in imported_modules(mod) if m not in seen)
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def source_sha256(name: str) -> str:
    path = module_file(name)
    if path is None:  # a module outside the suite (an external method)
        spec = importlib.util.find_spec(name)
        path = Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""


def _metric_modules() -> list[str]:
    root = _package_root("metrics")
    return ["metrics"] + sorted(f"metrics.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__")


def modules_for(method_module: str) -> list[str]:
    """The modules whose sources make up the fingerprint of a method defined in ``method_module``.

    A method from outside the suite (``mypkg.mod:Class``) contributes its own module's source too."""
    mods = closure([method_module] + _metric_modules())
    return mods if method_module in mods else sorted(mods + [method_module])


def fingerprint_of(modules: list[str]) -> str:
    """sha256 of the (module, source sha256) pairs."""
    pairs = [[m, source_sha256(m)] for m in sorted(modules)]
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def method_module(method: str) -> str:
    """The module defining a registered method (or a ``module:Class`` target)."""
    if ":" in method:
        return method.split(":", 1)[0]
    from methods import METHODS

    return METHODS.module_of(method)


def current(method: str) -> str:
    """The fingerprint of the code that would compute ``method``'s cells now."""
    return fingerprint_of(modules_for(method_module(method)))


def describe(method: str) -> dict:
    """What a record stores: the fingerprint and the per-module source hashes behind it (to tell what changed)."""
    mods = modules_for(method_module(method))
    return {"fingerprint": fingerprint_of(mods), "modules": {m: source_sha256(m)[:16] for m in mods}}


def changed_modules(record_code: dict, method: str) -> list[str]:
    """Modules whose source differs between a record's ``code`` entry and the code now (added/removed included)."""
    old = record_code.get("modules", {}) or {}
    new = describe(method)["modules"]
    return sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))

"""Registered reconstruction methods. Targets are lazy, so listing methods imports no torch.

Three ways in: the suite's own methods below; installed packages declaring an entry point in the group
``brain2audio_bench.methods`` (``name = "module:Class"``); and a class given by import path on the command
line (``bench run --method mypkg.mymodule:MyMethod``, see ``resolve_methods``).
"""

from __future__ import annotations

import importlib

from bench.errors import BenchError
from bench.registry import Registry
from methods.base import check_method_class

ENTRY_POINT_GROUP = "brain2audio_bench.methods"

# A class registered under a key must be a Method whose ``name`` is that key (checked on first lookup).
METHODS: Registry = Registry("method", check=check_method_class)

METHODS.register("lir", "methods.lir:LiR")
METHODS.register("mlp", "methods.mlp:MLP")
METHODS.register("bilstm", "methods.seq:BiLSTM")
METHODS.register("transformer", "methods.seq:Transformer")
METHODS.register("c2f_decoder", "methods.c2f:C2FDecoder")
METHODS.register("fine_ldm", "methods.ldm:FineLDM")
METHODS.register("c2f_ldm", "methods.ldm:C2FLDM")
METHODS.register("park", "methods.park:Park")
METHODS.register("oracle", "methods.reference:Oracle")
METHODS.register("chance", "methods.reference:Chance")


def _register_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            METHODS.register(ep.name, ep.value)
        except ValueError:
            dist = getattr(ep.dist, "name", "an installed package")
            raise BenchError(f"{dist} declares method {ep.name!r} = {ep.value!r} (entry point group "
                             f"{ENTRY_POINT_GROUP}), but {ep.name!r} is already a method; rename its entry point") from None


_register_entry_points()


def get_method(name: str):
    """The method class registered under ``name`` (unknown names suggest close ones)."""
    return METHODS.get(name)


def register_path(spec: str) -> str:
    """Import the method class ``"package.module:Class"``, register it under its ``name`` and return that name."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BenchError(f"--method {spec!r}: a method outside the suite is given as package.module:ClassName")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        raise BenchError(f"--method {spec}: cannot import {exc.name!r}; run from the folder that holds it, "
                         "add it to PYTHONPATH or install its package") from None
    except AttributeError:
        raise BenchError(f"--method {spec}: module {module_name} has no attribute {attr!r}") from None
    name = getattr(cls, "name", "")
    if not name:
        raise BenchError(f"--method {spec}: the class has no `name`; set name = '<your_method>' on it")
    check_method_class(name, cls)
    try:
        METHODS.register(name, cls)
    except ValueError:
        raise BenchError(f"--method {spec}: its name {name!r} is already a registered method; choose another") from None
    return name


def resolve_methods(spec: str) -> list[str]:
    """``"lir,mlp"``, ``"all"`` or import paths (``"mypkg.mymodule:MyMethod"``) -> registered names."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    names = [register_path(p) if ":" in p else p for p in parts]
    return METHODS.resolve_many(names)

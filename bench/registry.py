"""One registry class for methods, metrics and datasets.

Entries can be objects or lazy ``"module:attr"`` strings that are imported on first lookup, so
listing methods never imports torch. Re-registering a name for a different target is an error, and
an unknown name suggests the closest ones.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from typing import Any, Generic, Iterable, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with lazy imports, clash errors and typo suggestions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._targets: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._frozen = False

    def register(self, name: str, target: Any = None):
        """Register ``target`` (an object or a ``"module:attr"`` string); usable as a decorator."""

        def _add(obj: Any) -> Any:
            with self._lock:
                if self._frozen:
                    raise RuntimeError(f"{self.kind} registry is frozen; cannot add {name!r}")
                old = self._targets.get(name)
                if old is not None and old is not obj and not _same_target(old, obj):
                    raise ValueError(f"{self.kind} {name!r} is already registered to {old!r}")
                self._targets[name] = obj
            return obj

        if target is None:
            return _add
        return _add(target)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        return name in self._targets

    def get(self, name: str) -> T:
        if name not in self._targets:
            raise BenchError(self.unknown_message(name))
        target = self._targets[name]
        if isinstance(target, str):
            with self._lock:
                target = self._targets[name]
                if isinstance(target, str):
                    module_name, _, attr = target.partition(":")
                    target = getattr(importlib.import_module(module_name), attr)
                    self._targets[name] = target
        return target

    def module_of(self, name: str) -> str:
        """The module defining ``name``'s target, without importing it when the target is still lazy."""
        if name not in self._targets:
            raise BenchError(self.unknown_message(name))
        target = self._targets[name]
        return target.partition(":")[0] if isinstance(target, str) else target.__module__

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"

    def resolve_many(self, spec: str | Iterable[str], groups: dict[str, list[str]] | None = None) -> list[str]:
        """Expand ``"a,b"``, ``"all"`` or a group name into a checked list of names."""
        parts = spec.split(",") if isinstance(spec, str) else list(spec)
        out: list[str] = []
        for part in (p.strip() for p in parts):
            if not part:
                continue
            if part == "all":
                expanded = self.names()
            elif groups and part in groups:
                expanded = groups[part]
            else:
                if part not in self._targets:
                    raise BenchError(self.unknown_message(part))
                expanded = [part]
            out.extend(n for n in expanded if n not in out)
        if not out:
            raise BenchError(f"no {self.kind} given; choose from: {', '.join(self.names())}")
        return out

    def freeze(self) -> None:
        self._frozen = True

    def _clear(self) -> None:  # tests only
        self._targets.clear()
        self._frozen = False


def _same_target(a: Any, b: Any) -> bool:
    """A lazy string and the object it names count as the same registration."""
    for lazy, obj in ((a, b), (b, a)):
        if isinstance(lazy, str) and not isinstance(obj, str):
            module_name, _, attr = lazy.partition(":")
            return getattr(obj, "__module__", None) == module_name and getattr(obj, "__qualname__", None) == attr
    return False

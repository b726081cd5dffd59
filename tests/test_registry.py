import pytest

from bench.errors import BenchError
from bench.registry import Registry


def test_lazy_target_is_imported_on_first_get():
    reg = Registry("thing")
    reg.register("join", "os.path:join")
    import os.path

    assert reg.get("join") is os.path.join


def test_unknown_name_suggests_close_match():
    reg = Registry("method")
    reg.register("ridge", object())
    with pytest.raises(BenchError, match=r"unknown method 'ridg'\. Did you mean: ridge\?"):
        reg.get("ridg")


def test_clash_raises_and_same_target_is_fine():
    reg = Registry("metric")
    a, b = object(), object()
    reg.register("x", a)
    reg.register("x", a)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("x", b)


def test_lazy_string_and_its_object_count_as_same():
    import posixpath

    reg = Registry("thing")
    reg.register("join", "posixpath:join")
    reg.register("join", posixpath.join)  # the object the string names: not a clash
    assert reg.get("join") is posixpath.join
    with pytest.raises(ValueError, match="already registered"):
        reg.register("join", posixpath.split)  # another object of the same module is one
    other = Registry("thing")
    other.register("join", posixpath.join)
    other.register("join", "posixpath:join")  # the other order too
    assert other.get("join") is posixpath.join
    with pytest.raises(ValueError, match="already registered"):
        other.register("join", "posixpath:split")


def test_freeze_and_clear():
    reg = Registry("thing")
    reg.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        reg.register("a", 1)
    reg._clear()
    reg.register("a", 1)
    assert reg.names() == ["a"]


def test_resolve_many_all_groups_and_errors():
    reg = Registry("method")
    for n in ("a", "b", "c"):
        reg.register(n, n)
    assert reg.resolve_many("all") == ["a", "b", "c"]
    assert reg.resolve_many("b,a,b") == ["b", "a"]
    assert reg.resolve_many("g", groups={"g": ["c", "a"]}) == ["c", "a"]
    with pytest.raises(BenchError, match="unknown method 'd'"):
        reg.resolve_many("a,d")
    with pytest.raises(BenchError, match="no method given"):
        reg.resolve_many(",")


def test_listing_methods_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, methods, metrics; methods.METHODS.names(); metrics.METRICS.names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

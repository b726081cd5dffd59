"""The weights catalogue: lookup order, hashes, safe loading, convert, fetch (with a fake opener), the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.networks import weights as W
from bench.errors import BenchError, UnavailableError
from bench.weights_cli import weights_app


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty $BENCH_WEIGHTS and Hugging Face cache; no explicit paths."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("BENCH_WEIGHTS", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for spec in W.CATALOGUE:
        monkeypatch.delenv(spec.env_var, raising=False)
    return wdir


def _hf_snapshot(tmp_path, repo, files: dict, rev="abc123", main=True):
    root = tmp_path / "hub" / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, content in files.items():
        (snap / name).write_bytes(content)
    if main:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(rev)
    return snap


class _PanSampler:  # a class a weights_only load must refuse
    pass


def test_catalogue_is_well_formed():
    names = [s.name for s in W.CATALOGUE]
    assert len(names) == len(set(names))
    for s in W.CATALOGUE:
        assert s.kind in ("file", "folder") and s.needed_by and s.description
        assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256)
        assert s.hash_note, f"{s.name}: say where the hash comes from or why there is none"
        if s.kind == "file":
            assert s.url or s.note, f"{s.name}: a file needs a URL or a note on where to get it"
    by = {s.name: s for s in W.CATALOGUE}
    assert by["panns-cnn14-16k"].file == "Cnn14_16k_mAP=0.438.pth" and set(by["panns-cnn14-16k"].needed_by) == {"FD", "KL"}
    assert by["vggish"].sha256.startswith("10086976")  # torch.hub's name suffix is the hash prefix
    assert {"audioldm2", "audiomae", "clap-htsat-unfused"} <= set(by)
    assert by["panns-cnn14-16k"].env_var == "BENCH_WEIGHT_PANNS_CNN14_16K"
    with pytest.raises(BenchError, match="unknown weights 'vgish'. Did you mean 'vggish'"):
        W.get_spec("vgish")


def test_lookup_order(places, tmp_path, monkeypatch):
    spec = W.get_spec("clap-630k-audioset")
    assert W.find(spec) is None
    with pytest.raises(UnavailableError, match=r"put 630k-audioset-best\.pt in \$BENCH_WEIGHTS"):
        W.require("clap-630k-audioset", "CLAP")
    snap = _hf_snapshot(tmp_path, "lukewys/laion_clap", {"630k-audioset-best.pt": b"hub"})
    assert W.find(spec).path == snap / "630k-audioset-best.pt" and W.find(spec).where.startswith("HF cache")
    (places / "630k-audioset-best.pt").write_bytes(b"local")
    assert W.find(spec).path == places / "630k-audioset-best.pt"
    other = tmp_path / "elsewhere.pt"
    other.write_bytes(b"explicit")
    monkeypatch.setenv(spec.env_var, str(other))
    assert W.find(spec).path == other and W.find(spec).where.startswith("explicit")
    assert W.find(spec, explicit=places / "630k-audioset-best.pt").path == places / "630k-audioset-best.pt"
    monkeypatch.setenv(spec.env_var, str(tmp_path / "nope.pt"))
    with pytest.raises(BenchError, match=r"the explicit path .*nope\.pt does not exist"):
        W.find(spec)


def test_hf_folders_and_snapshots(places, tmp_path, monkeypatch):
    spec = W.get_spec("clap-htsat-unfused")
    _hf_snapshot(tmp_path, "laion/clap-htsat-unfused", {"config.json": b"{}"}, rev="old", main=False)
    snap = _hf_snapshot(tmp_path, "laion/clap-htsat-unfused", {"config.json": b"{}"}, rev="new")
    assert W.find(spec).path == snap  # refs/main wins
    (places / "clap-htsat-unfused").mkdir()
    assert W.find(spec).path == snap  # an empty folder is not a model
    (places / "clap-htsat-unfused" / "config.json").write_text("{}")
    assert W.find(spec).path == places / "clap-htsat-unfused"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert W.hf_hub_cache() == tmp_path / "hfhome" / "hub"
    reason = W.missing_reason(W.get_spec("audioldm2"), "the LDM method")
    assert "cvssp/audioldm2" in reason and "$BENCH_WEIGHTS/audioldm2" in reason


def test_hash_check(places):
    spec = W.get_spec("panns-cnn14-16k")
    (places / spec.file).write_bytes(b"not the real checkpoint")
    found = W.find(spec)
    with pytest.raises(BenchError, match=r"has sha256 [0-9a-f]{16}\.\.\., the catalogue expects e2ee543a27919542"):
        W.check(found)
    digest = hashlib.sha256(b"not the real checkpoint").hexdigest()
    assert W.hash_state(found).sha256 == digest
    assert digest in (W._cache_file()).read_text()  # remembered on disk


def _entry(name="my-panns", file="mine/cnn14.safetensors", payload=b"weights", **kw):
    return {"name": name, "file": file, "sha256": hashlib.sha256(payload).hexdigest(), "network": "panns",
            "arch": None, "description": "my fine-tuned Cnn14", **kw}


def test_local_catalogue_adds_entries(places):
    assert W.local_entries() == () and W.local_catalogue_path() == places / "catalogue.json"
    (places / "mine").mkdir()
    (places / "mine" / "cnn14.safetensors").write_bytes(b"weights")
    path = W.add_local_entries([_entry(arch={"channels": [4, 4, 8, 8, 8, 16], "classes_num": 11})])
    assert path == places / "catalogue.json" and not list(places.glob(".catalogue.json*"))  # written atomically
    spec = W.get_spec("my-panns")
    assert spec.local and spec.network == "panns" and spec.origin == "local" and spec.arch["classes_num"] == 11
    assert W.architecture("my-panns") == spec.arch and W.architecture("panns-cnn14-16k") is None
    found = W.find(spec)
    assert found.path == places / "mine" / "cnn14.safetensors" and found.where == "local catalogue"
    assert W.check(found).ok is True  # a local entry is always verified
    assert "my-panns" in [r.spec.name for r in W.status_rows(hashes=False)]
    W.add_local_entries([_entry(description="replaced")])  # same name: replaced, not duplicated
    assert [s.description for s in W.local_entries()] == ["replaced"]
    (places / "mine" / "cnn14.safetensors").write_bytes(b"changed")
    with pytest.raises(BenchError, match=r"my-panns: .*cnn14\.safetensors has sha256 .* the local catalogue expects"):
        W.check(W.find(spec))
    (places / "mine" / "cnn14.safetensors").unlink()
    assert W.find(spec) is None
    with pytest.raises(UnavailableError, match=r"needs my-panns .*cnn14\.safetensors is missing"):
        W.require("my-panns", "FD")
    with pytest.raises(BenchError, match="local entry"):
        W.fetch("my-panns")
    with pytest.raises(BenchError, match=r"unknown weights 'my-pann'. Did you mean 'my-panns'"):
        W.get_spec("my-pann")


@pytest.mark.parametrize("change, message", [
    ({"sha256": "abc"}, "field 'sha256' must be 64 lower-case hex digits"),
    ({"network": "resnet"}, "field 'network' must be one of panns, vggish, clap"),
    ({"name": "vggish"}, "'name' is a built-in catalogue entry"),
    ({"name": "Bad Name"}, "field 'name' must be lower-case"),
    ({"file": "/abs/path.pth"}, "field 'file' must be a path relative to"),
    ({"file": "../outside.pth"}, "field 'file' must be a path relative to"),
    ({"arch": [1, 2]}, "field 'arch' must be an object"),
    ({"colour": "red"}, "unknown field\\(s\\) colour"),
])
def test_local_catalogue_refuses_bad_entries(places, change, message):
    with pytest.raises(BenchError, match=message):
        W.add_local_entries([{**_entry(), **change}])
    assert not (places / "catalogue.json").exists()  # nothing half-written
    (places / "catalogue.json").write_text(json.dumps({"format": 1, "entries": [{**_entry(), **change}]}))
    with pytest.raises(BenchError, match=r"catalogue\.json: entry .*" + message):
        W.local_entries()


def test_local_catalogue_file_errors(places):
    (places / "catalogue.json").write_text("{not json")
    with pytest.raises(BenchError, match=r"local weights catalogue .*catalogue\.json is corrupt"):
        W.get_spec("anything")
    (places / "catalogue.json").write_text(json.dumps({"entries": []}))
    with pytest.raises(BenchError, match=r"must be \{\"format\": 1"):
        W.local_entries()
    (places / "catalogue.json").write_text(json.dumps({"format": 1, "entries": [_entry(), _entry()]}))
    with pytest.raises(BenchError, match="'my-panns' appears more than once"):
        W.local_entries()


def test_network_selection_by_environment(places, monkeypatch):
    from bench.networks import cache as NC

    assert NC.weights_name("panns") == "panns-cnn14-16k" and NC.weights_name("vggish") == "vggish"
    W.add_local_entries([_entry(), {**_entry(name="sim-panns"), "sim": {"sim_version": "1", "config": "x", "seed": 0}}])
    monkeypatch.setenv("BENCH_PANNS_WEIGHTS", "my-panns")
    assert NC.weights_name("panns") == "my-panns" and NC.weights_name("panns", simulated=True) == "my-panns"
    monkeypatch.setenv("BENCH_VGGISH_WEIGHTS", "my-panns")
    with pytest.raises(BenchError, match=r"BENCH_VGGISH_WEIGHTS=my-panns is a panns entry, not VGGish; choose one of vggish"):
        NC.weights_name("vggish")
    monkeypatch.setenv("BENCH_PANNS_WEIGHTS", "sim-panns")
    with pytest.raises(BenchError, match="trained on the simulator and scores simulated datasets only"):
        NC.weights_name("panns")  # real data never gets simulator weights
    monkeypatch.delenv("BENCH_PANNS_WEIGHTS")
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "auto")
    assert NC.weights_name("panns", simulated=True) == "sim-panns"  # the default on simulated data
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "off")
    assert NC.weights_name("panns", simulated=True) == "panns-cnn14-16k"
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "sometimes")
    with pytest.raises(BenchError, match=r"BENCH_SIM_WEIGHTS=sometimes is not one of auto, cached, off"):
        NC.weights_name("panns", simulated=True)


def test_safe_loading(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"a": torch.ones(2)}, plain)
    assert W.load_checkpoint_file(plain)["a"].tolist() == [1.0, 1.0]
    with_numpy = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"iteration": 3, "model": {"w": torch.zeros(1)}, "sampler": {"idx": np.arange(4), "f": np.float64(2.0)}}, with_numpy)
    obj = W.load_checkpoint_file(with_numpy)  # numpy arrays pass the weights_only allowlist
    assert obj["sampler"]["idx"].tolist() == [0, 1, 2, 3]
    torch.save({"model": {"w": torch.zeros(1)}, "sampler": _PanSampler()}, with_numpy)
    with pytest.raises(BenchError, match=r"run `bench weights convert panns-cnn14-16k --trust` once"):
        W.load_checkpoint_file(with_numpy)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BenchError, match="is corrupt or truncated"):
        W.load_checkpoint_file(broken)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(BenchError, match="not a readable safetensors file"):
        W.load_checkpoint_file(bad_st)
    with pytest.raises(BenchError, match="does not exist"):
        W.load_checkpoint_file(tmp_path / "missing.pth")


def test_convert_needs_trust_and_writes_safetensors(places):
    spec = W.get_spec("clap-630k-audioset")  # no published hash: any file of that name may be converted
    src = places / spec.file
    torch.save({"epoch": 1, "state_dict": {"fc1.weight": torch.arange(6.0).reshape(2, 3)}, "sampler": _PanSampler()}, src)
    with pytest.raises(BenchError, match="pass --trust only for a file from https://huggingface.co/lukewys"):
        W.convert("clap-630k-audioset", trust=False)
    out = W.convert("clap-630k-audioset", trust=True)
    assert out == places / "630k-audioset-best.safetensors"
    assert W.load_checkpoint_file(out)["fc1.weight"].tolist() == [[0, 1, 2], [3, 4, 5]]
    found = W.find(spec)
    assert found.path == src and found.load_path == out
    original_sha = W.sha256_of(src)
    src.unlink()
    found = W.find(spec)
    assert found.converted_only and W.identity(found) == original_sha  # features keep their cache key
    panns = W.get_spec("panns-cnn14-16k")
    torch.save({"model": {"w": torch.zeros(1)}, "sampler": _PanSampler()}, places / panns.file)
    with pytest.raises(BenchError, match="the catalogue expects"):  # trust is not given to a file failing its hash
        W.convert("panns-cnn14-16k", trust=True)
    with pytest.raises(BenchError, match="Hugging Face folder"):
        W.convert("clap-htsat-unfused", trust=True)


class _FakeResponse(io.BytesIO):
    def __init__(self, data, watch=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.watch = watch

    def read(self, n=-1):
        if self.watch:
            self.watch()
        return super().read(min(n, 7) if n and n > 0 else n)

    def __exit__(self, *exc):
        self.close()


def test_fetch_downloads_to_a_temp_file_then_renames(places, monkeypatch):
    spec = W.get_spec("clap-630k-audioset")
    payload = b"fake checkpoint bytes" * 3
    seen = []

    def watch():
        names = sorted(p.name for p in places.iterdir())
        seen.append(names)
        assert spec.file not in names  # the target appears only at the end
        assert any(n.startswith(".630k-audioset-best.pt.") and n.endswith(".part") for n in names)

    calls = []

    def opener(url, timeout):
        calls.append(url)
        return _FakeResponse(payload, watch)

    monkeypatch.setattr(W, "_urlopen", opener)
    path = W.fetch("clap-630k-audioset")
    assert path == places / spec.file and path.read_bytes() == payload and calls == [spec.url] and seen
    assert sorted(p.name for p in places.iterdir() if not p.name.startswith(".write-test")) == [spec.file]


def test_fetch_refuses_a_wrong_hash_and_keeps_nothing(places, monkeypatch):
    monkeypatch.setattr(W, "_urlopen", lambda url, timeout: _FakeResponse(b"tampered"))
    with pytest.raises(BenchError, match=r"downloaded file has sha256 .* expected e2ee543a27919542.*nothing was kept"):
        W.fetch("panns-cnn14-16k")
    assert list(places.iterdir()) == []

    def offline(url, timeout):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(W, "_urlopen", offline)
    with pytest.raises(BenchError, match="download from https://zenodo.org.* failed \\(Network is unreachable\\)"):
        W.fetch("panns-cnn14-16k")
    assert list(places.iterdir()) == []
    with pytest.raises(BenchError, match="is a Hugging Face repository"):
        W.fetch("audioldm2")
    with pytest.raises(BenchError, match="no direct download URL"):
        W.fetch("audiomae")
    monkeypatch.delenv("BENCH_WEIGHTS")
    with pytest.raises(BenchError, match=r"set \$BENCH_WEIGHTS \(or pass --dest\)"):
        W.fetch("vggish")


def test_cli_ls_verify_convert(places):
    runner = CliRunner()
    res = runner.invoke(weights_app, ["ls"])
    assert res.exit_code == 0, res.output
    assert "panns-cnn14-16k" in res.output and "missing" in res.output and "e2ee543a2791" in res.output
    assert "$BENCH_WEIGHTS" in res.output
    res = runner.invoke(weights_app, ["verify"])
    assert res.exit_code == 0 and "vggish: missing" in res.output
    (places / "vggish-10086976.pth").write_bytes(b"wrong")
    (places / "630k-audioset-best.pt").write_bytes(b"anything")
    res = runner.invoke(weights_app, ["ls", "--no-where"])
    assert "HASH MISMATCH" in res.output and "unverified (no published sha256)" in res.output
    res = runner.invoke(weights_app, ["verify"])
    assert res.exit_code == 1 and "vggish: MISMATCH" in res.output
    assert f"clap-630k-audioset: unverified (no published sha256)  {hashlib.sha256(b'anything').hexdigest()}" in res.output
    res = runner.invoke(weights_app, ["verify", "clap-630k-audioset"])
    assert res.exit_code == 0
    res = runner.invoke(weights_app, ["convert", "vggish"])
    assert isinstance(res.exception, BenchError) and "--trust" in str(res.exception)

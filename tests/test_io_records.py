import json
import pytest

from bench.errors import BenchError
from bench.io import atomic_path, ensure_writable_dir, read_json, write_json, write_torch
from bench.records import config_hash, load_record, record_path


def test_atomic_path_leaves_no_partial_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_torch_is_byte_reproducible_and_loads(tmp_path):
    # The sim checkpoints' files must not depend on the temporary name they were written under.
    import torch

    obj = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 1}
    write_torch(tmp_path / "a.ckpt", obj)
    write_torch(tmp_path / "b.ckpt", obj)
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]["w"], obj["state_dict"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "b.ckpt"]  # no temporary file left


def test_write_json_roundtrip(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]})
    assert read_json(tmp_path / "a.json") == {"a": [1.5], "b": 1}


def test_read_json_corrupt_names_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BenchError, match=r"bad\.json is corrupt"):
        read_json(bad, what="run record")
    with pytest.raises(BenchError, match="does not exist"):
        read_json(tmp_path / "missing.json")


def test_unwritable_dir_when_path_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BenchError, match="data root .* is not writable"):
        ensure_writable_dir(f / "sub", "data root")


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_load_record_rejects_incomplete_and_tampered(tmp_path):
    cfg = {"method": "lir", "dataset": "d", "profile": "tiny", "subject": "s", "seed": 0}
    path = record_path(tmp_path, cfg)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 1}))
    with pytest.raises(BenchError, match="incomplete"):
        load_record(path)
    rec = {"schema": 1, "key": "k", "config": cfg, "config_hash": config_hash(cfg), "metrics": {}, "provenance": {}}
    write_json(path, rec)
    assert load_record(path)["config"] == cfg
    rec["config"] = {**cfg, "seed": 1}
    write_json(path, rec)
    with pytest.raises(BenchError, match="does not match its config hash"):
        load_record(path)

"""Prepared data cannot drift: file digests in the manifest, cheap checks on every load, full ones on verify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.data import FORMAT_VERSION, sha256_file, verify_prepared
from bench.errors import BenchError, NotPreparedError


@pytest.fixture
def prepared(tiny_catalogue, tmp_path):
    """tiny-speech generated into a data root of its own (the tests edit it)."""
    from bench.datasets import get_dataset

    root = tmp_path / "data"
    ds = get_dataset("tiny-speech")
    return ds, root, ds.ensure_prepared(root)


def _edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_manifest_lists_every_file_with_its_digest(prepared):
    _ds, _root, folder = prepared
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == FORMAT_VERSION
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    entry = manifest["files"]["sub-sim01/test.fmri.npy"]
    assert entry["sha256"] == sha256_file(folder / "sub-sim01" / "test.fmri.npy")
    assert entry["shape"] == [20, 50] and entry["dtype"] == "float32"
    assert verify_prepared(folder) == len(on_disk)


@pytest.mark.parametrize("field, change", [
    ("n_voxels", lambda m: m["subjects"]["sim01"].update(n_voxels=40)),
    ("n_samples", lambda m: m["subjects"]["sim01"]["n_samples"].update(test=15)),
    ("shape", lambda m: (m["subjects"]["sim01"].update(n_voxels=40),
                         [m["files"][f"sub-sim01/{s}.fmri.npy"].update(shape=[n, 40])
                          for s, n in m["subjects"]["sim01"]["n_samples"].items()])),
])
def test_edited_manifest_is_a_one_line_error_on_load_and_describe(prepared, field, change):
    ds, root, folder = prepared
    _edit_manifest(folder, change)
    with pytest.raises(BenchError, match=r"(manifest\.json says sub-sim01/|sub-sim01/\w+\.fmri\.npy holds).*prepare the dataset again"):
        ds.load_split("sim01", "train", data_root=root)
    with pytest.raises(BenchError, match=r"sub-sim01/"):
        ds.manifest(root)


def test_changed_array_is_caught_by_verify_and_named(prepared):
    ds, root, folder = prepared
    target = folder / "sub-sim01" / "train.fmri.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # same size and header: only the digest can tell
    target.write_bytes(bytes(data))
    ds.load_split("sim01", "train", data_root=root)  # the cheap checks pass
    with pytest.raises(BenchError, match=r"prepared file .*sub-sim01/train\.fmri\.npy does not match its sha256"):
        verify_prepared(folder)


def test_resized_or_missing_file_is_named_on_every_load(prepared):
    ds, root, folder = prepared
    target = folder / "sub-sim01" / "test.clip.npy"
    np.save(target, np.zeros(3, dtype=np.int64))
    with pytest.raises(BenchError, match=r"prepared file .*test\.clip\.npy is corrupt or changed"):
        ds.load_split("sim01", "train", data_root=root)
    target.unlink()
    with pytest.raises(BenchError, match=r"prepared file .*test\.clip\.npy is missing"):
        ds.load_split("sim01", "train", data_root=root)


def test_old_simulated_data_regenerate_themselves(prepared):
    ds, root, folder = prepared
    before = (folder / "sub-sim01" / "train.fmri.npy").read_bytes()

    def to_format_1(m):
        m["format"] = 1
        del m["files"]

    _edit_manifest(folder, to_format_1)
    split = ds.load_split("sim01", "train", data_root=root)
    assert split.n_voxels == 50
    assert json.loads((folder / "manifest.json").read_text())["format"] == FORMAT_VERSION
    assert (folder / "sub-sim01" / "train.fmri.npy").read_bytes() == before  # same seed: the same arrays


def test_old_real_data_say_how_to_prepare_again(tiny_catalogue, tmp_path):
    from bench.datasets import get_dataset

    ds = get_dataset("brain2sound")
    folder = ds.folder(tmp_path / "data")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "subjects": {}}))
    with pytest.raises(NotPreparedError, match=r"older format without file digests; prepare it again: `bench data prepare brain2sound --source"):
        ds.load_split("S1", "test", data_root=tmp_path / "data")


def test_cli_data_verify(prepared):
    from tests.test_cli import assert_one_line_error, bench

    _ds, root, folder = prepared
    ok = bench("data", "verify", "tiny-speech", "--data-root", str(root), check=True)
    assert ok.stdout.startswith("ok: ") and "match their sha256" in ok.stdout
    target = folder / "clips" / "clips.json"
    text = target.read_text()
    target.write_text(text.replace("female", "elamef", 1))
    assert_one_line_error(bench("data", "verify", "tiny-speech", "--data-root", str(root)),
                          r"prepared file .*clips\.json does not match its sha256")
    assert_one_line_error(bench("data", "verify", "tiny-sound", "--data-root", str(root / "none")), r"tiny-sound is not prepared")


def test_data_ls_shows_old_format(tiny_catalogue, tmp_path):
    from bench.datasets import get_dataset

    ds = get_dataset("brain2sound")
    folder = ds.folder(tmp_path / "data")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "subjects": {}}))
    assert ds.state(tmp_path / "data").startswith("prepared in an older format: run `bench data prepare brain2sound")

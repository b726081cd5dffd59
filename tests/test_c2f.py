"""C2F decoding: acoustic decoder shapes, P_gt substitution, voxel selection, the c2f_decoder method end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from methods.c2f import AcousticDecoder, C2FDecoder, fmri_token, mix_semantic, rowwise_pcc, select_token_voxels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ----------------------------------------------------------------------------------------------
# acoustic decoder


@pytest.mark.parametrize("use_semantic", [True, False])
def test_acoustic_decoder_tiny_shapes(use_semantic):
    torch.manual_seed(0)
    net = AcousticDecoder(64, d_model=32, n_heads=2, n_enc_layers=1, n_dec_layers=1, use_semantic=use_semantic)
    x = torch.randn(3, 768)
    s = torch.randn(3, 512) if use_semantic else None
    c = net(x, s)
    assert c.shape == (3, 64, 768)
    assert isinstance(net.fmri_proj, torch.nn.Linear)
    assert (net.semantic_proj is not None) == use_semantic
    if use_semantic:
        with pytest.raises(BenchError, match="semantic"):
            net(x, None)


@pytest.mark.parametrize("use_semantic", [True, False])
def test_acoustic_decoder_full_size_one_forward(use_semantic):
    torch.manual_seed(0)
    net = AcousticDecoder(208, d_model=768, n_heads=12, n_enc_layers=4, n_dec_layers=4, use_semantic=use_semantic).eval()
    # the paper: the 768 selected voxels form the fMRI token directly
    assert isinstance(net.fmri_proj, torch.nn.Identity)
    assert len(net.encoder.layers) == 4 and len(net.decoder.layers) == 4
    with torch.no_grad():
        c = net(torch.randn(1, 768), torch.randn(1, 512) if use_semantic else None)
    assert c.shape == (1, 208, 768) and torch.isfinite(c).all()


# ----------------------------------------------------------------------------------------------
# P_gt and voxel selection


def test_p_gt_substitution_rate_and_values():
    s_dec = torch.zeros(20000, 4)
    s_gt = torch.ones(20000, 4)
    gen = torch.Generator().manual_seed(0)
    mixed, mask = mix_semantic(s_dec, s_gt, 0.25, gen)
    assert abs(mask.float().mean().item() - 0.25) < 0.015  # binomial sd ~0.003
    assert torch.equal(mixed[mask], s_gt[mask]) and torch.equal(mixed[~mask], s_dec[~mask])
    again, mask2 = mix_semantic(s_dec, s_gt, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(mask, mask2)  # seeded
    assert not mix_semantic(s_dec, s_gt, 0.0, gen)[1].any()
    assert mix_semantic(s_dec, s_gt, 1.0, gen)[1].all()


def test_voxel_selection_largest_row_abs_sum():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(1000, 8)) * 0.01
    big = rng.choice(1000, size=768, replace=False)
    W[big] += np.sign(rng.normal(size=(768, 8))) * 1.0  # large |W|, either sign
    sel = select_token_voxels(W, 768)
    assert sel.shape == (768,) and set(sel.tolist()) == set(big.tolist())
    score = np.abs(W).sum(1)
    assert np.all(np.diff(score[sel]) <= 0)  # best first
    # fewer voxels than the token: all of them, zero-padded token
    small = rng.normal(size=(10, 3))
    sel = select_token_voxels(small, 768)
    assert sorted(sel.tolist()) == list(range(10))
    X = rng.normal(size=(4, 10)).astype(np.float32)
    tok = fmri_token(X, sel, 768)
    assert tok.shape == (4, 768) and np.allclose(tok[:, :10], X[:, sel]) and not tok[:, 10:].any()


def test_rowwise_pcc():
    a = np.arange(12.0).reshape(2, 6)
    assert np.allclose(rowwise_pcc(a, 2 * a + 1), 1.0) and np.allclose(rowwise_pcc(a, -a), -1.0)


# ----------------------------------------------------------------------------------------------
# the method


@pytest.mark.slow
def test_c2f_decoder_end_to_end_and_deterministic(small_catalogue, tmp_path):
    from bench.datasets import get_dataset
    from bench.runner import Cell, run_cell

    cell = Cell("c2f_decoder", "small-sound", "sim01", 0, "tiny")
    out = run_cell(cell, runs=tmp_path / "runs", metrics=["pcc", "ident"])
    assert out.status == "done"
    rec = out.record
    assert rec["metrics"]["pcc"]["status"] == "ok"

    ds = get_dataset("small-sound")
    train, test = ds.load_split("sim01", "train"), ds.load_split("sim01", "test")
    m = C2FDecoder.from_profile("tiny").fit(train, random_state=0)
    r = m.predict(test)
    n = test.n_samples
    assert r.audio.shape == (n, test.clips.audio.shape[1]) and np.isfinite(r.audio).all()
    assert r.mel.shape[:2] == (n, 64)
    n_patch = r.info["n_patch"]
    assert n_patch == 64  # tiny AudioMAE: 128 frames x 128 bins
    assert r.features["semantic"].shape == (n, 512)
    width = m.stage_.backbones.audiomae.config.embed_dim  # 768 for the real AudioMAE, 32 for the tiny one
    assert r.features["acoustic"].shape == (n, n_patch * width)
    truth = m.target_features(test)
    for k in ("semantic", "acoustic", "mel"):
        assert truth[k].shape == r.features[k].shape
    assert r.info["backbone_weights"] == "random-init"
    assert -1.0 <= r.info["acoustic_feature_pcc"] <= 1.0
    assert r.info["fmri_token_padding"] == 768 - train.n_voxels
    # determinism under a fixed seed: this second fit (seed 0) reproduces the run_cell one exactly
    saved = np.load(out.path.with_suffix(".npz"))
    assert np.array_equal(saved["audio"], r.audio.astype(np.float32))

    # the reusable acoustic stage API (fine-grained only variant)
    from methods.c2f import fit_acoustic_stage

    cfg = m.acoustic_config()
    cfg.use_semantic, cfg.epochs = False, 1
    stage = fit_acoustic_stage(train, config=cfg, random_state=1)
    c = stage.decode(test.fmri)
    assert c.shape == (n, n_patch, width)
    assert stage.c_gt(test).shape == c.shape and stage.semantic(test).shape == (n, 512)
    assert stage.mel_from_c(c).shape == (n, 128, 128)
    # encoder frozen, decoder fine-tuned
    from methods.c2f import load_backbones

    fresh = load_backbones("tiny", device="cpu", seed=1).audiomae.state_dict()
    tuned = stage.backbones.audiomae.state_dict()
    assert all(torch.equal(fresh[k], tuned[k]) for k in fresh if k.startswith(("blocks.", "patch_embed", "norm.")))
    assert not torch.equal(fresh["decoder_pred.weight"], tuned["decoder_pred.weight"])


def test_paper_profile_without_weights_names_the_file(small_catalogue, tmp_path, monkeypatch):
    from bench.datasets import get_dataset

    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.delenv("BENCH_WEIGHT_AUDIOMAE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hub"))
    train = get_dataset("small-sound").load_split("sim01", "train")
    with pytest.raises(BenchError, match=r"audiomae_pretrained\.pth"):
        C2FDecoder.from_profile("paper").fit(train)


def test_params_validated():
    with pytest.raises(BenchError, match="p_gt"):
        C2FDecoder.from_profile("tiny", {"p_gt": 1.5}).validate_params()
    with pytest.raises(BenchError, match="divisible"):
        C2FDecoder.from_profile("tiny", {"d_model": 30, "n_heads": 4}).validate_params()

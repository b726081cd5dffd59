"""AudioMAE backbone: shapes, token order, Swin window attention, loading, full-size manifest."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.fbank import audiomae_input, repeat_to_seconds
from bench.networks.audiomae import (
    AudioMAE,
    AudioMAEConfig,
    load_audiomae,
    normalise_patches,
    shifted_window_mask,
    sincos_pos_embed,
)
from bench.networks.checkpoints import manifest as state_dict_manifest

TINY = AudioMAEConfig.tiny()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return AudioMAE(TINY).eval()


def _fbank(n, cfg=TINY, seed=0):
    return torch.randn(n, *cfg.img_size, generator=torch.Generator().manual_seed(seed))


def test_tiny_shapes_and_determinism(tiny):
    x = _fbank(2)
    with torch.no_grad():
        z = tiny.encode(x)
        assert z.shape == (2, TINY.num_patches, TINY.embed_dim) == (2, 64, 32)
        patches, hidden = tiny.decode(z, return_hidden=True)
        assert patches.shape == (2, 64, 256)
        assert len(hidden) == TINY.decoder_depth and all(h.shape == (2, 64, 32) for h in hidden)
        assert tiny.unpatchify(patches).shape == (2, 128, 128)
        torch.testing.assert_close(tiny(x), patches, rtol=0, atol=0)
        torch.testing.assert_close(tiny.encode(x), z, rtol=0, atol=0)
        # a clip's result does not depend on its batch
        torch.testing.assert_close(tiny.encode(x[1:]), z[1:], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tiny.decode(z[1:]), patches[1:], rtol=1e-5, atol=1e-5)
    torch.manual_seed(5)
    a = AudioMAE(TINY)
    torch.manual_seed(5)
    b = AudioMAE(TINY)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_token_order_is_time_major(tiny):
    # The Conv2d patch embedding of token t * F + f equals the linear map of patch (t, f) as
    # ``patchify`` lays it out, and ``unpatchify`` inverts ``patchify``.
    mel = _fbank(1)
    tokens = tiny.patch_embed(mel[:, None])
    p = TINY.patch_size
    w = tiny.patch_embed.proj.weight.reshape(TINY.embed_dim, p * p)
    manual = tiny.patchify(mel) @ w.T + tiny.patch_embed.proj.bias
    torch.testing.assert_close(tokens, manual, rtol=1e-4, atol=1e-4)
    t, f = 5, 3
    block = mel[0, t * p : (t + 1) * p, f * p : (f + 1) * p]
    torch.testing.assert_close(tiny.patchify(mel)[0, t * TINY.grid[1] + f], block.reshape(-1))
    torch.testing.assert_close(tiny.unpatchify(tiny.patchify(mel)), mel)


def test_sincos_table_matches_the_official_construction():
    # Official: get_2d_sincos_pos_embed_flexible(D, patch_hw=(F, T)): meshgrid(arange(T), arange(F))
    # with w first; first half of the channels from the T-long axis.
    dim, (t_rows, f_cols) = 16, (6, 4)
    gw, gh = np.meshgrid(np.arange(t_rows, dtype=np.float32), np.arange(f_cols, dtype=np.float32))

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ref = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    ref = np.concatenate([np.zeros((1, dim)), ref])
    ours = sincos_pos_embed(dim, (t_rows, f_cols))
    assert ours.shape == (1, 1 + t_rows * f_cols, dim)
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-6)


def _brute_force_window_attention(block, x):
    """Global attention restricted by explicit rules: same shifted window, same side of the wrap."""
    attn = block.attn
    h, w = block.grid
    wh, ww = block.window
    sh, sw = block.shift
    b, n, c = x.shape
    rows = torch.arange(n) // w
    cols = torch.arange(n) % w
    rr, rc = (rows - sh) % h, (cols - sw) % w  # positions after the cyclic shift
    window_id = (rr // wh) * (w // ww) + rc // ww
    wrapped = (rr >= h - sh).long() * 2 + (rc >= w - sw).long() if (sh or sw) else torch.zeros(n, dtype=torch.long)
    allowed = (window_id[:, None] == window_id[None]) & (wrapped[:, None] == wrapped[None])
    # relative position bias from in-window coordinates
    iy, ix = (rr % wh).float(), (rc % ww).float()
    rel = torch.stack([iy[:, None] - iy[None], ix[:, None] - ix[None]], dim=-1)  # (n, n, 2)
    bias = attn.meta_mlp(torch.sign(rel) * torch.log1p(rel.abs())).permute(2, 0, 1)  # (heads, n, n)
    heads = attn.num_heads
    q, k, v = attn.qkv(x).view(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    cos = (q @ k.transpose(-2, -1)) / (q.norm(dim=-1)[..., :, None] * k.norm(dim=-1)[..., None, :]).clamp(min=1e-6)
    logits = cos / attn.tau.clamp(min=0.01)[None, :, None, None] + bias[None]
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    return attn.proj(out)


@pytest.mark.parametrize("index", [0, 1])
def test_swin_window_attention_against_brute_force(tiny, index):
    block = tiny.decoder_blocks[index]
    assert block.shift == ((0, 0) if index == 0 else (2, 0)) and block.window == (4, 4)
    with torch.no_grad():
        block.attn.tau.copy_(torch.tensor([0.5, 2.0]))  # tau per head matters
        x = torch.randn(2, TINY.num_patches, TINY.decoder_embed_dim)
        torch.testing.assert_close(block._window_attention(x), _brute_force_window_attention(block, x),
                                   rtol=1e-4, atol=1e-5)
        block.attn.tau.fill_(1.0)


def test_shift_mask_regions_for_the_full_grid():
    mask = shifted_window_mask((64, 8), (4, 4), (2, 0))
    assert mask.shape == (32, 16, 16)
    assert torch.all(mask[:-2] == 0)  # only the two windows of the last row band mix wrapped rows
    last = mask[-1]
    top = torch.arange(16) < 8  # in-window rows 0-1: grid rows 60-61; rows 2-3: wrapped rows 0-1
    assert torch.all(last[top][:, top] == 0) and torch.all(last[top][:, ~top] == -100)
    assert shifted_window_mask((64, 8), (4, 4), (0, 0)) is None


def test_decode_pads_missing_tokens_with_the_mask_token(tiny):
    z = tiny.encode(_fbank(1)).detach()
    n = 24
    # a latent vector whose decoder_embed is exactly mask_token stands in for the missing tokens
    w, b = tiny.decoder_embed.weight.detach(), tiny.decoder_embed.bias.detach()
    u = torch.linalg.solve(w, (tiny.mask_token.detach()[0, 0] - b))
    full = torch.cat([z[:, :n], u.expand(1, TINY.num_patches - n, -1)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(tiny.decode(z[:, :n]), tiny.decode(full), rtol=1e-4, atol=1e-4)
    with pytest.raises(BenchError, match=r"1 <= N <= 64"):
        tiny.decode(torch.zeros(1, 65, TINY.embed_dim))
    with pytest.raises(BenchError, match=r"fbank must be \(n, 128, 128\)"):
        tiny.encode(torch.zeros(1, 100, 128))


def test_features_and_upper_bound(tiny):
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal((3, 24000))).astype(np.float32)  # 1.5 s
    c = tiny.features(wav, n_patch=16, batch_size=2)
    assert c.shape == (3, 16, TINY.embed_dim) and not c.requires_grad
    with torch.no_grad():
        manual = tiny.encode(audiomae_input(repeat_to_seconds(wav), target_frames=128))[:, :16]
    torch.testing.assert_close(c, manual, rtol=1e-5, atol=1e-5)
    m_upp = tiny.upper_bound_mel(c)
    assert m_upp.shape == (3, 128, 128)
    assert tiny.upper_bound_mel(c, n_frames=32).shape == (3, 32, 128)
    with pytest.raises(BenchError, match="n_patch"):
        tiny.features(wav, n_patch=65)
    target = normalise_patches(tiny.patchify(audiomae_input(wav, target_frames=128)))
    assert target.shape == (3, 64, 256)
    torch.testing.assert_close(target.mean(-1), torch.zeros(3, 64), atol=1e-5, rtol=0)
    torch.testing.assert_close(target.std(-1), torch.ones(3, 64), atol=1e-3, rtol=0)


def test_strict_loading_round_trip(tiny, tmp_path):
    pth = tmp_path / "pretrained.pth"
    torch.save({"model": tiny.state_dict(), "args": argparse.Namespace(model="mae_vit_base_patch16"), "epoch": 32}, pth)
    x = _fbank(1, seed=3)
    with torch.no_grad():
        expected = tiny(x)
        loaded = load_audiomae(pth, TINY)
        assert not loaded.training
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        # DataParallel-style prefix
        torch.save({f"module.{k}": v for k, v in tiny.state_dict().items()}, tmp_path / "bare.pth")
        torch.testing.assert_close(load_audiomae(tmp_path / "bare.pth", TINY)(x), expected, rtol=0, atol=0)
        try:
            from safetensors.torch import save_file
        except ImportError:  # optional here; pip install safetensors
            return
        save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(tmp_path / "w.safetensors"))
        torch.testing.assert_close(load_audiomae(tmp_path / "w.safetensors", TINY)(x), expected, rtol=0, atol=0)


def test_load_from_the_weights_catalogue(tiny, tmp_path, monkeypatch):
    weights = pytest.importorskip("bench.networks.weights")
    monkeypatch.delenv("BENCH_WEIGHT_AUDIOMAE", raising=False)
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(BenchError, match="audiomae_pretrained.pth"):
        load_audiomae(None, TINY)
    torch.save({"model": tiny.state_dict()}, tmp_path / weights.get_spec("audiomae").file)
    x = _fbank(1, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(load_audiomae(None, TINY)(x), tiny(x), rtol=0, atol=0)


def test_loading_errors(tiny, tmp_path):
    state = tiny.state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("decoder_blocks.1.")}
    broken["decoder_pred.weight"] = torch.zeros(10, 32)
    broken["head.weight"] = torch.zeros(3)
    torch.save({"model": broken}, tmp_path / "broken.pth")
    with pytest.raises(BenchError, match=r"17 missing keys \(decoder_blocks\.1\.attn\.tau.*1 unexpected key \("
                                         r"head\.weight\).*decoder_pred\.weight: file \(10, 32\) vs network \(256, 32\)"):
        load_audiomae(tmp_path / "broken.pth", TINY)
    with pytest.raises(BenchError, match="shape mismatch"):  # full-size config against tiny weights
        torch.save({"model": state}, tmp_path / "tiny.pth")
        load_audiomae(tmp_path / "tiny.pth", TINY.__class__(img_size=(128, 128), embed_dim=32, depth=2, num_heads=2,
                                                             decoder_embed_dim=32, decoder_depth=2,
                                                             decoder_num_heads=2, meta_hidden_dim=8))
    with pytest.raises(BenchError, match="not found"):
        load_audiomae(tmp_path / "nope.pth", TINY)
    torch.save({"optimizer": {}}, tmp_path / "other.pth")
    with pytest.raises(BenchError, match="no AudioMAE state dict"):
        load_audiomae(tmp_path / "other.pth", TINY)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="junk.pth is corrupt or truncated"):
        load_audiomae(tmp_path / "junk.pth", TINY)


def test_full_grid_shallow_forward():
    # The real (64, 8) grid, widths and heads, with 1 encoder and 2 decoder blocks (fast on CPU).
    cfg = AudioMAEConfig(depth=1, decoder_depth=2)
    torch.manual_seed(0)
    model = AudioMAE(cfg).eval()
    assert model.decoder_blocks[1].attn_mask.shape == (32, 16, 16)
    with torch.no_grad():
        patches = model(torch.randn(1, 1024, 128))
    assert patches.shape == (1, 512, 256) and torch.isfinite(patches).all()
    assert model.unpatchify(patches).shape == (1, 1024, 128)


def test_full_size_manifest_and_encode():
    torch.manual_seed(0)
    model = AudioMAE().eval()
    manifest = state_dict_manifest(model)
    shapes = dict(manifest)
    assert len(shapes) == len(manifest) == 430
    assert shapes["patch_embed.proj.weight"] == (768, 1, 16, 16)
    assert shapes["pos_embed"] == (1, 513, 768)
    assert shapes["cls_token"] == (1, 1, 768)
    assert shapes["decoder_pos_embed"] == (1, 513, 512)
    assert shapes["mask_token"] == (1, 1, 512)
    assert shapes["decoder_embed.weight"] == (512, 768)
    assert shapes["blocks.11.attn.qkv.weight"] == (2304, 768)
    assert shapes["blocks.11.mlp.fc1.weight"] == (3072, 768)
    assert shapes["decoder_blocks.15.attn.tau"] == (16,)
    assert shapes["decoder_blocks.15.attn.meta_mlp.fc1.weight"] == (384, 2)
    assert shapes["decoder_blocks.15.attn.meta_mlp.fc2.weight"] == (16, 384)
    assert shapes["decoder_blocks.15.mlp.fc1.weight"] == (2048, 512)
    assert shapes["decoder_pred.weight"] == (256, 512)
    assert len({k.split(".")[1] for k in shapes if k.startswith("decoder_blocks.")}) == 16
    assert len({k.split(".")[1] for k in shapes if k.startswith("blocks.")}) == 12
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    assert sum(v.numel() for v in model.state_dict().values()) == pytest.approx(137.0e6, rel=0.01)
    with torch.no_grad():
        z = model.encode(torch.randn(1, 1024, 128))
    assert z.shape == (1, 512, 768) and torch.isfinite(z).all()


@pytest.mark.weights
def test_real_checkpoint_loads():
    path = os.environ.get("BENCH_AUDIOMAE_CKPT")
    if not path:
        pytest.skip("set BENCH_AUDIOMAE_CKPT to the official AudioMAE ViT-B AS-2M pretrained.pth")
    model = load_audiomae(path)
    rng = np.random.default_rng(0)
    t = np.arange(64000) / 16000.0
    wav = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * rng.standard_normal(64000)]).astype(np.float32)
    c = model.features(wav, n_patch=208)
    assert c.shape == (2, 208, 768) and torch.isfinite(c).all()
    with torch.no_grad():
        mel = model.upper_bound_mel(c)
    assert mel.shape == (2, 1024, 128) and torch.isfinite(mel).all()

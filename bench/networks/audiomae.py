"""AudioMAE (Huang et al. 2022, facebookresearch/AudioMAE): ViT-B encoder and Swin decoder in plain torch.

Written from the published architecture so that the official pretrained checkpoint
("ViT-B, AS-2M pretrained", a ``.pth`` holding the state dict under ``['model']``) loads strictly.
What the code follows (AudioMAE's ``models_mae.py`` with ``decoder_mode=1`` and its patched
timm ``SwinTransformerBlock``):

Encoder (``encode``)
    fbank (n, 1024, 128) -> Conv2d(1, 768, 16, stride 16) -> (n, 768, 64, 8), flattened
    time-major: token t * 8 + f (t = time row, f = frequency column). Plus ``pos_embed[:, 1:]``;
    the cls token (``cls_token + pos_embed[:, :1]``) is put first; 12 pre-norm ViT blocks
    (12 heads, qkv with bias, GELU MLP 3072, LayerNorm eps 1e-6); final ``norm``. No masking.
    The cls token is dropped from the output: (n, 512, 768).

Decoder (``decode``)
    ``decoder_embed`` Linear(768, 512); tokens missing at the end of the sequence are filled with
    ``mask_token``; plus ``decoder_pos_embed[:, 1:]`` (the cls position is unused: the Swin decoder
    drops the cls token before its blocks, so none is needed here); the 512 tokens are viewed as a
    (64, 8) grid and run through 16 Swin-v2-style blocks (16 heads, window (4, 4), cyclic shift
    (0, 0) on even and (2, 0) on odd blocks, with the shifted-window attention mask); each block is
    post-norm, x = x + norm1(attn(x)); x = x + norm2(mlp(x)); the attention is scaled cosine
    attention cos(q, k) / max(tau, 0.01) (``tau`` learned per head, |q||k| clamped at 1e-6) plus a
    continuous relative position bias from ``meta_mlp`` (Linear(2, 384), ReLU, Linear(384, 16),
    dropout 0.1 after each in training) applied to sign(d) * ln(1 + |d|) of the pairwise
    (time, frequency) offsets inside a window; masked pairs get -100. Then ``decoder_norm`` and
    ``decoder_pred`` Linear(512, 256): one 16 x 16 patch per token (row-major: time offset * 16 +
    frequency offset), unpatchified to (n, 1024, 128).

Positional embeddings are fixed 2-D sin-cos tables stored in the checkpoint (non-trainable
Parameters). The official initialisation builds them on a (8, 64) grid, so the first half of the
channels encodes token k's k % 64 and the second half k // 64 (not the token's time row and
frequency column); ``AudioMAE`` reproduces this for random initialisation; loaded checkpoints
bring their own tables.

Pretraining used ``norm_pix_loss=True``: the pretrained decoder predicts each patch normalised to
zero mean and unit variance (``normalise_patches``), not the normalised fbank itself (the paper
fine-tunes the decoder with a mel loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from bench.fbank import AUDIOMAE_MEL_BINS, SAMPLE_RATE, audiomae_input, repeat_to_seconds

CLIP_SECONDS = 10.0
"""AudioMAE's input length: stimuli are tiled to 10 s before encoding (paper, A.2)."""


@dataclass(frozen=True)
class AudioMAEConfig:
    """Shapes of an AudioMAE; the defaults are the released ViT-B / Swin-decoder model."""

    img_size: tuple[int, int] = (1024, 128)  # (frames, mel bins)
    patch_size: int = 16
    in_chans: int = 1
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 16
    decoder_num_heads: int = 16
    window_size: tuple[int, int] = (4, 4)
    shift_size: tuple[int, int] = (2, 0)  # on odd decoder blocks; (0, 0) on even ones
    meta_hidden_dim: int = 384
    meta_dropout: float = 0.1
    norm_eps: float = 1e-6

    @classmethod
    def tiny(cls) -> "AudioMAEConfig":
        """A CPU-test size with the same structure: 128 frames x 128 mel bins, an (8, 8) token grid,
        so 4 x 4 windows and the (2, 0) shift (with its attention mask) are exercised as in the
        full (64, 8) grid, and ``features`` works (on the first 128 frames)."""
        return cls(
            img_size=(128, 128), embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=2,
            decoder_num_heads=2, meta_hidden_dim=16,
        )

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (time rows, frequency columns): (64, 8) for the full model."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.in_chans

    def validate(self) -> None:
        p = self.patch_size
        if p < 1 or any(s < p or s % p for s in self.img_size):
            raise BenchError(f"img_size {self.img_size} must be positive multiples of patch_size {p}")
        for dim, heads, what in ((self.embed_dim, self.num_heads, "encoder"),
                                 (self.decoder_embed_dim, self.decoder_num_heads, "decoder")):
            if heads < 1 or dim % heads:
                raise BenchError(f"{what} width {dim} must be divisible by its number of heads {heads}")
            if dim % 4:
                raise BenchError(f"{what} width {dim} must be divisible by 4 (2-D sin-cos position table)")
        if self.in_chans != 1:
            raise BenchError(f"in_chans must be 1 (a mel spectrogram), got {self.in_chans}")


# ----------------------------------------------------------------------------- building blocks


class _Mlp(nn.Module):
    """fc1 -> activation -> dropout -> fc2 -> dropout (timm's Mlp; key names fc1, fc2)."""

    def __init__(self, dim: int, hidden: int, out: int, act=nn.GELU, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class _Attention(nn.Module):
    """Global multi-head self-attention with softmax(q k^T / sqrt(head_dim))."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _windows(x, window: tuple[int, int]):
    """(B, H, W, C) -> (B * nH * nW, wh * ww, C), windows in (batch, row, column) order."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def _unwindows(x, window: tuple[int, int], size: tuple[int, int]):
    """Inverse of ``_windows``: (B * nW, wh * ww, C) -> (B, H, W, C)."""
    h, w = size
    wh, ww = window
    b = x.shape[0] // ((h // wh) * (w // ww))
    x = x.view(b, h // wh, w // ww, wh, ww, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class _WindowAttention(nn.Module):
    """Scaled cosine window attention with a log-spaced continuous relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], meta_hidden: int, meta_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.meta_mlp = _Mlp(2, meta_hidden, num_heads, act=nn.ReLU, drop=meta_drop)
        self.tau = nn.Parameter(torch.ones(num_heads))
        rows, cols = torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
        coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, L)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2).float()  # (L*L, 2)
        self.register_buffer("relative_coordinates_log", torch.sign(rel) * torch.log1p(rel.abs()), persistent=False)

    def position_bias(self):
        """(1, heads, L, L): meta_mlp over the log-spaced offsets (query index major, key minor)."""
        area = self.window[0] * self.window[1]
        bias = self.meta_mlp(self.relative_coordinates_log)  # (L*L, heads)
        return bias.transpose(0, 1).reshape(1, self.num_heads, area, area)

    def forward(self, x, mask=None):
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        denom = q.norm(dim=-1, keepdim=True) @ k.norm(dim=-1, keepdim=True).transpose(-2, -1)
        attn = (q @ k.transpose(-2, -1)) / denom.clamp(min=1e-6)
        attn = attn / self.tau.clamp(min=0.01).view(1, -1, 1, 1)
        attn = attn + self.position_bias()
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(bw, self.num_heads, n, n)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(bw, n, c))


def shifted_window_mask(size: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]):
    """(windows, L, L) additive mask for a cyclic shift: 0 within a region, -100 across regions.

    Per axis the rolled grid has three regions [0, H - w), [H - w, H - s), [H - s, H) when s > 0
    and one when s == 0 (for AudioMAE's (2, 0) shift: rows 0-59, 60-61, 62-63, all columns alike).
    Returns None when there is no shift.
    """
    if not any(shift):
        return None
    ids = []
    for length, w, s in zip(size, window, shift):
        idx = torch.arange(length)
        ids.append(((idx >= length - w).long() + (idx >= length - s).long()) if s else torch.zeros(length, dtype=torch.long))
    region = (ids[0][:, None] * 3 + ids[1][None, :]).float()  # (H, W)
    region = _windows(region[None, :, :, None], window)[..., 0]  # (nW, L)
    diff = region[:, None, :] - region[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class _SwinBlock(nn.Module):
    """Post-norm Swin-v2-style block over a fixed (H, W) token grid (AudioMAE's patched timm block)."""

    def __init__(self, dim, num_heads, grid, window, shift, mlp_ratio, eps, meta_hidden, meta_drop):
        super().__init__()
        self.grid = tuple(grid)
        # As timm: a window no larger than the grid; no shift along an axis the window covers.
        self.window = tuple(min(g, w) for g, w in zip(grid, window))
        self.shift = tuple(0 if g <= w else s for g, w, s in zip(grid, self.window, shift))
        if any(g % w for g, w in zip(self.grid, self.window)):
            raise BenchError(f"token grid {self.grid} is not divisible by the window {self.window}")
        self.attn = _WindowAttention(dim, num_heads, self.window, meta_hidden, meta_drop)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.register_buffer("attn_mask", shifted_window_mask(self.grid, self.window, self.shift), persistent=False)

    def _window_attention(self, x):
        b, n, c = x.shape
        h, w = self.grid
        x = x.view(b, h, w, c)
        if any(self.shift):
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        x = _unwindows(self.attn(_windows(x, self.window), mask=self.attn_mask), self.window, self.grid)
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(1, 2))
        return x.reshape(b, n, c)

    def forward(self, x):
        x = x + self.norm1(self._window_attention(x))
        return x + self.norm2(self.mlp(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):  # (n, 1, T, F) -> (n, T/p * F/p, dim), token = t * (F/p) + f
        return self.proj(x).flatten(2).transpose(1, 2)


def sincos_pos_embed(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """AudioMAE's fixed table (1, 1 + T*F, dim) for a (T, F) token grid, cls row zero, float32.

    As the official ``get_2d_sincos_pos_embed_flexible(dim, (F, T))``: for token k the first half
    of the channels is the 1-D sin-cos code of k % T, the second half that of k // T; each 1-D code
    is [sin(pos * w), cos(pos * w)] with w_i = 10000^(-i / (dim / 4)), i < dim / 4.
    """
    t_rows, f_cols = grid
    k = np.arange(t_rows * f_cols, dtype=np.float64)

    def one_d(pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
        out = pos[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one_d(k % t_rows), one_d(np.floor(k / t_rows))], axis=1)
    table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()[None]


# ----------------------------------------------------------------------------- the model


class AudioMAE(nn.Module):
    """AudioMAE encoder + Swin decoder with the official checkpoint's parameter names.

    ``encode`` fbank -> latent tokens; ``decode`` latent -> patches (+ per-block hidden states);
    ``unpatchify`` patches -> mel; ``features`` waveform -> c_gt; ``upper_bound_mel`` c_gt -> m_upp.
    Random initialisation follows the official one (xavier-uniform Linear and patch projection,
    N(0, 0.02) cls and mask tokens, sin-cos position tables, tau = 1).
    """

    def __init__(self, config: AudioMAEConfig | None = None):
        super().__init__()
        cfg = config or AudioMAEConfig()
        cfg.validate()
        self.config = cfg
        p, n = cfg.patch_size, cfg.num_patches
        self.patch_embed = _PatchEmbed(p, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(cfg.embed_dim, cfg.grid), requires_grad=False)
        self.blocks = nn.ModuleList(_Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

        self.decoder_embed = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(cfg.decoder_embed_dim, cfg.grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            _SwinBlock(cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.grid, cfg.window_size,
                       (0, 0) if i % 2 == 0 else cfg.shift_size, cfg.mlp_ratio, cfg.norm_eps,
                       cfg.meta_hidden_dim, cfg.meta_dropout)
            for i in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(cfg.decoder_embed_dim, eps=cfg.norm_eps)
        self.decoder_pred = nn.Linear(cfg.decoder_embed_dim, cfg.patch_dim)
        assert n == self.pos_embed.shape[1] - 1
        self._init_weights()

    def _init_weights(self) -> None:
        with torch.no_grad():
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.normal_(self.cls_token, std=0.02)
            nn.init.normal_(self.mask_token, std=0.02)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.cls_token.device

    def _as_input(self, x, name: str, shape_tail: tuple[int, ...]):
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.ndim != 1 + len(shape_tail) or tuple(x.shape[1:]) != shape_tail:
            want = ", ".join(str(s) for s in shape_tail)
            raise BenchError(f"{name} must be (n, {want}), got shape {tuple(x.shape)}")
        return x.to(device=self.device, dtype=self.cls_token.dtype)

    # -- encoder -----------------------------------------------------------------------------

    def encode(self, fbank):
        """fbank (n, 1024, 128) from ``audiomae_input`` -> patch tokens (n, 512, 768), no cls, no masking."""
        x = self._as_input(fbank, "fbank", tuple(self.config.img_size))
        x = self.patch_embed(x[:, None]) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 1:]

    # -- decoder -----------------------------------------------------------------------------

    def decode(self, latent, return_hidden: bool = False):
        """latent (n, N, 768), N <= 512 -> patches (n, 512, 256) [, hidden states].

        The Swin decoder works on the full 64 x 8 grid: when N < 512 (e.g. the first N_patch
        tokens of a short clip) tokens N .. 511 are ``mask_token`` (as masked patches are in
        pretraining), so the output always covers all 512 patches. With ``return_hidden`` also
        returns the list of the decoder blocks' outputs, each (n, 512, 512) before
        ``decoder_norm`` (the layers of the paper's perceptual loss).
        """
        cfg = self.config
        if not isinstance(latent, torch.Tensor):
            latent = torch.as_tensor(np.asarray(latent))
        if latent.ndim != 3 or latent.shape[2] != cfg.embed_dim or not 1 <= latent.shape[1] <= cfg.num_patches:
            raise BenchError(
                f"latent must be (n, N, {cfg.embed_dim}) with 1 <= N <= {cfg.num_patches}, got shape {tuple(latent.shape)}"
            )
        x = self.decoder_embed(latent.to(device=self.device, dtype=self.cls_token.dtype))
        missing = cfg.num_patches - x.shape[1]
        if missing:
            x = torch.cat([x, self.mask_token.expand(x.shape[0], missing, -1)], dim=1)
        x = x + self.decoder_pos_embed[:, 1:]
        hidden = []
        for blk in self.decoder_blocks:
            x = blk(x)
            if return_hidden:
                hidden.append(x)
        patches = self.decoder_pred(self.decoder_norm(x))
        return (patches, hidden) if return_hidden else patches

    def forward(self, fbank):
        """fbank (n, 1024, 128) -> reconstructed patches (n, 512, 256), nothing masked."""
        return self.decode(self.encode(fbank))

    # -- patches <-> mel -----------------------------------------------------------------------

    def patchify(self, mel):
        """mel (n, T, 128), T a multiple of 16 -> (n, T/16 * 8, 256); patch = (time offset) * 16 + freq offset."""
        p, f_cols = self.config.patch_size, self.config.grid[1]
        if mel.ndim != 3 or mel.shape[2] != f_cols * p or mel.shape[1] % p:
            raise BenchError(f"mel must be (n, T, {f_cols * p}) with T a multiple of {p}, got {tuple(mel.shape)}")
        n, t = mel.shape[0], mel.shape[1] // p
        x = mel.reshape(n, t, p, f_cols, p).permute(0, 1, 3, 2, 4)
        return x.reshape(n, t * f_cols, p * p)

    def unpatchify(self, patches):
        """patches (n, L, 256), L a multiple of 8 (time-major tokens) -> mel (n, L/8 * 16, 128)."""
        p, f_cols = self.config.patch_size, self.config.grid[1]
        if patches.ndim != 3 or patches.shape[2] != p * p or patches.shape[1] % f_cols:
            raise BenchError(
                f"patches must be (n, L, {p * p}) with L a multiple of {f_cols}, got {tuple(patches.shape)}"
            )
        n, t = patches.shape[0], patches.shape[1] // f_cols
        x = patches.reshape(n, t, f_cols, p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(n, t * p, f_cols * p)

    # -- the paper's quantities ----------------------------------------------------------------

    def features(self, waveform, n_patch: int, sr: int = SAMPLE_RATE, batch_size: int = 8):
        """c_gt: waveform (n, samples) -> (n, n_patch, 768) float32 on the model's device.

        Each clip is resampled to 16 kHz if needed, tiled to 10 s (``repeat_to_seconds``),
        turned into AudioMAE's normalised fbank (``audiomae_input``, padded to the config's
        1024 frames), encoded without masking,
        and its first ``n_patch`` tokens (time-major: n_patch / 8 time rows) are kept. Runs under
        ``torch.no_grad`` (c_gt is a target; the paper freezes the encoder), ``batch_size`` clips
        at a time.
        """
        cfg = self.config
        if isinstance(n_patch, bool) or not isinstance(n_patch, (int, np.integer)) or not 1 <= n_patch <= cfg.num_patches:
            raise BenchError(f"n_patch must be an integer in 1 .. {cfg.num_patches}, got {n_patch!r}")
        if cfg.img_size[1] != AUDIOMAE_MEL_BINS:
            raise BenchError(f"features() needs {AUDIOMAE_MEL_BINS} mel bins, config has img_size {cfg.img_size}")
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        wav = np.asarray(waveform)
        if wav.ndim != 2:
            raise BenchError(f"waveform must be (n, samples), got shape {wav.shape}")
        if sr != SAMPLE_RATE:
            from bench.audio import resample

            wav = resample(wav, sr, SAMPLE_RATE)
        wav = repeat_to_seconds(wav.astype(np.float32, copy=False), CLIP_SECONDS, SAMPLE_RATE)
        out = []
        with torch.no_grad():
            for start in range(0, wav.shape[0], max(1, int(batch_size))):
                fbank = audiomae_input(wav[start : start + batch_size], target_frames=cfg.img_size[0]).to(self.device)
                out.append(self.encode(fbank)[:, :n_patch])
        if not out:
            return torch.zeros((0, n_patch, cfg.embed_dim), device=self.device)
        return torch.cat(out)

    def upper_bound_mel(self, c_gt, n_frames: int | None = None):
        """m_upp = unpatchify(decode(c_gt)): (n, 1024, 128) in AudioMAE's normalised-fbank units.

        ``n_frames`` keeps only the first frames (e.g. 16 * n_patch / 8, the rows c_gt covers).
        Gradients flow (the paper fine-tunes the decoder on this); wrap in ``torch.no_grad`` to
        just evaluate. See the module docstring on norm_pix_loss for the pretrained decoder.
        """
        mel = self.unpatchify(self.decode(c_gt))
        return mel if n_frames is None else mel[:, :n_frames]


def normalise_patches(patches, eps: float = 1e-6):
    """The pretraining target (norm_pix_loss): each patch minus its mean over its 256 values,
    divided by sqrt(unbiased variance + 1e-6) (official ``forward_loss``). The pretrained decoder
    predicts patches in these units."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


# ----------------------------------------------------------------------------- checkpoints


def read_checkpoint(path) -> dict[str, torch.Tensor]:
    """The state dict of an AudioMAE checkpoint: a ``.safetensors`` file, or a torch file holding
    either {'model': state_dict, ...} (the official format; other entries are ignored) or the state
    dict itself, read by the suite's one safe reader (``bench.networks.checkpoints.read_checkpoint``). A 'module.' prefix on every key is removed."""
    from bench.networks.checkpoints import read_checkpoint as read_file

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"AudioMAE checkpoint not found: {path}")
    obj = read_file(path, entry="audiomae")
    if path.suffix == ".safetensors":
        state = obj
    else:
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            state = obj["model"]
        elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = obj
        else:
            keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise BenchError(f"{path} holds no AudioMAE state dict: expected a dict with a 'model' entry, found {keys}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def load_audiomae(path=None, config: AudioMAEConfig | None = None, device="cpu") -> AudioMAE:
    """Build ``AudioMAE(config)`` (default: the released ViT-B) and load a checkpoint strictly; eval mode.

    ``path`` None: the weights catalogue's "audiomae" entry (``bench.weights.require``: $BENCH_WEIGHT_AUDIOMAE,
    else $BENCH_WEIGHTS/audiomae_pretrained.pth or its converted .safetensors; its sha256 is checked
    when the catalogue has one). Every key and shape must match (``metrics.networks.strict_load``, no
    optional keys); tensors are cast to float32.
    """
    if path is None:
        try:
            from bench.networks import weights
        except ImportError as err:  # pragma: no cover - the catalogue ships with the package
            raise BenchError(f"no AudioMAE checkpoint path given and the weights catalogue is unavailable ({err})") from err
        found = weights.require("audiomae", "AudioMAE (bench.networks.audiomae)")
        weights.check(found)
        path = found.load_path
    state = read_checkpoint(path)
    from bench.networks.checkpoints import strict_load

    model = AudioMAE(config)
    floats = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    strict_load(model, floats, "AudioMAE", str(path), optional_suffixes=())
    return model.to(device).eval()


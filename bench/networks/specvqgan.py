"""SpecVQGAN's spectrogram codebook (VQ model) and its feature-conditioned GPT (Park et al.'s generator).

Codebook (SpecVQGAN ``specvqgan/models/vqgan.py`` VQModel with taming-transformers' Encoder / Decoder;
``configs/vggsound_codebook.yaml``): 1,024 codes of dim 256, ch 128, ch_mult [1, 1, 2, 2, 4], 2 residual blocks per
level, attention at resolution 53 with the nominal resolution 848 (so ``encoder.down.4.attn.{0,1}``,
``*.mid.attn_1`` and ``decoder.up.4.attn.{0,1,2}`` exist); GroupNorm(32, eps 1e-6) and swish; an 80 x 336 mel in
[-1, 1] maps to a 5 x 21 grid of codes. Keys: ``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
``quant_conv.*``, ``post_quant_conv.*``.

Transformer (``specvqgan/modules/transformer/mingpt.py`` GPTFeats): a Conv1d(feat_dim -> n_embd, kernel 1) embeds the
condition frames, which are prepended to the code-token embeddings; minGPT blocks (``blocks.N.{ln1, ln2,
attn.{key,query,value,proj}, attn.mask, mlp.0, mlp.2}``), ``tok_emb``, ``pos_emb`` (1, block_size, n_embd), ``ln_f``,
``head`` (no bias). Codes are ordered column-major (``permuter.ColumnMajor``: frequency fastest).

The Lightning checkpoint of the conditioned transformer (``Net2NetTransformer``) keeps everything under
``['state_dict']`` with the prefixes ``transformer.``, ``first_stage_model.`` (the codebook) and
``first_stage_permuter.{forward,backward}_shuffle_idx``. :func:`load_transformer` loads it strictly. The buffers:
every ``transformer.blocks.N.attn.mask`` and both permuter index buffers must be present with the right shapes
(strict), and their VALUES must equal what the network derives (a causal lower-triangular mask with the
``n_unmasked`` corner; the column-major permutation of the H x W grid and its inverse): a checkpoint whose buffers
differ is refused with the key named, since it would silently sample in another order or attend to the future.

The conv5_3 model's own configuration is not public (figshare archives only); the paper profile uses SpecVQGAN's
VGGSound transformer defaults (24 layers, 16 heads, width 1024, block size 477) with feat_dim 2,560 and a 5 x 21 grid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.errors import BenchError


@dataclass(frozen=True)
class CodebookConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (53,)
    resolution: int = 848
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 1024
    norm_groups: int = 32  # GroupNorm groups (32 upstream; not stored in a checkpoint)

    @classmethod
    def from_arch(cls, arch: dict | None) -> "CodebookConfig":
        a = dict(arch or {})
        for k in ("ch_mult", "attn_resolutions"):
            if k in a:
                a[k] = tuple(int(v) for v in a[k])
        return cls(**{k: v for k, v in a.items() if k in cls.__dataclass_fields__})

    def arch(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 1024
    block_size: int = 477
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024
    feat_dim: int = 2560  # conv5_3: 512 channels x 5 frequency rows per condition frame
    n_unmasked: int = 0
    grid: tuple[int, int] = (5, 21)  # code grid (H frequency, W time) of a 4-s window

    @classmethod
    def from_arch(cls, arch: dict | None) -> "TransformerConfig":
        a = dict(arch or {})
        if "grid" in a:
            a["grid"] = tuple(int(v) for v in a["grid"])
        return cls(**{k: v for k, v in a.items() if k in cls.__dataclass_fields__})

    def arch(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def column_major_index(H: int, W: int) -> np.ndarray:
    """ColumnMajor's forward_shuffle_idx: raster index (row h, column w) = h * W + w, visited column by column."""
    return np.arange(H * W).reshape(H, W).T.ravel()


def norm(c, groups):
    return nn.GroupNorm(num_groups=groups, num_channels=c, eps=1e-6, affine=True)

def swish(x):
    return x * torch.sigmoid(x)

class ResnetBlock(nn.Module):
    def __init__(self, c_in, c_out, groups):
        super().__init__()
        self.norm1 = norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2 = norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h

class AttnBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = norm(c, groups)
        self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, hh * ww)
        w = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)
        v = self.v(h).reshape(b, c, hh * ww)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)

class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))

class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

class Encoder(nn.Module):
    def __init__(self, cfg: CodebookConfig):
        super().__init__()
        g, n = cfg.norm_groups, len(cfg.ch_mult)
        self.conv_in = nn.Conv2d(1, cfg.ch, 3, 1, 1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        res = cfg.resolution
        self.down = nn.ModuleList()
        for i in range(n):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            c_in, c_out = cfg.ch * in_mult[i], cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(c_in, c_out, g))
                c_in = c_out
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(c_in, g))
            if i != n - 1:
                level.downsample = Downsample(c_in)
                res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResnetBlock(c_in, c_in, g), AttnBlock(c_in, g), ResnetBlock(c_in, c_in, g)
        self.norm_out = norm(c_in, g)
        self.conv_out = nn.Conv2d(c_in, cfg.z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))

class Decoder(nn.Module):
    def __init__(self, cfg: CodebookConfig):
        super().__init__()
        g, n = cfg.norm_groups, len(cfg.ch_mult)
        c_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, c_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResnetBlock(c_in, c_in, g), AttnBlock(c_in, g), ResnetBlock(c_in, c_in, g)
        levels = []
        for i in reversed(range(n)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            c_out = cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(c_in, c_out, g))
                c_in = c_out
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(c_in, g))
            if i != 0:
                level.upsample = Upsample(c_in)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = norm(c_in, g)
        self.conv_out = nn.Conv2d(c_in, 1, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))

class VectorQuantizer(nn.Module):
    def __init__(self, n_e, e_dim, beta=0.25):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)

    def forward(self, z):
        """z (B, e_dim, H, W) -> (straight-through quantised z, VQ loss, codes (B, H, W))."""
        zf = z.permute(0, 2, 3, 1).reshape(-1, self.e_dim)
        e = self.embedding.weight
        d = zf.pow(2).sum(1, keepdim=True) - 2 * zf @ e.T + e.pow(2).sum(1)[None]
        idx = d.argmin(1)
        zq = e[idx].view(z.shape[0], z.shape[2], z.shape[3], self.e_dim).permute(0, 3, 1, 2)
        loss = F.mse_loss(zq.detach(), z) * self.beta + F.mse_loss(zq, z.detach())
        return z + (zq - z).detach(), loss, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes):
        """codes (B, H, W) int64 -> (B, e_dim, H, W)."""
        return self.embedding(codes).permute(0, 3, 1, 2).contiguous()

class VQModel(nn.Module):
    """The codebook: ``encode(mel (B, 1, 80, T) in [-1, 1])`` -> codes (B, H, W); ``decode_codes`` back."""

    def __init__(self, cfg: CodebookConfig):
        super().__init__()
        self.config = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def forward(self, x):
        zq, qloss, codes = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(zq)), qloss, codes

    def encode(self, x):
        return self.quantize(self.quant_conv(self.encoder(x)))[2]

    def decode_codes(self, codes):
        return self.decoder(self.post_quant_conv(self.quantize.lookup(codes)))

class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.key, self.query, self.value = (nn.Linear(cfg.n_embd, cfg.n_embd) for _ in range(3))
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.register_buffer("mask", causal_mask(cfg).view(1, 1, cfg.block_size, cfg.block_size))
        self.n_head = cfg.n_head

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        k = self.key(x).view(B, T, self.n_head, hs).transpose(1, 2)
        q = self.query(x).view(B, T, self.n_head, hs).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        y = torch.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))

class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(0.0))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

class GPTFeats(nn.Module):
    """``forward(codes (B, t), feats (B, feat_dim, T_cond))`` -> logits (B, T_cond + t, vocab)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.embedder = nn.Conv1d(cfg.feat_dim, cfg.n_embd, kernel_size=1, padding=0)
        for m in self.modules():  # minGPT's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0.0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.data.zero_()

    def forward(self, codes, feats):
        x = torch.cat([self.embedder(feats).permute(0, 2, 1), self.tok_emb(codes)], dim=1)
        t = x.shape[1]
        if t > self.config.block_size:
            raise BenchError(f"{t} tokens exceed the transformer's block size {self.config.block_size}")
        return self.head(self.ln_f(self.blocks(x + self.pos_emb[:, :t])))

class ColumnMajor(nn.Module):
    def __init__(self, H, W):
        super().__init__()
        idx = torch.from_numpy(column_major_index(H, W)).long()
        self.register_buffer("forward_shuffle_idx", idx)
        self.register_buffer("backward_shuffle_idx", torch.argsort(idx))

    def forward(self, x, reverse=False):
        return x[:, self.backward_shuffle_idx if reverse else self.forward_shuffle_idx]

class Net2NetTransformer(nn.Module):
    """The Lightning module's layout: ``transformer``, ``first_stage_model``, ``first_stage_permuter``."""

    def __init__(self, tcfg: TransformerConfig, ccfg: CodebookConfig):
        super().__init__()
        self.transformer = GPTFeats(tcfg)
        self.first_stage_model = VQModel(ccfg)
        self.first_stage_permuter = ColumnMajor(*tcfg.grid)


def causal_mask(cfg: TransformerConfig):
    """minGPT's mask: lower-triangular ones (block_size, block_size), the n_unmasked corner all ones."""
    import torch

    mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size))
    if cfg.n_unmasked:
        mask[: cfg.n_unmasked, : cfg.n_unmasked] = 1
    return mask


def build_codebook(config: CodebookConfig | None = None):
    return VQModel(config or CodebookConfig())


def build_net2net(tcfg: TransformerConfig | None = None, ccfg: CodebookConfig | None = None):
    tcfg, ccfg = tcfg or TransformerConfig(), ccfg or CodebookConfig()
    if tcfg.vocab_size != ccfg.n_embed:
        raise BenchError(f"transformer vocab_size {tcfg.vocab_size} must equal the codebook's n_embed {ccfg.n_embed}")
    return Net2NetTransformer(tcfg, ccfg)


def _lightning_state_dict(path, entry: str, what: str) -> dict:
    from bench.networks.checkpoints import read_checkpoint

    obj = read_checkpoint(path, entry=entry)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
    raise BenchError(f"{what} checkpoint {path} has no Lightning 'state_dict' (has {keys}); expected a SpecVQGAN "
                     f"Lightning checkpoint (see `bench weights ls`)")


TRAINING_ONLY_PREFIX = "loss."
"""A codebook's own Lightning checkpoint also holds its training loss networks (LPAPS, discriminator) under
``loss.``; they play no part in encoding or decoding and are dropped before the strict load."""


def load_codebook(path: str | Path, config: CodebookConfig | None = None, device: str = "cpu"):
    """The VQ codebook from its own Lightning checkpoint (``['state_dict']`` of VQModel), strictly (``loss.*`` dropped)."""
    from bench.networks.checkpoints import strict_load

    sd = _lightning_state_dict(path, "specvqgan-codebook", "SpecVQGAN codebook")
    sd = {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY_PREFIX)}
    net = build_codebook(config)
    strict_load(net, sd, "SpecVQGAN codebook", str(path))
    return net.to(device).eval()


def load_transformer(path: str | Path, tcfg: TransformerConfig | None = None, ccfg: CodebookConfig | None = None,
                     device: str = "cpu", entry: str = "park-conv5_3-transformer"):
    """The conditioned transformer with its codebook and permuter from one Lightning checkpoint, strictly; the
    attention masks and permuter indices must also equal the derived ones (see the module docstring)."""
    import torch

    from bench.networks.checkpoints import strict_load

    what = "SpecVQGAN conv5_3 transformer"
    sd = _lightning_state_dict(path, entry, what)
    net = build_net2net(tcfg, ccfg)
    derived = {k: v.clone() for k, v in net.state_dict().items() if k.endswith((".attn.mask", "_shuffle_idx"))}
    strict_load(net, sd, what, str(path))
    for k, want in derived.items():
        if not torch.equal(sd[k].to(want.dtype), want):
            raise BenchError(f"{what} checkpoint {path}: buffer {k} differs from the {'causal mask' if 'mask' in k else 'column-major order'} "
                             f"the network derives (block_size / n_unmasked / grid); is it the conv5_3 model's checkpoint?")
    return net.to(device).eval()


def save_lightning(path: Path, state_dict: dict, **extra) -> None:
    """Write ``{'state_dict': ..., **extra}`` as a Lightning-style checkpoint (atomically)."""
    from bench.io import write_torch

    write_torch(Path(path), {"state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, **extra})


def conditioning_tokens(conv5_3: np.ndarray) -> np.ndarray:
    """conv5_3 (n, C, F, T) -> condition frames (n, C * F, T): frame t's vector has index c * F + f (SR's
    ``transpose(3, 0, 1, 2).reshape(T, -1)``), laid out channels-first for the Conv1d embedder."""
    a = np.asarray(conv5_3)
    if a.ndim != 4:
        raise BenchError(f"conv5_3 features must be (n, channels, freq, time), got shape {a.shape}")
    n, c, f, t = a.shape
    return np.ascontiguousarray(a.reshape(n, c * f, t))


def next_code_logits(net, seq, cond):
    """Logits of every code of ``seq`` given the condition and the codes before it, as SpecVQGAN trains its GPT
    (teacher forcing). seq: (B, H * W) int64 column-major codes; cond: (B, feat_dim, T_cond) float32 tensor.
    Returns (B, H * W, vocab_size)."""
    return net.transformer(seq[:, :-1], cond)[:, cond.shape[-1] - 1 :]


def sample_codes(net, cond: np.ndarray, *, top_k: int, temperature: float = 1.0, generator=None, batch_size: int = 32,
                 device: str = "cpu") -> np.ndarray:
    """Sample H * W codes per condition autoregressively (column-major order), as SpecVQGAN does: logits of the
    last position / temperature, keep the top_k, softmax, multinomial. cond: (n, feat_dim, T_cond) float32.
    Returns codes (n, H, W) int64 in raster order. ``generator``: a torch.Generator (CPU) for the draws."""
    import torch

    tr, perm = net.transformer, net.first_stage_permuter
    H, W = tr.config.grid
    steps = H * W
    out = np.empty((len(cond), H, W), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(cond), batch_size):
            c = torch.from_numpy(np.ascontiguousarray(cond[i : i + batch_size], dtype=np.float32)).to(device)
            seq = torch.zeros(len(c), 0, dtype=torch.long, device=device)
            for _ in range(steps):
                logits = tr(seq, c)[:, -1, :].float().cpu() / float(temperature)
                if top_k and top_k < logits.shape[1]:
                    v, _ = torch.topk(logits, top_k)
                    logits[logits < v[:, [-1]]] = -float("inf")
                ix = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
                seq = torch.cat([seq, ix.to(device)], dim=1)
            raster = perm(seq, reverse=True)
            out[i : i + len(c)] = raster.view(len(c), H, W).cpu().numpy()
    return out


def decode_codes(net, codes: np.ndarray, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """codes (n, H, W) -> mels (n, 80, 16 W) in [-1, 1] (clamped) through the first stage's decoder."""
    import torch

    vq = net.first_stage_model if hasattr(net, "first_stage_model") else net
    out = []
    with torch.no_grad():
        for i in range(0, len(codes), batch_size):
            cb = torch.from_numpy(np.asarray(codes[i : i + batch_size], dtype=np.int64)).to(device)
            out.append(vq.decode_codes(cb)[:, 0].clamp(-1, 1).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)

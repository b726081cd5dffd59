"""LAION CLAP audio and text encoders (Wu et al. 2023), with transformers' ``ClapModel`` as the engine.

Two kinds of weights are accepted, both loaded strictly (every key and shape checked):

- a Hugging Face model folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, plus processor
  files), e.g. ``laion/clap-htsat-unfused`` or ``laion/larger_clap_general``;
- an original LAION checkpoint (``630k-audioset-best.pt`` and friends: a dict whose 'state_dict' holds the
  ``CLAP`` module's weights, keys prefixed ``module.``). :func:`laion_to_hf` renames its keys to transformers'
  names (facts from transformers' ``convert_clap_original_pytorch_to_hf.py``: ``text_branch`` -> ``text_model``,
  ``audio_branch`` -> ``audio_model.audio_encoder``, Swin ``attn.qkv`` split into query / key / value, ...), drops
  the entries CLAP embeddings never use (``LAION_ONLY``) and :func:`config_from_state_dict` reads the
  architecture from the shapes.

Audio path (``ClapNetwork.audio_embeddings``), as laion_clap's ``get_audio_embedding_from_data`` in eval mode but
deterministic: the waveform (48 kHz, :func:`prepare_waveform`) is quantised to int16 and back as laion_clap does;
a clip of at most 10 s (480,000 samples) is repeated whole as often as it fits and zero-padded to 10 s
("repeatpad"); the log-mel (n_fft 1024, hop 480, periodic Hann, reflect padding, power spectrum, 64 mels
50-14,000 Hz, 10 log10(max(mel, 1e-10))) has 1001 frames. Unfused models use Slaney mel filters (librosa's, as
torchlibrosa inside HTSAT); fused models use HTK filters without normalisation (torchaudio's, as laion_clap's
``get_mel``), the mel stacked four times with ``is_longer`` False, so no random crop is ever drawn (transformers'
feature extractor would mark a random clip of a short batch "longer"). A clip longer than 10 s is cut into
ceil(L / 480,000) windows of 10 s whose starts are spread evenly from 0 to L - 480,000 (the last one ends at the
clip's end), each is embedded, and the normalised window embeddings are averaged and normalised again; laion_clap
would embed one random 10-s crop instead. Output: (n, 512) L2-normalised ``audio_projection`` outputs.

Text path: RoBERTa tokens (padding to 77, truncation, as laion_clap's tokenizer), ``text_model`` pooler output,
``text_projection``, L2-normalised.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError, UnavailableError

NAME = "LAION CLAP"
SAMPLE_RATE = 48_000
N_FFT = 1024
HOP = 480
N_MELS = 64
FMIN, FMAX = 50.0, 14_000.0
MAX_SAMPLES = 480_000  # 10 s
TEXT_LENGTH = 77

LAION_ONLY = (
    r"^audio_branch\.spectrogram_extractor\.",  # torchlibrosa STFT kernels: the front end is computed here
    r"^audio_branch\.logmel_extractor\.",  # torchlibrosa mel filter (shapes checked before dropping)
    r"^audio_branch\.tscam_conv\.",  # HTSAT's AudioSet sound-event head, not part of the embedding
    r"^audio_branch\.head\.",
    r"^audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$",  # Swin shift masks, recomputed by the engine
    r"^text_transform\.",  # MLP heads used only by the training loss
    r"^audio_transform\.",
)
"""LAION checkpoint entries with no counterpart in ``ClapModel`` (dropped by :func:`laion_to_hf`)."""

_AUDIO_RULES = (
    (r"^bn0\.", "batch_norm."),
    (r"^(layers\.\d+\.blocks\.\d+\.)norm1\.", r"\1layernorm_before."),
    (r"^(layers\.\d+\.blocks\.\d+\.)norm2\.", r"\1layernorm_after."),
    (r"^(layers\.\d+\.blocks\.\d+\.)attn\.proj\.", r"\1attention.output.dense."),
    (r"^(layers\.\d+\.blocks\.\d+\.)attn\.(relative_position_bias_table|relative_position_index)$", r"\1attention.self.\2"),
    (r"^(layers\.\d+\.blocks\.\d+\.)mlp\.fc1\.", r"\1intermediate.dense."),
    (r"^(layers\.\d+\.blocks\.\d+\.)mlp\.fc2\.", r"\1output.dense."),
)
_QKV = re.compile(r"^(layers\.\d+\.blocks\.\d+\.)attn\.qkv\.(weight|bias)$")
_AUDIO_PREFIX = "audio_model.audio_encoder."


# ----------------------------------------------------------------------------------------------
# waveform and mel front end


def prepare_waveform(audio: np.ndarray, sr: int) -> np.ndarray:
    """(samples,), (n, samples) or (n, channels, samples) at ``sr`` -> (n, L) float32 at 48 kHz (first channel).

    No mean removal or minimum length here (those are audioldm_eval's PANNs / VGGish conventions).
    """
    from bench.audio import resample

    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[None]
    elif x.ndim == 3:
        x = x[:, 0]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise BenchError(f"audio must be (samples,), (n, samples) or (n, channels, samples), got shape {np.asarray(audio).shape}")
    return resample(x.astype(np.float32), sr, SAMPLE_RATE)


def quantise_int16(x: torch.Tensor) -> torch.Tensor:
    """laion_clap's int16_to_float32(float32_to_int16(x)): clip to [-1, 1], x 32767, truncate, / 32767."""
    return torch.trunc(torch.clamp(x, -1.0, 1.0) * 32767.0) / 32767.0


def repeat_pad(x: torch.Tensor, length: int = MAX_SAMPLES) -> torch.Tensor:
    """(L,) with L <= length -> (length,): the clip repeated int(length / L) times, then zeros."""
    n = x.shape[0]
    if n > length:
        raise BenchError(f"repeat_pad: clip of {n} samples is longer than {length}")
    reps = length // n
    out = x.repeat(reps)
    return torch.nn.functional.pad(out, (0, length - out.shape[0]))


def window_starts(n: int, length: int = MAX_SAMPLES) -> list[int]:
    """Starts of the 10-s windows covering a clip of n > length samples (first at 0, last ending at n)."""
    k = int(math.ceil(n / length))
    return [int(round(s)) for s in np.linspace(0, n - length, k)]


def htk_mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) HTK-scale triangles without area normalisation (torchaudio's defaults)."""
    freqs = np.linspace(0.0, sr // 2, n_fft // 2 + 1)

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    m_pts = np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).T.astype(np.float32)


def log_mel(wave: torch.Tensor, fused: bool, fmin: float = FMIN, fmax: float = FMAX) -> torch.Tensor:
    """(B, 480000) at 48 kHz -> (B, 1001, 64) float32 dB log-mel (see the module docstring)."""
    from bench.audio import mel_filterbank

    window = torch.hann_window(N_FFT, periodic=True, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(wave, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = spec.real**2 + spec.imag**2  # (B, F, T)
    fb = htk_mel_filters(fmin=fmin, fmax=fmax) if fused else mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, fmin, fmax)
    mel = torch.matmul(torch.from_numpy(np.ascontiguousarray(fb)).to(wave.device, wave.dtype), power)
    return (10.0 * torch.log10(torch.clamp(mel, min=1e-10))).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# the network


class ClapNetwork:
    """A loaded CLAP model plus its front end; see the module docstring for the exact processing.

    model: transformers ``ClapModel`` (eval mode); fused: whether its audio encoder uses feature fusion;
    tokenizer_source: a folder with RoBERTa tokenizer files (for text), or None; source: where the weights came from.
    """

    def __init__(self, model, *, tokenizer_source=None, source: str = "", fmin: float = FMIN, fmax: float = FMAX):
        self.model = model.eval()
        self.fused = bool(model.config.audio_config.enable_fusion)
        self.tokenizer_source = tokenizer_source
        self.source = source
        self.fmin, self.fmax = float(fmin), float(fmax)
        self._tokenizer = None
        self.byte_tokens = False  # text as UTF-8 byte ids: random-init tiny and simulator-trained models (byte_token_ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def to(self, device) -> "ClapNetwork":
        self.model.to(device)
        return self

    def _windows(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(n, L) -> (W, 480000) repeat-padded windows and the clip each belongs to."""
        out, owner = [], []
        for i in range(wave.shape[0]):
            clip = wave[i]
            if clip.shape[0] <= MAX_SAMPLES:
                out.append(repeat_pad(clip))
                owner.append(i)
            else:
                for s in window_starts(clip.shape[0]):
                    out.append(clip[s : s + MAX_SAMPLES])
                    owner.append(i)
        return torch.stack(out), owner

    @torch.no_grad()
    def audio_embeddings(self, wave48k, batch_size: int = 8) -> np.ndarray:
        """(n, L) float waveforms at 48 kHz -> (n, D) float32, L2-normalised."""
        import torch.nn.functional as F

        wave = torch.as_tensor(np.asarray(wave48k, dtype=np.float32) if not isinstance(wave48k, torch.Tensor) else wave48k)
        if wave.ndim != 2 or wave.shape[1] == 0:
            raise BenchError(f"CLAP expects waveforms (n, samples) at 48 kHz, got shape {tuple(wave.shape)}")
        wave = quantise_int16(wave.to(torch.float32))
        windows, owner = self._windows(wave)
        device = self.device
        embs = []
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start : start + batch_size].to(device)
            mel = log_mel(chunk, self.fused, self.fmin, self.fmax)[:, None]  # (b, 1, 1001, 64)
            if self.fused:
                mel = mel.expand(-1, 4, -1, -1)
            is_longer = torch.zeros(mel.shape[0], 1, dtype=torch.bool, device=device)
            pooled = self.model.audio_model(input_features=mel, is_longer=is_longer).pooler_output
            embs.append(F.normalize(self.model.audio_projection(pooled), dim=-1).float().cpu())
        emb = torch.cat(embs)
        owner_t = torch.tensor(owner)
        out = torch.zeros(wave.shape[0], emb.shape[1])
        out.index_add_(0, owner_t, emb)
        return F.normalize(out, dim=-1).numpy().astype(np.float32)

    @torch.no_grad()
    def text_embeddings_from_ids(self, input_ids, attention_mask=None) -> np.ndarray:
        """Token ids (n, T) (and mask) -> (n, D) float32, L2-normalised."""
        import torch.nn.functional as F

        device = self.device
        ids = torch.as_tensor(input_ids).to(device)
        mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).to(device)
        pooled = self.model.text_model(input_ids=ids, attention_mask=mask).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1).float().cpu().numpy()

    def tokenizer(self):
        if self._tokenizer is None:
            if self.tokenizer_source is None:
                raise UnavailableError(
                    "CLAP text embeddings need RoBERTa tokenizer files: use a Hugging Face CLAP folder "
                    "(e.g. laion/clap-htsat-unfused) or put roberta-base in $BENCH_WEIGHTS (see `bench weights ls`)"
                )
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_source), local_files_only=True)
        return self._tokenizer

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """Texts -> (n, D) float32, L2-normalised (padding to 77 tokens with truncation, as laion_clap)."""
        if self.byte_tokens:
            ids, mask = byte_token_ids(texts, self.model.config.text_config.vocab_size)
            return self.text_embeddings_from_ids(ids, mask)
        tok = self.tokenizer()(list(texts), padding="max_length", truncation=True, max_length=TEXT_LENGTH, return_tensors="pt")
        return self.text_embeddings_from_ids(tok["input_ids"], tok["attention_mask"])


def byte_token_ids(texts: list[str], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The tokenizer of models without RoBERTa files: UTF-8 bytes as ids (offset past the special tokens).

    Used by random-initialised tiny CLAP models and by those trained on the simulator's captions
    (``ClapNetwork.byte_tokens``, arch ``tokenizer: bytes``); a published model always uses its real tokenizer.
    """
    ids = np.ones((len(texts), TEXT_LENGTH), dtype=np.int64)  # RoBERTa's pad id is 1
    mask = np.zeros((len(texts), TEXT_LENGTH), dtype=np.int64)
    for i, text in enumerate(texts):
        body = [3 + (b % (vocab_size - 3)) for b in str(text).encode("utf-8")][: TEXT_LENGTH - 2]
        row = [0] + body + [2]  # <s> ... </s>
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


# ----------------------------------------------------------------------------------------------
# configurations


def tiny_config(fused: bool = False):
    """A small ClapConfig (random weights build in well under a second), for tests."""
    from transformers import ClapConfig

    return ClapConfig(
        text_config=dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=1, intermediate_size=37,
                         max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1),
        audio_config=dict(patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 2], hidden_size=16,
                          window_size=8, num_hidden_layers=2, enable_fusion=fused, fusion_type="aff_2d" if fused else None),
        projection_dim=16,
    )


def build_model(config=None):
    """A ClapModel with random weights in eval mode (``config`` None: transformers' default, HTSAT-tiny + RoBERTa)."""
    from transformers import ClapConfig, ClapModel

    return ClapModel(config if config is not None else ClapConfig()).eval()


def _count(prefix_re: str, keys) -> int:
    idx = {int(m.group(1)) for k in keys if (m := re.match(prefix_re, k))}
    return max(idx) + 1 if idx else 0


def config_from_state_dict(sd: dict):
    """The ClapConfig a state dict in transformers' names describes (shapes and counts; see module docstring).

    Text heads = hidden / 64 (RoBERTa's head size), layer-norm eps 1e-5 (RoBERTa's; LAION's text branch is
    ``RobertaModel('roberta-base')``).
    """
    from transformers import ClapConfig

    def shape(key):
        if key not in sd:
            raise BenchError(f"{NAME} checkpoint lacks {key}; is it an HTSAT + RoBERTa CLAP checkpoint?")
        return tuple(sd[key].shape)

    keys = list(sd)
    a = _AUDIO_PREFIX
    n_layers = _count(re.escape(a) + r"layers\.(\d+)\.", keys)
    if n_layers == 0:
        raise BenchError(f"{NAME} checkpoint has no HTSAT audio layers (audio_branch.layers.*); only HTSAT audio encoders are supported")
    depths = [_count(re.escape(a) + rf"layers\.{i}\.blocks\.(\d+)\.", keys) for i in range(n_layers)]
    heads = [shape(f"{a}layers.{i}.blocks.0.attention.self.relative_position_bias_table")[1] for i in range(n_layers)]
    rows = shape(f"{a}layers.0.blocks.0.attention.self.relative_position_bias_table")[0]
    window = int(round((math.sqrt(rows) + 1) / 2))
    embed = shape(f"{a}patch_embed.proj.weight")
    fused = any(".fusion_model." in k for k in keys)
    if embed[1] != 1:
        raise BenchError(f"{NAME}: patch embedding with {embed[1]} input channels (channel_map fusion) is not supported")
    proj = shape("audio_projection.linear1.weight")
    t_hidden = shape("text_model.embeddings.word_embeddings.weight")[1]
    type_vocab = shape("text_model.embeddings.token_type_embeddings.weight")[0]
    if type_vocab != 1:
        raise BenchError(f"{NAME}: text branch with {type_vocab} token types is not RoBERTa; only RoBERTa text branches are supported")
    audio = dict(
        patch_embeds_hidden_size=embed[0], patch_size=embed[2], patch_stride=[embed[2], embed[3]], depths=depths,
        num_attention_heads=heads, window_size=window, hidden_size=shape(f"{a}norm.weight")[0],
        num_mel_bins=shape(f"{a}batch_norm.weight")[0], num_hidden_layers=n_layers,
        mlp_ratio=shape(f"{a}layers.0.blocks.0.intermediate.dense.weight")[0] / embed[0],
        enable_fusion=fused, fusion_type="aff_2d" if fused else None, projection_dim=proj[0],
    )
    text = dict(
        vocab_size=shape("text_model.embeddings.word_embeddings.weight")[0], hidden_size=t_hidden,
        num_hidden_layers=_count(r"text_model\.encoder\.layer\.(\d+)\.", keys),
        num_attention_heads=max(1, t_hidden // 64),
        intermediate_size=shape("text_model.encoder.layer.0.intermediate.dense.weight")[0],
        max_position_embeddings=shape("text_model.embeddings.position_embeddings.weight")[0],
        type_vocab_size=type_vocab, layer_norm_eps=1e-5, pad_token_id=1, projection_dim=proj[0],
    )
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=proj[0])


# ----------------------------------------------------------------------------------------------
# LAION <-> transformers key names


def _check_front_end(sd: dict) -> None:
    expected = {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": (N_FFT // 2 + 1, 1, N_FFT),
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": (N_FFT // 2 + 1, 1, N_FFT),
        "audio_branch.logmel_extractor.melW": (N_FFT // 2 + 1, N_MELS),
    }
    for key, shape in expected.items():
        if key in sd and tuple(sd[key].shape) != shape:
            raise BenchError(
                f"{NAME} checkpoint: {key} has shape {tuple(sd[key].shape)}, expected {shape} "
                f"(48 kHz, n_fft {N_FFT}, {N_MELS} mels); this front end is not supported"
            )


def laion_to_hf(sd: dict) -> dict:
    """Original LAION CLAP state dict (with or without ``module.``) -> transformers ``ClapModel`` names.

    ``LAION_ONLY`` entries are dropped (the front-end shapes are checked first); keys no rule knows are kept
    as they are, so a strict load reports them as unexpected.
    """
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    _check_front_end(sd)
    drop = [re.compile(p) for p in LAION_ONLY]
    out = {}
    for key, value in sd.items():
        if any(p.search(key) for p in drop):
            continue
        if key.startswith("text_branch."):
            out["text_model." + key[len("text_branch."):]] = value
        elif key.startswith("audio_branch."):
            rest = key[len("audio_branch."):]
            m = _QKV.match(rest)
            if m:
                q, k, v = torch.chunk(value, 3, dim=0)
                for name, part in (("query", q), ("key", k), ("value", v)):
                    out[f"{_AUDIO_PREFIX}{m.group(1)}attention.self.{name}.{m.group(2)}"] = part.contiguous()
                continue
            for pattern, repl in _AUDIO_RULES:
                rest, n = re.subn(pattern, repl, rest)
                if n:
                    break
            out[_AUDIO_PREFIX + rest] = value
        elif m := re.match(r"^(text|audio)_projection\.([02])\.(weight|bias)$", key):
            out[f"{m.group(1)}_projection.linear{1 if m.group(2) == '0' else 2}.{m.group(3)}"] = value
        else:
            out[key] = value
    return out


def hf_to_laion(sd: dict, module_prefix: bool = True) -> dict:
    """The inverse of :func:`laion_to_hf` for ``ClapModel`` keys (used by tests to build LAION-style files).

    Only renames: the LAION-only entries (front end, tscam head, transforms) are not invented here.
    """
    inverse_audio = (
        (r"^batch_norm\.", "bn0."),
        (r"^(layers\.\d+\.blocks\.\d+\.)layernorm_before\.", r"\1norm1."),
        (r"^(layers\.\d+\.blocks\.\d+\.)layernorm_after\.", r"\1norm2."),
        (r"^(layers\.\d+\.blocks\.\d+\.)attention\.output\.dense\.", r"\1attn.proj."),
        (r"^(layers\.\d+\.blocks\.\d+\.)attention\.self\.(relative_position_bias_table|relative_position_index)$", r"\1attn.\2"),
        (r"^(layers\.\d+\.blocks\.\d+\.)intermediate\.dense\.", r"\1mlp.fc1."),
        (r"^(layers\.\d+\.blocks\.\d+\.)output\.dense\.", r"\1mlp.fc2."),
    )
    qkv = re.compile(r"^(layers\.\d+\.blocks\.\d+\.)attention\.self\.(query|key|value)\.(weight|bias)$")
    out, parts = {}, {}
    for key, value in sd.items():
        if key.startswith("text_model."):
            out["text_branch." + key[len("text_model."):]] = value
        elif key.startswith(_AUDIO_PREFIX):
            rest = key[len(_AUDIO_PREFIX):]
            m = qkv.match(rest)
            if m:
                parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
                continue
            for pattern, repl in inverse_audio:
                rest, n = re.subn(pattern, repl, rest)
                if n:
                    break
            out["audio_branch." + rest] = value
        elif m := re.match(r"^(text|audio)_projection\.linear([12])\.(weight|bias)$", key):
            out[f"{m.group(1)}_projection.{0 if m.group(2) == '1' else 2}.{m.group(3)}"] = value
        else:
            out[key] = value
    for (block, kind), qkv_parts in parts.items():
        out[f"audio_branch.{block}attn.qkv.{kind}"] = torch.cat([qkv_parts["query"], qkv_parts["key"], qkv_parts["value"]])
    if module_prefix:
        out = {"module." + k: v for k, v in out.items()}
    return out


# ----------------------------------------------------------------------------------------------
# loading


def _read_folder_weights(folder: Path) -> dict:
    from bench.networks.weights import load_checkpoint_file

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_checkpoint_file(folder / name)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            weight_map = json.loads((folder / index).read_text())["weight_map"]
            sd = {}
            for shard in sorted(set(weight_map.values())):
                sd.update(load_checkpoint_file(folder / shard))
            return sd
    raise BenchError(f"{NAME} folder {folder} has no model.safetensors or pytorch_model.bin")


def _folder_front_end(folder: Path) -> dict:
    """fmin / fmax from preprocessor_config.json when present (LAION's 50 / 14000 otherwise)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    for key, want in (("sampling_rate", SAMPLE_RATE), ("fft_window_size", N_FFT), ("hop_length", HOP), ("feature_size", N_MELS)):
        if key in cfg and int(cfg[key]) != want:
            raise BenchError(f"{NAME} folder {folder}: preprocessor {key} = {cfg[key]}, this suite supports {want} only")
    out = {}
    if "frequency_min" in cfg:
        out["fmin"] = float(cfg["frequency_min"])
    if "frequency_max" in cfg:
        out["fmax"] = float(cfg["frequency_max"])
    return out


def load_folder(folder, *, device: str = "cpu") -> ClapNetwork:
    """A Hugging Face CLAP folder (config.json + weights), strictly loaded."""
    from transformers import ClapConfig

    from bench.networks.checkpoints import strict_load

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise BenchError(f"{NAME} folder {folder} has no config.json")
    config = ClapConfig.from_json_file(str(folder / "config.json"))
    model = build_model(config)
    strict_load(model, _read_folder_weights(folder), NAME, str(folder))
    tok = folder if any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")) else None
    return ClapNetwork(model.to(device), tokenizer_source=tok, source=str(folder), **_folder_front_end(folder))


def load_laion(path, *, device: str = "cpu", config=None, tokenizer_source=None) -> ClapNetwork:
    """An original LAION ``.pt`` checkpoint (or a bare/converted state dict of one), strictly loaded."""
    from bench.networks.weights import load_checkpoint_file
    from bench.networks.checkpoints import strict_load

    obj = load_checkpoint_file(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd:
        raise BenchError(f"{NAME} checkpoint {path} holds no state dict (expected a dict with 'state_dict')")
    hf = laion_to_hf(sd)
    model = build_model(config if config is not None else config_from_state_dict(hf))
    strict_load(model, hf, NAME, str(path))
    return ClapNetwork(model.to(device), tokenizer_source=tokenizer_source, source=str(path))


def config_from_arch(arch: dict):
    """ClapConfig from an entry's ``arch`` ({text_config, audio_config, projection_dim, tokenizer})."""
    from transformers import ClapConfig

    try:
        return ClapConfig(text_config=dict(arch["text_config"]), audio_config=dict(arch["audio_config"]),
                          projection_dim=int(arch["projection_dim"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{NAME}: the entry's arch must have text_config, audio_config and projection_dim ({exc})") from None


def load_clap(path, *, device: str = "cpu", tokenizer_source=None, arch: dict | None = None) -> ClapNetwork:
    """A folder (Hugging Face layout) or a file (LAION checkpoint; with ``arch``, a state dict in either naming
    for the ClapConfig ``arch`` describes, e.g. a simulator-trained network)."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path, device=device)
    if arch is None:
        return load_laion(path, device=device, tokenizer_source=tokenizer_source)
    net = load_laion(path, device=device, config=config_from_arch(arch), tokenizer_source=None)
    net.byte_tokens = arch.get("tokenizer") == "bytes"
    if not net.byte_tokens:
        net.tokenizer_source = tokenizer_source
    return net

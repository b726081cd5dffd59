"""Pretrained weights: the catalogue of every checkpoint the suite can use, where they are looked for, and safe loading.

Nothing here downloads anything unless ``fetch`` is called explicitly (``bench weights fetch NAME``); importing
this module touches neither the network nor the disk.

Lookup order for an entry (first hit wins; an explicit path that does not exist is an error, not a fallback):

1. an explicit path: the ``explicit`` argument, else ``$BENCH_WEIGHT_<NAME>`` (name upper-cased, ``-`` -> ``_``,
   e.g. ``BENCH_WEIGHT_PANNS_CNN14_16K=/data/Cnn14_16k_mAP=0.438.pth``);
2. ``$BENCH_WEIGHTS/<file>`` (a file, or for Hugging Face entries a folder with the repository's files);
3. for entries hosted on the Hugging Face hub, the hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``, in ``models--<org>--<name>/snapshots/<revision>/`` (the revision ``refs/main``
   names, else the newest).

At each place the original file is looked for first, then its converted sibling ``<stem>.safetensors`` written by
``bench weights convert NAME --trust``.

Local entries: ``<weights folder>/catalogue.json`` (the weights folder is ``$BENCH_WEIGHTS``, else ``<data
root>/weights``) adds entries of your own -- checkpoints you trained, fine-tuned or converted, and the networks
``bench weights train-sim`` trains on the simulator -- each with its file (relative to that folder), sha256
(required: a local entry is always verified), network kind (``NETWORKS``), network settings when they differ from
the published architecture (``arch``) and a description. Its format (written atomically by
:func:`add_local_entries`)::

    {"format": 1, "entries": [{"name": "sim-panns", "file": "sim/1-ab12/sim-panns.safetensors",
      "sha256": "<64 hex>", "network": "panns", "arch": {...} or null, "description": "...",
      "sim": {"sim_version": "1", "config": "ab12...", "seed": 0} (only for simulator-trained entries)}]}

Which entry a perceptual network uses is chosen in :mod:`bench.networks.cache` (``$BENCH_PANNS_WEIGHTS``,
``$BENCH_VGGISH_WEIGHTS``, ``$BENCH_CLAP_WEIGHTS``).

Loading is safe: safetensors, or ``torch.load(weights_only=True)``; numpy arrays inside a checkpoint (the PANNs
files keep their data sampler's state in one) are admitted through a minimal allowlist of numpy's array
reconstructors, still under ``weights_only``. A pickle that needs anything else is refused with a message pointing
to ``bench weights convert NAME --trust``, which loads it once with full pickle after that explicit flag and saves
the bare state dict as safetensors beside it.

Hashes: a catalogue sha256 is checked before a file is used; a mismatch is an error. The published hashes below
come from the sources named in ``hash_note`` and were NOT verified here (no download was possible while writing
this); entries without a published hash have ``sha256=None`` and are reported as "unverified" (``bench weights
verify`` prints the hash of your copy so you can pin it). Computed hashes are remembered in
``<data root>/features/sha256-cache.json`` keyed by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError, UnavailableError


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint the suite can use.

    name: catalogue name (``bench weights fetch NAME``); file: the file name looked for (for ``kind="folder"``,
    the folder name under $BENCH_WEIGHTS); kind: "file" or "folder" (a Hugging Face repository snapshot);
    needed_by: metrics / methods that use it; url: direct download URL for ``fetch`` (None: see ``note``);
    size: exact size in bytes when published; approx_size: for display; sha256: published hash or None;
    hash_note: where the hash comes from, or why there is none; hf_repos: hub repositories holding it (the first
    is the canonical one); hf_file: for file entries hosted on the hub, the path inside the repository;
    network: the network kind it loads into (``NETWORKS``); arch: network settings when not the published
    architecture (None: published); local: an entry of the local catalogue file; sim: for networks trained by
    ``bench weights train-sim``, {"sim_version", "config", "seed"} (what the cache is keyed by).
    """

    name: str
    file: str
    kind: str
    needed_by: tuple[str, ...]
    description: str
    url: str | None = None
    size: int | None = None
    approx_size: str = ""
    sha256: str | None = None
    hash_note: str = ""
    hf_repos: tuple[str, ...] = ()
    hf_file: str | None = None
    note: str = ""
    network: str | None = None
    arch: dict | None = field(default=None, compare=False, hash=False)
    local: bool = False
    sim: dict | None = field(default=None, compare=False, hash=False)

    @property
    def env_var(self) -> str:
        return "BENCH_WEIGHT_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())

    @property
    def origin(self) -> str:
        """"sim-pretrained" (trained on the simulator), "local" (another entry of catalogue.json) or "published"."""
        return "sim-pretrained" if self.sim is not None else ("local" if self.local else "published")


_UNVERIFIED_HASH = "no published sha256 found in a source we could read; `bench weights verify` prints yours to pin"

CATALOGUE: tuple[WeightSpec, ...] = (
    WeightSpec(
        name="panns-cnn14-16k",
        network="panns",
        file="Cnn14_16k_mAP=0.438.pth",
        kind="file",
        needed_by=("FD", "KL"),
        description="PANNs Cnn14, 16 kHz, 64 mels 50-8000 Hz (zenodo 3987831)",
        url="https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
        approx_size="~324 MB",
        sha256="e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
        hash_note="from a PANNs checkpoint table in third-party public code; not verified here",
    ),
    WeightSpec(
        name="vggish",
        network="vggish",
        file="vggish-10086976.pth",
        kind="file",
        needed_by=("FAD",),
        description="VGGish, torchvggish release v0.1 (no PCA file needed: FAD uses no PCA)",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        approx_size="~288 MB",
        sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
        hash_note="from third-party public code; its first 8 digits match the torch.hub name suffix -10086976; not verified here",
    ),
    WeightSpec(
        name="clap-630k-audioset",
        network="clap",
        file="630k-audioset-best.pt",
        kind="file",
        needed_by=("CLAP (default)",),
        description="LAION CLAP HTSAT-tiny + RoBERTa, unfused; laion_clap's default for enable_fusion=False",
        url="https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt",
        hash_note=_UNVERIFIED_HASH,
        hf_repos=("lukewys/laion_clap",),
        hf_file="630k-audioset-best.pt",
    ),
    WeightSpec(
        name="clap-630k-audioset-fusion",
        network="clap",
        file="630k-audioset-fusion-best.pt",
        kind="file",
        needed_by=("CLAP (BENCH_CLAP_WEIGHTS=clap-630k-audioset-fusion)",),
        description="LAION CLAP HTSAT-tiny + RoBERTa, feature fusion",
        url="https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-fusion-best.pt",
        hash_note=_UNVERIFIED_HASH,
        hf_repos=("lukewys/laion_clap",),
        hf_file="630k-audioset-fusion-best.pt",
    ),
    WeightSpec(
        name="clap-music-speech-audioset",
        network="clap",
        file="music_speech_audioset_epoch_15_esc_89.98.pt",
        kind="file",
        needed_by=("CLAP (BENCH_CLAP_WEIGHTS=clap-music-speech-audioset)",),
        description="LAION CLAP HTSAT-base + RoBERTa, general audio, music and speech",
        url="https://huggingface.co/lukewys/laion_clap/resolve/main/music_speech_audioset_epoch_15_esc_89.98.pt",
        hash_note=_UNVERIFIED_HASH,
        hf_repos=("lukewys/laion_clap",),
        hf_file="music_speech_audioset_epoch_15_esc_89.98.pt",
    ),
    WeightSpec(
        name="clap-htsat-unfused",
        network="clap",
        file="clap-htsat-unfused",
        kind="folder",
        needed_by=("CLAP (BENCH_CLAP_WEIGHTS=clap-htsat-unfused)",),
        description="LAION CLAP in Hugging Face format (config, weights, processor and tokenizer files)",
        hash_note="a repository, not one file: the hash of its weights file is recorded with each result",
        hf_repos=("laion/clap-htsat-unfused",),
        note="download with `huggingface-cli download laion/clap-htsat-unfused`",
    ),
    WeightSpec(
        name="clap-larger-general",
        network="clap",
        file="larger_clap_general",
        kind="folder",
        needed_by=("CLAP (BENCH_CLAP_WEIGHTS=clap-larger-general)",),
        description="LAION CLAP HTSAT-base in Hugging Face format",
        hash_note="a repository, not one file: the hash of its weights file is recorded with each result",
        hf_repos=("laion/larger_clap_general",),
        note="download with `huggingface-cli download laion/larger_clap_general`",
    ),
    WeightSpec(
        name="roberta-base",
        network="tokenizer",
        file="roberta-base",
        kind="folder",
        needed_by=("CLAP text embeddings with a LAION .pt file (tokenizer only)",),
        description="RoBERTa tokenizer files (vocab.json, merges.txt); the CLAP folders above include them",
        hash_note="tokenizer files only; not hashed",
        hf_repos=("FacebookAI/roberta-base", "roberta-base"),
        note="download with `huggingface-cli download FacebookAI/roberta-base vocab.json merges.txt tokenizer.json tokenizer_config.json config.json`",
    ),
    WeightSpec(
        name="audioldm2",
        network="audioldm2",
        file="audioldm2",
        kind="folder",
        needed_by=("methods: latent diffusion (AudioLDM2 VAE, UNet, HiFi-GAN vocoder)",),
        description="AudioLDM2 diffusers pipeline folder",
        hash_note="a repository, not one file",
        hf_repos=("cvssp/audioldm2",),
        note="download with `huggingface-cli download cvssp/audioldm2`",
    ),
    WeightSpec(
        name="audioldm2-gigaspeech",
        network="audioldm2",
        file="audioldm2_gigaspeech",
        kind="folder",
        needed_by=("methods: latent diffusion on speech (Brain2Speech)",),
        description="AudioLDM2 speech checkpoint, diffusers port",
        hash_note="a repository, not one file",
        hf_repos=("anhnct/audioldm2_gigaspeech",),
        note="download with `huggingface-cli download anhnct/audioldm2_gigaspeech`",
    ),
    WeightSpec(
        name="audiomae",
        network="audiomae",
        file="audiomae_pretrained.pth",
        kind="file",
        needed_by=("methods: AudioMAE features (fine-grained targets, LDM conditions)",),
        description="AudioMAE ViT-B, AudioSet-2M pretrained (encoder + shifted-window decoder), keys under ['model']",
        hash_note=_UNVERIFIED_HASH,
        note="linked from the facebookresearch/AudioMAE README (Google Drive, no direct URL); save it under this name",
    ),
    # -- Park et al. (methods.park): VGGishish features, SpecVQGAN codebook + conv5_3 transformer, MelGAN --------
    WeightSpec(
        name="vggishish",
        file="vggishish16.pt",
        kind="file",
        needed_by=("methods: park (conv5_3 auditory features)",),
        description="SpecVQGAN's VGGishish VGGSound classifier (training dict, weights under 'model')",
        url="https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public/vggishish16.pt",
        hash_note="SpecVQGAN util.py publishes only an md5 (197040c524a07ccacf7715d7080a80bd); " + _UNVERIFIED_HASH,
    ),
    WeightSpec(
        name="vggishish-mel-stats",
        file="train_means_stds_melspec_10s_22050hz.txt",
        kind="file",
        needed_by=("methods: park (VGGishish per-mel-bin standardisation)",),
        description="VGGSound training mean / std per mel bin for VGGishish (80 rows of 'mean std')",
        url="https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public/train_means_stds_melspec_10s_22050hz.txt",
        hash_note="SpecVQGAN util.py publishes only an md5 (f449c6fd0e248936c16f6d22492bb625); " + _UNVERIFIED_HASH,
    ),
    WeightSpec(
        name="specvqgan-codebook",
        file="vggsound_codebook.ckpt",
        kind="file",
        needed_by=("methods: park (reference; the transformer checkpoint embeds its codebook)",),
        description="SpecVQGAN VGGSound codebook (Lightning 'state_dict' of the VQ model; its 'loss.*' entries are ignored)",
        hash_note=_UNVERIFIED_HASH,
        note="checkpoints/last.ckpt of SpecVQGAN's 2021-05-19T22-16-54_vggsound_codebook archive (linked from its "
             "README); save it under this name",
    ),
    WeightSpec(
        name="park-conv5_3-transformer",
        file="park_conv5_3_transformer.ckpt",
        kind="file",
        needed_by=("methods: park (conv5_3-conditioned SpecVQGAN transformer with its codebook)",),
        description="Park et al.'s SpecVQGAN transformer conditioned on VGGishish conv5_3 (Lightning 'state_dict' with "
                    "transformer. / first_stage_model. / first_stage_permuter. prefixes)",
        hash_note=_UNVERIFIED_HASH,
        note="in the figshare archives linked from KamitaniLab/SoundReconstruction (no direct URL); save the conv5_3 "
             "model's checkpoint under this name",
    ),
    WeightSpec(
        name="melgan-vggsound",
        file="best_netG.pt",
        kind="file",
        needed_by=("methods: park (vocoder, 22.05 kHz)",),
        description="SpecVQGAN's VGGSound MelGAN generator (bare state dict, legacy weight-norm keys)",
        hash_note=_UNVERIFIED_HASH,
        note="vocoder/logs/vggsound/best_netG.pt of the v-iashin/SpecVQGAN repository; save it under this name",
    ),
)

NETWORKS = ("panns", "vggish", "clap", "audiomae", "audioldm2", "audioldm2-vae", "audioldm2-unet", "tokenizer",
            "vggishish", "vggishish-mel-stats", "park-conv5_3-transformer", "melgan")
"""Network kinds an entry can load into."""

_BY_NAME = {s.name: s for s in CATALOGUE}
LOCAL_CATALOGUE = "catalogue.json"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def local_dir() -> Path:
    """The weights folder holding the local catalogue and the entries it names: $BENCH_WEIGHTS, else <data root>/weights."""
    wd = weights_dir()
    if wd is not None:
        return wd
    from bench.data import data_root

    return data_root() / "weights"


def local_catalogue_path() -> Path:
    return local_dir() / LOCAL_CATALOGUE


_LOCAL_MEMO: dict[tuple, tuple[WeightSpec, ...]] = {}


def _entry_spec(path: Path, i: int, entry: Any) -> WeightSpec:
    """One checked entry of the local catalogue file (BenchError naming the file, the entry and the field)."""
    where = f"{path}: entry {i}"
    if not isinstance(entry, dict):
        raise BenchError(f"{where} must be an object with name, file, sha256, network; fix or remove it")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise BenchError(f"{where}: field 'name' must be lower-case letters, digits, '.', '_' or '-' (got {name!r}); fix it")
    where = f"{path}: entry {name!r}"
    if name in _BY_NAME:
        raise BenchError(f"{where}: 'name' is a built-in catalogue entry; give your entry another name")
    unknown = set(entry) - {"name", "file", "sha256", "network", "arch", "description", "sim"}
    if unknown:
        raise BenchError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: name, file, sha256, network, arch, description, sim")
    file = entry.get("file")
    if not isinstance(file, str) or not file or Path(file).is_absolute() or ".." in Path(file).parts:
        raise BenchError(f"{where}: field 'file' must be a path relative to {path.parent} (got {file!r}); fix it")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BenchError(f"{where}: field 'sha256' must be 64 lower-case hex digits (`sha256sum FILE` prints it); fix it")
    network = entry.get("network")
    if network not in NETWORKS:
        raise BenchError(f"{where}: field 'network' must be one of {', '.join(NETWORKS)} (got {network!r}); fix it")
    arch = entry.get("arch")
    if arch is not None and not isinstance(arch, dict):
        raise BenchError(f"{where}: field 'arch' must be an object of network settings or null; fix it")
    sim = entry.get("sim")
    if sim is not None and not (isinstance(sim, dict) and {"sim_version", "config"} <= set(sim)):
        raise BenchError(f"{where}: field 'sim' must be an object with sim_version and config; fix or remove it")
    desc = entry.get("description", "")
    if not isinstance(desc, str):
        raise BenchError(f"{where}: field 'description' must be a string; fix it")
    origin = "trained on the simulator by `bench weights train-sim`" if sim is not None else "local entry"
    if network in ("panns", "vggish", "clap"):
        needed_by = f"${'BENCH_' + network.upper() + '_WEIGHTS'}={name}"
    else:
        needed_by = "tiny profiles of the C2F / LDM methods on simulated data" if sim is not None else f"{network} (local entry)"
    return WeightSpec(name=name, file=file, kind="file", needed_by=(needed_by,),
                      description=desc or f"{network} weights ({origin})", sha256=sha,
                      hash_note=f"from {path.name} ({origin})", note=f"listed in {path}", network=network, arch=arch,
                      local=True, sim=sim)


def local_entries() -> tuple[WeightSpec, ...]:
    """The entries of the local catalogue file (none when it does not exist); checked field by field."""
    path = local_catalogue_path()
    try:
        st = path.stat()
    except OSError:
        return ()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _LOCAL_MEMO:
        return _LOCAL_MEMO[key]
    from bench.io import read_json

    obj = read_json(path, "local weights catalogue")
    if not isinstance(obj, dict) or obj.get("format") != 1 or not isinstance(obj.get("entries"), list):
        raise BenchError(f"local weights catalogue {path} must be {{\"format\": 1, \"entries\": [...]}}; fix it or delete it")
    specs = tuple(_entry_spec(path, i, e) for i, e in enumerate(obj["entries"]))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BenchError(f"local weights catalogue {path}: entry {dup[0]!r} appears more than once; keep one")
    _LOCAL_MEMO.clear()
    _LOCAL_MEMO[key] = specs
    return specs


def add_local_entries(entries: Iterable[dict]) -> Path:
    """Add (or replace, by name) entries of the local catalogue file, written atomically; returns its path.

    Each entry: {name, file (relative to the weights folder), sha256, network, arch (or None), description,
    optionally sim}. Every entry is checked as on reading, so a bad one is refused before anything is written.
    """
    from bench.io import ensure_writable_dir, file_lock, read_json, write_json

    path = local_catalogue_path()
    ensure_writable_dir(path.parent, "weights folder")
    new = [dict(e) for e in entries]
    for i, e in enumerate(new):
        _entry_spec(path, i, e)
    with file_lock(path.with_name(f".{path.stem}.lock")):  # processes adding entries at once: none is lost
        old = []
        if path.exists():
            local_entries()  # refuse to rewrite a catalogue that is already broken
            old = read_json(path, "local weights catalogue")["entries"]
        names = {e["name"] for e in new}
        merged = [e for e in old if e.get("name") not in names] + new
        write_json(path, {"format": 1, "entries": sorted(merged, key=lambda e: e["name"])})
    return path


def all_specs() -> tuple[WeightSpec, ...]:
    """The built-in catalogue followed by the local entries."""
    return CATALOGUE + local_entries()


def get_spec(name: str) -> WeightSpec:
    if name in _BY_NAME:
        return _BY_NAME[name]
    local = {s.name: s for s in local_entries()}
    if name in local:
        return local[name]
    import difflib

    known = list(_BY_NAME) + list(local)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BenchError(f"unknown weights {name!r}.{hint} Known: {', '.join(known)} "
                     f"(add your own entries to {local_catalogue_path()})")


def expected_sha256(spec: WeightSpec) -> str | None:
    return spec.sha256


def architecture(name: str) -> dict | None:
    """Network settings of this entry when they differ from the published architecture (None: published)."""
    return get_spec(name).arch


# ----------------------------------------------------------------------------------------------
# where weights are looked for


def weights_dir() -> Path | None:
    env = os.environ.get("BENCH_WEIGHTS")
    return Path(env).expanduser() if env else None


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _snapshot(repo: str) -> Path | None:
    root = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    snaps = root / "snapshots"
    if not snaps.is_dir():
        return None
    ref = root / "refs" / "main"
    if ref.is_file():
        rev = ref.read_text().strip()
        if (snaps / rev).is_dir():
            return snaps / rev
    revs = [p for p in snaps.iterdir() if p.is_dir()]
    return max(revs, key=lambda p: p.stat().st_mtime) if revs else None


def converted_path(path: Path) -> Path:
    """Where ``bench weights convert`` puts the safetensors copy of ``path``."""
    return path.with_suffix(".safetensors")


def places(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """(label, candidate path or None when unset) in lookup order, for ``ls`` and ``find``."""
    out: list[tuple[str, Path | None]] = []
    exp = explicit if explicit is not None else os.environ.get(spec.env_var)
    out.append((f"explicit (${spec.env_var})" if explicit is None else "explicit", Path(exp).expanduser() if exp else None))
    if spec.local:
        out.append(("local catalogue", local_dir() / spec.file))
        return out
    wd = weights_dir()
    out.append(("$BENCH_WEIGHTS", wd / spec.file if wd else None))
    for repo in spec.hf_repos:
        snap = _snapshot(repo)
        label = f"HF cache ({repo})"
        if snap is None:
            out.append((label, None))
        else:
            out.append((label, snap / spec.hf_file if spec.kind == "file" and spec.hf_file else snap))
    return out


@dataclass(frozen=True)
class Found:
    """A located checkpoint. path: the file or folder found; where: which place; load_path: what to load (the
    converted safetensors when one exists beside the file); converted_only: the original is absent."""

    spec: WeightSpec
    path: Path
    where: str
    load_path: Path
    converted_only: bool = False


def _usable(spec: WeightSpec, path: Path) -> bool:
    if spec.kind == "folder":
        return path.is_dir() and any((path / f).exists() for f in ("config.json", "model_index.json", "vocab.json", "tokenizer.json"))
    return path.is_file()


def find(name: str | WeightSpec, explicit: str | os.PathLike | None = None) -> Found | None:
    """The first place holding the entry's weights, or None. An explicit path that is missing raises."""
    spec = get_spec(name) if isinstance(name, str) else name
    for label, path in places(spec, explicit):
        if path is None:
            continue
        conv = converted_path(path) if spec.kind == "file" else None
        if _usable(spec, path):
            return Found(spec, path, label, conv if conv is not None and conv.is_file() else path)
        if conv is not None and conv.is_file():
            return Found(spec, conv, label, conv, converted_only=True)
        if label.startswith("explicit"):
            raise BenchError(f"{spec.name}: the explicit path {path} does not exist (from {label}); fix or unset it")
    return None


def missing_reason(spec: WeightSpec, what: str) -> str:
    """One line saying which file to put where."""
    if spec.local:
        fix = "run `bench weights train-sim`" if spec.sim is not None else f"put it there or remove the entry from {local_catalogue_path()}"
        return f"{what} needs {spec.name} ({spec.description}): {local_dir() / spec.file} is missing; {fix}"
    if spec.kind == "folder":
        repo = spec.hf_repos[0] if spec.hf_repos else spec.file
        return (f"{what} needs {spec.description}: put the {repo} folder at $BENCH_WEIGHTS/{spec.file} or in the "
                f"Hugging Face cache (see `bench weights ls`)")
    return f"{what} needs {spec.description}: put {spec.file} in $BENCH_WEIGHTS (see `bench weights ls`)"


def require(name: str, what: str, explicit=None) -> Found:
    """Found weights or UnavailableError with ``missing_reason``."""
    spec = get_spec(name)
    found = find(spec, explicit)
    if found is None:
        raise UnavailableError(missing_reason(spec, what))
    return found


# ----------------------------------------------------------------------------------------------
# hashes


def _cache_file() -> Path:
    from bench.data import data_root

    return data_root() / "features" / "sha256-cache.json"


_MEMO: dict[tuple, str] = {}


def sha256_of(path: Path, fresh: bool = False) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in memory and in the on-disk cache (``fresh``: recompute)."""
    from bench.data import sha256_file

    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if not fresh and key in _MEMO:
        return _MEMO[key]
    cache_path = _cache_file()
    disk: dict = {}
    try:
        disk = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        disk = {}
    skey = f"{key[0]}|{key[1]}|{key[2]}"
    if not fresh and isinstance(disk.get(skey), str):
        _MEMO[key] = disk[skey]
        return disk[skey]
    digest = sha256_file(path)
    _MEMO[key] = digest
    try:
        from bench.io import file_lock, write_json

        # Many processes (Slurm tasks) share the cache: re-read it under the lock so no entry is lost.
        with file_lock(cache_path.with_name(".sha256-cache.json.lock")):
            try:
                disk = json.loads(cache_path.read_text())
            except (OSError, ValueError):
                disk = {}
            disk[skey] = digest
            write_json(cache_path, disk)
    except OSError:
        pass  # an unwritable cache only costs re-hashing
    return digest


def converted_source_sha256(path: Path) -> str | None:
    """The original file's sha256 recorded in a converted safetensors file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return meta.get("source_sha256")


def identity(found: Found, fresh: bool = False) -> str:
    """sha256 that identifies the weights (the original file's; for a folder, of its weights files)."""
    if found.spec.kind == "folder":
        h = hashlib.sha256()
        files = sorted(p for p in found.path.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
        for p in files:
            h.update(p.name.encode() + b"\0" + sha256_of(p, fresh).encode())
        return h.hexdigest()
    if found.converted_only:
        src = converted_source_sha256(found.path)
        return src or sha256_of(found.path, fresh)
    return sha256_of(found.path, fresh)


@dataclass
class HashState:
    sha256: str
    expected: str | None
    ok: bool | None  # True match, False mismatch, None nothing to compare with

    @property
    def label(self) -> str:
        return {True: "sha256 ok", False: "HASH MISMATCH", None: "unverified (no published sha256)"}[self.ok]


def hash_state(found: Found, fresh: bool = False) -> HashState:
    digest = identity(found, fresh)
    expected = expected_sha256(found.spec)
    return HashState(digest, expected, None if expected is None else digest == expected)


def check(found: Found) -> HashState:
    """hash_state, raising BenchError on a mismatch."""
    state = hash_state(found)
    if state.ok is False and found.spec.local:
        spec = found.spec
        fix = "retrain it with `bench weights train-sim --force`" if spec.sim is not None else \
            f"put the right file there or update its sha256 in {local_catalogue_path()}"
        raise BenchError(f"{spec.name}: {found.path} has sha256 {state.sha256[:16]}..., the local catalogue expects "
                         f"{state.expected[:16]}...; the file changed since it was added: {fix}")
    if state.ok is False:
        raise BenchError(
            f"{found.spec.name}: {found.path} has sha256 {state.sha256[:16]}..., the catalogue expects "
            f"{state.expected[:16]}... ({found.spec.hash_note}); the file is damaged or a different checkpoint: "
            f"delete it and fetch it again (`bench weights fetch {found.spec.name}`)"
        )
    return state


# ----------------------------------------------------------------------------------------------
# loading


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a checkpoint safely (``bench.networks.checkpoints.read_checkpoint``), naming this file's catalogue entry
    in the advice when safe loading refuses it."""
    from bench.networks.checkpoints import read_checkpoint

    spec = next((s for s in CATALOGUE if s.file == Path(path).name), None)  # built-ins only: local files are safetensors
    return read_checkpoint(path, entry=spec.name if spec else None)


def _state_dict_of(obj: Any, what: str) -> tuple[dict, str]:
    import torch

    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key], key
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, ""
    shown = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
    raise BenchError(f"{what}: found no state dict (looked for 'model', 'state_dict' or a dict of tensors; has {shown})")


def convert(name: str, *, trust: bool, explicit=None) -> Path:
    """Load the entry's file with full pickle (only with ``trust``) and save its bare state dict as safetensors.

    The original's sha256 is checked first when the catalogue has one; the output's metadata records the source
    file and its sha256, so features computed from either file share their cache.
    """
    import torch
    from safetensors.torch import save_file

    from bench.io import atomic_path

    spec = get_spec(name)
    if spec.kind != "file":
        raise BenchError(f"{name} is a Hugging Face folder; its files are already safe to load, nothing to convert")
    if not trust:
        raise BenchError(
            f"converting {spec.file} unpickles it with weights_only=False, which can run code stored in the file; "
            f"pass --trust only for a file from {spec.url or 'its official source'} (check it with `bench weights verify {name}`)"
        )
    found = find(spec, explicit)
    if found is None:
        raise UnavailableError(missing_reason(spec, f"convert {name}"))
    if found.converted_only:
        return found.path
    state = check(found)
    obj = torch.load(found.path, map_location="cpu", weights_only=False)
    sd, inner = _state_dict_of(obj, str(found.path))
    tensors = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise BenchError(f"{found.path}: entry {k} of the state dict is a {type(v).__name__}, not a tensor")
        tensors[k] = v.detach().contiguous().clone()
    target = converted_path(found.path)
    meta = {"source_file": found.path.name, "source_sha256": state.sha256, "source_entry": inner or "(root)",
            "converted_by": "bench weights convert"}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return target


# ----------------------------------------------------------------------------------------------
# download (explicit only)

_urlopen = urllib.request.urlopen  # tests replace this; nothing calls it at import


def fetch(name: str, dest: str | os.PathLike | None = None, *, progress=None, chunk: int = 1 << 20) -> Path:
    """Download a file entry into ``dest`` (default $BENCH_WEIGHTS): to a temporary file beside the target, checking
    size and sha256 when known, then renamed into place. Returns the path; an existing verified file is kept."""
    spec = get_spec(name)
    if spec.local:
        raise BenchError(f"{name} is a local entry ({spec.note}); there is nothing to download"
                         + (": `bench weights train-sim` makes it" if spec.sim is not None else ""))
    if spec.kind == "folder":
        raise BenchError(f"{name} is a Hugging Face repository: {spec.note or 'download it with huggingface-cli'}; "
                         f"it lands in the Hugging Face cache, where `bench weights ls` looks")
    if not spec.url:
        raise BenchError(f"{name} has no direct download URL: {spec.note}")
    folder = Path(dest).expanduser() if dest is not None else weights_dir()
    if folder is None:
        raise BenchError("set $BENCH_WEIGHTS (or pass --dest) to say where weights are kept")
    from bench.io import ensure_writable_dir

    ensure_writable_dir(folder, "weights folder")
    target = folder / spec.file
    expected = expected_sha256(spec)
    if target.is_file() and (expected is None or sha256_of(target) == expected):
        return target
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{spec.file}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(spec.url, timeout=60) as resp:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) is not None else None
            while block := resp.read(chunk):
                out.write(block)
                h.update(block)
                size += len(block)
                if progress is not None:
                    progress(size, int(total) if total else None)
        if spec.size is not None and size != spec.size:
            raise BenchError(f"{name}: downloaded {size} bytes, expected {spec.size}; try again")
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            raise BenchError(f"{name}: downloaded file has sha256 {digest[:16]}..., expected {expected[:16]}... ({spec.hash_note}); nothing was kept")
        os.replace(tmp, target)
    except OSError as exc:
        raise BenchError(f"{name}: download from {spec.url} failed ({exc}); check the network and try again") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# ----------------------------------------------------------------------------------------------
# listing


@dataclass
class Row:
    spec: WeightSpec
    found: Found | None
    state: str
    size: str
    looked: list[str] = field(default_factory=list)
    mismatch: bool = False


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def status_rows(hashes: bool = True, fresh: bool = False, names: Iterable[str] | None = None) -> list[Row]:
    """One row per catalogue entry: where it was looked for, whether it was found, and its hash state."""
    specs = [get_spec(n) for n in names] if names else list(all_specs())
    rows = []
    for spec in specs:
        looked = [f"{label}: {path if path is not None else '(unset)'}" for label, path in places(spec)]
        try:
            found = find(spec)
        except BenchError as exc:
            rows.append(Row(spec, None, f"error: {exc}", spec.approx_size or "?", looked, mismatch=True))
            continue
        if found is None:
            rows.append(Row(spec, None, "missing", spec.approx_size or "?", looked))
            continue
        size = _folder_size(found.path) if found.path.is_dir() else found.path.stat().st_size
        state = f"found at {found.path}" + (" (converted)" if found.converted_only else "")
        if found.load_path != found.path:
            state += f" + {found.load_path.name}"
        mismatch = False
        if hashes:
            hs = hash_state(found, fresh)
            state += f"; {hs.label}"
            mismatch = hs.ok is False
        rows.append(Row(spec, found, state, _fmt_size(size), looked, mismatch))
    return rows

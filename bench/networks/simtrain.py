"""Networks trained on the simulator: small PANNs Cnn14, VGGish and CLAP (the classes of the published ones).

``bench weights train-sim`` (and the first use of a simulator-trained entry, see ``bench.networks.cache``) runs the
trainers of ``TRAINERS`` on fresh clips of the simulator's three worlds (``bench.simulate.fresh_clips``: drawn in a
random stream of their own, never the benchmark's stimuli) and writes each network as an entry of the local weights
catalogue (``bench.networks.weights.add_local_entries``) with its sha256, so it is found, verified and strictly
loaded like any published checkpoint.

Trainers: ``TRAINERS`` maps a name to ``train(out_dir: Path, seed: int, device: str) -> {entry name: {"file":
path relative to out_dir, "network": kind, "arch": settings or None, "description": text}}``. Register one with
:func:`register` (its ``config`` -- every setting that changes the result -- and the entries it writes key the
cache). Built in:

- ``panns`` -> ``sim-panns``: Cnn14 (``panns.SIM``) classifying the 16 labels of the three worlds (``LABELS``,
  "sound/animal", ..., "speech/female") from 2-s windows, cross-entropy; its 64-d embedding gives FD, its logits KL;
- ``vggish`` -> ``sim-vggish``: VGGish (``vggish.SIM``) with a temporary linear head classifying each 0.96-s patch,
  cross-entropy; the head is dropped and the 32-d embedding gives FAD;
- ``clap`` -> ``sim-clap``: a small ``ClapModel`` (HTSAT audio tower, RoBERTa-layout text tower on byte tokens)
  trained contrastively on the clips' captions (``bench.simulate.caption``); clips with the same caption are all
  positives of each other (soft targets), since the captions repeat.

Cache: each trainer's output lives in ``<weights folder>/sim/<trainer>-v<simulator version>-<config key>-s<seed>/``
and its entries record {sim_version, config, seed, trainer}. An entry trained for another simulator version or
config is retrained on use (or refused with one line when training is not allowed); a file whose sha256 no
longer matches its entry is refused with one line, never used.

Determinism: one torch thread and deterministic algorithms while training, every random draw from the seed,
safetensors files (sorted keys, no timestamps): the same seed and package versions give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench.errors import BenchError, UnavailableError

Trainer = Callable[[Path, int, str], dict]

TRAINERS: dict[str, Trainer] = {}
"""name -> train(out_dir, seed, device) -> {entry: {"file", "network", "arch", "description"}}."""

_CONFIG: dict[str, dict] = {}
_ENTRIES: dict[str, tuple[str, ...]] = {}
DEFAULT_SEED = 0


def register(name: str, fn: Trainer, *, entries: tuple[str, ...], config: dict) -> Trainer:
    """Add a trainer: ``entries`` it writes (so their first use can train them) and its ``config`` (the cache key)."""
    TRAINERS[name] = fn
    _ENTRIES[name] = tuple(entries)
    _CONFIG[name] = dict(config)
    return fn


def trainer_for(entry: str) -> str:
    for name, entries in _ENTRIES.items():
        if entry in entries:
            return name
    raise BenchError(f"no simulator trainer writes {entry!r}; trainers: "
                     + ", ".join(f"{n} ({', '.join(e)})" for n, e in _ENTRIES.items()))


def config_key(name: str) -> str:
    """Identifies a trainer's settings (16 hex digits of the sha256 of its name, config and entries)."""
    blob = json.dumps({"trainer": name, "config": _CONFIG.get(name, {}), "entries": _ENTRIES.get(name, ())},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sim_version() -> str:
    from bench.simulate import SIM_VERSION

    return SIM_VERSION


def output_dir(name: str, seed: int) -> Path:
    from bench.networks.weights import local_dir

    return local_dir() / "sim" / f"{name}-v{_sim_version()}-{config_key(name)}-s{int(seed)}"


# ----------------------------------------------------------------------------------------------
# the cache


def _current(spec) -> bool:
    """Trained for this simulator version and this trainer config."""
    sim = spec.sim or {}
    return sim.get("sim_version") == _sim_version() and sim.get("config") == config_key(sim.get("trainer", trainer_for(spec.name)))


def ensure_entry(entry: str, what: str, *, train: bool = True, device: str = "cpu"):
    """The local catalogue's ``entry`` (a WeightSpec), trained first when missing or stale and ``train`` allows.

    Raises UnavailableError when it is missing or stale and ``train`` is False, and BenchError (one line) when its
    file is corrupt (sha256 differs from its entry).
    """
    from bench.networks import weights as W

    name = trainer_for(entry)
    spec = next((s for s in W.local_entries() if s.name == entry), None)
    if spec is not None and spec.sim is not None and _current(spec):
        path = W.local_dir() / spec.file
        if path.is_file():
            digest = W.sha256_of(path)
            if digest != spec.sha256:
                raise BenchError(f"{entry}: {path} has sha256 {digest[:16]}..., its catalogue entry says "
                                 f"{spec.sha256[:16]}...: the file is damaged; retrain it with `bench weights train-sim --force`")
            return spec
    if not train:
        state = "not trained yet" if spec is None else ("its file is missing" if _current(spec) else
                                                         f"trained for another simulator version or config ({(spec.sim or {}).get('sim_version')})")
        raise UnavailableError(f"{what} needs {entry} (trained on the simulator), {state}: run `bench weights train-sim` "
                               f"(or set BENCH_SIM_WEIGHTS=auto to train on first use)")
    train_sim([name], seed=DEFAULT_SEED, device=device)
    return W.get_spec(entry)


def train_sim(names: list[str] | None = None, *, seed: int = DEFAULT_SEED, device: str = "cpu", force: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Run the named trainers (default: all) unless their current output is cached; register their entries.

    Returns {entry: {"path", "sha256", "seconds", "trained": bool}}.
    """
    import shutil

    from bench.io import atomic_dir
    from bench.networks import weights as W

    names = list(names or TRAINERS)
    unknown = [n for n in names if n not in TRAINERS]
    if unknown:
        raise BenchError(f"unknown simulator trainer(s) {', '.join(unknown)}; known: {', '.join(TRAINERS)}")
    out: dict[str, dict] = {}
    local = {s.name: s for s in W.local_entries()}
    for name in names:
        folder = output_dir(name, seed)
        entries = _ENTRIES[name]
        cached = (not force and all(e in local and local[e].sim is not None and _current(local[e])
                                    and local[e].sim.get("seed") == int(seed) and (W.local_dir() / local[e].file).is_file()
                                    for e in entries))
        if cached:
            for e in entries:
                path = W.local_dir() / local[e].file
                if W.sha256_of(path) != local[e].sha256:
                    cached = False
        if cached:
            for e in entries:
                out[e] = {"path": str(W.local_dir() / local[e].file), "sha256": local[e].sha256, "seconds": 0.0, "trained": False}
            continue
        if log:
            log(f"training {name} on the simulator (seed {seed}, {device}) ...")
        t0 = time.perf_counter()
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(folder) as tmp:
            made = TRAINERS[name](Path(tmp), int(seed), device)
        seconds = time.perf_counter() - t0
        if set(made) != set(entries):
            shutil.rmtree(folder, ignore_errors=True)
            raise BenchError(f"trainer {name} wrote {', '.join(sorted(made))}, expected {', '.join(entries)}")
        rows = []
        for e, meta in made.items():
            rel = (folder / meta["file"]).relative_to(W.local_dir())
            digest = W.sha256_of(folder / meta["file"], fresh=True)
            rows.append({"name": e, "file": str(rel), "sha256": digest, "network": meta["network"],
                         "arch": meta.get("arch"), "description": meta.get("description", ""),
                         "sim": {"sim_version": _sim_version(), "config": config_key(name), "seed": int(seed), "trainer": name}})
            out[e] = {"path": str(folder / meta["file"]), "sha256": digest, "seconds": round(seconds, 1), "trained": True}
        W.add_local_entries(rows)
        if log:
            log(f"  {name}: {', '.join(made)} in {seconds:.0f} s")
    return out


# ----------------------------------------------------------------------------------------------
# training data: fresh clips of the three worlds


def label_space() -> tuple[str, ...]:
    """The 16 labels of the simulator's worlds, "<kind>/<label>", in a fixed order."""
    from bench.simulate import _LABELS, KINDS

    return tuple(f"{k}/{lab}" for k in KINDS for lab in _LABELS[k])


_WORLD: dict[tuple, dict] = {}


def world(seed: int, n_per_kind: int) -> dict[str, dict]:
    """{kind: fresh_clips(kind, n_per_kind, seed) + "y" (int64 index into ``label_space``)}; memoised per process."""
    from bench.simulate import KINDS, fresh_clips

    key = (int(seed), int(n_per_kind))
    if key not in _WORLD:
        labels = {lab: i for i, lab in enumerate(label_space())}
        out = {}
        for kind in KINDS:
            d = dict(fresh_clips(kind, int(n_per_kind), int(seed)))
            d["y"] = np.array([labels[f"{kind}/{lab}"] for lab in d["label"]], dtype=np.int64)
            out[kind] = d
        _WORLD.clear()
        _WORLD[key] = out
    return _WORLD[key]


def _windows(audio: np.ndarray, y: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Prepared (audioldm_eval) audio cut into non-overlapping windows of ``samples`` (the last part dropped)."""
    from bench.audio import prepare_for_embedding

    x = prepare_for_embedding(audio, 16_000)
    k = max(1, x.shape[1] // samples)
    x = x[:, : k * samples].reshape(len(x) * k, samples)
    return x.astype(np.float32), np.repeat(y, k)


class _Deterministic:
    """One torch thread and deterministic algorithms inside the block (restored after)."""

    def __enter__(self):
        import torch

        self.threads = torch.get_num_threads()
        self.det = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.det)


def _fit(params, n: int, loss_fn, *, epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """AdamW over shuffled index batches; loss_fn(idx (B,) LongTensor) -> scalar. Returns the mean loss per epoch."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(int(seed))
    history = []
    for _ in range(int(epochs)):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / max(count, 1))
    return history


def _save(module_or_sd, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    sd = module_or_sd.state_dict() if hasattr(module_or_sd, "state_dict") else module_or_sd
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}
    save_file(tensors, str(path), metadata={k: json.dumps(v, sort_keys=True) for k, v in meta.items()})


# ----------------------------------------------------------------------------------------------
# the trainers

PANNS_CONFIG = {"n_per_kind": 120, "window_s": 2.0, "epochs": 6, "batch_size": 32, "lr": 2e-3}


def train_panns(out_dir: Path, seed: int, device: str = "cpu") -> dict:
    """sim-panns: Cnn14 (``panns.SIM``) classifying the 16 labels from 2-s windows of fresh clips."""
    import torch

    from bench.networks.panns import SIM, Cnn14

    cfg = PANNS_CONFIG
    with _Deterministic():
        torch.manual_seed(seed)
        data = world(seed, cfg["n_per_kind"])
        xs, ys = zip(*(_windows(d["audio"], d["y"], int(cfg["window_s"] * 16_000)) for d in data.values()))
        net = Cnn14(**SIM).to(device)
        with torch.no_grad():
            logmel = torch.cat([net.logmel(torch.from_numpy(x[i : i + 64]).to(device)) for x in xs for i in range(0, len(x), 64)])
        y = torch.from_numpy(np.concatenate(ys)).to(device)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        ce = torch.nn.functional.cross_entropy
        history = _fit(params, len(y), lambda idx: ce(net.forward_logmel(logmel[idx])["logits"], y[idx]),
                       epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed)
        net.eval()
        _save(net, out_dir / "sim-panns.safetensors", {"labels": list(label_space()), "train_loss": [round(h, 5) for h in history]})
    return {"sim-panns": {"file": "sim-panns.safetensors", "network": "panns", "arch": dict(SIM, channels=list(SIM["channels"])),
                          "description": f"PANNs Cnn14 {SIM['channels']} trained on the simulator's 16 labels"}}


VGGISH_CONFIG = {"n_per_kind": 120, "epochs": 15, "batch_size": 64, "lr": 3e-3}


def train_vggish(out_dir: Path, seed: int, device: str = "cpu") -> dict:
    """sim-vggish: VGGish (``vggish.SIM``) plus a linear head classifying each patch's label; the head is dropped."""
    import torch

    from bench.audio import prepare_for_embedding
    from bench.networks.vggish import PATCH, N_MELS, SIM, VGGish, examples

    cfg = VGGISH_CONFIG
    with _Deterministic():
        torch.manual_seed(seed)
        data = world(seed, cfg["n_per_kind"])
        patches, ys = [], []
        for d in data.values():
            ex = examples(torch.from_numpy(prepare_for_embedding(d["audio"], 16_000)))  # (n, P, 96, 64)
            patches.append(ex.reshape(-1, 1, PATCH, N_MELS))
            ys.append(np.repeat(d["y"], ex.shape[1]))
        x = torch.cat(patches).to(device)
        y = torch.from_numpy(np.concatenate(ys)).to(device)
        net = VGGish(**SIM).to(device)
        head = torch.nn.Linear(SIM["embedding"], len(label_space())).to(device)
        net.train()
        ce = torch.nn.functional.cross_entropy
        history = _fit(list(net.parameters()) + list(head.parameters()), len(y),
                       lambda idx: ce(head(net(x[idx])), y[idx]),
                       epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed)
        net.eval()
        _save(net, out_dir / "sim-vggish.safetensors", {"labels": list(label_space()), "train_loss": [round(h, 5) for h in history]})
    return {"sim-vggish": {"file": "sim-vggish.safetensors", "network": "vggish", "arch": dict(SIM, channels=list(SIM["channels"])),
                           "description": f"VGGish {SIM['channels']} -> {SIM['embedding']}-d, trained as a classifier of the simulator's 16 labels"}}


CLAP_CONFIG = {
    "n_per_kind": 120, "epochs": 8, "batch_size": 32, "lr": 1e-3, "projection_dim": 32,
    "text_config": dict(vocab_size=131, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1),
    "audio_config": dict(patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 2], hidden_size=16,
                         window_size=8, num_hidden_layers=2, enable_fusion=False),
}


def clap_arch() -> dict:
    cfg = CLAP_CONFIG
    return {"text_config": dict(cfg["text_config"]), "audio_config": dict(cfg["audio_config"]),
            "projection_dim": cfg["projection_dim"], "tokenizer": "bytes"}


def train_clap(out_dir: Path, seed: int, device: str = "cpu") -> dict:
    """sim-clap: a small ClapModel, audio and text towers trained contrastively on the clips' captions."""
    import torch
    import torch.nn.functional as F

    from bench.networks.clap import (ClapNetwork, build_model, byte_token_ids, config_from_arch, log_mel,
                                     prepare_waveform, quantise_int16, repeat_pad)

    cfg = CLAP_CONFIG
    arch = clap_arch()
    with _Deterministic():
        torch.manual_seed(seed)
        data = world(seed, cfg["n_per_kind"])
        model = build_model(config_from_arch(arch)).to(device)
        mels, captions = [], []
        with torch.no_grad():
            for d in data.values():
                wave = quantise_int16(torch.from_numpy(prepare_waveform(d["audio"], 16_000)))
                for i in range(0, len(wave), 16):
                    chunk = torch.stack([repeat_pad(c) for c in wave[i : i + 16]]).to(device)
                    mels.append(log_mel(chunk, fused=False)[:, None])  # (b, 1, 1001, 64), as ClapNetwork.audio_embeddings
                captions += [str(c) for c in d["caption"]]
        mel = torch.cat(mels)
        ids, mask = (torch.from_numpy(a).to(device) for a in byte_token_ids(captions, arch["text_config"]["vocab_size"]))
        _, cap_id = np.unique(np.array(captions, dtype=object), return_inverse=True)
        cap_id = torch.from_numpy(cap_id.astype(np.int64)).to(device)
        model.train()
        is_longer = torch.zeros(cfg["batch_size"], 1, dtype=torch.bool, device=device)

        def loss_fn(idx):
            a = F.normalize(model.audio_projection(model.audio_model(input_features=mel[idx], is_longer=is_longer[: len(idx)]).pooler_output), dim=-1)
            t = F.normalize(model.text_projection(model.text_model(input_ids=ids[idx], attention_mask=mask[idx]).pooler_output), dim=-1)
            logits = a @ t.T * model.logit_scale_a.exp().clamp(max=100.0)
            same = (cap_id[idx][:, None] == cap_id[idx][None, :]).float()
            target = same / same.sum(1, keepdim=True)  # repeated captions are all positives
            return 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean() + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())

        history = _fit(list(model.parameters()), len(cap_id), loss_fn, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                       lr=cfg["lr"], seed=seed)
        model.eval()
        ClapNetwork(model)  # the same wrapper loading will use (fails here rather than at first use)
        _save(model, out_dir / "sim-clap.safetensors", {"train_loss": [round(h, 5) for h in history]})
    return {"sim-clap": {"file": "sim-clap.safetensors", "network": "clap", "arch": arch,
                         "description": "CLAP (HTSAT 16-d + 1-layer text tower on byte tokens, 32-d) trained contrastively on the simulator's captions"}}


register("panns", train_panns, entries=("sim-panns",), config=PANNS_CONFIG)
register("vggish", train_vggish, entries=("sim-vggish",), config=VGGISH_CONFIG)
register("clap", train_clap, entries=("sim-clap",), config=CLAP_CONFIG)

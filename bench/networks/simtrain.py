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
- ``clap`` -> ``sim-clap``: a small ``ClapModel`` (HTSAT audio tower, RoBERTa-layout text tower on byte tokens,
  512-d projections as LAION CLAP) trained contrastively on the clips' captions (``bench.simulate.caption``); clips
  with the same caption are all positives of each other (soft targets), since the captions repeat;
- ``audiomae`` -> ``sim-audiomae``: the tiny AudioMAE (``AudioMAEConfig.tiny()``) by masked autoencoding of the
  Kaldi fbank;
- ``audioldm2`` -> ``sim-audioldm2-vae``, ``sim-audioldm2-unet``: the tiny AudioLDM2 VAE on vocoder log-mels, then the
  tiny UNet denoising its latents conditioned on sim-AudioMAE features.

Cache: each trainer's output lives in ``<weights folder>/sim/<trainer>-v<simulator version>-<config key>-s<seed>/``
and its entries record {sim_version, config, seed, trainer}. An entry trained for another simulator version or
config is retrained on use (or refused with one line when training is not allowed); a file whose sha256 no
longer matches its entry is refused with one line, never used. Training holds ``<weights folder>/.sim-train.lock``
(:func:`training_lock`), so processes sharing the folder (Slurm tasks, ``--executor local`` cells) train each
network once. ``bench run`` and ``bench check`` train what their unfinished cells need before the first cell, one
trainer per usable core (``bench.runner.pretrain_sim_networks``, from ``Method.sim_networks`` and
``MetricSpec.networks``); anything else is trained at its first use.

Determinism: one torch thread and deterministic algorithms while training, every random draw from the seed,
safetensors files (sorted keys, no timestamps, all metadata under one key). Checked: two runs in one process give
byte-identical files (tests/test_simtrain.py), and so do separate processes and ``train_sim(jobs=2)``, whose
trainers run in forked processes at once (``benchmarks/test_bench_simtrain.py``). sim-panns and sim-vggish once
differed between processes: safetensors wrote their two metadata keys in a random order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench.errors import BenchError, UnavailableError

SIM_MODE_ENV = "BENCH_SIM_WEIGHTS"
SIM_MODES = ("auto", "cached", "off")


def sim_mode() -> str:
    """``$BENCH_SIM_WEIGHTS``: what simulated datasets score with when no entry is chosen explicitly.

    auto (default): the simulator-trained networks, trained on first use; cached: them only when already trained
    (else the metric is unavailable); off: the published networks, as for real datasets.
    """
    mode = os.environ.get(SIM_MODE_ENV, "auto").strip() or "auto"
    if mode not in SIM_MODES:
        raise BenchError(f"${SIM_MODE_ENV}={mode} is not one of {', '.join(SIM_MODES)}; fix or unset it")
    return mode


Trainer = Callable[[Path, int, str], dict]

TRAINERS: dict[str, Trainer] = {}
"""name -> train(out_dir, seed, device) -> {entry: {"file", "network", "arch", "description"}}."""

_CONFIG: dict[str, dict] = {}
_ENTRIES: dict[str, tuple[str, ...]] = {}
_NEEDS: dict[str, tuple[str, ...]] = {}
_SECONDS: dict[str, float] = {}
DEFAULT_SEED = 0


def register(name: str, fn: Trainer, *, entries: tuple[str, ...], config: dict | Callable[[], dict],
             needs: tuple[str, ...] = (), seconds: float = 60.0) -> Trainer:
    """Add a trainer: ``entries`` it writes (so their first use can train them), its ``config`` (the cache key;
    a function returning it when computing it needs heavy imports), the trainers whose entries it loads
    (``needs``: registered before it; ``train_sim`` runs them first) and roughly how long it trains on one CPU
    core (``seconds``: orders parallel training, :func:`start_order`; nothing else)."""
    unknown = [n for n in needs if n not in TRAINERS]
    if unknown:
        raise BenchError(f"trainer {name} needs {', '.join(unknown)}, which is not registered (yet): register it first")
    TRAINERS[name] = fn
    _ENTRIES[name] = tuple(entries)
    _CONFIG[name] = config  # by reference: a changed setting changes the key
    _NEEDS[name] = tuple(needs)
    _SECONDS[name] = float(seconds)
    return fn


def trainer_for(entry: str) -> str:
    for name, entries in _ENTRIES.items():
        if entry in entries:
            return name
    raise BenchError(f"no simulator trainer writes {entry!r}; trainers: "
                     + ", ".join(f"{n} ({', '.join(e)})" for n, e in _ENTRIES.items()))


def config_key(name: str) -> str:
    """Identifies a trainer's settings (16 hex digits of the sha256 of its name, config and entries)."""
    config = _CONFIG.get(name, {})
    blob = json.dumps({"trainer": name, "config": config() if callable(config) else config, "entries": _ENTRIES.get(name, ())},
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
              log: Callable[[str], None] | None = None, jobs: int = 1) -> dict[str, dict]:
    """Run the named trainers (default: all) unless their current output is cached; register their entries.

    The uncached trainers they ``need`` run first (``force`` applies to the named ones only). ``jobs`` > 1 runs
    up to that many trainers at once on CPU, each in a forked process of its own (on CUDA, or without fork, they run
    one after another). Every trainer trains on one thread either way, so the files are the same bytes as with
    ``jobs=1`` (compared by ``benchmarks/test_bench_simtrain.py``); only this process writes the catalogue. It
    holds :func:`training_lock` throughout, so processes sharing the weights folder never train a network twice.

    Returns {entry: {"path", "sha256", "seconds", "trained": bool}}.
    """
    names = _known(list(names or TRAINERS))
    if int(jobs) < 1:
        raise BenchError(f"jobs={jobs}: the number of trainers run at once must be at least 1")
    out: dict[str, dict] = {}
    if not _plan(names, seed, force, out):
        return out  # all cached: no lock taken (the weights folder may be read-only)
    with training_lock(log):  # another process may have trained some of them while this one waited
        out = {}
        todo = _plan(names, seed, force, out)
        if int(jobs) > 1 and len(todo) > 1 and device == "cpu" and _can_fork():
            _train_parallel(todo, seed, device, int(jobs), log, out)
        else:
            _train_serial(todo, seed, device, log, out)
    return out


def pending(names: list[str], seed: int = DEFAULT_SEED) -> list[str]:
    """The trainers ``train_sim(names, seed=seed)`` would run now: those of ``names`` and their needs whose current
    output is not cached, in registration order."""
    return _plan(_known(list(names)), seed, False, {})


def _known(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in TRAINERS]
    if unknown:
        raise BenchError(f"unknown simulator trainer(s) {', '.join(unknown)}; known: {', '.join(TRAINERS)}")
    return names


def _plan(names: list[str], seed: int, force: bool, out: dict) -> list[str]:
    """The trainers to run for ``names`` (their uncached needs included, ``force`` applying to ``names`` only);
    the cached outputs of ``names`` go to ``out``."""
    from bench.networks import weights as W

    wanted = set(names)
    for name in reversed(list(TRAINERS)):  # a trainer's needs were registered before it
        if name in wanted:
            wanted.update(_NEEDS[name])
    local = {s.name: s for s in W.local_entries()}
    todo = []
    for name in TRAINERS:
        if name not in wanted:
            continue
        cached = None if (force and name in names) else _cached_outputs(name, seed, local)
        if cached is None:
            todo.append(name)
        elif name in names:
            out.update(cached)
    return todo


_lock_depth = 0  # training_lock's depth in this process (a forked trainer inherits its parent's)


@contextlib.contextmanager
def training_lock(log: Callable[[str], None] | None = None):
    """Hold ``<weights folder>/.sim-train.lock`` for the block: processes sharing a weights folder (Slurm tasks,
    ``--executor local`` cells, two ``bench run``) train each network once; the others wait (saying so to ``log``),
    then find it cached. Re-entrant within a process and its forked trainers, which run on their parent's behalf."""
    global _lock_depth
    from bench.io import ensure_writable_dir, file_lock
    from bench.networks import weights as W

    with contextlib.ExitStack() as stack:
        if not _lock_depth:
            lock = ensure_writable_dir(W.local_dir(), "weights folder") / ".sim-train.lock"
            waiting = None if log is None else (lambda: log(f"waiting for another process training simulator networks ({lock})"))
            stack.enter_context(file_lock(lock, on_wait=waiting))
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1


def _train_serial(todo: list[str], seed: int, device: str, log, out: dict) -> None:
    """Run ``todo`` in this process, one after another; register each as it ends."""
    from bench.io import atomic_dir

    for name in todo:
        if log:
            log(f"training {name} on the simulator (seed {seed}, {device}) ...")
        with atomic_dir(output_dir(name, seed)) as tmp:  # replaces the folder whole on success
            made, seconds = _train_one(name, tmp, seed, device)
        _register_trained(name, seed, made, seconds, out, log)


def _cached_outputs(name: str, seed: int, local: dict) -> dict[str, dict] | None:
    """{entry: row} when every entry of trainer ``name`` is current for ``seed`` and its file matches its sha256."""
    from bench.networks import weights as W

    rows = {}
    for e in _ENTRIES[name]:
        spec = local.get(e)
        if spec is None or spec.sim is None or not _current(spec) or spec.sim.get("seed") != int(seed):
            return None
        path = W.local_dir() / spec.file
        if not path.is_file() or W.sha256_of(path) != spec.sha256:
            return None
        rows[e] = {"path": str(path), "sha256": spec.sha256, "seconds": 0.0, "trained": False}
    return rows


def _train_one(name: str, out_dir: Path, seed: int, device: str) -> tuple[dict, float]:
    """Run trainer ``name`` writing into ``out_dir``; returns (what it made, seconds)."""
    from bench.training import pinned_threads

    t0 = time.perf_counter()
    # One intra-op thread: multi-threaded CPU reductions (convolution backward) sum in a load-dependent order,
    # which made the PANNs and VGGish files differ from run to run; one thread gives the same bytes.
    with pinned_threads(1, blas=False):
        made = TRAINERS[name](Path(out_dir), int(seed), device)
    return made, time.perf_counter() - t0


def _register_trained(name: str, seed: int, made: dict, seconds: float, out: dict, log) -> None:
    """Add the entries trainer ``name`` wrote to the local catalogue (with their sha256) and to ``out``."""
    import shutil

    from bench.networks import weights as W

    folder = output_dir(name, seed)
    entries = _ENTRIES[name]
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


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _train_in_child(name: str, out_dir: Path, seed: int, device: str, conn) -> None:
    """A forked worker: train ``name`` into ``out_dir``; send ("ok", made, seconds) or ("error", is_bench_error, text)."""
    try:
        made, seconds = _train_one(name, out_dir, seed, device)
        conn.send(("ok", made, seconds))
    except BaseException as exc:  # reported by the parent, which raises it there
        import traceback

        conn.send(("error", isinstance(exc, BenchError), str(exc) if isinstance(exc, BenchError) else traceback.format_exc()))
    finally:
        conn.close()


def start_order(todo: list[str]) -> list[str]:
    """``todo`` by priority: the longest chain of needs first (by the trainers' registered ``seconds``: the longest
    work first leaves the shortest tail), then a trainer whose needs ran (it continues a chain already started),
    then registration order. AudioMAE -> AudioLDM2 (about 380 s of the 545 s) is the longest chain."""
    def chain(name: str) -> float:  # seconds of the longest chain from ``name`` to one that nothing in todo needs
        return _SECONDS[name] + max((chain(m) for m in todo if name in _NEEDS[m]), default=0.0)

    return sorted(todo, key=lambda n: (-chain(n), -len(_NEEDS[n]), todo.index(n)))


def _train_parallel(todo: list[str], seed: int, device: str, jobs: int, log, out: dict) -> None:
    """Run ``todo`` (needs before their dependents) in up to ``jobs`` forked processes; register each as it ends.
    A free process takes the first ready trainer in ``start_order``."""
    import multiprocessing
    import shutil
    import signal
    from multiprocessing.connection import wait

    from bench.io import replace_dir, temporary_dir_beside

    ctx = multiprocessing.get_context("fork")  # the child inherits this process's registry and settings
    pending = start_order(todo)
    running: dict = {}  # receiving connection -> (name, process, its temporary folder)
    try:
        while pending or running:
            busy = {n for n, _, _ in running.values()}
            for name in [n for n in pending if not any(d in pending or d in busy for d in _NEEDS[n])]:
                if len(running) >= jobs:
                    break
                pending.remove(name)
                if log:
                    log(f"training {name} on the simulator (seed {seed}, {device}, worker process) ...")
                tmp = temporary_dir_beside(output_dir(name, seed))  # this process owns it: removed if the worker dies
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_train_in_child, args=(name, tmp, seed, device, send), name=f"train-sim {name}")
                running[recv] = (name, proc, tmp)
                proc.start()
                send.close()
            if not running:  # cannot happen: needs are registered, so trained, before their dependents
                raise BenchError(f"simulator trainers {', '.join(pending)} wait for each other")
            for recv in wait(list(running)):
                name, proc, tmp = running.pop(recv)
                try:
                    message = recv.recv()
                except EOFError:
                    message = None
                recv.close()
                proc.join()
                try:
                    if message is None:
                        raise BenchError(f"trainer {name}'s worker process ended with exit code {proc.exitcode} before "
                                         f"it reported (killed, e.g. out of memory?); rerun with jobs=1 (`--jobs 1`)")
                    if message[0] == "error":
                        _, is_bench_error, text = message
                        if is_bench_error:
                            raise BenchError(text)
                        raise RuntimeError(f"trainer {name} failed in its worker process:\n{text}")
                    replace_dir(tmp, output_dir(name, seed))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                _register_trained(name, seed, message[1], message[2], out, log)
    finally:
        for recv, (name, proc, tmp) in running.items():  # after an error or Ctrl-C: stop the others
            if proc.pid is not None:  # started
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGINT)
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            recv.close()
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# training data: fresh clips of the three worlds


def label_space() -> tuple[str, ...]:
    """The 16 labels of the simulator's worlds, "<kind>/<label>", in a fixed order."""
    from bench.simulate import LABELS, KINDS

    return tuple(f"{k}/{lab}" for k in KINDS for lab in LABELS[k])


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


def interleaved_rounds(epochs: int, sizes: dict[str, int], batch_size: int, step, gen) -> list[float]:
    """Epochs of batches of one kind at a time (clip lengths differ between kinds), every kind's batches shuffled
    together in an order drawn from ``gen``; ``step(kind, idx (B,) LongTensor) -> float`` trains on one batch.
    Returns the mean step value per epoch (rounded to 5 digits)."""
    import torch

    history = []
    for _ in range(int(epochs)):
        plan = []
        for kind, size in sizes.items():
            perm = torch.randperm(size, generator=gen)
            plan += [(kind, perm[i : i + batch_size]) for i in range(0, size, batch_size)]
        total = 0.0
        for j in torch.randperm(len(plan), generator=gen).tolist():
            total += step(*plan[j])
        history.append(round(total / len(plan), 5))
    return history


def _save(module_or_sd, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    sd = module_or_sd.state_dict() if hasattr(module_or_sd, "state_dict") else module_or_sd
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}
    # One metadata key: safetensors writes its metadata map in a per-process random (Rust HashMap) order, so two
    # keys made the same weights hash differently from run to run (measured: sim-panns, identical tensors).
    save_file(tensors, str(path), metadata={"bench": json.dumps(meta, sort_keys=True)})


# ----------------------------------------------------------------------------------------------
# the trainers

N_PER_KIND = 240
"""Fresh clips per world (sound, music, speech) every built-in trainer learns from (shared, generated once)."""

PANNS_CONFIG = {"n_per_kind": N_PER_KIND, "window_s": 2.0, "epochs": 4, "batch_size": 32, "lr": 2e-3}


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


VGGISH_CONFIG = {"n_per_kind": N_PER_KIND, "epochs": 8, "batch_size": 64, "lr": 3e-3}


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
    "n_per_kind": N_PER_KIND, "epochs": 12, "batch_size": 32, "lr": 1e-3, "projection_dim": 512,  # as LAION CLAP (C2F decodes 512-d)
    "text_config": dict(vocab_size=131, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1),
    # patches of 8 x 8 on HTSAT's 256 x 256 image: 1,024 tokens (4x fewer than the published 4 x 4)
    "audio_config": dict(patch_size=8, patch_stride=[8, 8], patch_embeds_hidden_size=16, depths=[1, 1],
                         num_attention_heads=[1, 2], hidden_size=32, window_size=8, num_hidden_layers=2, enable_fusion=False),
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
                         "description": "CLAP (small HTSAT + 1-layer text tower on byte tokens, 512-d as LAION CLAP) trained contrastively on the simulator's captions"}}


# seconds: measured on one core of a 2-core AMD EPYC (2026-12-06, README)
register("panns", train_panns, entries=("sim-panns",), config=PANNS_CONFIG, seconds=45)
register("vggish", train_vggish, entries=("sim-vggish",), config=VGGISH_CONFIG, seconds=33)
register("clap", train_clap, entries=("sim-clap",), config=CLAP_CONFIG, seconds=87)


AUDIOMAE_CONFIG = {"n_per_kind": N_PER_KIND, "epochs": 8, "batch_size": 32, "lr": 2e-3, "mask_ratio": 0.75}


def audiomae_arch() -> dict:
    """The sim AudioMAE's settings: ``AudioMAEConfig.tiny()`` (128 frames x 128 bins, 32-d), as the tiny profiles build."""
    import dataclasses

    from bench.networks.audiomae import AudioMAEConfig

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(AudioMAEConfig.tiny()).items()}


def audiomae_config_from_arch(arch: dict | None):
    from bench.networks.audiomae import AudioMAEConfig

    if arch is None:
        return AudioMAEConfig()
    return AudioMAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})


def train_audiomae(out_dir: Path, seed: int, device: str = "cpu") -> dict:
    """sim-audiomae: the tiny AudioMAE, masked autoencoding of the Kaldi fbank of fresh clips (tiled to 10 s, as
    ``AudioMAE.features`` sees them): ``mask_ratio`` of the tokens hidden from the encoder at random, the Swin
    decoder (mask tokens in their place) reconstructs the masked patches in normalised-fbank units (MSE on them)."""
    import torch

    from bench.fbank import audiomae_input, repeat_to_seconds
    from bench.networks.audiomae import AudioMAE

    cfg = AUDIOMAE_CONFIG
    arch = audiomae_arch()
    mcfg = audiomae_config_from_arch(arch)
    with _Deterministic():
        torch.manual_seed(seed)
        data = world(seed, cfg["n_per_kind"])
        fb = torch.cat([audiomae_input(repeat_to_seconds(d["audio"], 10.0), target_frames=mcfg.img_size[0])
                        for d in data.values()]).to(device)  # (n, 128, 128)
        mae = AudioMAE(mcfg).to(device).train()
        n_tok = mcfg.num_patches
        n_keep = max(1, int(round(n_tok * (1.0 - cfg["mask_ratio"]))))
        gen = torch.Generator().manual_seed(seed + 1)

        def loss_fn(idx):
            x = fb[idx]
            target = mae.patchify(x)  # (B, L, p*p)
            tok = mae.patch_embed(x[:, None]) + mae.pos_embed[:, 1:]
            order = torch.argsort(torch.rand(len(idx), n_tok, generator=gen), dim=1).to(device)
            keep = order[:, :n_keep]
            vis = torch.gather(tok, 1, keep[:, :, None].expand(-1, -1, tok.shape[2]))
            cls = (mae.cls_token + mae.pos_embed[:, :1]).expand(len(idx), -1, -1)
            h = torch.cat([cls, vis], 1)
            for blk in mae.blocks:
                h = blk(h)
            h = mae.decoder_embed(mae.norm(h)[:, 1:])
            full = mae.mask_token.expand(len(idx), n_tok, -1).clone()
            full = full.scatter(1, keep[:, :, None].expand(-1, -1, h.shape[2]), h) + mae.decoder_pos_embed[:, 1:]
            for blk in mae.decoder_blocks:
                full = blk(full)
            pred = mae.decoder_pred(mae.decoder_norm(full))
            masked = torch.ones(len(idx), n_tok, device=device)
            masked.scatter_(1, keep, 0.0)
            err = ((pred - target) ** 2).mean(-1)
            return (err * masked).sum() / masked.sum()

        history = _fit([p for p in mae.parameters() if p.requires_grad], len(fb), loss_fn, epochs=cfg["epochs"],
                       batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed)
        mae.eval()
        _save(mae, out_dir / "sim-audiomae.safetensors", {"train_loss": [round(h, 5) for h in history]})
    return {"sim-audiomae": {"file": "sim-audiomae.safetensors", "network": "audiomae", "arch": arch,
                             "description": "AudioMAE (tiny: 128 frames x 128 bins, 32-d) pretrained by masked autoencoding on the simulator's clips"}}


def ldm_arch() -> dict:
    """The sim AudioLDM2 parts: ``audioldm2.TINY`` with the UNet's condition width set to the sim AudioMAE's (32), so
    the LDM methods need no projection between them."""
    import copy

    from bench.networks.audioldm2 import TINY

    cfg = copy.deepcopy(TINY)
    width = audiomae_arch()["embed_dim"]
    cfg["unet"]["cross_attention_dim"] = [[None, width, 8]] * len(cfg["unet"]["down_block_types"])
    return json.loads(json.dumps(cfg))  # lists, as read back from the catalogue


LDM_CONFIG = {"n_per_kind": 480, "n_used": 480, "vae_epochs": 4, "vae_frames": 224, "vae_lr": 2e-3,
              "kl_weight": 1e-4, "unet_epochs": 15, "unet_lr": 2e-3, "t_power": 3.0, "weight_cap": 20.0, "uncond": 0.0,
              "batch_size": 16, "audiomae": "sim-audiomae"}
"""n_per_kind: clips per world, all of them for the UNet; n_used: the first clips per world, for the VAE;
vae_frames: the VAE trains on the first frames of each mel (it is convolutional; the UNet sees whole clips);
t_power, weight_cap: ``LatentDiffusion.loss``'s knobs, uncond: the condition dropout. The UNet's settings were
measured by ``benchmarks/sim_ldm_condition.py``: with 120 clips, 20 epochs, uniform t, plain eps-MSE and 10%
dropout it barely used its condition (samples given the true features identified their clip 0.51-0.59 of the time).
The VAE trains on all 480 clips per world (it trained on the first 120 until 2026-12-07): its round trip then keeps
what the sim CLAP recognises (CLAP identification of held-out clips 0.86 / 0.89 / 0.81 against 0.57 / 0.73 / 0.54,
sound / music / speech, ``benchmarks/sim_ldm_condition.py --clap``), for about 115 s more training."""


def train_audioldm2(out_dir: Path, seed: int, device: str = "cpu") -> dict:
    """sim-audioldm2-vae and sim-audioldm2-unet: the tiny AudioLDM2 VAE trained on the vocoder log-mels of fresh
    clips (reconstruction MSE + ``kl_weight`` KL), then the tiny UNet trained with the diffusion loss on its latents
    conditioned on the clips' sim-AudioMAE features (``AudioMAE.features``, N_patch tokens as the methods use), as
    AudioLDM2 is conditioned on AudioMAE features; the LDM methods fine-tune it on brain data."""
    import torch
    import torch.nn.functional as F

    from bench.audio import vocoder_mel
    from bench.fbank import n_patch_for_seconds
    from bench.networks import weights as W
    from bench.networks.audiomae import load_audiomae
    from bench.networks.audioldm2 import LOG_FLOOR, LatentDiffusion, build_ldm

    cfg = LDM_CONFIG
    arch = ldm_arch()
    mae_spec = ensure_entry(cfg["audiomae"], "the sim AudioLDM2 UNet's conditions", device=device)
    with _Deterministic():
        mae = load_audiomae(W.local_dir() / mae_spec.file, config=audiomae_config_from_arch(mae_spec.arch), device=device)
        torch.manual_seed(seed)
        data = world(seed, cfg["n_per_kind"])
        unet, vae, vocoder, scheduler = build_ldm(arch)
        ldm = LatentDiffusion(unet, vae, vocoder, scheduler, cond_dim=mae.config.embed_dim,
                              uncond_prob=cfg["uncond"]).to(device)
        mels, conds = {}, {}
        for kind, d in data.items():
            m = torch.from_numpy(vocoder_mel(d["audio"])).to(device)  # (n, 64, T)
            pad = ldm.padded_frames(m.shape[2]) - m.shape[2]
            mels[kind] = F.pad(m, (0, pad), value=LOG_FLOOR).transpose(1, 2)[:, None]  # (n, 1, T', 64)
            n_patch = min(n_patch_for_seconds(d["audio"].shape[1] / 16_000, max_frames=mae.config.img_size[0]),
                          mae.config.num_patches)
            conds[kind] = mae.features(d["audio"], n_patch).float()
        kinds = list(mels)
        gen = torch.Generator().manual_seed(seed + 2)

        def rounds(epochs, step, n_per_kind):
            return interleaved_rounds(epochs, {k: n_per_kind for k in kinds}, cfg["batch_size"], step, gen)

        vae.requires_grad_(True).train()
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg["vae_lr"], weight_decay=1e-4)

        def vae_step(kind, idx):
            x = mels[kind][idx, :, : cfg["vae_frames"]]
            dist = vae.encode(x).latent_dist
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(device)
            rec = vae.decode(z).sample
            loss = F.mse_loss(rec, x) + cfg["kl_weight"] * dist.kl().mean() / x[0].numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        vae_history = rounds(cfg["vae_epochs"], vae_step, cfg["n_used"])
        vae.requires_grad_(False).eval()
        latents = {}
        with torch.no_grad():
            for k in kinds:
                latents[k] = vae.encode(mels[k]).latent_dist.mode() * ldm.scaling_factor
        ldm.unet.train()
        opt = torch.optim.AdamW(ldm.unet.parameters(), lr=cfg["unet_lr"], weight_decay=1e-2)

        def unet_step(kind, idx):
            loss = ldm.loss(latents[kind][idx], conds[kind][idx], generator=gen, t_power=cfg["t_power"],
                            weight_cap=cfg["weight_cap"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        unet_history = rounds(cfg["unet_epochs"], unet_step, cfg["n_per_kind"])
        ldm.eval()
        _save(vae, out_dir / "sim-audioldm2-vae.safetensors", {"train_loss": vae_history})
        _save(ldm.unet, out_dir / "sim-audioldm2-unet.safetensors", {"train_loss": unet_history})
    return {
        "sim-audioldm2-vae": {"file": "sim-audioldm2-vae.safetensors", "network": "audioldm2-vae", "arch": arch["vae"],
                              "description": "AudioLDM2 VAE (tiny) trained on vocoder log-mels of the simulator's clips"},
        "sim-audioldm2-unet": {"file": "sim-audioldm2-unet.safetensors", "network": "audioldm2-unet", "arch": arch["unet"],
                               "description": "AudioLDM2 UNet (tiny) trained to denoise sim-VAE latents given sim-AudioMAE features"},
    }


register("audiomae", train_audiomae, entries=("sim-audiomae",), config=AUDIOMAE_CONFIG, seconds=42)
register("audioldm2", train_audioldm2, entries=("sim-audioldm2-vae", "sim-audioldm2-unet"), needs=("audiomae",),
         seconds=338, config=lambda: {**LDM_CONFIG, "audiomae_config": config_key("audiomae"), "arch": ldm_arch()})


# ----------------------------------------------------------------------------------------------
# loading the sim backbones (for the methods' tiny profiles on simulated data)


def _sim_file(entry: str, what: str):
    """(spec, path) of a simulator-trained entry, trained first when ``$BENCH_SIM_WEIGHTS`` is auto."""
    from bench.networks import weights as W

    spec = ensure_entry(entry, what, train=sim_mode() == "auto")
    found = W.find(spec)
    if found is None:
        raise UnavailableError(W.missing_reason(spec, what))
    W.check(found)
    return spec, found.load_path


def load_sim_audiomae(what: str, device: str = "cpu"):
    """A fresh (trainable) copy of sim-audiomae, strictly loaded, eval mode; returns (model, spec)."""
    from bench.networks.audiomae import load_audiomae

    spec, path = _sim_file("sim-audiomae", what)
    return load_audiomae(path, config=audiomae_config_from_arch(spec.arch), device=device), spec


def load_sim_ldm(what: str, seed: int = 0):
    """(unet, vae, vocoder, scheduler) of the tiny AudioLDM2 with the sim VAE and UNet strictly loaded; the vocoder is
    random-init (the tiny profiles use Griffin-Lim). Returns (parts, {part: entry name})."""
    import torch

    from bench.networks.audioldm2 import build_ldm
    from bench.networks.checkpoints import strict_load
    from bench.networks.weights import load_checkpoint_file

    specs = {part: _sim_file(f"sim-audioldm2-{part}", what) for part in ("vae", "unet")}
    arch = ldm_arch()
    for part, (spec, _) in specs.items():
        if spec.arch != arch[part]:
            raise BenchError(f"{spec.name}: its arch differs from this version's ({what}); retrain with `bench weights train-sim --force`")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae, vocoder, scheduler = build_ldm(arch)
    for part, module in (("vae", vae), ("unet", unet)):
        spec, path = specs[part]
        strict_load(module, load_checkpoint_file(path), spec.name, str(path), optional_suffixes=())
    return (unet, vae, vocoder, scheduler), {part: spec.name for part, (spec, _) in specs.items()}

"""The one torch training loop of the suite: seeded, device-agnostic, AMP on CUDA, checkpoint and resume,
early stopping on held-out stimuli (``split_by_group``).

Every neural method trains through ``fit_model`` (MLP, BiLSTM, Transformer, the acoustic decoder, the LDM).
A checkpoint holds the model, optimizer, AMP scaler, epoch, the best validation state and the RNG state,
keyed by a hash of the training config, so an interrupted fit resumes at the last finished epoch and gives
the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

log = logging.getLogger("bench.training")


@contextlib.contextmanager
def pinned_threads(n: int, *, blas: bool = True) -> Iterator[None]:
    """torch's intra-op threads, and numpy's BLAS threads unless ``blas=False``, set to ``n`` inside the block
    (restored after). float32 CPU results depend on both counts (summation order), so a result meant to be the same
    on every machine of a platform (golden values, cached simulator networks) is computed with a fixed count."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n), user_api="blas") if blas else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


def split_by_group(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the stimuli (not samples), so repeats of one stimulus stay together."""
    n = len(groups)
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    unique = np.unique(np.asarray(groups, dtype=str))
    n_val = max(1, int(round(fraction * len(unique)))) if len(unique) > 1 else 0
    val_groups = set(rng.permutation(unique)[:n_val].tolist())
    is_val = np.array([g in val_groups for g in np.asarray(groups, dtype=str)])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@dataclass
class TrainConfig:
    """epochs: maximum passes over the training samples; batch_size: samples per optimizer step
    (per accumulation step when ``grad_accum`` > 1); lr, weight_decay: AdamW's (weight_decay 0 is Adam);
    patience: epochs without improvement of the monitored loss (validation loss, or the training loss
    when there is no validation set) before stopping (0 = never stop early); tol: an epoch improves when
    its loss is below best - tol * |best|; amp: mixed precision, used on CUDA only; grad_clip: maximum
    gradient norm (0 = no clipping)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    grad_accum: int = 1
    patience: int = 0
    amp: bool = True
    grad_clip: float = 1.0
    tol: float = 0.0

    def digest(self, extra: dict | None = None) -> str:
        blob = json.dumps({**asdict(self), **(extra or {})}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit_model(
    model,
    loss_fn: Callable,
    train_index: np.ndarray,
    val_index: np.ndarray,
    cfg: TrainConfig,
    *,
    device: str,
    seed: int,
    work_dir: Path | None = None,
    tag: str = "model",
    progress: bool = False,
    params: list | None = None,
) -> dict:
    """Train ``model`` in place; return {"epochs_run", "train_loss", "val_loss", "best_epoch"}.

    loss_fn(model, batch_index: LongTensor on ``device``, train: bool) -> scalar loss tensor.
    train_index / val_index: (n,) int64 sample indices (val may be empty: no early stopping).
    work_dir: where ``<tag>.ckpt`` is written after every epoch; an existing checkpoint with
    the same config digest is resumed.
    """
    import torch
    from tqdm.auto import tqdm

    dev = torch.device(device)
    use_amp = cfg.amp and dev.type == "cuda"
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(int(seed))
    state = {"epoch": 0, "train_loss": [], "val_loss": [], "best": float("inf"), "best_epoch": -1, "stall": 0}
    best_state = None
    digest = cfg.digest({"seed": seed, "n_train": len(train_index), "tag": tag})
    ckpt = Path(work_dir) / f"{tag}.ckpt" if work_dir else None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, map_location=dev, weights_only=False)  # our own file, written below
        if saved.get("digest") == digest:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            scaler.load_state_dict(saved["scaler"])
            gen.set_state(saved["generator"])
            state = saved["state"]
            best_state = saved["best_state"]
            log.info("resuming %s from epoch %d", tag, state["epoch"])

    train_t = torch.from_numpy(np.asarray(train_index, dtype=np.int64))
    val_t = torch.from_numpy(np.asarray(val_index, dtype=np.int64)).to(dev)
    bar = tqdm(range(state["epoch"], cfg.epochs), desc=f"{tag} epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = train_t[torch.randperm(len(train_t), generator=gen)]
        total, count = 0.0, 0
        opt.zero_grad(set_to_none=True)
        n_steps = (len(order) + cfg.batch_size - 1) // cfg.batch_size
        for step in range(n_steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(model, idx, True)
            scaler.scale(loss / cfg.grad_accum).backward()
            if (step + 1) % cfg.grad_accum == 0 or step + 1 == n_steps:
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            total += loss.item() * len(idx)
            count += len(idx)
        state["train_loss"].append(total / max(count, 1))
        monitor = state["train_loss"][-1]
        if len(val_t):
            model.eval()
            with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                vals = [loss_fn(model, val_t[i : i + cfg.batch_size], False).item() * len(val_t[i : i + cfg.batch_size])
                        for i in range(0, len(val_t), cfg.batch_size)]
            monitor = sum(vals) / len(val_t)
            state["val_loss"].append(monitor)
        if monitor < state["best"] - cfg.tol * abs(state["best"]) or state["best_epoch"] < 0:
            state.update(best=monitor, best_epoch=epoch, stall=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["stall"] += 1
        state["epoch"] = epoch + 1
        if ckpt is not None:
            from bench.io import write_torch

            write_torch(ckpt, {"digest": digest, "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scaler": scaler.state_dict(), "generator": gen.get_state(), "state": state,
                               "best_state": best_state})
        if cfg.patience and state["stall"] >= cfg.patience:
            break
    if best_state is not None and len(val_t):
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": state["epoch"], "train_loss": state["train_loss"], "val_loss": state["val_loss"], "best_epoch": state["best_epoch"]}

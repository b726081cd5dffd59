"""MLP: a three-layer perceptron from fMRI to the vocoder mel (the paper's sklearn MLPRegressor).

Written in torch so it trains on CUDA; it follows MLPRegressor's defaults (ReLU, Adam, L2 penalty
``alpha`` on the weights, mini-batches of 200, early stopping on a held-out 10% with patience 10).
"Three layers" is read as three weight layers (two hidden layers); the paper gives no widths, so
the paper profile's widths are our choice and are recorded with every result.
"""

from __future__ import annotations

import numpy as np

from bench.networks.vocoder import VOCODER_PARAM_VALUES
from methods.base import Boolean, Interval, ListOf, Options
from methods.direct import DirectMelDecoder


class MLP(DirectMelDecoder):
    name = "mlp"
    display_name = "MLP"
    profiles = {
        "tiny": {
            "hidden_layer_sizes": [128, 128],
            "alpha": 1e-4,
            "learning_rate_init": 1e-3,
            "batch_size": 64,
            "max_epochs": 40,
            "early_stopping": True,
            "validation_fraction": 0.1,
            "n_iter_no_change": 5,
            "vocoder": "griffin-lim",
            "griffin_lim_iters": 8,
        },
        "paper": {
            "hidden_layer_sizes": [1024, 1024],
            "alpha": 1e-4,
            "learning_rate_init": 1e-3,
            "batch_size": 200,
            "max_epochs": 200,
            "early_stopping": True,
            "validation_fraction": 0.1,
            "n_iter_no_change": 10,
            "vocoder": "auto",
            "griffin_lim_iters": 32,
        },
    }
    param_constraints = {
        "hidden_layer_sizes": ListOf(Interval(low=1, integer=True), min_len=1),
        "alpha": Interval(low=0.0),
        "learning_rate_init": Interval(low=0.0, high=1.0),
        "batch_size": Interval(low=1, integer=True),
        "max_epochs": Interval(low=1, integer=True),
        "early_stopping": Boolean(),
        "validation_fraction": Interval(low=0.0, high=0.5),
        "n_iter_no_change": Interval(low=1, integer=True),
        "vocoder": Options(VOCODER_PARAM_VALUES),
        "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
    }

    def __init__(
        self,
        hidden_layer_sizes=(1024, 1024),
        alpha=1e-4,
        learning_rate_init=1e-3,
        batch_size=200,
        max_epochs=200,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        vocoder="griffin-lim",
        griffin_lim_iters=32,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.vocoder = vocoder
        self.griffin_lim_iters = griffin_lim_iters

    def _build(self, n_in: int, n_out: int):
        import torch.nn as nn

        layers, width = [], n_in
        for h in self.hidden_layer_sizes:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, n_out))
        return nn.Sequential(*layers)

    def _fit_regressor(self, X, Y, *, rng, groups, progress):
        import torch
        from tqdm.auto import tqdm

        # Targets are standardised for the optimiser; predictions are mapped back.
        self.y_mean_ = Y.mean(axis=0)
        y_std = Y.std(axis=0)
        self.y_scale_ = np.where(y_std > 0, y_std, 1.0).astype(np.float32)
        Yz = (Y - self.y_mean_) / self.y_scale_

        train_idx, val_idx = _split_by_group(groups, self.validation_fraction if self.early_stopping else 0.0, rng)
        dev = torch.device(self.device_)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        Yt = torch.from_numpy(np.ascontiguousarray(Yz, dtype=np.float32)).to(dev)
        model = self._build(X.shape[1], Y.shape[1]).to(dev)
        # sklearn's alpha is an L2 penalty 0.5 * alpha * ||W||^2 / n_samples on weights, not biases.
        weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
        opt = torch.optim.Adam([{"params": weights}, {"params": biases}], lr=self.learning_rate_init)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        n_train = len(train_idx)
        train_idx_t = torch.from_numpy(train_idx)
        best, best_state, stall = np.inf, None, 0
        self.loss_curve_, self.validation_scores_ = [], []
        for epoch in tqdm(range(self.max_epochs), desc="mlp epochs", disable=not progress, leave=False):
            model.train()
            order = train_idx_t[torch.randperm(n_train, generator=gen)]
            total = 0.0
            for start in range(0, n_train, self.batch_size):
                idx = order[start : start + self.batch_size].to(dev)
                pred = model(Xt[idx])
                loss = 0.5 * ((pred - Yt[idx]) ** 2).sum(dim=1).mean()
                penalty = 0.5 * self.alpha * sum((w**2).sum() for w in weights) / n_train
                opt.zero_grad(set_to_none=True)
                (loss + penalty).backward()
                opt.step()
                total += loss.item() * len(idx)
            self.loss_curve_.append(total / n_train)
            monitor = self.loss_curve_[-1]
            if len(val_idx):
                model.eval()
                with torch.no_grad():
                    vi = torch.from_numpy(val_idx).to(dev)
                    monitor = float(0.5 * ((model(Xt[vi]) - Yt[vi]) ** 2).sum(dim=1).mean())
                self.validation_scores_.append(monitor)
            if monitor < best - 1e-4 * abs(best):
                best, stall = monitor, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stall += 1
                if stall >= self.n_iter_no_change:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.n_epochs_ = epoch + 1
        self.model_ = model.eval()

    def _predict_regressor(self, X):
        import torch

        dev = next(self.model_.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, len(X), 1024):
                xb = torch.from_numpy(np.ascontiguousarray(X[start : start + 1024])).to(dev)
                out.append(self.model_(xb).cpu().numpy())
        return np.concatenate(out) * self.y_scale_ + self.y_mean_

    def _predict_info(self) -> dict:
        return {"n_epochs": int(self.n_epochs_), "final_train_loss": float(self.loss_curve_[-1])}

    def describe_components(self):
        return {"regressor": "torch MLP " + "x".join(str(h) for h in self.hidden_layer_sizes), "vocoder": self.vocoder}


def _split_by_group(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the stimuli (not samples), so repeats of one stimulus stay together."""
    n = len(groups)
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    unique = np.unique(np.asarray(groups, dtype=str))
    n_val = max(1, int(round(fraction * len(unique)))) if len(unique) > 1 else 0
    val_groups = set(rng.permutation(unique)[:n_val].tolist())
    is_val = np.array([g in val_groups for g in np.asarray(groups, dtype=str)])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)

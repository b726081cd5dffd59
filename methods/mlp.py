"""MLP: a three-layer perceptron from fMRI to the vocoder mel (the paper's sklearn MLPRegressor).

Written in torch and trained by the shared loop (``bench.training.fit_model``: checkpoint each epoch, resume,
AMP on CUDA), it follows MLPRegressor's defaults: ReLU, Adam without gradient clipping, the L2 penalty
``alpha`` on the weights (0.5 * alpha * ||W||^2 / n_train, added to the training loss), mini-batches of 200,
early stopping on a held-out 10% of the training stimuli with patience 10 and tolerance 1e-4.
"Three layers" is read as three weight layers (two hidden layers); the paper gives no widths, so the
default widths are our choice and are recorded with every result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.networks.vocoder import VOCODER_PARAM_VALUES
from bench.training import TrainConfig, fit_model, split_by_group
from methods.base import Interval, ListOf, Options
from methods.direct import DirectMelDecoder


class Perceptron(nn.Module):
    """(B, n_in) -> (B, n_out): Linear + ReLU per hidden width, then a linear output layer."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int):
        super().__init__()
        layers, width = [], n_in
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, n_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class MLP(DirectMelDecoder):
    """fMRI (z-scored) -> flattened vocoder mel (standardised per output) by a two-hidden-layer perceptron."""

    name = "mlp"
    display_name = "MLP"
    profiles = {
        "tiny": {"hidden_layer_sizes": [128, 128], "batch_size": 64, "epochs": 40, "patience": 5,
                 "griffin_lim_iters": 8},
        "paper": {"vocoder": "auto"},
    }
    param_constraints = {
        "hidden_layer_sizes": ListOf(Interval(low=1, integer=True), min_len=1),
        "alpha": Interval(low=0.0),
        "lr": Interval(low=0.0, high=1.0),
        "batch_size": Interval(low=1, integer=True),
        "epochs": Interval(low=1, integer=True),
        "validation_fraction": Interval(low=0.0, high=0.5),
        "patience": Interval(low=0, integer=True),
        "vocoder": Options(VOCODER_PARAM_VALUES),
        "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
    }

    def __init__(self, hidden_layer_sizes=(1024, 1024), alpha=1e-4, lr=1e-3, batch_size=200, epochs=200,
                 validation_fraction=0.1, patience=10, vocoder="griffin-lim", griffin_lim_iters=32):
        """alpha: L2 penalty on the weights (sklearn's); validation_fraction: share of the training stimuli
        held out for early stopping (0: stop on the training loss); patience: epochs without improvement
        before stopping (0: never stop early)."""
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.vocoder = vocoder
        self.griffin_lim_iters = griffin_lim_iters

    def _fit_regressor(self, X, Y, *, rng, groups, progress):
        # Targets are standardised for the optimiser; predictions are mapped back.
        self.y_mean_ = Y.mean(axis=0)
        y_std = Y.std(axis=0)
        self.y_scale_ = np.where(y_std > 0, y_std, 1.0).astype(np.float32)
        Yz = (Y - self.y_mean_) / self.y_scale_

        train_idx, val_idx = split_by_group(groups, self.validation_fraction, rng)
        dev = torch.device(self.device_)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        Yt = torch.from_numpy(np.ascontiguousarray(Yz, dtype=np.float32)).to(dev)
        torch.manual_seed(int(rng.integers(2**31)))
        self.model_ = Perceptron(X.shape[1], list(self.hidden_layer_sizes), Y.shape[1]).to(dev)
        weights = [p for n, p in self.model_.named_parameters() if n.endswith("weight")]
        n_train = len(train_idx)

        def loss_fn(model, idx, training):
            loss = 0.5 * ((model(Xt[idx]).float() - Yt[idx]) ** 2).sum(dim=1).mean()
            if training and self.alpha:
                loss = loss + 0.5 * self.alpha * sum((w.float() ** 2).sum() for w in weights) / n_train
            return loss

        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=0.0,
                          patience=self.patience, grad_clip=0.0, tol=1e-4)
        self.history_ = fit_model(self.model_, loss_fn, train_idx, val_idx, cfg, device=self.device_,
                                  seed=int(rng.integers(2**31)), work_dir=self.work_dir_, tag=self.name,
                                  progress=progress)

    def _predict_regressor(self, X):
        dev = next(self.model_.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, len(X), 1024):
                xb = torch.from_numpy(np.ascontiguousarray(X[start : start + 1024])).to(dev)
                out.append(self.model_(xb).float().cpu().numpy())
        return np.concatenate(out) * self.y_scale_ + self.y_mean_

    def _predict_info(self) -> dict:
        h = self.history_
        return {"epochs_run": h["epochs_run"], "best_epoch": h["best_epoch"], "final_train_loss": h["train_loss"][-1]}

    def describe_components(self):
        return {"regressor": "torch MLP " + "x".join(str(h) for h in self.hidden_layer_sizes), "vocoder": self.vocoder}

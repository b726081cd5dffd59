"""Direct sequence decoders (fMRI -> vocoder mel frames): BiLSTM and Transformer.

The paper compares a bidirectional LSTM (Shigemi et al. 2023; Daly 2023) and a Transformer
(Shigemi et al. 2023), "both with the same configuration as our Transformer" (the acoustic
decoder: width 768, 4 encoder and 4 decoder layers). One fMRI sample is one vector, so both
first project it to a ``d_model`` token:

- Transformer: the fMRI token is encoded by a Transformer encoder; learned queries, one per mel
  frame, attend to it through a Transformer decoder; a linear head gives 64 mel bins per frame.
- BiLSTM: the fMRI token plus a learned per-frame embedding forms the input sequence of a
  bidirectional LSTM; a linear head gives 64 mel bins per frame.

Targets are the vocoder log-mel, standardised per bin with training statistics; the loss is MSE.
"""

from __future__ import annotations

import numpy as np

from bench.networks.vocoder import VOCODER_PARAM_VALUES
from methods.base import TRAINING_CONSTRAINTS, Interval, Options
from methods.direct import DirectMelDecoder
from methods.mlp import _split_by_group

_COMMON_CONSTRAINTS = {
    "d_model": Interval(low=8, integer=True),
    "n_layers": Interval(low=1, integer=True),
    "dropout": Interval(low=0.0, high=0.9),
    **TRAINING_CONSTRAINTS,
    "vocoder": Options(VOCODER_PARAM_VALUES),
    "griffin_lim_iters": Interval(low=1, high=1000, integer=True),
}


class _SeqDecoder(DirectMelDecoder):
    def _network(self, n_voxels: int, n_frames: int, n_mels: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_regressor(self, X, Y, *, rng, groups, progress):
        import torch

        from bench.training import TrainConfig, fit_model

        n_mels, n_frames = self.mel_shape_
        mel = Y.reshape(len(Y), n_mels, n_frames).transpose(0, 2, 1)  # (n, T, 64)
        self.y_mean_ = mel.mean(axis=(0, 1)).astype(np.float32)  # per mel bin
        std = mel.std(axis=(0, 1))
        self.y_scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        dev = torch.device(self.device_)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        Yt = torch.from_numpy(np.ascontiguousarray((mel - self.y_mean_) / self.y_scale_, dtype=np.float32)).to(dev)
        torch.manual_seed(int(rng.integers(2**31)))
        self.net_ = self._network(X.shape[1], n_frames, n_mels).to(dev)
        train_idx, val_idx = _split_by_group(groups, self.validation_fraction, rng)

        def loss_fn(model, idx, train):
            return torch.nn.functional.mse_loss(model(Xt[idx]).float(), Yt[idx])

        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                          grad_accum=self.grad_accum, patience=self.patience)
        self.history_ = fit_model(self.net_, loss_fn, train_idx, val_idx, cfg, device=self.device_,
                                  seed=int(rng.integers(2**31)), work_dir=self.work_dir_, tag=self.name, progress=progress)

    def _predict_regressor(self, X):
        import torch

        dev = next(self.net_.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, len(X), 64):
                xb = torch.from_numpy(np.ascontiguousarray(X[start : start + 64])).to(dev)
                out.append(self.net_(xb).float().cpu().numpy())
        mel = np.concatenate(out) * self.y_scale_ + self.y_mean_  # (n, T, 64)
        return mel.transpose(0, 2, 1).reshape(len(mel), -1)

    def _predict_info(self) -> dict:
        h = self.history_
        return {"epochs_run": h["epochs_run"], "best_epoch": h["best_epoch"], "final_train_loss": h["train_loss"][-1]}


def query_transformer(d_model: int, n_heads: int, n_enc_layers: int, n_dec_layers: int, n_queries: int, dropout: float):
    """The shared sequence-to-sequence core: a pre-norm Transformer encoder, ``n_queries`` learned queries
    (1, n_queries, d_model) and a pre-norm Transformer decoder that attends from them to the encoded tokens.
    Used by the direct Transformer decoder and by the acoustic decoder (``methods.c2f``)."""
    import torch
    import torch.nn as nn

    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True),
        n_enc_layers, enable_nested_tensor=False,
    )
    queries = nn.Parameter(torch.randn(1, n_queries, d_model) * 0.02)
    decoder = nn.TransformerDecoder(
        nn.TransformerDecoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True),
        n_dec_layers,
    )
    return encoder, queries, decoder


def _transformer_net(n_voxels, n_frames, n_mels, d_model, n_heads, n_layers, dropout):
    import torch.nn as nn

    class FmriToMelTransformer(nn.Module):
        """fMRI (B, V) -> mel (B, T, n_mels): one fMRI token, encoder, learned frame queries, decoder."""

        def __init__(self):
            super().__init__()
            self.fmri_token = nn.Linear(n_voxels, d_model)
            self.encoder, self.queries, self.decoder = query_transformer(d_model, n_heads, n_layers, n_layers, n_frames, dropout)
            self.head = nn.Linear(d_model, n_mels)

        def forward(self, x):
            memory = self.encoder(self.fmri_token(x).unsqueeze(1))
            return self.head(self.decoder(self.queries.expand(len(x), -1, -1), memory))

    return FmriToMelTransformer()


def _bilstm_net(n_voxels, n_frames, n_mels, d_model, n_layers, dropout):
    import torch
    import torch.nn as nn

    class FmriToMelBiLSTM(nn.Module):
        """fMRI (B, V) -> mel (B, T, n_mels): token + per-frame embedding through a bidirectional LSTM."""

        def __init__(self):
            super().__init__()
            self.fmri_token = nn.Linear(n_voxels, d_model)
            self.frame_embedding = nn.Parameter(torch.randn(1, n_frames, d_model) * 0.02)
            self.lstm = nn.LSTM(d_model, d_model // 2, num_layers=n_layers, batch_first=True, bidirectional=True,
                                dropout=dropout if n_layers > 1 else 0.0)
            self.head = nn.Linear(2 * (d_model // 2), n_mels)

        def forward(self, x):
            seq = self.fmri_token(x).unsqueeze(1) + self.frame_embedding
            out, _ = self.lstm(seq)
            return self.head(out)

    return FmriToMelBiLSTM()


_TINY = {"d_model": 64, "n_layers": 1, "dropout": 0.0, "lr": 3e-3, "weight_decay": 1e-2, "batch_size": 32,
         "epochs": 5, "grad_accum": 1, "patience": 0, "validation_fraction": 0.1, "vocoder": "griffin-lim",
         "griffin_lim_iters": 8}
# The paper: width 768, 4 layers, AdamW, batch 8, 30-40 epochs on one A100 (its learning rates are for
# the acoustic decoder and the LDM); we use lr 1e-4 and early stopping on held-out training stimuli.
_PAPER = {"d_model": 768, "n_layers": 4, "dropout": 0.1, "lr": 1e-4, "weight_decay": 1e-2, "batch_size": 8,
          "epochs": 30, "grad_accum": 1, "patience": 5, "validation_fraction": 0.1, "vocoder": "auto",
          "griffin_lim_iters": 32}


class Transformer(_SeqDecoder):
    name = "transformer"
    display_name = "Transformer"
    profiles = {"tiny": {**_TINY, "n_heads": 4}, "paper": {**_PAPER, "n_heads": 12}}
    param_constraints = {**_COMMON_CONSTRAINTS, "n_heads": Interval(low=1, integer=True)}

    def __init__(self, d_model=768, n_heads=12, n_layers=4, dropout=0.1, lr=1e-4, weight_decay=1e-2, batch_size=8,
                 epochs=30, grad_accum=1, patience=5, validation_fraction=0.1, vocoder="griffin-lim", griffin_lim_iters=32):
        self.d_model, self.n_heads, self.n_layers, self.dropout = d_model, n_heads, n_layers, dropout
        self.lr, self.weight_decay, self.batch_size, self.epochs = lr, weight_decay, batch_size, epochs
        self.grad_accum, self.patience, self.validation_fraction = grad_accum, patience, validation_fraction
        self.vocoder, self.griffin_lim_iters = vocoder, griffin_lim_iters

    def validate_params(self) -> None:
        super().validate_params()
        if self.d_model % self.n_heads:
            from bench.errors import BenchError

            raise BenchError(f"method transformer: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    def _network(self, n_voxels, n_frames, n_mels):
        return _transformer_net(n_voxels, n_frames, n_mels, self.d_model, self.n_heads, self.n_layers, self.dropout)

    def describe_components(self):
        return {"network": f"Transformer d{self.d_model} x{self.n_layers}+{self.n_layers} h{self.n_heads}", "vocoder": self.vocoder}


class BiLSTM(_SeqDecoder):
    name = "bilstm"
    display_name = "BiLSTM"
    profiles = {"tiny": dict(_TINY), "paper": dict(_PAPER)}
    param_constraints = dict(_COMMON_CONSTRAINTS)

    def __init__(self, d_model=768, n_layers=4, dropout=0.1, lr=1e-4, weight_decay=1e-2, batch_size=8, epochs=30,
                 grad_accum=1, patience=5, validation_fraction=0.1, vocoder="griffin-lim", griffin_lim_iters=32):
        self.d_model, self.n_layers, self.dropout = d_model, n_layers, dropout
        self.lr, self.weight_decay, self.batch_size, self.epochs = lr, weight_decay, batch_size, epochs
        self.grad_accum, self.patience, self.validation_fraction = grad_accum, patience, validation_fraction
        self.vocoder, self.griffin_lim_iters = vocoder, griffin_lim_iters

    def _network(self, n_voxels, n_frames, n_mels):
        return _bilstm_net(n_voxels, n_frames, n_mels, self.d_model, self.n_layers, self.dropout)

    def describe_components(self):
        return {"network": f"BiLSTM d{self.d_model} x{self.n_layers}", "vocoder": self.vocoder}

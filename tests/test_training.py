"""The one training loop (bench.training.fit_model): checkpoint every epoch, resume to the same result, early
stopping on held-out stimuli, and the MLP trains through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.training import TrainConfig, fit_model, split_by_group


def _problem(seed=0, n=64, d=8):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    Y = X @ torch.randn(d, 3, generator=g) + 0.1 * torch.randn(n, 3, generator=g)
    return X, Y


def _model():
    torch.manual_seed(5)
    return torch.nn.Linear(8, 3)


def _loss(X, Y, stop_at=None):
    calls = {"n": 0}

    def loss_fn(model, idx, training):
        if training:
            calls["n"] += 1
            if stop_at is not None and calls["n"] == stop_at:
                raise KeyboardInterrupt
        return torch.nn.functional.mse_loss(model(X[idx]), Y[idx])

    return loss_fn


def test_an_interrupted_fit_resumes_to_the_same_result(tmp_path):
    X, Y = _problem()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-2)
    train, val = np.arange(48), np.arange(48, 64)
    whole = _model()
    ref = fit_model(whole, _loss(X, Y), train, val, cfg, device="cpu", seed=1, work_dir=tmp_path / "a", tag="t")

    broken = _model()
    with pytest.raises(KeyboardInterrupt):  # 3 batches per epoch: the 8th is in epoch 3
        fit_model(broken, _loss(X, Y, stop_at=8), train, val, cfg, device="cpu", seed=1, work_dir=tmp_path / "b", tag="t")
    assert (tmp_path / "b" / "t.ckpt").exists()
    resumed = _model()
    out = fit_model(resumed, _loss(X, Y), train, val, cfg, device="cpu", seed=1, work_dir=tmp_path / "b", tag="t")
    assert out == ref
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    X, Y = _problem()
    train, val = np.arange(48), np.arange(48, 64)
    fit_model(_model(), _loss(X, Y), train, val, TrainConfig(epochs=2, batch_size=16, lr=1e-2), device="cpu", seed=1,
              work_dir=tmp_path, tag="t")
    out = fit_model(_model(), _loss(X, Y), train, val, TrainConfig(epochs=3, batch_size=16, lr=1e-3), device="cpu",
                    seed=1, work_dir=tmp_path, tag="t")
    assert out["epochs_run"] == 3 and len(out["train_loss"]) == 3  # trained from scratch, not from epoch 2


def test_early_stopping_on_the_validation_loss_restores_the_best_epoch():
    X, Y = _problem()
    Y[48:] = -Y[48:]  # held-out targets the training data contradict: validation loss rises as training fits
    cfg = TrainConfig(epochs=50, batch_size=16, lr=5e-2, patience=3)
    model = _model()
    out = fit_model(model, _loss(X, Y), np.arange(48), np.arange(48, 64), cfg, device="cpu", seed=1)
    assert out["epochs_run"] == out["best_epoch"] + 1 + 3 < 50
    with torch.no_grad():
        val_now = torch.nn.functional.mse_loss(model(X[48:]), Y[48:]).item()
    assert val_now == pytest.approx(min(out["val_loss"]), rel=1e-5)


def test_split_by_group_keeps_a_stimulus_together():
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"])
    train, val = split_by_group(groups, 0.2, np.random.default_rng(0))
    assert len(val) == 2 and len(set(groups[val])) == 1
    assert not set(groups[train]) & set(groups[val])
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(10))
    train, val = split_by_group(groups, 0.0, np.random.default_rng(0))
    assert len(val) == 0 and len(train) == 10


def test_mlp_trains_through_the_shared_loop_and_checkpoints(tiny_catalogue, tmp_path):
    from bench.datasets import get_dataset
    from methods import get_method

    train = get_dataset("tiny-speech").load_split("sim01", "train")
    mlp = get_method("mlp").from_profile("tiny", {"epochs": 2, "patience": 0}).fit(train, work_dir=tmp_path)
    assert (tmp_path / "mlp.ckpt").exists()
    assert mlp.history_["epochs_run"] == 2 and len(mlp.history_["val_loss"]) == 2  # held-out stimuli scored
    again = get_method("mlp").from_profile("tiny", {"epochs": 2, "patience": 0}).fit(train, work_dir=tmp_path)
    assert again.history_ == mlp.history_  # resumed from the finished checkpoint


def test_pinned_threads_sets_and_restores_both_counts():
    from threadpoolctl import threadpool_info

    from bench.training import pinned_threads

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before, blas_before = torch.get_num_threads(), blas()
    assert blas_before, "numpy's BLAS is loaded (test_training imports numpy)"
    with pytest.raises(RuntimeError, match="inside"):
        with pinned_threads(3):
            assert torch.get_num_threads() == 3 and set(blas()) == {3}
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before and blas() == blas_before
    with pinned_threads(3, blas=False):
        assert torch.get_num_threads() == 3 and blas() == blas_before


def test_park_sim_networks_train_with_a_fixed_thread_count(tmp_path, monkeypatch):
    """Their bytes depend on the thread count, so they never take the machine's (a stand-in trainer records it)."""
    from bench.networks import park_sim

    seen = []
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(park_sim, "train", lambda out, seed, device: seen.append(torch.get_num_threads()) or {})
    n = torch.get_num_threads()
    torch.set_num_threads(1 if park_sim.TRAIN_THREADS != 1 else 3)
    try:
        park_sim.sim_weights(0)
    finally:
        torch.set_num_threads(n)
    assert seen == [park_sim.TRAIN_THREADS]

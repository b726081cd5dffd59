"""LDM backbone (tiny and full-size layouts, strict loading, training step, DDIM) and the Fine-/C2F-LDM methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchError

pytest.importorskip("diffusers")

from bench.networks.audioldm2 import LatentDiffusion, build_ldm, load_ldm, save_ldm  # noqa: E402
from bench.networks.checkpoints import manifest, strict_load  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def tiny_ldm():
    torch.manual_seed(0)
    return LatentDiffusion(*build_ldm("tiny"), cond_dim=24)


def test_tiny_training_step_and_ddim_determinism(tiny_ldm):
    m = tiny_ldm
    mel = torch.randn(2, 64, 401) - 5.0
    z = m.mel_to_latent(mel)
    assert z.shape == (2, 8, 416 // 8, 64 // 8)  # frames padded to a multiple of 16 (VAE 8 x UNet 2)
    c = torch.randn(2, 30, 24)
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)
    before = m.unet.conv_in.weight.detach().clone()
    vae_before = m.vae.encoder.conv_in.weight.detach().clone()
    loss = m.loss(z, c, c + 0.1, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.vae.encoder.conv_in.weight.grad is None  # VAE frozen
    opt.step()
    assert not torch.equal(before, m.unet.conv_in.weight) and torch.equal(vae_before, m.vae.encoder.conv_in.weight)
    m.eval()
    a = m.generate(c.numpy(), 401, steps=2, guidance_scale=2.0, seed=3, batch_size=1)
    b = m.generate(c.numpy(), 401, steps=2, guidance_scale=2.0, seed=3, batch_size=1)
    d = m.generate(c.numpy(), 401, steps=2, guidance_scale=2.0, seed=4, batch_size=1)
    assert a.shape == (2, 64, 401) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, d)
    from bench.networks.vocoder import HifiGan

    wav = HifiGan(m.vocoder, source="random-init").mel_to_audio(a, 64000)
    assert wav.shape == (2, 64000) and np.isfinite(wav).all()
    with pytest.raises(BenchError, match=r"condition must be \(B, N, 24\)"):
        m.condition(torch.zeros(1, 4, 7))


def test_load_ldm_roundtrip_and_strict_error(tmp_path):
    torch.manual_seed(1)
    parts = build_ldm("tiny")
    folder = save_ldm(tmp_path / "ldm", *parts)
    unet, vae, vocoder, sched = load_ldm(folder, kind="audioldm2")
    for a, b in zip(parts[:3], (unet, vae, vocoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sched.config.beta_schedule == "scaled_linear" and sched.config.num_train_timesteps == 1000
    # rename one key in the saved UNet weights
    from safetensors.torch import load_file, save_file

    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(path))
    sd["conv_in.renamed"] = sd.pop("conv_in.weight")
    save_file(sd, str(path))
    with pytest.raises(BenchError, match=r"audioldm2 unet checkpoint .*1 missing key \(conv_in\.weight\); 1 unexpected key \(conv_in\.renamed\)"):
        load_ldm(folder, kind="audioldm2")
    with pytest.raises(BenchError, match="does not exist"):
        load_ldm(tmp_path / "nowhere", kind="gigaspeech")


def test_full_size_unet_layout():
    """cvssp/audioldm2 UNet built with random weights (about 10-30 s on 2 shared cores)."""
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

    from bench.networks.audioldm2 import PAPER

    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(**PAPER["unet"])
    man = dict(manifest(unet))
    assert man["conv_in.weight"] == (128, 8, 3, 3)
    assert man["conv_out.weight"] == (8, 128, 3, 3)
    assert man["time_embedding.linear_1.weight"] == (512, 128)
    # the 768-d AudioMAE slot (index 1) and the 1024-d T5 slot (index 2) of the first attention block
    assert man["down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"] == (256, 768)
    assert man["down_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight"] == (256, 1024)
    assert man["mid_block.attentions.1.transformer_blocks.0.attn2.to_k.weight"] == (640, 768)
    assert "down_blocks.0.attentions.0.norm.weight" not in man  # first level has no attention
    assert 300e6 < sum(p.numel() for p in unet.parameters()) < 400e6
    fresh = AudioLDM2UNet2DConditionModel.from_config(unet.config)
    strict_load(fresh, unet.state_dict(), "full unet", optional_suffixes=())  # raises on any difference
    ld = LatentDiffusion(unet, *build_ldm("tiny")[1:], cond_dim=768)
    assert isinstance(ld.proj, torch.nn.Identity) and (ld.cross_dim, ld.cross_dim_1) == (768, 1024)


@pytest.mark.parametrize("name,vocoder", [("c2f_ldm", "griffin-lim"), ("fine_ldm", "hifigan")])
def test_methods_end_to_end(small_catalogue, tmp_path, name, vocoder):
    from bench.runner import Cell, run_cell

    cell = Cell(name, "small-sound", "sim01", 0, "tiny", overrides=(("ddim_steps", 2), ("vocoder", vocoder)))
    out = run_cell(cell, runs=tmp_path / "runs", metrics=["pcc"])
    assert out.status == "done"
    info = out.record["method_info"]
    assert info["backbone_weights"] == "random-init"
    assert info["samples_per_second"]["train"] > 0 and info["samples_per_second"]["generate"] > 0
    pred = np.load(out.path.with_suffix(".npz"))
    n = out.record["dataset"]["n_test"]
    assert pred["audio"].shape == (n, 64000) and np.isfinite(pred["audio"]).all()
    assert pred["mel"].shape == (n, 64, 401)
    assert pred["feature_acoustic"].shape[0] == n
    assert ("feature_semantic" in pred.files) == (name == "c2f_ldm")


@pytest.mark.parametrize("name", ["c2f_ldm", "fine_ldm"])
def test_acoustic_decoder_trained_jointly_with_the_unet(small_catalogue, name):
    """finetune_acoustic=True moves D^Aco through the LDM loss; False leaves it as eq. 1 trained it."""
    from bench.datasets import get_dataset
    from methods import METHODS

    ds = get_dataset("small-sound")
    train, test = ds.load_split("sim01", "train"), ds.load_split("sim01", "test")
    cls = METHODS.get(name)
    decoded, states = {}, {}
    for joint in (False, True):
        m = cls.from_profile("tiny", {"finetune_acoustic": joint, "ddim_steps": 1}).fit(train, random_state=0)
        decoded[joint] = m.stage_.decode(test.fmri)
        states[joint] = {k: v.clone() for k, v in m.stage_.acoustic.state_dict().items()}
        assert not any(p.requires_grad for p in m.stage_.acoustic.parameters())  # frozen again after fit
    # the eq. 1 pre-training is the same in both fits, so any difference comes from the joint phase
    changed = [k for k in states[True] if not torch.equal(states[True][k], states[False][k])]
    assert changed and not np.allclose(decoded[True], decoded[False])
    assert np.isfinite(decoded[True]).all()


def test_param_errors():
    from methods.ldm import FineLDM

    with pytest.raises(BenchError, match="prompts replace the semantic embedding"):
        FineLDM.from_profile("tiny", {"prompt": "text"}).validate_params()
    with pytest.raises(BenchError, match="p_gt"):
        FineLDM.from_profile("tiny", {"p_gt": 0.3}).validate_params()

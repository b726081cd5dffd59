"""bench.vocoder: Griffin-Lim / HiFiGAN selection, strict HiFiGAN loading from an AudioLDM2 folder, 'auto'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchError

pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def hifigan_folder(tmp_path, monkeypatch):
    """An AudioLDM2-format folder holding only vocoder/ (random weights; the tiny config of the same class keeps
    CPU time down: 64 mel bins, hop 160 like the real one), found via its env var."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from bench.networks.audioldm2 import TINY

    torch.manual_seed(0)
    model = SpeechT5HifiGan(SpeechT5HifiGanConfig(**TINY["vocoder"])).eval()
    root = tmp_path / "audioldm2"
    model.save_pretrained(root / "vocoder")
    (root / "model_index.json").write_text('{"_class_name": "AudioLDM2Pipeline", "vocoder": ["transformers", "SpeechT5HifiGan"]}')
    monkeypatch.setenv("BENCH_WEIGHT_AUDIOLDM2", str(root))
    return root, model


def _log_mel(n=2, seconds=0.5):
    from bench.audio import vocoder_mel

    rng = np.random.default_rng(0)
    return vocoder_mel((0.1 * rng.standard_normal((n, int(16000 * seconds)))).astype(np.float32))


def test_hifigan_loads_strictly_and_matches_the_module(hifigan_folder):
    from bench.networks.vocoder import get_vocoder

    root, model = hifigan_folder
    voc = get_vocoder("hifigan")
    assert voc.config()["name"] == "hifigan" and voc.config()["weights"] == str(root) and voc.hop == 160
    mel = _log_mel()
    audio = voc.mel_to_audio(mel, 8000)
    assert audio.shape == (2, 8000) and audio.dtype == np.float32 and np.isfinite(audio).all()
    with torch.no_grad():
        direct = model(torch.from_numpy(mel[:1].transpose(0, 2, 1).copy())).numpy().reshape(-1)
    np.testing.assert_allclose(audio[0], direct[:8000], rtol=1e-5, atol=1e-6)
    # longer requests are zero-padded, not stretched
    n_out = direct.size
    longer = voc.mel_to_audio(mel, n_out + 500)
    assert np.all(longer[:, n_out:] == 0) and np.array_equal(longer[:, :8000], audio)
    with pytest.raises(BenchError, match=r"HiFiGAN input must be \(n, 64, frames\)"):
        voc.mel_to_audio(mel[:, :32], 8000)


def test_hifigan_wrong_layout_names_the_folder(hifigan_folder):
    from safetensors.torch import load_file, save_file

    from bench.networks.vocoder import get_vocoder

    root, _ = hifigan_folder
    path = root / "vocoder" / "model.safetensors"
    state = load_file(path)
    state.pop(sorted(state)[0])
    save_file(state, path)
    with pytest.raises(BenchError, match=r"audioldm2 vocoder checkpoint .* 1 missing key \("):
        get_vocoder("hifigan")


def test_missing_weights_and_auto():
    from bench.networks.vocoder import get_vocoder, resolve_vocoder
    from methods.lir import LiR

    with pytest.raises(BenchError, match="audioldm2") as err:
        get_vocoder("hifigan")
    assert "\n" not in str(err.value) and "griffin-lim" in str(err.value)
    assert resolve_vocoder("auto") == "griffin-lim"
    assert LiR.from_profile("paper").vocoder == "griffin-lim"


def test_auto_picks_hifigan_when_present_and_the_config_says_so(hifigan_folder, small_catalogue, tmp_path):
    from bench.runner import Cell, resolve_config, run_cell
    from bench.networks.vocoder import resolve_vocoder
    from methods.lir import LiR

    assert resolve_vocoder("auto") == "hifigan"
    assert LiR.from_profile("paper").vocoder == "hifigan"
    cell = Cell("lir", "small-sound", "sim01", 0, "tiny", overrides=(("vocoder", "auto"),))
    assert resolve_config(cell)["params"]["vocoder"] == "hifigan"  # so the config hash differs from griffin-lim's
    out = run_cell(cell, runs=tmp_path / "runs", metrics=["pcc"])
    assert out.status == "done"
    assert out.record["method_info"]["vocoder"]["name"] == "hifigan"
    pred = np.load(out.path.with_suffix(".npz"))
    assert np.isfinite(pred["audio"]).all() and pred["audio"].shape[1] == 64000

"""Small Park et al. networks trained on the simulator's world (the ``tiny`` profile of ``methods.park``).

``train(out_dir, seed, device)`` (the ``bench weights train-sim`` trainer contract) trains, on new clips from
``bench.simulate.fresh_clips`` of all three kinds (each looped to the 4-s window, as the method does):

1. a VGGishish classifier over the simulator's labels ("kind:label", 16 classes), with per-bin mel statistics;
2. a VQ codebook (the SpecVQGAN autoencoder at small widths) on the same [0, 1] mels mapped to [-1, 1], started as a
   pooling autoencoder (:func:`init_codebook_as_pooling`) with codes at random training latents, its output head
   and codes trained;
3. a GPT on the codebook's codes (column-major) conditioned on the classifier's conv5_3 of the same clips and of
   ``gpt_extra_clips`` more clips of each kind (from the stream of seed + 1);

and saves them in the real files' layouts (``vggishish16.pt`` with ``'model'``, the stats text file, the codebook's
and the transformer's Lightning ``state_dict``), so they load through the same strict loaders. No MelGAN is trained:
the tiny profile vocodes with Griffin-Lim. Same seed, same files (CPU).

:func:`sim_weights` is the one place ``methods.park`` gets these files from until ``bench weights train-sim`` serves
them: it trains once into ``<weights folder>/sim/park-s<seed>-<config digest>/`` and reuses that folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SIM_ARCH = {
    "vggishish": {"widths": [4, 8, 16, 16, 16], "hidden": 32, "n_classes": 16},
    "specvqgan-codebook": {"ch": 4, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 1, "attn_resolutions": [53],
                           "resolution": 848, "z_channels": 16, "embed_dim": 16, "n_embed": 64, "norm_groups": 2},
    "park-conv5_3-transformer": {"vocab_size": 64, "block_size": 126, "n_layer": 2, "n_head": 2, "n_embd": 48,
                                 "feat_dim": 80, "n_unmasked": 0, "grid": [5, 21]},
}
"""Architectures of the simulator-trained networks, by catalogue entry (the transformer entry also needs the
codebook's, which its checkpoint embeds)."""

TRAINING = {
    "clips": {"sound": 96, "music": 24, "speech": 16},
    "vggishish": {"epochs": 5, "batch_size": 8, "lr": 1e-3},
    "codebook": {"epochs": 20, "batch_size": 16, "lr": 1e-2},
    "transformer": {"epochs": 20, "batch_size": 32, "lr": 3e-3},
    "gpt_extra_clips": {"sound": 640, "music": 640, "speech": 640},
}


def config_digest() -> str:
    """Hash of everything that decides the trained files (architectures, training settings, format version)."""
    blob = json.dumps({"arch": SIM_ARCH, "training": TRAINING, "version": 2}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _clips(seed: int):
    """Looped 4-s windows (n, 64000) at 16 kHz and integer labels over 'kind:label'."""
    from bench.networks.vggishish import loop_to_window
    from bench.simulate import fresh_clips

    audio, labels = [], []
    for kind, n in TRAINING["clips"].items():
        c = fresh_clips(kind, n, seed)
        audio.append(loop_to_window(c["audio"], 16_000))
        labels += [f"{kind}:{lab}" for lab in c["label"]]
    names = sorted(set(labels))
    return np.concatenate(audio), np.array([names.index(s) for s in labels], dtype=np.int64), names


def _loop(model, loss_fn, n: int, settings: dict, seed: int, device: str, params=None):
    from bench.training import TrainConfig, fit_model

    cfg = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"], weight_decay=0.0)
    return fit_model(model, loss_fn, np.arange(n), np.arange(0), cfg, device=device, seed=seed, tag="park-sim", params=params)


def init_codebook_as_pooling(vq) -> None:
    """Start the codebook as a pooling autoencoder, so a few CPU epochs suffice (from torch's default initialisation
    its quantised latent carries nothing for dozens of epochs): every residual branch (conv2) and attention output
    (proj_out) is zero, so each block is the identity; convolutions that change the channel count average over
    input channels at their centre tap; downsampling convs are 2 x 2 averages and upsampling convs identities.
    The encoder then gives each 16 x 16 patch's (normalised) level, the decoder spreads it back."""
    import torch
    import torch.nn as nn

    with torch.no_grad():
        for name, m in vq.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("conv2", "proj_out"):
                m.weight.zero_()
                m.bias.zero_()
                continue
            if leaf in ("q", "k", "v"):
                continue
            c_out, c_in, kh, kw = m.weight.shape
            m.weight.zero_()
            m.bias.zero_()
            if ".downsample." in f".{name}.":  # 3 x 3 stride 2 on (0, 1, 0, 1) padding: taps (0..1, 0..1) = 2 x 2 mean
                for c in range(c_out):
                    m.weight[c, c, :2, :2] = 0.25
            elif c_out == c_in and leaf in ("quant_conv", "post_quant_conv", "conv", "conv1", "nin_shortcut"):
                for c in range(c_out):
                    m.weight[c, c, kh // 2, kw // 2] = 1.0
            else:
                m.weight[:, :, kh // 2, kw // 2] = 1.0 / c_in


def train(out_dir: Path, seed: int, device: str = "cpu") -> dict[str, dict]:
    """Train the three networks into ``out_dir``; returns {catalogue entry: {file, network, arch, description}}."""
    import torch
    import torch.nn.functional as F

    from bench.io import write_torch
    from bench.networks import specvqgan as S
    from bench.networks import vggishish as V
    from bench.networks.weights import get_spec
    from bench.simulate import fresh_clips

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    audio, labels, names = _clips(seed)
    mel01 = V.park_mel(audio)  # (n, 80, 336)
    n = len(mel01)

    with torch.random.fork_rng(devices=[]):
        # 1. VGGishish classifier on standardised mels
        torch.manual_seed(seed)
        mean = mel01.mean(axis=(0, 2)).astype(np.float32)
        std = np.maximum(mel01.std(axis=(0, 2)), 1e-3).astype(np.float32)
        vcfg = V.VGGishishConfig.from_arch(SIM_ARCH["vggishish"])
        vnet = V.build_vggishish(vcfg).to(dev)
        for m in vnet.modules():  # He initialisation: a 13-conv stack without batch norm barely trains from torch's default
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
        x_std = torch.from_numpy((mel01 - mean[:, None]) / std[:, None]).to(dev)
        y = torch.from_numpy(labels).to(dev)
        hist_v = _loop(vnet, lambda m, idx, tr: F.cross_entropy(m(x_std[idx]), y[idx]), n, TRAINING["vggishish"], seed, device)
        vnet.eval()
        with torch.no_grad():
            acc = float((vnet(x_std).argmax(1) == y).float().mean())
            conv = torch.cat([vnet.conv5_3(x_std[i : i + 32]) for i in range(0, n, 32)])
        write_torch(out_dir / get_spec("vggishish").file,
                    {"model": {k: v.cpu() for k, v in vnet.state_dict().items()}, "epoch": TRAINING["vggishish"]["epochs"]})
        V.write_mel_stats(out_dir / get_spec("vggishish-mel-stats").file, mean, std)

        # 2. codebook: a VQ autoencoder on 2 x - 1 mels; unused codes restart at random encoder outputs each epoch
        torch.manual_seed(seed + 1)
        ccfg = S.CodebookConfig.from_arch(SIM_ARCH["specvqgan-codebook"])
        vq = S.build_codebook(ccfg).to(dev)
        x_cb = torch.from_numpy(mel01 * 2.0 - 1.0)[:, None].to(dev)
        gen = torch.Generator().manual_seed(seed + 2)
        init_codebook_as_pooling(vq)
        with torch.no_grad():  # codes start at latents of random training patches
            z = torch.cat([vq.quant_conv(vq.encoder(x_cb[i : i + 32])) for i in range(0, n, 32)])
            z = z.permute(0, 2, 3, 1).reshape(-1, ccfg.embed_dim)
            vq.quantize.embedding.weight.copy_(z[torch.randperm(len(z), generator=gen)[: ccfg.n_embed].to(dev)])

        def vq_loss(m, idx, training):
            rec, qloss, _ = m(x_cb[idx])
            return F.l1_loss(rec, x_cb[idx]) + F.mse_loss(rec, x_cb[idx]) + qloss

        # Only the output head (decoder.norm_out, decoder.conv_out) and the codes learn: training the whole network
        # at CPU-affordable step counts destroys the pooling structure before it improves on it.
        head = [p for name, p in vq.named_parameters() if name.startswith(("decoder.norm_out", "decoder.conv_out", "quantize."))]
        vq.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)
        _loop(vq, vq_loss, n, TRAINING["codebook"], seed + 10, device, params=head)
        vq.eval()
        with torch.no_grad():
            codes = torch.cat([vq.encode(x_cb[i : i + 32]) for i in range(0, n, 32)])  # (n, 5, 21)
        S.save_lightning(out_dir / get_spec("specvqgan-codebook").file, vq.state_dict())

        # 3. GPT over column-major codes conditioned on conv5_3
        torch.manual_seed(seed + 3)
        tcfg = S.TransformerConfig.from_arch(SIM_ARCH["park-conv5_3-transformer"])
        net = S.build_net2net(tcfg, ccfg).to(dev)
        net.first_stage_model.load_state_dict(vq.state_dict())
        net.first_stage_model.requires_grad_(False)
        # The GPT also sees extra clips of every kind (its conditional mapping needs more examples than the other
        # two networks, and each costs only a forward pass of VGGishish and the encoder). Measured with brain data
        # (README): 320 extra sound clips alone left Park's PCC at chance on sim-sound and sim-music; music and
        # speech clips as well made it learn on all three, 640 of each with 20 epochs by a wide margin.
        convs, code_lists = [conv], [codes]
        with torch.no_grad():
            for kind, k in TRAINING["gpt_extra_clips"].items():
                if k == 0:
                    continue
                audio_k = fresh_clips(kind, k, seed + 1)["audio"]
                for i in range(0, len(audio_k), 32):  # 32 at a time: the 22.05-kHz STFTs of all at once need gigabytes
                    mel_x = V.park_mel(V.loop_to_window(audio_k[i : i + 32], 16_000))
                    convs.append(vnet.conv5_3(torch.from_numpy((mel_x - mean[:, None]) / std[:, None]).to(dev)))
                    code_lists.append(vq.encode(torch.from_numpy(mel_x * 2.0 - 1.0)[:, None].to(dev)))
        conv, codes = torch.cat(convs), torch.cat(code_lists)
        n_gpt = len(codes)
        cond = torch.from_numpy(S.conditioning_tokens(conv.cpu().numpy())).to(dev)
        seq = net.first_stage_permuter(codes.reshape(n_gpt, -1))

        def gpt_loss(m, idx, training):
            logits = S.next_code_logits(m, seq[idx], cond[idx])
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[idx].reshape(-1))

        hist_t = _loop(net, gpt_loss, n_gpt, TRAINING["transformer"], seed + 4, device)
        S.save_lightning(out_dir / get_spec("park-conv5_3-transformer").file, net.state_dict())

    return {
        "vggishish": {"file": get_spec("vggishish").file, "network": "vggishish", "arch": SIM_ARCH["vggishish"],
                      "description": f"simulator VGGishish over {len(names)} labels (train accuracy {acc:.2f}, "
                                     f"final loss {hist_v['train_loss'][-1]:.3f})"},
        "vggishish-mel-stats": {"file": get_spec("vggishish-mel-stats").file, "network": "mel-stats", "arch": {},
                                "description": "per-bin mean / std of the simulator clips' Park mels"},
        "specvqgan-codebook": {"file": get_spec("specvqgan-codebook").file, "network": "specvqgan-codebook",
                               "arch": SIM_ARCH["specvqgan-codebook"],
                               "description": f"simulator VQ codebook, {int(codes.unique().numel())} of {ccfg.n_embed} codes in use"},
        "park-conv5_3-transformer": {"file": get_spec("park-conv5_3-transformer").file, "network": "specvqgan-transformer",
                                     "arch": {**SIM_ARCH["park-conv5_3-transformer"], "codebook": SIM_ARCH["specvqgan-codebook"]},
                                     "description": f"simulator conv5_3 GPT, final loss {hist_t['train_loss'][-1]:.3f}"},
    }


TRAIN_THREADS = 2
"""torch and BLAS threads of :func:`train`. The files depend on them (measured: one thread and two give other bytes); two is what
every recorded golden value and committed Park row was made with (on 2-core machines), so it stays two rather than
the one thread the other simulator trainers use."""


def sim_folder(seed: int) -> Path:
    """Where :func:`sim_weights` keeps the files for ``seed``: $BENCH_WEIGHTS, else the data root's weights folder."""
    from bench.networks.weights import weights_dir

    base = weights_dir()
    if base is None:
        from bench.data import data_root

        base = data_root() / "weights"
    return base / "sim" / f"park-s{int(seed)}-{config_digest()}"


def sim_weights(seed: int) -> tuple[Path, dict[str, dict]]:
    """(folder, entries) of the simulator-trained networks for ``seed``, training them once if absent (atomically,
    on the CPU, so the files depend only on the seed and the configuration)."""
    from bench.io import atomic_dir, ensure_writable_dir, once_under_lock, read_json, write_json
    from bench.training import pinned_threads

    folder = sim_folder(seed)
    manifest = folder / "manifest.json"

    def make():
        # CPU whatever the cell's device, and TRAIN_THREADS whatever the machine's cores: same seed, same files
        with atomic_dir(folder) as tmp, pinned_threads(TRAIN_THREADS):
            entries = train(Path(tmp), int(seed), "cpu")
            write_json(Path(tmp) / "manifest.json", {"seed": int(seed), "digest": config_digest(), "entries": entries})

    if not manifest.is_file():  # trained once by whichever process sharing the folder comes first
        lock = ensure_writable_dir(folder.parent.parent, "weights folder") / f".{folder.name}.lock"
        once_under_lock(lock, manifest.is_file, make)
    data = read_json(manifest, "simulator Park weights manifest")
    return folder, data["entries"]


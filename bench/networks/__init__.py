"""Pretrained networks: every definition, the weights catalogue, the one safe reader and strict loader, a cache.

Written in plain torch (or on transformers/diffusers classes) with the published key layouts, so nothing downloads
and every checkpoint is checked key by key:

- :mod:`bench.networks.weights`: the catalogue of checkpoints, where they are looked for, hashes, fetch, convert
- :mod:`bench.networks.checkpoints`: ``read_checkpoint`` (safe) and ``strict_load`` (every key and shape)
- :mod:`bench.networks.cache`: ``load_network(kind)``, a process cache handing out frozen perceptual networks
- :mod:`bench.networks.panns`: PANNs Cnn14 at 16 kHz (FD, KL)
- :mod:`bench.networks.vggish`: VGGish (FAD)
- :mod:`bench.networks.clap`: LAION CLAP on transformers' ``ClapModel`` (CLAP score, semantic targets)
- :mod:`bench.networks.audiomae`: AudioMAE ViT-B encoder and Swin decoder (fine-grained targets, LDM conditions)
- :mod:`bench.networks.audioldm2`: AudioLDM2's UNet, VAE and HiFiGAN on diffusers/transformers classes
- :mod:`bench.networks.vocoder`: mel -> waveform (Griffin-Lim, HiFiGAN)

This layer imports nothing from ``methods/`` or ``metrics/``; import the submodules directly (this package imports
no torch).
"""

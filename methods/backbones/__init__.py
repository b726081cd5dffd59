"""Pretrained networks the methods build on, written here in plain torch (no timm).

- ``methods.backbones.audiomae``: AudioMAE ViT-B encoder and its Swin decoder (facebookresearch/AudioMAE),
  with checkpoint-compatible parameter names, the paper's feature extraction and strict loading.

Import the submodules directly; importing this package imports no torch.
"""

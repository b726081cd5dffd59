"""brain2audio-bench: fair, reproducible comparisons of fMRI-to-audio reconstruction methods.

Heavy libraries (torch, diffusers, transformers) are imported lazily by the parts that need them,
so ``import bench`` and ``bench --help`` stay fast.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""Every waveform in the suite is mono float32 at this rate (Hz)."""

"""Metrics: array functions (one module per family) and their registry entries.

``from metrics import METRICS`` lists the registered metrics; the math is importable directly,
e.g. ``metrics.spectral.pcc`` or ``metrics.frechet.frechet_distance``.
"""

from metrics.registry import METRICS, EvalContext, MetricResult, MetricSpec, metric_spec

__all__ = ["METRICS", "EvalContext", "MetricResult", "MetricSpec", "metric_spec"]

_LAZY = {
    "frechet_distance": "metrics.frechet",
    "fad_inf": "metrics.frechet",
    "kl_divergence": "metrics.kl",
    "pcc": "metrics.spectral",
    "psnr": "metrics.spectral",
    "svm_probe": "metrics.probes",
    "pairwise_identification": "metrics.identification",
}


def __getattr__(name: str):
    # The math functions are importable as metrics.<name> without loading every module at import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")

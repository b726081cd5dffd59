"""Metric registry entries: how each metric is computed from a reconstruction and its test split.

The math lives in plain array functions (``metrics.spectral``, ``metrics.probes``, ...); an entry
adapts one of them to the runner: which inputs it needs, whether it is per sample, which
direction is better and how much drift ``bench check`` tolerates. A metric that cannot be
computed returns ``MetricResult.unavailable(reason)``, never a guessed number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench.errors import BenchError
from bench.registry import Registry


@dataclass
class MetricResult:
    """value: the set-level number (mean over samples for per-sample metrics).

    per_sample: (n,) float64 per-sample values where the metric is defined per sample
    extra: side numbers (chance level, reference levels, CI, ...)
    status: "ok" or "unavailable" (then ``reason`` says why and ``value`` is None)
    weights: for an unavailable metric, the catalogue name of the missing weights (if that is the reason)
    """

    value: float | None
    per_sample: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    weights: str | None = None

    @classmethod
    def unavailable(cls, reason: str, weights: str | None = None) -> "MetricResult":
        return cls(value=None, status="unavailable", reason=reason, weights=weights)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"status": self.status}
        if self.status != "ok":
            out["reason"] = self.reason
            if self.weights:
                out["weights"] = self.weights
            return out
        out["value"] = _num(self.value)
        if self.per_sample is not None:
            out["per_sample"] = [_num(v) for v in np.asarray(self.per_sample, dtype=np.float64)]
        if self.extra:
            out["extra"] = {k: _num(v) if isinstance(v, (float, np.floating)) else v for k, v in self.extra.items()}
        return out


def _num(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return round(v, 8)


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """A registered metric: the facts the runner, ``bench check`` and the leaderboards read.

    name: registry key (a family's members are "<name>:<member>", e.g. "probe:mel")
    label: column header in leaderboards
    evaluate: callable(ctx) -> MetricResult, or dict[str, MetricResult] for a family
    higher_is_better: the direction (arrows and bold best rows in leaderboards)
    tolerance: absolute drift ``bench check`` accepts on the set-level value
    paper_column: position (1-based) of the metric's column in the paper's Tables 1-3, None when not there
    members: the keys a family always returns (e.g. "kl", "kl:sigmoid"); a record lacking one was scored before
        that key existed, and ``bench rescore`` recomputes the entry by default. Empty for a single metric and
        for families whose keys depend on the method (probe:<feature>)
    networks: the pretrained networks it scores with (``bench.networks.cache`` kinds: "panns", "vggish", "clap"), so
        ``bench run`` can train their simulator versions before the cells that need them
    """

    name: str
    label: str
    evaluate: Callable
    higher_is_better: bool
    tolerance: float
    paper_column: int | None = None
    members: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()


METRICS: Registry = Registry("metric")


def register(spec: MetricSpec) -> MetricSpec:
    METRICS.register(spec.name, spec)
    return spec


def metric_spec(name: str) -> MetricSpec:
    """The spec for a metric or a family member ("probe:mel" -> the "probe" spec)."""
    return METRICS.get(name.split(":", 1)[0])


class EvalContext:
    """Inputs shared by all metrics of one cell, computed lazily and once.

    rec: the method's Reconstruction; test: the test Split; method: the fitted method.
    """

    def __init__(self, rec, test, method):
        self.rec = rec
        self.test = test
        self.method = method
        self._cache: dict[str, Any] = {}

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def eval_mels(self) -> tuple[np.ndarray, np.ndarray]:
        """(reconstruction, reference) audioldm_eval mels, (n, 64, frames) in [0, 1]."""
        from bench.audio import eval_mel
        from bench.targets import clip_targets

        def compute():
            ref = clip_targets(self.test, "eval_mel", eval_mel)
            rec = eval_mel(np.asarray(self.rec.audio, dtype=np.float32))
            frames = min(ref.shape[-1], rec.shape[-1])
            return rec[..., :frames], ref[..., :frames]

        return self.cached("eval_mels", compute)

    def target_features(self) -> dict[str, np.ndarray]:
        return self.cached("target_features", lambda: self.method.target_features(self.test))


# ----------------------------------------------------------------------------------------------
# entries


def _pcc(ctx: EvalContext) -> MetricResult:
    from metrics.spectral import pcc

    rec, ref = ctx.eval_mels()
    values = pcc(rec, ref)
    return MetricResult(value=_finite_mean(values), per_sample=values)


def _psnr(ctx: EvalContext) -> MetricResult:
    from metrics.spectral import psnr

    rec, ref = ctx.eval_mels()
    values = psnr(rec, ref)
    return MetricResult(value=_finite_mean(values), per_sample=values, extra={"n_infinite": int(np.isinf(values).sum())})


_GT_PROBE_CACHE: dict[tuple, float] = {}


def _probe(ctx: EvalContext) -> dict[str, MetricResult]:
    from metrics.probes import svm_probe

    out = {}
    labels = np.asarray(ctx.test.label, dtype=str)
    if len(np.unique(labels)) < 2:
        return {"probe": MetricResult.unavailable("the test split has fewer than two label classes")}
    # Windows cut from one stimulus must not straddle folds; datasets whose clips are distinct
    # (speech: consecutive clips of two stories) set probe_groups: none in datasets.yaml.
    groups = None if ctx.test.info.get("probe_groups") == "none" else np.asarray(ctx.test.stim_id, dtype=str)
    truth = ctx.target_features()
    for name, decoded in sorted(ctx.rec.features.items()):
        try:
            res = svm_probe(decoded, labels, groups=groups, seed=0)
        except BenchError as exc:  # the test split cannot support a probe (e.g. a class with one stimulus)
            out[f"probe:{name}"] = MetricResult.unavailable(str(exc))
            continue
        extra = {"chance": res.chance, "n_splits": res.n_splits}
        if name in truth:
            # The same probe on the ground-truth features: a reference level, not an upper bound (decoded
            # features can separate the labels better). Equal for every method scoring this split: computed once.
            key = (ctx.test.dataset, ctx.test.version, ctx.test.subject, ctx.test.split, name, truth[name].shape, groups is None)
            if key not in _GT_PROBE_CACHE:
                _GT_PROBE_CACHE[key] = svm_probe(truth[name], labels, groups=groups, seed=0).accuracy
            extra["gt_features"] = _GT_PROBE_CACHE[key]
        out[f"probe:{name}"] = MetricResult(value=res.accuracy, extra=extra)
    return out


def _identification(ctx: EvalContext) -> dict[str, MetricResult]:
    from metrics.identification import pairwise_identification

    out = {}
    truth = ctx.target_features()
    for name, decoded in sorted(ctx.rec.features.items()):
        if name not in truth:
            continue
        values = pairwise_identification(decoded, truth[name])
        out[f"ident:{name}"] = MetricResult(value=_finite_mean(values), per_sample=values, extra={"chance": 0.5})
    return out


def _lazy(target: str) -> Callable[[EvalContext], Any]:
    """An entry whose code lives in ``module:function``, imported on first call (keeps this module cheap)."""
    module, _, attr = target.partition(":")

    def evaluate(ctx: EvalContext):
        import importlib

        return getattr(importlib.import_module(module), attr)(ctx)

    evaluate.__qualname__ = evaluate.__name__ = attr
    return evaluate


def _finite_mean(values: np.ndarray) -> float:
    from bench.stats import mean_finite

    return mean_finite(values)


def paper_columns() -> list[str]:
    """The metrics of the paper's Tables 1-3, in the paper's column order."""
    specs = [METRICS.get(name) for name in METRICS.names()]
    return [spec.name for spec in sorted((s for s in specs if s.paper_column), key=lambda s: s.paper_column)]


# Pearson r between the audioldm_eval mels of reconstruction and stimulus, per sample
register(MetricSpec(name="pcc", label="PCC", evaluate=_pcc, higher_is_better=True, tolerance=2e-3, paper_column=1))
# 10 log10(1 / MSE) between the [0, 1] audioldm_eval mels, per sample (dB)
register(MetricSpec(name="psnr", label="PSNR", evaluate=_psnr, higher_is_better=True, tolerance=0.05, paper_column=2))
# Frechet distance of PANNs Cnn14 2048-d embeddings (extra: FAD-inf)
register(MetricSpec(name="fd", label="FD", evaluate=_lazy("metrics.perceptual:evaluate_fd"), higher_is_better=False,
                    tolerance=0.5, paper_column=3, networks=("panns",)))
# Frechet distance of VGGish 128-d patch embeddings (extra: FAD-inf)
register(MetricSpec(name="fad", label="FAD", evaluate=_lazy("metrics.perceptual:evaluate_fad"), higher_is_better=False,
                    tolerance=0.2, paper_column=4, networks=("vggish",)))
# KL divergence of PANNs Cnn14 class distributions, reference vs reconstruction (kl: softmax, kl:sigmoid)
register(MetricSpec(name="kl", label="KL", evaluate=_lazy("metrics.perceptual:evaluate_kl"), higher_is_better=False,
                    tolerance=0.02, paper_column=5, members=("kl", "kl:sigmoid"), networks=("panns",)))
# cosine similarity of LAION CLAP audio embeddings, reconstruction vs stimulus, per sample (clap:ident: pairwise
# identification of the reconstructions among the stimuli by those embeddings, chance 0.5)
register(MetricSpec(name="clap", label="CLAP", evaluate=_lazy("metrics.perceptual:evaluate_clap"), higher_is_better=True,
                    tolerance=0.005, paper_column=6, members=("clap", "clap:ident"), networks=("clap",)))
# 5-fold SVM accuracy of test labels from decoded features (folds grouped by stimulus), one per feature
register(MetricSpec(name="probe", label="Probe acc", evaluate=_probe, higher_is_better=True, tolerance=0.02))
# pairwise identification accuracy of decoded vs true features (chance 0.5), one per feature
register(MetricSpec(name="ident", label="Ident", evaluate=_identification, higher_is_better=True, tolerance=5e-3))

"""Registry entries for the network-based metrics: FD (PANNs), FAD (VGGish), KL (PANNs logits), CLAP.

Each entry takes an :class:`~metrics.registry.EvalContext` and returns MetricResult(s). Without the weights it
returns ``MetricResult.unavailable`` with one line saying which file to put where, never a number; a weights file
that fails its sha256 or does not match the network raises BenchError (a user-fixable problem, loudly).

Sets and pairing: the reference set is the stimulus clip of every test sample (per sample, so both sets have the
same N and repeated stimuli count as often as they were heard), the other set is the method's reconstructions.

- FD: Frechet distance of the 2048-d PANNs embeddings of the two sets (``metrics.frechet``).
- FAD: the same on VGGish 128-d patch embeddings, the patches of all clips pooled.
- KL: per pair, audioldm_eval's KL(reference || reconstruction) of PANNs class probabilities; "kl" is the softmax
  variant (audioldm_eval's headline) and "kl:sigmoid" the sigmoid variant (both reported; a family member is named
  "kl:<variant>" so the leaderboard and ``bench check`` find its spec).
- CLAP: per pair, cosine of the L2-normalised CLAP audio embeddings of reconstruction and stimulus; "clap:ident"
  is the pairwise identification of the reconstructions among the stimuli by the same embeddings.

FD and FAD also report ``extra.fad_inf`` (and its fit's ``fad_inf_r2``): the FD extrapolated to infinitely many
samples (``metrics.frechet.fad_inf`` with ``subsample_ref=True``, seed 0), when both sets have at least 10 rows.
It is an extra rather than its own entry because it reuses the same embeddings and describes the same quantity;
it makes FDs of different N comparable, which the plain value is not (its 1/N bias is large for 2048-d).

With fewer rows than dimensions (150 clips vs 2048-d) the Frechet distance is computed exactly in the span of the
centred data (:func:`frechet_in_span`): every difference vector lies there, so the means' distance and the
covariances' traces and tr sqrt(S_a S_b) are unchanged, and the eigen-decompositions shrink from D to N_a + N_b.

Every result's ``extra`` records the weights used (catalogue name, sha256 prefix, whether a catalogue hash matched,
and their origin: ``weights_origin`` "sim-pretrained" for the networks trained on the simulator, which simulated
datasets use by default -- see ``bench.networks.cache.weights_name``).
"""

from __future__ import annotations

import numpy as np

from bench.errors import UnavailableError
from metrics.registry import EvalContext, MetricResult

MIN_FAD_INF = 10


def frechet_in_span(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a (Na, D), b (Nb, D) -> the same sets in orthonormal coordinates of span{a_i - mean(b), b_j - mean(b)}.

    Frechet distances between any subsets are unchanged (all differences lie in that span); when Na + Nb >= D
    the inputs are returned as they are.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] + b.shape[0] >= a.shape[1]:
        return a, b
    centre = b.mean(axis=0)
    q, _ = np.linalg.qr(np.vstack([a - centre, b - centre]).T)  # (D, Na + Nb), orthonormal columns
    return (a - centre) @ q, (b - centre) @ q


def _frechet(ref: np.ndarray, rec: np.ndarray) -> tuple[float, dict]:
    from metrics.frechet import fad_inf, frechet_distance

    a, b = frechet_in_span(ref, rec)
    value = frechet_distance(a, b)
    extra: dict = {"n_reference": int(ref.shape[0]), "n_reconstruction": int(rec.shape[0]), "dim": int(ref.shape[1])}
    if min(ref.shape[0], rec.shape[0]) >= MIN_FAD_INF:
        res = fad_inf(a, b, subsample_ref=True, seed=0)
        extra["fad_inf"] = res["fad_inf"]
        extra["fad_inf_r2"] = res["r2"]
    return value, extra


def _network(ctx: EvalContext, kind: str, what: str):
    """The loaded network, or the unavailable MetricResult explaining what is missing."""
    from bench.networks.cache import load_network
    from metrics.embeddings import context_device

    simulated = bool(getattr(ctx.test, "info", {}).get("simulated", False))
    try:
        return load_network(kind, what, context_device(ctx), simulated=simulated)
    except UnavailableError as exc:
        return MetricResult.unavailable(str(exc), weights=exc.weights)


def evaluate_fd(ctx: EvalContext) -> MetricResult:
    """FD: Frechet distance of PANNs Cnn14 (16 kHz) 2048-d embeddings, stimuli vs reconstructions."""
    from metrics.embeddings import pair

    net = _network(ctx, "panns", "FD")
    if isinstance(net, MetricResult):
        return net
    ref, rec = pair(ctx, net)
    if ref["embedding"].shape[0] < 2:
        return MetricResult.unavailable("FD needs at least 2 test samples")
    value, extra = _frechet(ref["embedding"], rec["embedding"])
    return MetricResult(value=value, extra={**extra, **net.info()})


def evaluate_fad(ctx: EvalContext) -> MetricResult:
    """FAD: Frechet distance of VGGish 128-d patch embeddings (no PCA, no final ReLU), all patches pooled."""
    from metrics.embeddings import pair

    net = _network(ctx, "vggish", "FAD")
    if isinstance(net, MetricResult):
        return net
    ref, rec = pair(ctx, net)
    if min(ref["patches"].shape[0], rec["patches"].shape[0]) < 2:
        return MetricResult.unavailable("FAD needs at least 2 VGGish patches (0.96 s each) per set")
    value, extra = _frechet(ref["patches"], rec["patches"])
    return MetricResult(value=value, extra={**extra, **net.info()})


def evaluate_kl(ctx: EvalContext) -> dict[str, MetricResult]:
    """KL(reference || reconstruction) of PANNs class probabilities per pair: {"kl": softmax, "kl:sigmoid": sigmoid}."""
    from metrics.embeddings import pair
    from metrics.kl import kl_divergence

    net = _network(ctx, "panns", "KL")
    if isinstance(net, MetricResult):
        return {"kl": net, "kl:sigmoid": MetricResult.unavailable(net.reason, weights=net.weights)}
    ref, rec = pair(ctx, net)
    out = {}
    for key, kind in (("kl", "softmax"), ("kl:sigmoid", "sigmoid")):
        values = kl_divergence(ref["logits"], rec["logits"], kind)
        out[key] = MetricResult(value=float(np.mean(values)), per_sample=values, extra={"probabilities": kind, **net.info()})
    return out


def evaluate_clap(ctx: EvalContext) -> dict[str, MetricResult]:
    """CLAP audio embeddings of reconstruction and stimulus: {"clap": cosine per pair, "clap:ident": identification}.

    "clap:ident" is the pairwise identification (``metrics.identification``, chance 0.5) of each reconstruction's
    embedding among the test stimuli's: whether a reconstruction is closer to its own stimulus than to another one,
    which the mean cosine alone does not say (every reconstruction may be equally close to every stimulus).
    """
    from bench.stats import mean_finite
    from metrics.embeddings import pair
    from metrics.identification import pairwise_identification

    net = _network(ctx, "clap", "CLAP")
    if isinstance(net, MetricResult):
        return {"clap": net, "clap:ident": MetricResult.unavailable(net.reason, weights=net.weights)}
    ref, rec = pair(ctx, net)
    values = np.sum(ref["embedding"].astype(np.float64) * rec["embedding"].astype(np.float64), axis=1)
    out = {"clap": MetricResult(value=float(np.mean(values)), per_sample=values, extra=net.info())}
    if len(values) < 2:
        out["clap:ident"] = MetricResult.unavailable("CLAP identification needs at least 2 test samples")
    else:
        ident = pairwise_identification(rec["embedding"], ref["embedding"])
        out["clap:ident"] = MetricResult(value=mean_finite(ident), per_sample=ident, extra={"chance": 0.5, **net.info()})
    return out

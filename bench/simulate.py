"""Simulated datasets: seeded stimuli and fMRI responses that mirror Brain2Sound, Brain2Music and
Brain2Speech, so the whole suite runs anywhere without a download.

``simulate(kind, subjects, seed, params)`` returns a :class:`~bench.data.ClipTable` (mono float32
audio at 16 kHz), one :class:`~bench.data.PreparedSubject` per subject and a ``settings`` dict for
the manifest. ``SCALES[kind]["default"]`` is small (a few seconds per kind); ``SCALES[kind]["paper"]``
reproduces the real datasets' sizes.

Encoding model (known, so scores can be read against it):

* low-level features per clip: energy in temporal-rate x spectral-scale modulation bands of a
  32-band log-mel spectrogram (4 frequency regions x 5 rates x 2 scales) plus a coarse log-mel
  (8 frequency bands x 4 time bins); 72 features.
* high-level features per clip: a fixed random 16-d embedding of the clip's label plus 3-4
  continuous attributes of the generator (pitch, event rate, tempo, mode, ...; see ``ATTRIBUTES``).
* voxels: a null population (noise only, ``frac_null``), a low-level population (``frac_low`` of the
  driven voxels, linear in the low-level features with frequency-tuned random weights) and a
  high-level population (linear in the high-level features). Weights differ per subject.
* music and speech: the signal of clip k is ``sum_j hrf[j] * x[k - j]`` within one 15-s clip / story.
* the noiseless signal of each driven voxel is standardised over all clips; Gaussian noise of
  variance ``1 / snr_v`` is added per presentation (``snr_v``: single-presentation signal-to-noise
  variance ratio, lognormal around ``snr`` times a per-subject factor); test (and prompt) samples
  are means over ``n_test_reps`` presentations; finally responses are put on a BOLD-like scale
  (baseline ~100, about 1 % signal change) so that methods must normalise.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import scipy.fft as sfft  # several times faster than numpy.fft on float32 frames
from scipy import signal as sps

from bench import SAMPLE_RATE
from bench.data import ClipTable, PreparedSubject
from bench.errors import BenchError

SIM_VERSION = "1"
"""Bump when any change alters the generated arrays (the prepared-data version includes it)."""

SR = SAMPLE_RATE
KINDS = ("sound", "music", "speech")

SOUND_LABELS = ("animal", "instrument", "environment", "impact")
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
VOICES = ("male", "female")

ATTRIBUTES = {
    "sound": ("log2_freq_hz", "log2_events_per_s", "log2_event_s"),
    "music": ("log2_tempo_bpm", "major_mode", "log1p_drive", "log2_key_hz"),
    "speech": ("log2_f0_hz", "syllables_per_s", "speech_fraction"),
}

_NOISE_KEYS = {"snr": 0.3, "snr_subject_spread": 0.25, "snr_voxel_spread": 0.5}

SCALES: dict[str, dict[str, dict]] = {
    "sound": {
        "default": {
            "n_train_stimuli": 100, "n_test_stimuli": 20, "n_train_reps": 2, "n_test_reps": 4,
            "n_voxels": 400, "frac_null": 0.2, "frac_low": 0.6, **_NOISE_KEYS,
        },
        # 1,200 x 3 windows x 4 reps = 14,400 train, 50 x 3 = 150 test, 6,662 voxels (S1).
        # The number of test presentations is not in the release notes: 8 is an assumption.
        "paper": {
            "n_train_stimuli": 1200, "n_test_stimuli": 50, "n_train_reps": 4, "n_test_reps": 8,
            "n_voxels": 6662, "frac_null": 0.2, "frac_low": 0.6, **_NOISE_KEYS,
        },
    },
    "music": {
        "default": {
            "n_train_per_genre": 4, "n_test_per_genre": 2, "n_test_reps": 4,
            "n_voxels": 500, "frac_null": 0.5, "frac_low": 0.5, "hrf": [0.5, 0.3, 0.15, 0.05], **_NOISE_KEYS,
        },
        # 480 clips x 10 = 4,800 train, 60 x 10 = 600 test (4 presentations), whole brain 60,784 voxels
        # (sub-001), most of which carry no stimulus signal.
        "paper": {
            "n_train_per_genre": 48, "n_test_per_genre": 6, "n_test_reps": 4,
            "n_voxels": 60784, "frac_null": 0.8, "frac_low": 0.5, "hrf": [0.5, 0.3, 0.15, 0.05], **_NOISE_KEYS,
        },
    },
    "speech": {
        "default": {
            "n_train_stories": 6, "n_train_clips": 360, "test_story_clips": [40, 40], "n_prompt_clips": 5,
            "n_test_reps": 2, "n_voxels": 300, "frac_null": 0.3, "frac_low": 0.6, "hrf": [0.6, 0.3, 0.1],
            **_NOISE_KEYS,
        },
        # 25 stories, 9,137 train clips; test stories of 324 (male) and 291 (female) clips, the last
        # 10 of each are prompts -> 595 test. One test presentation: hangtime was heard once (the
        # release's wheretheressmoke is a mean of repeats, so the real test set is a mix).
        "paper": {
            "n_train_stories": 25, "n_train_clips": 9137, "test_story_clips": [324, 291], "n_prompt_clips": 10,
            "n_test_reps": 1, "n_voxels": 1300, "frac_null": 0.3, "frac_low": 0.6, "hrf": [0.6, 0.3, 0.1],
            **_NOISE_KEYS,
        },
    },
}

# Fixed constants of generator version 1 (changing any means bumping SIM_VERSION).
N_FFT, HOP, N_MELS = 512, 256, 32
N_EMBED = 16
LABEL_SHARE = 0.25  # expected share of the label embedding in a high-level voxel's signal variance
COARSE_FREQ, COARSE_TIME = 8, 4
MOD_REGIONS = 4
RATE_EDGES_HZ = (0.5, 2.0, 4.0, 8.0, 16.0, 32.0)
BOLD_BASELINE = (80.0, 120.0)  # per-voxel baseline, arbitrary BOLD units
BOLD_PSC = (0.5, 2.0)  # per-voxel percent signal change per unit of standardised signal
_VOXEL_CHUNK = 4096  # voxels generated at a time: bounds memory, and fixes the random stream order
_FEATURE_BATCH = 64  # clips per log-mel batch


# ----------------------------------------------------------------------------------------------
# seeding


def _key(x: str | int) -> int:
    """A stable 64-bit integer for a seed component (never Python's salted hash())."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    return int.from_bytes(hashlib.sha256(str(x).encode("utf-8")).digest()[:8], "little")


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on (seed, keys): adding a subject or a stimulus leaves the others unchanged."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed)] + [_key(k) for k in keys])))


def _logu(rng: np.random.Generator, lo: float, hi: float, size=None):
    """Log-uniform draw in [lo, hi)."""
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


# ----------------------------------------------------------------------------------------------
# parameter checks


def _check_params(kind: str, params: dict) -> dict:
    """Validate ``params`` against ``SCALES[kind]['default']`` and return a JSON-ready copy."""
    if kind not in SCALES:
        raise BenchError(f"unknown simulation kind {kind!r}; choose from {', '.join(KINDS)}")
    if not isinstance(params, dict):
        raise BenchError(f"simulation params for {kind} must be a mapping, got {type(params).__name__}")
    template = SCALES[kind]["default"]
    valid = ", ".join(template)
    for key in params:
        if key not in template:
            raise BenchError(f"unknown simulation parameter {key!r} for {kind}; valid keys: {valid}")
    missing = [k for k in template if k not in params]
    if missing:
        raise BenchError(f"simulation params for {kind} lack {', '.join(missing)}; valid keys: {valid}")
    out: dict = {}
    for key, ref in template.items():
        val = params[key]
        if isinstance(ref, bool) or isinstance(ref, int):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
                raise BenchError(f"simulation parameter {key!r} must be an integer, got {val!r}")
            out[key] = int(val)
        elif isinstance(ref, float):
            if isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating)) or not math.isfinite(val):
                raise BenchError(f"simulation parameter {key!r} must be a finite number, got {val!r}")
            out[key] = float(val)
        else:  # list: of ints or of floats, like the template
            want_int = all(isinstance(x, int) for x in ref)
            if not isinstance(val, (list, tuple)) or not val:
                raise BenchError(f"simulation parameter {key!r} must be a non-empty list, got {val!r}")
            for x in val:
                bad = isinstance(x, bool) or not isinstance(x, (int, np.integer) if want_int else (int, float, np.integer, np.floating))
                if bad or not math.isfinite(x):
                    raise BenchError(f"simulation parameter {key!r} must be a list of {'integers' if want_int else 'numbers'}, got {val!r}")
            out[key] = [int(x) for x in val] if want_int else [float(x) for x in val]

    def need(cond: bool, msg: str):
        if not cond:
            raise BenchError(f"simulation parameter {msg}")

    for key, val in out.items():
        if key.startswith("n_"):
            need(val >= 1, f"{key!r} must be >= 1, got {val}")
    need(0.0 <= out["frac_null"] < 1.0, f"'frac_null' must be in [0, 1), got {out['frac_null']}")
    need(0.0 <= out["frac_low"] <= 1.0, f"'frac_low' must be in [0, 1], got {out['frac_low']}")
    need(out["snr"] > 0, f"'snr' must be > 0, got {out['snr']}")
    for key in ("snr_subject_spread", "snr_voxel_spread"):
        need(0.0 <= out[key] <= 3.0, f"{key!r} must be in [0, 3], got {out[key]}")
    if "hrf" in out:
        need(len(out["hrf"]) <= 8 and sum(abs(h) for h in out["hrf"]) > 0, f"'hrf' must hold 1-8 weights, not all zero, got {out['hrf']}")
    n_driven = out["n_voxels"] - int(round(out["frac_null"] * out["n_voxels"]))
    need(n_driven >= 1, f"'frac_null' {out['frac_null']} leaves no driven voxel of {out['n_voxels']}")
    if kind == "speech":
        need(len(out["test_story_clips"]) == 2, f"'test_story_clips' must list 2 stories (male, female), got {out['test_story_clips']}")
        need(
            min(out["test_story_clips"]) > out["n_prompt_clips"],
            f"'test_story_clips' {out['test_story_clips']} must exceed 'n_prompt_clips' ({out['n_prompt_clips']})",
        )
        need(
            out["n_train_clips"] >= 2 * out["n_train_stories"],
            f"'n_train_clips' ({out['n_train_clips']}) must be at least 2 per training story ({out['n_train_stories']} stories)",
        )
    return out


# ----------------------------------------------------------------------------------------------
# audio helpers

_TABLE = 2048  # wavetable length (power of two: index wraps with a mask)


def _normalise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale to a random level around -26 dBFS RMS (+-6 dB), limit peaks to 0.99, add a -70 dB floor.

    The floor keeps log-mel features finite in silent stretches, as room noise would.
    """
    rms = float(np.sqrt(np.mean(x * x))) + 1e-12
    x = x * (0.05 * 10 ** (rng.uniform(-6, 6) / 20) / rms)
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:
        x *= 0.99 / peak
    return x + 3e-4 * rng.standard_normal(x.shape[0], dtype=np.float32)


def _wavetable(amps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One period (``_TABLE`` samples) of a harmonic tone with amplitudes ``amps[h-1]``, peak 1."""
    k = np.arange(1, len(amps) + 1)[:, None]
    t = np.arange(_TABLE)[None, :] / _TABLE
    table = (amps[:, None] * np.sin(2 * np.pi * k * t + rng.uniform(0, 2 * np.pi, (len(amps), 1)))).sum(0)
    return table / (np.max(np.abs(table)) + 1e-12)


def _harmonic_amps(n: int, slope: float, odd_only: bool = False) -> np.ndarray:
    amps = np.arange(1, n + 1, dtype=float) ** -slope
    if odd_only:
        amps[1::2] *= 0.1  # clarinet-like: weak even harmonics
    return amps


def _n_harm(wanted: int, f_max: float) -> int:
    """Harmonics below 7.5 kHz at the highest pitch played (no aliasing at 16 kHz)."""
    return max(1, min(wanted, int(7500 / max(f_max, 1.0))))


def _add_note(out, start_s, dur_s, f0, amp, table, attack, decay, release=0.02, vib_rate=0.0, vib_depth=0.0):
    """Add a wavetable note to ``out`` in place: linear attack, exponential decay (time constant
    ``decay``), linear release after ``dur_s`` (all in s). Notes are cut 60 dB down the decay."""
    a = int(start_s * SR)
    if a < 0 or a >= out.shape[0]:
        return
    n = min(int((dur_s + release) * SR), int(7 * decay * SR), out.shape[0] - a)
    if n <= 0:
        return
    t = np.arange(n) * (1.0 / SR)
    phase = f0 * t
    if vib_depth > 0:
        phase += (vib_depth * f0 / (2 * np.pi * vib_rate)) * np.sin(2 * np.pi * vib_rate * t)
    env = np.exp(t * (-1.0 / decay))
    n_att = min(n, int(attack * SR))
    if n_att > 0:
        env[:n_att] *= np.arange(n_att) / n_att
    r0 = int(dur_s * SR)
    if r0 < n:
        env[r0:] *= np.clip((dur_s + release - t[r0:]) / release, 0.0, 1.0)
    env *= table[(phase * _TABLE).astype(np.int64) & (_TABLE - 1)]
    env *= amp
    out[a : a + n] += env


def _tone(f0: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Additive tone with a time-varying f0 (Hz, per sample); harmonics above 7.5 kHz are dropped."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    nh = _n_harm(len(amps), float(f0.max()))
    k = np.arange(1, nh + 1)[:, None]
    return (amps[:nh, None] * np.sin(k * phase[None, :])).sum(0)


# ----------------------------------------------------------------------------------------------
# sound (Brain2Sound): 8-s stimuli, four categories


def _stratified(rng, k: int, span: float) -> np.ndarray:
    """k sorted times in [0, span), one per equal bin: with k >= 3 every 4-s window of an 8-s
    stimulus holds an event onset (a window of silence would carry no label)."""
    return (np.arange(k) + rng.uniform(0, 1, k)) * (span / k)


def _sound_animal(rng, n):
    """Calls: harmonic FM sweeps with vibrato. Returns (audio, [freq, events/s, event s])."""
    out = np.zeros(n)
    f_base = float(_logu(rng, 250, 2500))
    sweep = rng.uniform(-1, 1)  # octaves over a call
    bend = rng.uniform(-0.5, 0.5)  # arch of the contour, octaves
    dur = float(_logu(rng, 0.15, 1.0))
    vib_rate, vib_depth = rng.uniform(4, 14), rng.uniform(0.0, 0.06)
    amps = rng.uniform(0.3, 0.8) ** np.arange(rng.integers(1, 7))
    n_calls = int(rng.integers(3, 9))
    total = n / SR
    for start in _stratified(rng, n_calls, total - 1.2 * dur):
        d = dur * rng.uniform(0.8, 1.2)
        a = int(start * SR)
        m = min(int(d * SR), n - a)
        t = np.arange(m) / SR
        x = t / d
        f0 = f_base * rng.uniform(0.9, 1.1) * 2 ** (sweep * x + bend * np.sin(np.pi * x))
        f0 = f0 * (1 + vib_depth * np.sin(2 * np.pi * vib_rate * t))
        out[a : a + m] += rng.uniform(0.5, 1.0) * _tone(f0, amps) * np.sin(np.pi * x) ** 0.7
    return out, [math.log2(f_base), math.log2(n_calls / total), math.log2(dur)]


_SCALES_SEMI = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
_MAJOR_LIKE = {"major", "mixolydian", "major_pent"}


def _degree_semitones(scale: tuple, degree: int) -> int:
    """Semitones above the key root of a (possibly negative or multi-octave) scale degree."""
    octave, idx = divmod(int(degree), len(scale))
    return scale[idx] + 12 * octave


def _sound_instrument(rng, n):
    """Notes of one instrument: harmonic tones with attack/decay envelopes on a scale."""
    out = np.zeros(n)
    f_base = float(_logu(rng, 110, 880))
    decay = float(_logu(rng, 0.15, 1.5))
    attack = float(_logu(rng, 0.005, 0.08))
    amps = _harmonic_amps(int(rng.integers(4, 13)), rng.uniform(0.6, 2.0), odd_only=rng.random() < 0.3)
    table = _wavetable(amps[: _n_harm(len(amps), f_base * 2.2)], rng)
    bowed = rng.random() < 0.3  # string-like: vibrato
    scale = _SCALES_SEMI["major" if rng.random() < 0.5 else "minor"]
    total = n / SR
    ioi = float(_logu(rng, 0.2, 1.0))
    t, degree, n_notes = rng.uniform(0, 0.3), 0, 0
    while t < total - 0.1:
        f0 = f_base * 2 ** (_degree_semitones(scale, degree) / 12)
        dur = min(4 * decay + 0.05, total - t)
        vib = (5.5, 0.006) if bowed else (0.0, 0.0)
        _add_note(out, t, dur, f0, rng.uniform(0.5, 1.0), table, attack, decay, 0.02, *vib)
        n_notes += 1
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 7))
        t += ioi * rng.uniform(0.5, 1.5)
    return out, [math.log2(f_base), math.log2(n_notes / total), math.log2(decay)]


def _sound_environment(rng, n):
    """Coloured, band-shaped noise textures: wind (slow gusts), rain (droplets), stream (fast flutter)."""
    f = np.fft.rfftfreq(n, 1 / SR)
    fl = np.maximum(f, 20.0)
    beta = rng.uniform(0, 2)
    fc = float(_logu(rng, 200, 5000))
    width = rng.uniform(1, 4)  # octaves
    shape = (fl / 1000.0) ** (-beta / 2) * np.exp(-0.5 * (np.log2(fl / fc) / (width / 2)) ** 2)
    x = sfft.irfft(sfft.rfft(rng.standard_normal(n)) * shape, n)
    x /= np.std(x) + 1e-12
    t = np.arange(n) / SR
    sub = int(rng.integers(3))
    if sub == 0:  # wind: a few slow sinusoidal gusts
        rate = float(_logu(rng, 0.1, 1.0))
        lfo = sum(np.sin(2 * np.pi * rate * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3)) / 3
        env, ev_dur = np.exp(1.5 * lfo), 1 / rate
    elif sub == 1:  # rain: a bed plus Poisson droplets with a short exponential decay
        rate = float(_logu(rng, 20, 300))
        tau = float(_logu(rng, 0.002, 0.01))
        drops = np.zeros(n)
        k = rng.integers(0, n, rng.poisson(rate * n / SR))
        np.add.at(drops, k, rng.uniform(0.3, 1.0, k.shape[0]))
        kern = np.exp(-np.arange(int(6 * tau * SR)) / (tau * SR))
        env = 0.15 + sps.fftconvolve(drops, kern)[:n] * 3.0 / max(1.0, rate * tau * 3)
        ev_dur = tau
    else:  # stream: low-passed random amplitude flutter
        rate = float(_logu(rng, 2, 8))
        a = math.exp(-2 * np.pi * rate / SR)
        w = sps.lfilter([1 - a], [1, -a], sps.lfilter([1 - a], [1, -a], rng.standard_normal(n)))
        env, ev_dur = np.exp(1.2 * w / (np.std(w) + 1e-12)), 1 / rate
    return x * env, [math.log2(fc), math.log2(rate), math.log2(ev_dur)]


def _sound_impact(rng, n):
    """Knocks: noise bursts exciting a few damped inharmonic modes, at random or regular times."""
    out = np.zeros(n)
    f_res = float(_logu(rng, 100, 4000))
    tau = float(_logu(rng, 0.01, 0.3))
    n_modes = int(rng.integers(1, 5))
    ratios = np.array([1.0, rng.uniform(2.0, 2.8), rng.uniform(3.5, 4.5), rng.uniform(5.0, 6.5)])[:n_modes]
    ratios = ratios[ratios * f_res < 7500]
    mode_amp = rng.uniform(0.3, 1.0, ratios.shape[0])
    noise_mix = rng.uniform(0.1, 0.8)
    n_hits = int(rng.integers(3, 16))
    total = n / SR
    if rng.random() < 0.5:
        times = np.linspace(0.1, total - 0.3, n_hits) + rng.normal(0, 0.02, n_hits)
    else:
        times = _stratified(rng, n_hits, total - 0.1)
    m_len = int(min(6 * tau, 1.0) * SR)
    t = np.arange(m_len) / SR
    modes = (mode_amp[:, None] * np.exp(-t[None, :] / (tau / np.sqrt(np.arange(1, ratios.shape[0] + 1)))[:, None])
             * np.sin(2 * np.pi * f_res * ratios[:, None] * t[None, :])).sum(0)
    for start in np.clip(times, 0, total):
        a = int(start * SR)
        m = min(m_len, n - a)
        burst = noise_mix * rng.standard_normal(m) * np.exp(-t[:m] / min(tau, 0.02))
        out[a : a + m] += rng.uniform(0.4, 1.0) * (modes[:m] + burst)
    return out, [math.log2(f_res), math.log2(n_hits / total), math.log2(tau)]


_SOUND_SYNTH = {"animal": _sound_animal, "instrument": _sound_instrument, "environment": _sound_environment, "impact": _sound_impact}

SOUND_STIM_S, SOUND_WIN_S, SOUND_ONSETS = 8.0, 4.0, (0.0, 2.0, 4.0)


def _balanced_labels(rng, n: int, labels: tuple) -> np.ndarray:
    """n labels, as balanced as possible, in random order."""
    return rng.permutation(np.resize(np.arange(len(labels)), n))


def _design_sound(seed: int, p: dict):
    """Stimuli and presentation design of the sound kind.

    Returns (clips, attrs (n_clips, 3) float64, design): design maps "train"/"test" to (n,) int64
    clip indices in presentation order and "group" to (n_clips,) ints, the units within which
    responses carry over (here every window alone). The music and speech designs are alike.
    """
    n_tr, n_te = p["n_train_stimuli"], p["n_test_stimuli"]
    rng = _rng(seed, "sound", "design")
    cats = np.concatenate([_balanced_labels(rng, n_tr, SOUND_LABELS), _balanced_labels(rng, n_te, SOUND_LABELS)])
    n_stim = n_tr + n_te
    win = int(SOUND_WIN_S * SR)
    audio = np.empty((3 * n_stim, win), np.float32)
    attrs = np.empty((3 * n_stim, len(ATTRIBUTES["sound"])))
    for i in range(n_stim):
        srng = _rng(seed, "sound", "stimulus", i)
        x, a = _SOUND_SYNTH[SOUND_LABELS[cats[i]]](srng, int(SOUND_STIM_S * SR))
        x = _normalise(x, srng)
        for w, onset in enumerate(SOUND_ONSETS):
            s = int(onset * SR)
            audio[3 * i + w] = x[s : s + win]
            attrs[3 * i + w] = a
    stim_id = np.repeat(np.array([f"snd-{i:04d}" for i in range(n_stim)], dtype=object), 3)
    clips = ClipTable(
        audio=audio,
        stim_id=stim_id,
        onset_s=np.tile(np.array(SOUND_ONSETS, float), n_stim),
        label=np.repeat(np.array([SOUND_LABELS[c] for c in cats], dtype=object), 3),
    )
    # Train: every presentation a sample; each repetition shows the stimuli in a new random order.
    order = [np.concatenate([3 * s + np.arange(3) for s in rng.permutation(n_tr)]) for _ in range(p["n_train_reps"])]
    design = {
        "train": np.concatenate(order).astype(np.int64),
        "test": np.arange(3 * n_tr, 3 * n_stim, dtype=np.int64),
        "group": np.arange(3 * n_stim),  # every window its own unit: no haemodynamic carry-over
    }
    return clips, attrs, design


# ----------------------------------------------------------------------------------------------
# music (Brain2Music): 15-s clips of 10 genre-like styles, ten 1.5-s segments each

# Drum patterns on a 16-step bar: kick, snare, hat; "" = no such drum.
_GENRE_STYLE = {
    "blues": dict(tempo=(70, 100), scales=("blues", "mixolydian"), swing=0.67, drive=(0.0, 1.0), slope=(1.0, 1.8),
                  attack=(0.005, 0.02), decay=(0.3, 0.9), key=(196, 330), comp="shuffle", bass="walk", p_note=0.6,
                  drums=("x.......x.......", "....x.......x...", "x..xx..xx..xx..x"), progs=((0, 3, 0, 4), (0, 0, 3, 0))),
    "classical": dict(tempo=(60, 110), scales=("major", "minor", "harmonic_minor"), swing=0.0, drive=(0.0, 0.0),
                      slope=(0.8, 1.4), attack=(0.06, 0.2), decay=(1.0, 3.0), key=(262, 523), comp="pad", bass="half",
                      p_note=0.7, drums=("", "", ""), progs=((0, 3, 4, 0), (0, 5, 3, 4)), vibrato=True),
    "country": dict(tempo=(100, 130), scales=("major_pent", "major"), swing=0.0, drive=(0.0, 0.3), slope=(1.2, 2.0),
                    attack=(0.002, 0.01), decay=(0.2, 0.6), key=(220, 392), comp="strum", bass="root_fifth", p_note=0.6,
                    drums=("x.......x.......", "....x.......x...", "x.x.x.x.x.x.x.x."), progs=((0, 3, 4, 0), (0, 4, 0, 3))),
    "disco": dict(tempo=(115, 130), scales=("minor", "dorian"), swing=0.0, drive=(0.0, 0.3), slope=(0.7, 1.2),
                  attack=(0.002, 0.01), decay=(0.15, 0.4), key=(220, 440), comp="offbeat_stab", bass="octave", p_note=0.5,
                  drums=("x...x...x...x...", "....x.......x...", "..x...x...x...x."), progs=((0, 3, 4, 3), (0, 6, 5, 4))),
    "hiphop": dict(tempo=(80, 100), scales=("minor", "minor_pent"), swing=0.3, drive=(0.0, 0.5), slope=(1.5, 2.5),
                   attack=(0.005, 0.03), decay=(0.4, 1.0), key=(147, 262), comp="sparse", bass="808", p_note=0.35,
                   drums=("x......x..x.....", "....x.......x...", "x.x.x.x.x.x.x.xx"), progs=((0, 0, 5, 4), (0, 3, 0, 3))),
    "jazz": dict(tempo=(100, 180), scales=("dorian", "mixolydian", "major"), swing=0.67, drive=(0.0, 0.0), slope=(1.2, 2.0),
                 attack=(0.01, 0.04), decay=(0.4, 1.2), key=(196, 392), comp="jazz", bass="walk", p_note=0.7,
                 drums=("", "......x.......x.", "x...x..xx...x..x"), progs=((1, 4, 0, 0), (0, 5, 1, 4)), sevenths=True),
    "metal": dict(tempo=(140, 200), scales=("phrygian", "minor", "harmonic_minor"), swing=0.0, drive=(4.0, 10.0),
                  slope=(0.5, 1.0), attack=(0.002, 0.01), decay=(0.5, 1.5), key=(110, 196), comp="power", bass="root8",
                  p_note=0.8, drums=("xxxxxxxxxxxxxxxx", "....x.......x...", "x...x...x...x..."), progs=((0, 1, 0, 5), (0, 5, 6, 4))),
    "pop": dict(tempo=(100, 125), scales=("major",), swing=0.0, drive=(0.0, 0.3), slope=(1.0, 1.6), attack=(0.005, 0.02),
                decay=(0.3, 0.8), key=(262, 440), comp="stab", bass="root4", p_note=0.65,
                drums=("x.....x.x.......", "....x.......x...", "x.x.x.x.x.x.x.x."), progs=((0, 4, 5, 3), (0, 5, 3, 4))),
    "reggae": dict(tempo=(70, 90), scales=("major", "mixolydian"), swing=0.2, drive=(0.0, 0.3), slope=(1.0, 1.8),
                   attack=(0.002, 0.01), decay=(0.1, 0.3), key=(196, 330), comp="skank", bass="reggae", p_note=0.4,
                   drums=("........x.......", "........x.......", "..x...x...x...x."), progs=((0, 3, 0, 4), (0, 4, 3, 3))),
    "rock": dict(tempo=(110, 150), scales=("minor_pent", "major", "mixolydian"), swing=0.0, drive=(1.5, 4.0), slope=(0.8, 1.4),
                 attack=(0.002, 0.01), decay=(0.4, 1.0), key=(147, 262), comp="power", bass="root8", p_note=0.65,
                 drums=("x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x."), progs=((0, 3, 4, 3), (0, 6, 3, 0))),
}

# Comp rhythms: (16th step, length in 16ths) per bar.
_COMP = {
    "pad": ((0, 16),), "shuffle": ((0, 3), (4, 3), (8, 3), (12, 3)), "strum": ((0, 4), (4, 4), (8, 4), (12, 4)),
    "offbeat_stab": ((2, 2), (6, 2), (10, 2), (14, 2)), "stab": ((0, 2), (4, 2), (8, 2), (12, 2)), "sparse": ((0, 8), (10, 4)),
    "skank": ((4, 1), (12, 1)), "power": ((0, 8), (8, 8)), "jazz": ((0, 3), (6, 2), (10, 3)),
}
# Bass lines: (16th step, length in 16ths, chord tone index; -1 = walking scale tone, 3 = octave).
_BASS = {
    "walk": tuple((4 * b, 4, -1) for b in range(4)), "half": ((0, 8, 0), (8, 8, 0)), "root_fifth": ((0, 4, 0), (4, 4, 2), (8, 4, 0), (12, 4, 2)),
    "octave": tuple((2 * b, 2, 0 if b % 2 == 0 else 3) for b in range(8)), "808": ((0, 12, 0), (10, 6, 0)),
    "root8": tuple((2 * b, 2, 0) for b in range(8)), "root4": tuple((4 * b, 4, 0) for b in range(4)), "reggae": ((0, 3, 0), (6, 2, 2), (10, 4, 0)),
}

MUSIC_CLIP_S, MUSIC_SEG_S, MUSIC_N_SEG = 15.0, 1.5, 10


def _drum_kit(rng):
    """Kick, snare and hat one-shots with per-clip variations of pitch and decay."""
    t = np.arange(int(0.35 * SR)) / SR
    f_kick = 45 + rng.uniform(60, 120) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f_kick) / SR) * np.exp(-t / rng.uniform(0.08, 0.2))
    ts = t[: int(0.2 * SR)]
    snare = np.diff(rng.standard_normal(ts.shape[0] + 1)) * 0.5 * np.exp(-ts / rng.uniform(0.03, 0.08))
    snare += 0.6 * np.sin(2 * np.pi * rng.uniform(160, 220) * ts) * np.exp(-ts / 0.03)
    th = t[: int(0.08 * SR)]
    hat = np.diff(rng.standard_normal(th.shape[0] + 2), 2) * 0.3 * np.exp(-th / rng.uniform(0.01, 0.03))
    return kick, snare, hat


def _music_clip(rng, genre: str):
    """One 15-s clip: drums, bass, chords and a melody in the genre's style. Returns (audio, attributes)."""
    st = _GENRE_STYLE[genre]
    n = int(MUSIC_CLIP_S * SR)
    tempo = rng.uniform(*st["tempo"])
    scale_name = st["scales"][int(rng.integers(len(st["scales"])))]
    scale = _SCALES_SEMI[scale_name]
    key = float(_logu(rng, *st["key"]))
    drive = rng.uniform(*st["drive"])
    prog = st["progs"][int(rng.integers(len(st["progs"])))]
    step = 60.0 / tempo / 4  # one 16th note, s
    swing = st["swing"] * step
    offset = rng.uniform(0, 16 * step)  # clips start anywhere in a bar, as GTZAN excerpts do
    n_bars = int(math.ceil((MUSIC_CLIP_S + offset) / (16 * step)))

    def when(bar: int, s16: int) -> float:
        # swing delays the off-beat 8ths
        return bar * 16 * step + s16 * step + (swing if s16 % 4 == 2 else 0.0) - offset

    def freq(degree: int, octave: int) -> float:
        return key * 2.0 ** (octave + _degree_semitones(scale, degree) / 12)

    slope = rng.uniform(*st["slope"])
    attack, decay = rng.uniform(*st["attack"]), rng.uniform(*st["decay"])
    vib = (rng.uniform(4.5, 6.5), 0.006) if st.get("vibrato") else (0.0, 0.0)
    lead = _wavetable(_harmonic_amps(_n_harm(12, key * 4), slope, odd_only=genre == "jazz"), rng)
    chord_tab = _wavetable(_harmonic_amps(_n_harm(10, key * 2), slope + 0.3), rng)
    bass_tab = _wavetable(_harmonic_amps(1 if st["bass"] == "808" else _n_harm(6, key), 1.5), rng)
    melody, chords, bass, drums = (np.zeros(n) for _ in range(4))

    degree = int(rng.integers(0, 5))
    for bar in range(n_bars):
        root = prog[bar % len(prog)]
        tones = [root, root + 2, root + 4] + ([root + 6] if st.get("sevenths") else [])
        # chords
        for s16, ln in _COMP[st["comp"]]:
            if st["comp"] == "jazz" and rng.random() < 0.3:
                continue
            if st["comp"] == "power":
                fs = [freq(root, -1) * r for r in (1.0, 1.5, 2.0)]
            else:
                fs = [freq(d, -1) for d in tones]
            for j, f in enumerate(fs):
                strum = 0.015 * j if st["comp"] == "strum" else 0.0
                c_att = max(attack, 0.15) if st["comp"] == "pad" else attack
                _add_note(chords, when(bar, s16) + strum, ln * step, f, 1.0 / len(fs), chord_tab, c_att, decay * 2, 0.03, *vib)
        # bass
        for s16, ln, which in _BASS[st["bass"]]:
            if which == -1:
                d, octv = tones[int(rng.integers(3))] + int(rng.integers(-1, 2)), -2
            elif which == 3:
                d, octv = root, -1
            else:
                d, octv = tones[which], -2
            b_dec = 0.6 if st["bass"] == "808" else 0.3
            _add_note(bass, when(bar, s16), ln * step, freq(d, octv), 1.0, bass_tab, 0.005, b_dec)
        # melody on the 8th grid, a random walk on the scale
        s16 = 0
        while s16 < 16:
            ln = 2 * int(rng.choice([1, 1, 2, 2, 3, 4]))
            if rng.random() < st["p_note"]:
                _add_note(melody, when(bar, s16), ln * step, freq(degree, 0), rng.uniform(0.6, 1.0), lead, attack, decay, 0.02, *vib)
                degree = int(np.clip(degree + rng.integers(-2, 3), -3, 10))
            s16 += ln
        # drums, humanised
        kick, snare, hat = _drum_kit(rng) if bar == 0 else (kick, snare, hat)
        for pattern, sample in zip(st["drums"], (kick, snare, hat)):
            for s16, c in enumerate(pattern):
                if c != "x" or rng.random() < 0.05:
                    continue
                a = int(when(bar, s16) * SR)
                if 0 <= a < n:
                    m = min(sample.shape[0], n - a)
                    drums[a : a + m] += rng.uniform(0.7, 1.0) * sample[:m]

    def level(x, target):
        return x * (target / (np.sqrt(np.mean(x * x)) + 1e-9))

    tonal = level(chords, 0.3) + level(melody, 0.35)
    if drive > 0:  # overdrive: tanh soft clipping, stronger for metal/rock
        tonal = np.tanh(drive * tonal / 0.3) / math.tanh(drive) * 0.3
    mix = tonal + level(bass, 0.8 if genre == "hiphop" else 0.4)
    if np.any(drums):
        mix += level(drums, 0.35)
    attrs = [math.log2(tempo), float(scale_name in _MAJOR_LIKE), math.log1p(drive), math.log2(key)]
    return mix, attrs


def _design_music(seed: int, p: dict):
    """15-s clips cut into ten 1.5-s segments; groups are clips (haemodynamic carry-over within a clip)."""
    n_tr, n_te = p["n_train_per_genre"], p["n_test_per_genre"]
    seg = int(MUSIC_SEG_S * SR)
    # (genre, track): train tracks 0..n_tr-1 of each genre, then the test tracks
    units = [(g, k) for g in GENRES for k in range(n_tr)] + [(g, n_tr + k) for g in GENRES for k in range(n_te)]
    audio = np.empty((MUSIC_N_SEG * len(units), seg), np.float32)
    attrs = np.empty((audio.shape[0], len(ATTRIBUTES["music"])))
    for u, (genre, track) in enumerate(units):
        crng = _rng(seed, "music", "clip", genre, track)
        x, a = _music_clip(crng, genre)
        x = _normalise(x, crng)
        audio[MUSIC_N_SEG * u : MUSIC_N_SEG * (u + 1)] = x[: MUSIC_N_SEG * seg].reshape(MUSIC_N_SEG, seg)
        attrs[MUSIC_N_SEG * u : MUSIC_N_SEG * (u + 1)] = a
    clips = ClipTable(
        audio=audio,
        stim_id=np.repeat(np.array([f"{g}.{k:05d}" for g, k in units], dtype=object), MUSIC_N_SEG),
        onset_s=np.tile(np.arange(MUSIC_N_SEG) * MUSIC_SEG_S, len(units)),
        label=np.repeat(np.array([g for g, _ in units], dtype=object), MUSIC_N_SEG),
    )
    # Train clips are presented in a fixed shuffled order (the same for every subject, as the
    # event files are), their ten segments consecutive.
    n_train_units = 10 * n_tr
    order = _rng(seed, "music", "design").permutation(n_train_units)
    design = {
        "train": (MUSIC_N_SEG * order[:, None] + np.arange(MUSIC_N_SEG)).ravel().astype(np.int64),
        "test": np.arange(MUSIC_N_SEG * n_train_units, audio.shape[0], dtype=np.int64),
        "group": np.repeat(np.arange(len(units)), MUSIC_N_SEG),
    }
    return clips, attrs, design


# ----------------------------------------------------------------------------------------------
# speech (Brain2Speech): stories of formant-synthesised syllables, one speaker per story

# Vowel formants F1-F3 (Hz) of an adult male voice (Peterson & Barney-like averages).
_VOWELS = np.array(
    [[270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
     [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [640, 1190, 2390], [490, 1350, 1690]], float
)
_NASAL = np.array([250.0, 1100.0, 2300.0])
SPEECH_CLIP_S = 2.0


def _formant_sos(formants, bandwidths) -> np.ndarray:
    """Cascade of unit-DC-gain two-pole resonators (Klatt), as second-order sections."""
    rows = []
    for f, bw in zip(formants, bandwidths):
        r = math.exp(-math.pi * bw / SR)
        b1, b2 = 2 * r * math.cos(2 * math.pi * f / SR), -r * r
        rows.append([1 - b1 - b2, 0.0, 0.0, 1.0, -b1, -b2])
    return np.array(rows)


def _speech_story(rng, n_clips: int, voice: str):
    """A story of ``n_clips`` 2-s clips by one speaker.

    Returns (audio (n_clips * 32000,) float64, attributes (n_clips, 3): log2 mean F0 of the clip's
    voiced samples, syllables per second, fraction of the clip inside phrases).
    """
    clip = int(SPEECH_CLIP_S * SR)
    n = n_clips * clip
    total = n / SR
    male = voice == "male"
    base_f0 = rng.uniform(85, 155) if male else rng.uniform(165, 255)
    fscale = rng.uniform(0.95, 1.05) if male else rng.uniform(1.12, 1.22)  # vocal-tract length
    rate = rng.uniform(3.5, 5.5)  # syllables per second
    prange = rng.uniform(2.0, 6.0)  # phrase pitch range, semitones
    breath = rng.uniform(0.02, 0.1)
    tilt = rng.uniform(0.6, 0.85)
    bws = np.array([60.0, 90.0, 120.0]) * fscale
    vowel_sos = [_formant_sos(np.append(v * fscale, 3500 * fscale), np.append(bws, 200)) for v in _VOWELS]
    nasal_sos = _formant_sos(np.append(_NASAL * fscale, 3500 * fscale), np.array([100.0, 200.0, 250.0, 250.0]))
    fric_sos = [sps.butter(2, [c / 1.4, min(c * 1.4, 7800)], btype="band", fs=SR, output="sos") for c in (2500.0, 3500.0, 5000.0, 6500.0)]
    burst_sos = sps.butter(2, 1000, btype="high", fs=SR, output="sos")
    _decay_015 = np.exp(-np.arange(int(0.015 * SR)) / (0.004 * SR))

    audio = np.zeros(n)
    f0_track = np.zeros(n)  # 0 where unvoiced
    in_phrase = np.zeros(n, bool)
    syl_onsets = []
    t = rng.uniform(0.1, 0.5)
    while t < total - 0.3:
        # one phrase: 3-12 syllables with a declining pitch, pauses between phrases
        n_syl = int(rng.integers(3, 13))
        durs = (1 / rate) * rng.uniform(0.7, 1.3, n_syl)
        starts = t + np.concatenate([[0.0], np.cumsum(durs)[:-1]])
        keep = starts + durs < total - 0.05
        durs, starts = durs[keep], starts[keep]
        if durs.shape[0] == 0:
            break
        p0, p1 = int(starts[0] * SR), int((starts[-1] + durs[-1]) * SR)
        m = p1 - p0
        in_phrase[p0:p1] = True
        # F0 contour: declination plus accents on stressed syllables and an optional final rise
        centres = starts + durs / 2
        semis = prange * (0.5 - (centres - starts[0]) / (p1 / SR - starts[0]))
        semis = semis + prange * 0.5 * (rng.random(durs.shape[0]) < 0.3)
        if rng.random() < 0.2:
            semis[-1] += prange
        f0 = base_f0 * 2 ** (np.interp(p0 / SR + np.arange(m) / SR, centres, semis) / 12)
        # glottal source: pulses at each period, low-passed twice (spectral tilt), differentiated (lip radiation)
        cyc = np.floor(np.cumsum(f0) / SR)
        src = np.zeros(m)
        src[1:][np.diff(cyc) > 0] = 1.0
        src = sps.lfilter([1 - tilt], [1, -tilt], sps.lfilter([1 - tilt], [1, -tilt], src))
        src = np.diff(src, prepend=0.0) * (SR / base_f0) ** 0.5
        src += breath * rng.standard_normal(m, dtype=np.float32)
        phrase = np.zeros(m)
        zi = np.zeros((4, 2))
        # per-syllable draws, vectorised: consonant type (none, plosive, fricative, nasal), its length, loudness, vowel
        ns = durs.shape[0]
        ctypes = rng.choice(4, ns, p=[0.25, 0.3, 0.3, 0.15])
        c_lens = np.choose(ctypes, [np.zeros(ns), rng.uniform(0.04, 0.07, ns), rng.uniform(0.06, 0.12, ns), rng.uniform(0.05, 0.08, ns)])
        amps = rng.uniform(0.7, 1.0, ns) * np.where(rng.random(ns) < 0.3, 1.3, 1.0)
        vowels = rng.integers(len(vowel_sos), size=ns)
        frics = rng.integers(len(fric_sos), size=ns)
        for s, d, ctype, c_len, amp, vowel, fric in zip(starts, durs, ctypes, c_lens, amps, vowels, frics):
            a, b = int(s * SR) - p0, min(int((s + d) * SR) - p0, m)
            c = a + int(min(c_len, 0.5 * d) * SR)
            syl_onsets.append(p0 + a)
            if ctype == 1:  # plosive: closure then a short high-passed burst
                bl = min(int(0.015 * SR), c - a)
                phrase[c - bl : c] += 0.5 * amp * sps.sosfilt(burst_sos, rng.standard_normal(bl)) * _decay_015[:bl]
            elif ctype == 2:  # fricative: band-passed noise with a smooth envelope
                fl = c - a
                phrase[a:c] += 0.3 * amp * sps.sosfilt(fric_sos[fric], rng.standard_normal(fl)) * np.sin(np.pi * np.arange(fl) / fl)
            elif ctype == 3:  # nasal murmur, voiced and weak
                y, zi = sps.sosfilt(nasal_sos, src[a:c], zi=zi)
                phrase[a:c] += 0.3 * amp * y * np.sin(np.pi * (np.arange(c - a) + 0.5) / (c - a))
            if b > c:  # the vowel
                y, zi = sps.sosfilt(vowel_sos[vowel], src[c:b], zi=zi)
                phrase[c:b] += amp * y * np.sqrt(np.sin(np.pi * (np.arange(b - c) + 0.5) / (b - c)))
            voiced_from = a if ctype == 3 else c
            f0_track[p0 + voiced_from : p0 + b] = f0[voiced_from:b]
        audio[p0:p1] = phrase
        # pause before the next phrase: mostly short, sometimes long
        t = p1 / SR + (rng.uniform(0.8, 1.5) if rng.random() < 0.1 else rng.uniform(0.15, 0.6))
    audio = _normalise(audio, rng)

    attrs = np.empty((n_clips, 3))
    onsets = np.array(syl_onsets, dtype=np.int64)
    f0c = f0_track.reshape(n_clips, clip)
    voiced = f0c > 0
    attrs[:, 0] = np.log2(np.where(voiced.any(1), (f0c * voiced).sum(1) / np.maximum(voiced.sum(1), 1), base_f0))
    attrs[:, 1] = np.bincount(onsets // clip, minlength=n_clips)[:n_clips] / SPEECH_CLIP_S
    attrs[:, 2] = in_phrase.reshape(n_clips, clip).mean(1)
    return audio, attrs


def _story_lengths(rng, n_stories: int, n_total: int) -> np.ndarray:
    """Clips per training story: around the mean +-30 %, summing exactly to n_total, each >= 2."""
    w = rng.uniform(0.7, 1.3, n_stories)
    lengths = np.maximum(2, np.floor(w / w.sum() * n_total)).astype(np.int64)
    i = 0
    while lengths.sum() != n_total:  # distribute the rounding remainder one clip at a time
        j = i % n_stories
        if lengths.sum() < n_total:
            lengths[j] += 1
        elif lengths[j] > 2:
            lengths[j] -= 1
        i += 1
    return lengths


def _design_speech(seed: int, p: dict):
    """Stories cut into 2-s clips; groups are stories; the last n_prompt_clips of each test story -> "prompt"."""
    rng = _rng(seed, "speech", "design")
    n_tr = p["n_train_stories"]
    lengths = list(_story_lengths(rng, n_tr, p["n_train_clips"])) + list(p["test_story_clips"])
    voices = [VOICES[v] for v in _balanced_labels(rng, n_tr, VOICES)] + ["male", "female"]
    clip = int(SPEECH_CLIP_S * SR)
    n_clips = int(sum(lengths))
    audio = np.empty((n_clips, clip), np.float32)
    attrs = np.empty((n_clips, len(ATTRIBUTES["speech"])))
    stim_id, label, onset, group = [], [], [], []
    row = 0
    for s, (n_s, voice) in enumerate(zip(lengths, voices)):
        name = f"story{s:02d}"
        x, a = _speech_story(_rng(seed, "speech", "story", s, voice), int(n_s), voice)
        audio[row : row + n_s] = x.reshape(n_s, clip)
        attrs[row : row + n_s] = a
        stim_id += [name] * n_s
        label += [voice] * n_s
        onset.append(np.arange(n_s) * SPEECH_CLIP_S)
        group += [s] * n_s
        row += n_s
    clips = ClipTable(
        audio=audio,
        stim_id=np.array(stim_id, dtype=object),
        onset_s=np.concatenate(onset),
        label=np.array(label, dtype=object),
    )
    n_train_clips = int(sum(lengths[:n_tr]))
    test, prompt = [], []
    start = n_train_clips
    for n_s in p["test_story_clips"]:
        cut = start + n_s - p["n_prompt_clips"]
        test.append(np.arange(start, cut))
        prompt.append(np.arange(cut, start + n_s))
        start += n_s
    design = {
        "train": np.arange(n_train_clips, dtype=np.int64),
        "test": np.concatenate(test).astype(np.int64),
        "prompt": np.concatenate(prompt).astype(np.int64),
        "group": np.array(group),
    }
    return clips, attrs, design


# ----------------------------------------------------------------------------------------------
# features


def _mel_filterbank(n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 50.0, fmax: float = SR / 2) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, peak 1."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(n_fft, 1 / SR)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))


def _log_mel(audio: np.ndarray) -> np.ndarray:
    """(B, samples) float32 -> (B, frames, N_MELS) float64 log-mel power in dB (Hann, no padding)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT, axis=1)[:, ::HOP]
    spec = sfft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=-1)
    power = (spec.real**2 + spec.imag**2).reshape(-1, spec.shape[-1])  # 2-D: one BLAS call, not one per clip
    mel = (power @ _mel_filterbank().T.astype(power.dtype)).astype(np.float64)
    return 10.0 * np.log10(mel.reshape(spec.shape[0], spec.shape[1], N_MELS) + 1e-10)


def _low_level_features(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low-level features of every clip.

    Returns (features (n_clips, 72) float64, frequency position of each feature in [0, 1]):
    72 = coarse log-mel (8 bands x 4 time bins, dB) + log modulation energy
    (4 frequency regions x 5 temporal-rate bands x 2 spectral-scale bands).
    """
    n = audio.shape[0]
    n_frames = 1 + (audio.shape[1] - N_FFT) // HOP
    rate_hz = np.abs(np.fft.fftfreq(n_frames, d=HOP / SR))
    rate_ind = np.stack([(rate_hz >= lo) & (rate_hz < hi) for lo, hi in zip(RATE_EDGES_HZ[:-1], RATE_EDGES_HZ[1:])], 1).astype(float)
    rate_ind /= np.maximum(rate_ind.sum(0), 1)  # mean energy per band
    per_region = N_MELS // MOD_REGIONS
    n_scale = per_region // 2 + 1
    scale_ind = np.zeros((n_scale, 2))
    scale_ind[:2, 0] = 0.5  # slow spectral change (<= 1/8 cycle per band)
    scale_ind[2:, 1] = 1.0 / (n_scale - 2)  # fine spectral structure (harmonics, formants)
    t_edges = np.linspace(0, n_frames, COARSE_TIME + 1).astype(int)
    out = np.empty((n, COARSE_FREQ * COARSE_TIME + MOD_REGIONS * (len(RATE_EDGES_HZ) - 1) * 2))
    for a in range(0, n, _FEATURE_BATCH):
        lm = _log_mel(np.asarray(audio[a : a + _FEATURE_BATCH], np.float32))
        b = lm.shape[0]
        coarse = lm.reshape(b, n_frames, COARSE_FREQ, N_MELS // COARSE_FREQ).mean(-1)
        coarse = np.add.reduceat(coarse, t_edges[:-1], axis=1) / np.diff(t_edges)[None, :, None]
        centred = (lm - lm.mean(1, keepdims=True)).reshape(b, n_frames, MOD_REGIONS, per_region)
        power = np.abs(sfft.fft(sfft.rfft(centred, axis=3), axis=1)) ** 2
        mod = np.einsum("btrs,ta,sc->brac", power, rate_ind, scale_ind, optimize=True)
        out[a : a + b] = np.concatenate([coarse.transpose(0, 2, 1).reshape(b, -1), np.log10(mod.reshape(b, -1) + 1e-6)], 1)
    pos = np.concatenate([
        np.repeat((np.arange(COARSE_FREQ) + 0.5) / COARSE_FREQ, COARSE_TIME),
        np.repeat((np.arange(MOD_REGIONS) + 0.5) / MOD_REGIONS, (len(RATE_EDGES_HZ) - 1) * 2),
    ])
    return out, pos


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def _high_level_features(seed: int, kind: str, labels: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """(n_clips, N_EMBED + n_attr): label embedding (fixed per label and seed) and attributes, z-scored.

    The embedding block is scaled so that the label drives ``LABEL_SHARE`` of a high-level voxel's
    signal variance in expectation (the attributes the rest): strong enough to decode, not trivially.
    """
    names = sorted(set(labels))
    emb = {lab: _rng(seed, kind, "embedding", lab).standard_normal(N_EMBED) for lab in names}
    e = _zscore(np.stack([emb[lab] for lab in labels]))
    w = math.sqrt(LABEL_SHARE / (1 - LABEL_SHARE) * attrs.shape[1] / N_EMBED)
    return np.concatenate([e * w, _zscore(attrs)], 1)


# ----------------------------------------------------------------------------------------------
# responses


def _hrf_operator(group: np.ndarray, hrf: list[float]):
    """Lagged (source index, valid mask) pairs: lag j reads clip k - j of the same group."""
    n = group.shape[0]
    ops = []
    for j, h in enumerate(hrf):
        src = np.arange(n) - j
        valid = (src >= 0) & (group[np.maximum(src, 0)] == group)
        ops.append((float(h), np.maximum(src, 0), valid))
    return ops


def _subject(seed: int, kind: str, subject: str, p: dict, x_low, pos_low, x_high, design, hrf_ops):
    """One subject's responses: ({split: (fmri (n, V) float32, clip_index (n,) int64)}, info)."""
    rng = _rng(seed, kind, "subject", subject)
    v_total = p["n_voxels"]
    n_null = int(round(p["frac_null"] * v_total))
    n_low = int(round(p["frac_low"] * (v_total - n_null)))
    n_high = v_total - n_null - n_low
    vtype = rng.permutation(np.repeat(np.arange(3), [n_null, n_low, n_high]))  # 0 null, 1 low, 2 high
    # per-voxel single-presentation SNR: lognormal around the subject's median
    subj_factor = math.exp(p["snr_subject_spread"] * rng.standard_normal())
    snr_median = p["snr"] * subj_factor
    snr_v = snr_median * np.exp(p["snr_voxel_spread"] * rng.standard_normal(v_total))
    noise_sd = np.where(vtype == 0, 1.0 / math.sqrt(snr_median), 1.0 / np.sqrt(snr_v)).astype(np.float32)
    baseline = rng.uniform(*BOLD_BASELINE, v_total).astype(np.float32)
    gain = (baseline * 0.01 * rng.uniform(*BOLD_PSC, v_total)).astype(np.float32)
    pref = rng.uniform(0, 1, v_total)  # tonotopic preference of low-level voxels

    splits = {name: design[name] for name in ("train", "test", "prompt") if name in design}
    # train rows are single presentations (sound repeats appear as separate rows of the design)
    reps = {"train": 1, "test": p["n_test_reps"], "prompt": p["n_test_reps"]}
    out = {name: np.empty((idx.shape[0], v_total), np.float32) for name, idx in splits.items()}
    emp_r = np.zeros(v_total)
    f_low, f_high = x_low.shape[1], x_high.shape[1]
    for a in range(0, v_total, _VOXEL_CHUNK):
        b = min(a + _VOXEL_CHUNK, v_total)
        t = vtype[a:b]
        # low-level weights: Gaussian, tuned around each voxel's preferred frequency position
        tuning = 0.15 + np.exp(-0.5 * ((pos_low[:, None] - pref[None, a:b]) / 0.15) ** 2)
        w_low = rng.standard_normal((f_low, b - a)) * tuning * (t == 1)
        w_high = rng.standard_normal((f_high, b - a)) * (t == 2)
        sig = x_low @ w_low + x_high @ w_high  # (n_clips, chunk)
        if hrf_ops is not None:
            sig = sum(h * np.where(valid[:, None], sig[src], 0.0) for h, src, valid in hrf_ops)
        sd = sig.std(0)
        sig = ((sig - sig.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        for name, idx in splits.items():
            r = reps[name]
            noise = rng.standard_normal((idx.shape[0], b - a), dtype=np.float32)
            for _ in range(r - 1):
                noise += rng.standard_normal((idx.shape[0], b - a), dtype=np.float32)
            resp = sig[idx] + noise * (noise_sd[a:b] / r)  # mean over r presentations
            if name == "test":
                s, y = sig[idx].astype(np.float64), resp.astype(np.float64)
                s -= s.mean(0)
                y -= y.mean(0)
                denom = np.sqrt((s * s).sum(0) * (y * y).sum(0))
                emp_r[a:b] = np.where(denom > 0, (s * y).sum(0) / np.where(denom > 0, denom, 1.0), 0.0)
            out[name][:, a:b] = baseline[a:b] + gain[a:b] * resp
    driven = vtype > 0
    s_d = snr_v[driven]
    info = {
        "noise_ceiling": {
            "analytic_r": float(np.mean(np.sqrt(s_d / (s_d + 1.0 / p["n_test_reps"])))),
            "empirical_r": float(np.mean(emp_r[driven])),
            "snr": float(snr_median),
            "test_reps": int(p["n_test_reps"]),
            "over": "stimulus-driven voxels",
        },
        "n_low": n_low,
        "n_high": n_high,
        "n_null": n_null,
    }
    return PreparedSubject(splits={k: (out[k], splits[k]) for k in splits}, info=info), info


_DESIGN = {"sound": _design_sound, "music": _design_music, "speech": _design_speech}
LABELS = {"sound": SOUND_LABELS, "music": GENRES, "speech": VOICES}


def simulate(kind: str, subjects: list[str], seed: int, params: dict) -> tuple[ClipTable, dict[str, PreparedSubject], dict]:
    """Generate one simulated dataset.

    kind: "sound", "music" or "speech"; subjects: subject names (each gets its own weights, SNR and
    noise; adding a subject leaves the others unchanged); seed: non-negative int; params: one of
    ``SCALES[kind]`` with values possibly overridden.

    Returns (clips, {subject: PreparedSubject}, settings). Clip audio is (n_clips, samples) float32
    at 16 kHz; splits are {"train", "test"} (+ "prompt" for speech), each (fmri (n, V) float32 on a
    BOLD-like scale, clip_index (n,) int64). Same arguments -> bit-identical arrays.
    """
    p = _check_params(kind, params)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BenchError(f"simulation seed must be a non-negative integer, got {seed!r}")
    if isinstance(subjects, str) or not subjects or not all(isinstance(s, str) and s for s in subjects):
        raise BenchError(f"simulation subjects must be a non-empty list of names, got {subjects!r}")
    if len(set(subjects)) != len(subjects):
        raise BenchError(f"simulation subjects must be unique, got {subjects!r}")
    seed = int(seed)
    clips, attrs, design = _DESIGN[kind](seed, p)
    x_low, pos_low = _low_level_features(clips.audio)
    x_low = _zscore(x_low)
    x_high = _high_level_features(seed, kind, clips.label, attrs)
    hrf_ops = _hrf_operator(design["group"], p["hrf"]) if "hrf" in p else None
    prepared, ceilings = {}, {}
    for subject in subjects:
        prepared[subject], info = _subject(seed, kind, subject, p, x_low, pos_low, x_high, design, hrf_ops)
        ceilings[subject] = info["noise_ceiling"]
    settings = {
        **p,
        "seed": seed,
        "sim_version": SIM_VERSION,
        "kind": kind,
        "labels": list(LABELS[kind]),
        "attributes": list(ATTRIBUTES[kind]),
        "n_low_features": int(x_low.shape[1]),
        "n_high_features": int(x_high.shape[1]),
        "noise_ceiling": ceilings,
    }
    return clips, prepared, settings


# ----------------------------------------------------------------------------------------------
# fresh clips for pretraining networks on the simulator's world (never the benchmark's stimuli)

CLIP_SECONDS = {"sound": SOUND_WIN_S, "music": MUSIC_SEG_S, "speech": SPEECH_CLIP_S}


def caption(kind: str, label: str, attrs: np.ndarray) -> str:
    """A short text for a clip (what CLAP's text tower learns from): its label and coarse attributes."""
    if kind == "sound":
        speed = "fast" if attrs[1] > 1.0 else "slow"
        return f"the sound of {'an' if label[0] in 'aeiou' else 'a'} {label}, {speed} events"
    if kind == "music":
        mode = "major" if attrs[1] > 0.5 else "minor"
        pace = "fast" if attrs[0] > np.log2(120.0) else "slow"
        return f"{label} music, {pace} tempo, {mode} mode"
    pitch = "high" if attrs[0] > np.log2(160.0) else "low"
    return f"a {label} voice speaking, {pitch} pitch"


def fresh_clips(kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` new clips of the simulator's stimulus world, for pretraining networks (sim backbones).

    Drawn from the same synthesisers as the datasets but in a random stream of their own (keyed "pretrain"), so
    they are never the benchmark's train or test stimuli. Labels are balanced. Returns
    ``audio`` (n, samples) float32 at 16 kHz (the kind's clip length), ``label`` (n,) object, ``attrs``
    (n, n_attributes) float64 (``ATTRIBUTES[kind]``) and ``caption`` (n,) object. Same arguments, same arrays.
    """
    if kind not in KINDS:
        raise BenchError(f"unknown simulator kind {kind!r}; choose from {', '.join(KINDS)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise BenchError(f"n must be a positive integer, got {n!r}")
    rng = _rng(seed, kind, "pretrain")
    labels = _balanced_labels(rng, int(n), LABELS[kind])
    length = int(round(CLIP_SECONDS[kind] * SR))
    audio = np.empty((int(n), length), np.float32)
    attrs = np.empty((int(n), len(ATTRIBUTES[kind])))
    for i, li in enumerate(labels):
        label = LABELS[kind][li]
        crng = _rng(seed, kind, "pretrain", i)
        if kind == "sound":
            x, a = _SOUND_SYNTH[label](crng, int(SOUND_STIM_S * SR))
        elif kind == "music":
            x, a = _music_clip(crng, label)
        else:
            x, a = _speech_story(crng, 3, label)
        x = _normalise(x, crng)
        start = int(crng.integers(0, len(x) - length + 1))
        audio[i] = x[start : start + length]
        attrs[i] = a if np.ndim(a) == 1 else np.asarray(a)[min(start // length, len(a) - 1)]
    label_names = np.array([LABELS[kind][li] for li in labels], dtype=object)
    captions = np.array([caption(kind, lab, att) for lab, att in zip(label_names, attrs)], dtype=object)
    return {"audio": audio, "label": label_names, "attrs": attrs, "caption": captions}

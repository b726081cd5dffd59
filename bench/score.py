"""Scoring reconstructions made elsewhere: ``bench score`` turns a folder of WAVs (or an NPZ) into a run record.

Input, for one subject's test split of a dataset:

- a folder with one WAV per test sample, named ``<sample_id>.wav`` (``Split.sample_id``: the stimulus id, or
  ``<stim_id>@<onset s>`` where a stimulus has several windows in the split, e.g. ``snd-0100@2.wav``), or
- an NPZ with ``audio`` (n, samples) float and ``stim_id`` (n,) str holding those ids (16 kHz assumed; ``sr`` may
  be given as a scalar entry).

Audio at another rate is resampled to 16 kHz (the record says so); the first channel of multi-channel audio is
used. Every file is checked before anything is scored or written: an unknown or missing id, a length other than the
clip's, a file that is not audio, NaN or inf samples each stop with one line naming the file and the fix.
The record is scored by the same code as a cell's (``bench.runner.score_reconstruction``), marked external, and
written atomically with its predictions, so it appears on the leaderboard.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from bench import SAMPLE_RATE
from bench.errors import BenchError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class _External:
    """Stands in for a method: external reconstructions decode no features, so probes have nothing to score."""

    def target_features(self, split) -> dict:
        return {}


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError for non-audio files
        raise BenchError(f"{path} is not a readable audio file ({str(exc).splitlines()[0][:120]}); "
                         f"give a 16-kHz WAV per test sample") from None
    return audio[:, 0], int(sr)


def read_reconstructions(source: Path, ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, int], str]:
    """{sample_id: waveform at its own rate}, {sample_id: rate}, and a description of the source."""
    source = Path(source)
    if source.is_dir():
        wavs = {p.stem: p for p in sorted(source.iterdir()) if p.suffix.lower() in (".wav", ".flac")}
        others = sorted(p.name for p in source.iterdir() if p.is_file() and p.suffix.lower() not in (".wav", ".flac"))
        if others:
            raise BenchError(f"{source} holds non-audio files ({', '.join(others[:3])}); keep only <sample_id>.wav files there")
        unknown = sorted(set(wavs) - set(ids))
        if unknown:
            raise BenchError(f"{wavs[unknown[0]]}: {unknown[0]!r} is not a test sample id of this split "
                             f"({len(unknown)} unknown); name files by the ids `bench data describe` lists, e.g. {ids[0]}.wav")
        missing = [i for i in ids if i not in wavs]
        if missing:
            raise BenchError(f"{source}: no file for test sample {missing[0]!r} ({len(missing)} missing); "
                             f"add {missing[0]}.wav")
        audio, rates = {}, {}
        for i in ids:
            audio[i], rates[i] = _read_wav(wavs[i])
        return audio, rates, f"folder {source}"
    if source.suffix == ".npz":
        try:
            with np.load(source, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BenchError(f"{source} is not a readable NPZ ({type(exc).__name__}); save it with numpy.savez") from None
        if "audio" not in data or "stim_id" not in data:
            raise BenchError(f"{source} needs arrays 'audio' (n, samples) and 'stim_id' (n,); it has {', '.join(data) or 'none'}")
        arr, names = np.asarray(data["audio"]), [str(x) for x in data["stim_id"]]
        if arr.ndim != 2 or len(names) != arr.shape[0]:
            raise BenchError(f"{source}: 'audio' must be (n, samples) with one 'stim_id' per row, got {arr.shape} and {len(names)} ids")
        sr = int(data["sr"]) if "sr" in data else SAMPLE_RATE
        unknown = sorted(set(names) - set(ids))
        if unknown:
            raise BenchError(f"{source}: stim_id {unknown[0]!r} is not a test sample id of this split ({len(unknown)} unknown)")
        missing = [i for i in ids if i not in names]
        if missing:
            raise BenchError(f"{source}: no row for test sample {missing[0]!r} ({len(missing)} missing)")
        return ({n: arr[k].astype(np.float32) for k, n in enumerate(names)}, {n: sr for n in names}, f"npz {source}")
    raise BenchError(f"--input {source} must be a folder of WAVs or an .npz file")


def score_external(dataset: str, subject: str, source: Path, name: str, *, runs: Path, data_root=None,
                   device: str = "cpu", scale: str = "default") -> tuple[Path, dict]:
    """Score external reconstructions of one subject's test split and write their record; returns (path, record)."""
    import bench
    from bench.data import sha256_file, use_data_root
    from bench.datasets import get_dataset
    from bench.device import resolve_device
    from bench.io import ensure_writable_dir, write_json, write_npz
    from bench.provenance import git_info, machine_info, package_versions
    from bench.records import SCHEMA_VERSION, config_hash, record_path
    from bench.runner import score_reconstruction
    from methods.base import Reconstruction
    from metrics.embeddings import audio_digest

    if not _NAME.match(name or ""):
        raise BenchError(f"--name {name!r} must be letters, digits, '.', '_', '+' or '-' (it names the leaderboard row)")
    from methods import METHODS

    if name in METHODS:
        raise BenchError(f"--name {name!r} is a registered method; choose another name for external reconstructions")
    ensure_writable_dir(runs, "runs folder")
    device = resolve_device(device)
    with use_data_root(data_root):
        ds = get_dataset(dataset)
        test = ds.load_split(subject, "test", data_root=data_root, scale=scale)
        ids = [str(i) for i in test.sample_id]
        unique_ids = list(dict.fromkeys(ids))
        audio, rates, described = read_reconstructions(Path(source), unique_ids)
        n_samples = int(test.clips.audio.shape[1])
        resampled = sorted({r for r in rates.values() if r != SAMPLE_RATE})
        fixed: dict[str, np.ndarray] = {}
        for i in unique_ids:
            x = audio[i]
            where = Path(source) / f"{i}.wav" if Path(source).is_dir() else f"{source} (stim_id {i})"
            if not np.isfinite(x).all():
                raise BenchError(f"{where} has NaN or inf samples; write finite audio")
            if rates[i] != SAMPLE_RATE:
                from bench.audio import resample

                x = resample(x, rates[i], SAMPLE_RATE)
            if abs(len(x) - n_samples) > 1:  # one sample of slack for resampling's rounding
                raise BenchError(f"{where} is {len(x) / SAMPLE_RATE:.4f} s at 16 kHz; the clip is {n_samples / SAMPLE_RATE:g} s "
                                 f"({n_samples} samples): crop or pad it to the clip's length")
            fixed[i] = np.pad(x, (0, max(0, n_samples - len(x))))[:n_samples].astype(np.float32)
        rec = Reconstruction(audio=np.stack([fixed[i] for i in ids]))
        config = {
            "method": name, "params": {}, "overrides": {}, "profile": "external", "dataset": dataset,
            "dataset_version": ds.version(scale), "scale": scale, "subject": str(subject), "seed": 0,
            "suite_version": bench.__version__,
            "external": {"audio_sha256": audio_digest(rec.audio)},
        }
        path = record_path(runs, config)
        t0 = time.perf_counter()
        results, higher = score_reconstruction(rec, test, _External(), device=device,
                                               embeddings_path=path.with_suffix(".emb.npz"))
        score_s = time.perf_counter() - t0
    write_npz(path.with_suffix(".npz"), audio=rec.audio, clip_index=test.clip_index)
    record = {
        "schema": SCHEMA_VERSION,
        "key": config_hash(config)[:12],
        "config": config,
        "config_hash": config_hash(config),
        "external": True,
        "dataset": {"name": dataset, "version": config["dataset_version"], "kind": ds.kind,
                    "n_test": int(test.n_samples), "noise_ceiling": test.info.get("noise_ceiling")},
        "metrics": {k: v.to_json() for k, v in sorted(results.items())},
        "higher_is_better": dict(sorted(higher.items())),
        "method_info": {"display_name": name, "external": True, "source": described,
                        "resampled_from_hz": resampled, "components": {}},
        "timing": {"score_s": round(score_s, 3)},
        "provenance": {"git": git_info(), "packages": package_versions(), "machine": machine_info(device)},
        "predictions": {"file": path.with_suffix(".npz").name, "sha256": sha256_file(path.with_suffix(".npz"))},
    }
    write_json(path, record)
    return path, record


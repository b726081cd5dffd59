"""The dataset catalogue (``datasets.yaml``) and one object per dataset.

A dataset is a catalogue entry plus a way to get prepared data: simulated datasets are generated
on first use; real ones are prepared from the public releases by ``bench.prepare.<name>``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from bench.data import (
    FORMAT_VERSION, ClipTable, Split, data_root, manifest_format, prepared_dir, read_clips, read_manifest, read_split,
    write_prepared,
)
from bench.errors import BenchError, NotPreparedError
from bench.io import ensure_writable_dir

log = logging.getLogger("bench.datasets")

CATALOGUE_ENV = "BENCH_DATASETS_YAML"
REQUIRED_FIELDS = ("kind", "version", "title", "subjects", "sample_rate", "clip_seconds", "n_patch", "label_kind")


def catalogue_path() -> Path:
    """datasets.yaml: ``$BENCH_DATASETS_YAML``, else the package's own copy.

    The package copy (``bench/datasets.yaml``, shipped in the wheel) is the real file; in a checkout the
    top-level ``datasets.yaml`` is a symlink to it, so editing either edits the same catalogue.
    """
    env = os.environ.get(CATALOGUE_ENV)
    if env:
        return Path(env)
    return Path(str(resources.files("bench") / "datasets.yaml"))


@functools.lru_cache(maxsize=4)
def _read_catalogue(path: str) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"dataset catalogue {path} not found; set ${CATALOGUE_ENV} or reinstall") from None
    except yaml.YAMLError as exc:
        raise BenchError(f"dataset catalogue {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise BenchError(f"dataset catalogue {path} must have a top-level 'datasets:' mapping")
    for name, entry in raw["datasets"].items():
        missing = [f for f in REQUIRED_FIELDS if f not in (entry or {})]
        if missing:
            raise BenchError(f"dataset catalogue {path}: entry {name!r} lacks field(s) {', '.join(missing)}")
        if entry["kind"] not in ("real", "simulated"):
            raise BenchError(f"dataset catalogue {path}: {name}.kind must be 'real' or 'simulated', got {entry['kind']!r}")
        if not isinstance(entry["subjects"], list) or not entry["subjects"]:
            raise BenchError(f"dataset catalogue {path}: {name}.subjects must be a non-empty list")
    return raw


def catalogue() -> dict:
    return _read_catalogue(str(catalogue_path()))


@dataclass
class Dataset:
    """One catalogue entry. ``spec`` is the raw YAML mapping."""

    name: str
    spec: dict = field(repr=False)

    # -- catalogue facts --------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def subjects(self) -> list[str]:
        return [str(s) for s in self.spec["subjects"]]

    @property
    def clip_samples(self) -> int:
        return int(round(float(self.spec["clip_seconds"]) * int(self.spec["sample_rate"])))

    def version(self, scale: str = "default") -> str:
        """The prepared-data version: catalogue version, plus the generator version and scale for sims."""
        v = str(self.spec["version"])
        if self.kind == "simulated":
            from bench.simulate import SIM_VERSION

            v = f"{v}-gen{SIM_VERSION}"
            if scale != "default":
                v = f"{v}+{scale}"
        elif scale != "default":
            raise BenchError(f"--scale applies to simulated datasets only; {self.name} is real")
        return v

    # -- state ------------------------------------------------------------------------------
    def folder(self, root=None, scale: str = "default") -> Path:
        return prepared_dir(self.name, self.version(scale), root)

    def is_prepared(self, root=None, scale: str = "default") -> bool:
        return (self.folder(root, scale) / "manifest.json").exists()

    def is_available(self, root=None) -> bool:
        """Usable now: prepared, or simulated (generated on first use)."""
        return self.kind == "simulated" or self.is_prepared(root)

    def state(self, root=None) -> str:
        if self.is_prepared(root):
            fmt = manifest_format(self.folder(root))
            if fmt is not None and fmt < FORMAT_VERSION:
                if self.kind == "simulated":
                    return "prepared in an older format (regenerated on next use)"
                return f"prepared in an older format: run `{self.spec.get('prepare', f'bench data prepare {self.name}')}` again"
            return "prepared"
        if self.kind == "simulated":
            return "simulated (generated on first use)"
        return f"not prepared: run `{self.spec.get('prepare', f'bench data prepare {self.name}')}`"

    # -- data ---------------------------------------------------------------------------------
    def ensure_prepared(self, root=None, scale: str = "default", params: dict | None = None) -> Path:
        folder = self.folder(root, scale)
        if (folder / "manifest.json").exists():
            fmt = manifest_format(folder)
            if fmt is None or fmt >= FORMAT_VERSION:
                return folder  # current (or unreadable: read_manifest names the problem)
            if self.kind == "real":
                raise NotPreparedError(
                    f"dataset {self.name} under {folder} was prepared in an older format without file digests; "
                    f"prepare it again: `{self.spec.get('prepare', f'bench data prepare {self.name}')}`"
                )
            log.info("regenerating %s: its prepared format %s predates file digests", folder, fmt)
            return self.generate(root, scale, params)  # same seed and version: the same arrays, now with digests
        if self.kind == "real":
            raise NotPreparedError(
                f"dataset {self.name} is not prepared under {data_root(root)}; "
                f"run `{self.spec.get('prepare', f'bench data prepare {self.name}')}`"
            )
        # Many processes (Slurm tasks) may need the same sim data at once: one generates, the rest wait.
        from bench.io import once_under_lock

        once_under_lock(folder.parent / f".{folder.name}.lock", lambda: (folder / "manifest.json").exists(),
                        lambda: self.generate(root, scale, params))
        return folder

    def check_scale(self, scale: str) -> None:
        """An unknown --scale is an error before any work (real datasets accept only "default")."""
        if self.kind != "simulated":
            self.version(scale)
            return
        from bench.simulate import SCALES

        kind = self.spec["generator"]
        if scale not in SCALES[kind]:
            raise BenchError(f"unknown scale {scale!r} for {self.name}; choose from {', '.join(SCALES[kind])}")

    def generate(self, root=None, scale: str = "default", params: dict | None = None) -> Path:
        """Generate a simulated dataset and write it under the data root (atomically)."""
        from bench.simulate import SCALES, simulate

        kind = self.spec["generator"]
        self.check_scale(scale)
        ensure_writable_dir(data_root(root), "data root")  # before the simulation, which can take minutes
        sim_params = dict(SCALES[kind][scale])
        sim_params.update(self.spec.get("params", {}) if scale == "default" else {})
        sim_params.update(params or {})
        clips, subjects, settings = simulate(kind, self.subjects, int(self.spec.get("seed", 0)), sim_params)
        return write_prepared(
            data_root(root),
            self.name,
            self.version(scale),
            clips,
            subjects,
            settings={"generator": kind, "scale": scale, **settings},
            sources=[],
        )

    def manifest(self, root=None, scale: str = "default") -> dict:
        return read_manifest(self.ensure_prepared(root, scale))

    def load_split(self, subject: str, split: str, data_root=None, scale: str = "default") -> Split:
        if str(subject) not in self.subjects:
            raise BenchError(f"subject {subject!r} is not in {self.name}; subjects: {', '.join(self.subjects)}")
        folder = self.ensure_prepared(data_root, scale)
        out = read_split(folder, str(subject), split, clips=_clips_cached(str(folder)))
        out.info["probe_groups"] = self.spec.get("probe_groups", "stim_id")
        if self.spec.get("text_prompts") is not None:  # what prompt='text' methods read: not the catalogue itself
            out.info["text_prompts"] = self.spec["text_prompts"]
        out.info["simulated"] = self.kind == "simulated"  # perceptual metrics pick the simulator-trained networks
        return out

    def prepared_subjects(self, root=None, scale: str = "default") -> list[str]:
        """Subjects present in the prepared data (a real source may lack some)."""
        return [s for s in self.subjects if s in self.manifest(root, scale)["subjects"]]

    def prepare(self, **kwargs: Any) -> Path:
        """Prepare a real dataset from its public release (see ``bench.prepare``)."""
        if self.kind == "simulated":
            return self.generate(kwargs.get("root"), kwargs.get("scale", "default"))
        module_name = self.spec.get("preparer")
        if not module_name:
            raise BenchError(f"dataset {self.name} declares no preparer in datasets.yaml")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise BenchError(f"the preparer for {self.name} ({module_name}) is not available in this version") from None
            raise
        return module.prepare(self, **kwargs)


@functools.lru_cache(maxsize=8)
def _clips_cached(folder: str) -> ClipTable:
    # Clip audio is memory-mapped; caching the table keeps train/test/prompt splits sharing it.
    return read_clips(Path(folder))


def dataset_names() -> list[str]:
    return list(catalogue()["datasets"])


def get_dataset(name: str) -> Dataset:
    cat = catalogue()["datasets"]
    if name not in cat:
        import difflib

        close = difflib.get_close_matches(name, list(cat), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise BenchError(f"unknown dataset {name!r}.{hint} Available: {', '.join(cat)} (groups: {', '.join(groups())})")
    return Dataset(name, cat[name])


def groups(root=None) -> dict[str, list[str]]:
    g = dict(catalogue().get("groups", {}))
    g["all"] = [n for n in dataset_names() if get_dataset(n).is_available(root)]
    return g


def not_available(root=None) -> dict[str, str]:
    """Datasets the ``all`` group leaves out because they are not prepared here: {name: the command that prepares it}."""
    out = {}
    for name in dataset_names():
        ds = get_dataset(name)
        if not ds.is_available(root):
            out[name] = ds.spec.get("prepare", f"bench data prepare {name}")
    return out


def check_can_generate(names: list[str], root=None, scale: str = "default") -> None:
    """Raise before any work on an unknown scale, or when a simulated dataset still has to be generated into an
    unwritable data root."""
    for n in names:
        get_dataset(n).check_scale(scale)
    if any(get_dataset(n).kind == "simulated" and not get_dataset(n).is_prepared(root, scale) for n in names):
        ensure_writable_dir(data_root(root), "data root")


def resolve_datasets(spec: str, root=None) -> list[str]:
    """Expand "a,b", a group ("sim", "paper", "all") or one name into checked dataset names."""
    names: list[str] = []
    g = groups(root)
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        expanded = g[part] if part in g else [get_dataset(part).name]
        names.extend(n for n in expanded if n not in names)
    if not names:
        raise BenchError(f"no dataset selected by {spec!r}; `bench data ls` lists them")
    return names


def load_split(
    name: str,
    subject: str,
    split: str,
    data_root: str | os.PathLike | None = None,
    scale: str = "default",
) -> Split:
    """Load one subject's split of a prepared dataset.

    Simulated datasets are generated (deterministically) on first use; real ones must have been
    prepared with ``bench data prepare``. Returns a :class:`Split` with ``fmri`` (n, V) float32,
    ``audio`` (n, samples) float32 at 16 kHz, ``stim_id``, ``onset_s``, ``label`` and ``subject``.
    """
    return get_dataset(name).load_split(subject, split, data_root=data_root, scale=scale)

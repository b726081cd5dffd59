"""Where a result came from: git sha, package versions, machine, device."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ("brain2audio-bench", "torch", "numpy", "scipy", "scikit-learn", "diffusers", "transformers")


@functools.lru_cache(maxsize=1)
def git_info() -> dict:
    """sha and dirty flag of the checkout the code runs from ("unknown" when this file is not tracked by git,
    e.g. an installed wheel, even one inside some other repository's folder)."""
    here = Path(__file__).resolve()
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", here.name], cwd=here.parent,
                                 capture_output=True, text=True, timeout=10)
        if tracked.returncode != 0:
            return {"sha": "unknown", "dirty": None}
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here.parent, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"sha": "unknown", "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here.parent, capture_output=True, text=True, timeout=10
        )
        return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"sha": "unknown", "dirty": None}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def cpu_platform() -> str:
    """"<CPU vendor>-<torch CPU capability>", e.g. "AuthenticAMD-AVX512": what decides the bits of float32 CPU
    training (oneDNN and MKL pick kernels, and so summation orders, by CPU; bench.check keeps golden values per platform)."""
    import torch

    vendor = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vendor = vendor or platform.processor() or platform.machine() or "unknown"
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}".replace(" ", "_").replace("/", "_")


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "device": device}
    try:
        info["cpu_platform"] = cpu_platform()
    except Exception:  # provenance must never break a run
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # provenance must never break a run
        pass
    info["argv"] = " ".join(sys.argv[1:])
    return info

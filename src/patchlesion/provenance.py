"""Provenance of a training or evaluation job: which code, which packages, which machine and device.

Written into run.json (training) and metrics.json (evaluation) so that a number in a table can be
traced to the commit, the library versions and the hardware that produced it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["PACKAGES", "cpu_model", "device_info", "git_commit", "package_versions", "provenance"]

#: Distributions whose versions decide a result.
PACKAGES = ("patchlesion", "torch", "torchvision", "numpy", "pandas", "scikit-learn", "snakemake", "pretrainedmodels", "pillow", "timm",
            "safetensors")  # fmt: skip

#: Environment variables that say where a job ran (the scheduler, the devices it was given).
_JOB_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION", "SLURM_RESTART_COUNT")


@lru_cache(maxsize=1)
def git_commit(path: str | None = None) -> dict:
    """Commit of the git checkout holding ``path`` (default: this package's source) and whether it has
    uncommitted changes; ``"unknown"`` outside a checkout or without git."""
    where = Path(path) if path else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions() -> dict:
    """Installed versions of :data:`PACKAGES` (``None`` where one is not installed) and Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info(device: torch.device) -> dict:
    """The machine a job computed on: CPU model and the SIMD kernels torch dispatches to, cores seen,
    torch's thread count, the GPU model and CUDA/cuDNN builds when CUDA is used (with the settings that
    decide whether GPU kernels are deterministic), the host and the scheduler's job variables.

    These, with :func:`package_versions`, are what a bit-identical rerun needs to match
    (docs/running.md §9)."""
    cpu = cpu_model()
    info = {
        "device": str(device),
        "device_name": cpu,  # the GPU model for CUDA
        "cpu_model": cpu,
        "cpu_id": _cpu_id(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu_model": None,
        "cuda": None,
        "cudnn": None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = info["gpu_model"] = torch.cuda.get_device_name(index)
        info["device_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["cudnn_deterministic"] = torch.backends.cudnn.deterministic
    info.update({name: os.environ[name] for name in _JOB_VARIABLES if name in os.environ})
    return info


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux (e.g. "AMD EPYC 7763 64-Core Processor"), sysctl
    or platform.processor() on macOS, ``"unknown"`` elsewhere or when it cannot be read."""
    system = platform.system()
    if system == "Linux":
        for line in _cpuinfo_lines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    elif system == "Darwin":
        try:
            brand = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            brand = ""
        return brand or platform.processor() or "unknown"
    return "unknown"


def _cpu_id() -> str | None:
    """Family, model and stepping of an x86 CPU on Linux: one model name (e.g. "Intel Xeon @ 2.80GHz",
    as cloud machines report it) can stand for CPU generations with different instruction sets."""
    fields = {}
    for line in _cpuinfo_lines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("cpu family", "model", "stepping") and key not in fields:
            fields[key] = value.strip()
        if not line.strip() and fields:  # the first processor's block is enough
            break
    if len(fields) < 3:
        return None
    return f"family {fields['cpu family']} model {fields['model']} stepping {fields['stepping']}"


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def provenance(device: torch.device) -> dict:
    """Everything above in one dictionary: ``git``, ``versions`` and ``machine``."""
    return {"git": git_commit(), "versions": package_versions(), "machine": device_info(device)}

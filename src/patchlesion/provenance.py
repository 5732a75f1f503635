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

__all__ = ["PACKAGES", "git_commit", "package_versions", "device_info", "provenance"]

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
    """The device a job computed on: its name (the GPU model for CUDA), the CUDA/cuDNN builds, the CPU
    thread count, the host and the scheduler's job variables."""
    info = {
        "device": str(device),
        "device_name": _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["device_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
    info.update({name: os.environ[name] for name in _JOB_VARIABLES if name in os.environ})
    return info


def _cpu_name() -> str:
    try:  # Linux: the CPU model, e.g. "AMD EPYC 7763 64-Core Processor"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict:
    """Everything above in one dictionary: ``git``, ``versions`` and ``machine``."""
    return {"git": git_commit(), "versions": package_versions(), "machine": device_info(device)}

"""One GPU per job on a multi-GPU workstation: a lock-file lease per device.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once, but it never says *which* GPU
a job should use (snakemake#281), so N jobs would all start on device 0. Each training or evaluation
process therefore leases a device before CUDA starts: it takes an exclusive, non-blocking
``flock`` on ``gpu<ID>.lock`` in a lock folder shared by all jobs of the machine, for the first device
whose lock is free, and sets ``CUDA_VISIBLE_DEVICES`` to that device alone. The kernel releases the
lock when the process ends, however it ends (a SIGKILL included), so no stale lease survives a crash.

* Devices: those listed in ``CUDA_VISIBLE_DEVICES`` when it is set (a user can reserve a subset), else
  every GPU ``nvidia-smi`` lists (``PATCHLESION_GPU_COUNT=N`` overrides the count, e.g. for tests).
* Under SLURM (``SLURM_JOB_ID`` set and ``CUDA_VISIBLE_DEVICES`` given by the scheduler) the
  scheduler's allocation is used as it is.
* With one candidate device there is nothing to choose and no lock is taken.
* Lock folder: ``$PATCHLESION_GPU_LOCK_DIR``, default ``<tmp>/patchlesion-gpu-locks``.
* When every device is leased (more jobs than GPUs, or GPUs held by other users' jobs) the process
  waits for one; ``PATCHLESION_GPU_LEASE_TIMEOUT`` (seconds) bounds the wait.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from patchlesion.errors import PatchlesionError

__all__ = ["Lease", "candidate_devices", "lease_device", "lock_dir"]

log = logging.getLogger("patchlesion")

#: The lease of this process; kept referenced so that its lock file stays open (and locked) until exit.
_held: Lease | None = None


@dataclass
class Lease:
    """A leased device: its ID (as ``CUDA_VISIBLE_DEVICES`` names it) and the open, locked lock file."""

    device: str
    lock_path: Path
    fd: int

    def release(self) -> None:
        """Give the device back before the process ends (normally the kernel does this at exit)."""
        global _held
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        except OSError:
            pass
        if _held is self:
            _held = None


def lock_dir() -> Path:
    """Folder of the per-device lock files, shared by every job on this machine."""
    return Path(os.environ.get("PATCHLESION_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "patchlesion-gpu-locks")


def candidate_devices() -> list[str]:
    """Devices this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU of the machine."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()]
    count = os.environ.get("PATCHLESION_GPU_COUNT")
    if count is not None:
        try:
            return [str(i) for i in range(int(count))]
        except ValueError:
            raise PatchlesionError(f"environment variable PATCHLESION_GPU_COUNT={count!r} is not a number of GPUs.") from None
    return _nvidia_smi_devices()


def _nvidia_smi_devices() -> list[str]:
    # Counting with torch.cuda would initialise CUDA before CUDA_VISIBLE_DEVICES is narrowed.
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip().isdigit()] if result.returncode == 0 else []


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: locking works on a read-only descriptor too
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # who holds it, for a user looking into the lock folder
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    return fd


def lease_device(timeout: float | None = None, poll_seconds: float = 2.0) -> Lease | None:
    """Lease one free GPU for the rest of this process and set ``CUDA_VISIBLE_DEVICES`` to it; ``None``
    where there is nothing to choose (no GPU, one GPU, or a SLURM allocation). Call before CUDA starts."""
    global _held
    if _held is not None:
        return _held
    devices = candidate_devices()
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.info("GPU lease: SLURM job %s was given CUDA_VISIBLE_DEVICES=%s; using that", os.environ["SLURM_JOB_ID"], os.environ["CUDA_VISIBLE_DEVICES"])
        return None
    if len(devices) <= 1:
        return None
    if timeout is None and os.environ.get("PATCHLESION_GPU_LEASE_TIMEOUT"):
        timeout = float(os.environ["PATCHLESION_GPU_LEASE_TIMEOUT"])
    folder = lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.stat().st_uid == os.getuid():
            folder.chmod(0o1777)  # shared with other users' jobs, like /tmp
    except OSError as error:
        raise PatchlesionError(f"GPU lease: cannot use the lock folder {folder} ({error}); set PATCHLESION_GPU_LOCK_DIR to a writable folder.") from error
    started, announced = time.monotonic(), False
    while True:
        for device in devices:
            path = folder / f"gpu{device.replace('/', '_')}.lock"
            fd = _try_lock(path)
            if fd is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                _held = Lease(device, path, fd)
                log.info("GPU lease: device %s of %s (lock %s)", device, ",".join(devices), path)
                return _held
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise PatchlesionError(
                f"GPU lease: all of devices {','.join(devices)} are leased (lock files in {folder}) after {waited:.0f} s; "
                f"run fewer GPU jobs at once (snakemake --resources gpu=N) or raise PATCHLESION_GPU_LEASE_TIMEOUT."
            )
        if not announced:
            log.info("GPU lease: all of devices %s are in use; waiting for one", ",".join(devices))
            announced = True
        time.sleep(poll_seconds)

"""J jobs per GPU on a multi-GPU workstation: a lock-file lease per device slot.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once, but it never says *which* GPU
a job should use (snakemake#281), so N jobs would all start on device 0. Each training or evaluation
process therefore leases a device before CUDA starts: it takes an exclusive, non-blocking
``flock`` on one of the device's J slot lock files in a lock folder shared by all jobs of the user on
the machine, and sets ``CUDA_VISIBLE_DEVICES`` to that device alone. The kernel releases the lock
when the process ends, however it ends (a SIGKILL included), so no stale lease survives a crash.

* Jobs per device: J = ``PATCHLESION_GPU_JOBS_PER_DEVICE`` (default 1), which the workflow sets from
  config key ``gpu_jobs_per_device`` (docs/running.md §2). Slot 0 of device ID is ``gpu<ID>.lock``
  (the name of the one-job-per-device lease), slot k > 0 ``gpu<ID>.slot<k>.lock``; a job uses slots
  0 to J-1 only, so no device ever holds more than J of its jobs.
* Which device: the least loaded, i.e. the one with the most free slots, the first listed on a tie;
  on it, its lowest free slot. Jobs thus spread over the devices before any device gets a second
  one. With J = 1 this is the first free device, as before.
* Devices: those listed in ``CUDA_VISIBLE_DEVICES`` when it is set (a user can reserve a subset), else
  every GPU ``nvidia-smi`` lists (``PATCHLESION_GPU_COUNT=N`` overrides the count, e.g. for tests).
* Under SLURM (``SLURM_JOB_ID`` set and ``CUDA_VISIBLE_DEVICES`` given by the scheduler) the
  scheduler's allocation is used as it is.
* With one candidate device there is nothing to choose and no lock is taken, whatever J: there
  ``--resources gpu=N`` alone says how many jobs share the GPU.
* Lock folder: ``$PATCHLESION_GPU_LOCK_DIR``, default ``<tmp>/patchlesion-gpu-locks-<uid>``, one per
  user (docs/running.md §2). It is created with mode 0700 and must be the user's own, a real folder
  (not a symbolic link) that no group or other user can write to; lock files are opened without
  following symbolic links and never truncated before the lock is held, so another user of a shared
  machine can neither redirect a lock onto a file of ours nor block a device with a file of theirs.
* When every slot is leased (more jobs than devices x J, or slots held by other workflows' jobs) the
  process waits for one; ``PATCHLESION_GPU_LEASE_TIMEOUT`` (seconds) bounds the wait.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from patchlesion.errors import PatchlesionError

__all__ = ["Lease", "candidate_devices", "jobs_per_device", "lease_device", "lock_dir"]

log = logging.getLogger("patchlesion")

#: The lease of this process; kept referenced so that its lock file stays open (and locked) until exit.
_held: Lease | None = None


@dataclass
class Lease:
    """A leased device: its ID (as ``CUDA_VISIBLE_DEVICES`` names it), the open, locked lock file, and
    which of the device's slots (0 to J-1) that file is."""

    device: str
    lock_path: Path
    fd: int
    slot: int = 0

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
    """Folder of the per-device lock files, shared by every job of this user on this machine."""
    return Path(os.environ.get("PATCHLESION_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"patchlesion-gpu-locks-{os.getuid()}")


def jobs_per_device() -> int:
    """J, the most jobs one device may hold: ``PATCHLESION_GPU_JOBS_PER_DEVICE`` (default 1)."""
    value = os.environ.get("PATCHLESION_GPU_JOBS_PER_DEVICE") or "1"
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise PatchlesionError(
            f"environment variable PATCHLESION_GPU_JOBS_PER_DEVICE={value!r} is not a number of jobs per GPU (a whole number, 1 or more); "
            f"in the workflow, set config key gpu_jobs_per_device."
        )
    return jobs


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


def _open_lock_dir(folder: Path) -> int:
    """Create ``folder`` (mode 0700) if needed and open it; refuse one that is a symbolic link, not
    ours, or writable by group or others. Returns a descriptor the lock files are opened relative to,
    so the folder checked is the folder used."""
    what_to_do = f"remove it (rm -r {folder}) or set PATCHLESION_GPU_LOCK_DIR to a folder of your own"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PatchlesionError(f"GPU lease: the lock folder {folder} is not a folder (a symbolic link or a file); {what_to_do}.") from None
        raise PatchlesionError(f"GPU lease: cannot use the lock folder {folder} ({error}); set PATCHLESION_GPU_LOCK_DIR to a writable folder.") from error
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.getuid():
        problem = f"belongs to user id {info.st_uid}, not to you (user id {os.getuid()})"
        what_to_do = "set PATCHLESION_GPU_LOCK_DIR to a folder of your own (e.g. ~/.cache/patchlesion-gpu-locks), or have its owner remove it"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by other users (mode {stat.filemode(info.st_mode)})"
        what_to_do = f"chmod 700 {folder}, or set PATCHLESION_GPU_LOCK_DIR to a folder of your own"
    if problem is not None:
        os.close(fd)
        raise PatchlesionError(f"GPU lease: the lock folder {folder} {problem}, so others could tamper with the locks; {what_to_do}.")
    return fd


def _lock_name(device: str, slot: int = 0) -> str:
    """The lock file of slot ``slot`` of ``device`` in the lock folder; slot 0 keeps the name of the
    one-job-per-device lease, so jobs with different J still count each other on slot 0."""
    base = f"gpu{device.replace('/', '_')}"
    return f"{base}.lock" if slot == 0 else f"{base}.slot{slot}.lock"


def _try_lock(folder_fd: int, name: str, folder: Path) -> int | None:
    """An open descriptor holding the exclusive lock on ``folder/name``, or None while another process holds it."""
    path = folder / name
    try:  # no O_TRUNC: the file is emptied only once it is locked and known to be our own regular file
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=folder_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PatchlesionError(f"GPU lease: the lock file {path} is a symbolic link; lock files must be plain files. Remove it (rm {path}).") from None
        raise PatchlesionError(f"GPU lease: cannot open the lock file {path} ({error}); remove it or set PATCHLESION_GPU_LOCK_DIR.") from error
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1:
        os.close(fd)
        raise PatchlesionError(f"GPU lease: the lock file {path} is not a plain file of your own; remove it (rm {path}).")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _mark_holder(fd: int) -> None:
    """Write our process ID into a lock file we hold, for a user looking into the lock folder."""
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass


def lease_device(timeout: float | None = None, poll_seconds: float = 2.0) -> Lease | None:
    """Lease a free slot of the least-loaded GPU for the rest of this process and set
    ``CUDA_VISIBLE_DEVICES`` to that device; ``None`` where there is nothing to choose (no GPU, one
    GPU, or a SLURM allocation). Call before CUDA starts."""
    global _held
    if _held is not None:
        return _held
    devices = candidate_devices()
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.info("GPU lease: SLURM job %s was given CUDA_VISIBLE_DEVICES=%s; using that", os.environ["SLURM_JOB_ID"], os.environ["CUDA_VISIBLE_DEVICES"])
        return None
    if len(devices) <= 1:
        return None
    slots = jobs_per_device()
    if timeout is None and os.environ.get("PATCHLESION_GPU_LEASE_TIMEOUT"):
        timeout = float(os.environ["PATCHLESION_GPU_LEASE_TIMEOUT"])
    folder = lock_dir()
    folder_fd = _open_lock_dir(folder)
    try:
        _held = _wait_for_slot(devices, slots, folder, folder_fd, timeout, poll_seconds)
    finally:
        os.close(folder_fd)
    os.environ["CUDA_VISIBLE_DEVICES"] = _held.device
    log.info("GPU lease: device %s of %s, slot %d of %d (lock %s)", _held.device, ",".join(devices), _held.slot, slots, _held.lock_path)
    return _held


def _wait_for_slot(devices: list[str], slots: int, folder: Path, folder_fd: int, timeout: float | None, poll_seconds: float) -> Lease:
    """Poll the devices' slot locks until one is free; raise after ``timeout`` seconds."""
    started, announced = time.monotonic(), False
    while True:
        lease = _take_least_loaded_slot(devices, slots, folder, folder_fd)
        if lease is not None:
            return lease
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise PatchlesionError(
                f"GPU lease: all of devices {','.join(devices)} are leased ({slots} job(s) per device; lock files in {folder}) after {waited:.0f} s; "
                f"run fewer GPU jobs at once (snakemake --resources gpu=N, N at most devices x gpu_jobs_per_device) "
                f"or raise PATCHLESION_GPU_LEASE_TIMEOUT."
            )
        if not announced:
            log.info("GPU lease: all of devices %s are in use (%d job(s) per device); waiting for one", ",".join(devices), slots)
            announced = True
        time.sleep(poll_seconds)


def _take_least_loaded_slot(devices: list[str], slots: int, folder: Path, folder_fd: int) -> Lease | None:
    """Lock the lowest free slot of the device with the most free slots (the first listed on a tie);
    None when every slot is held. Free slots are found by locking them, so the count is exact at that
    moment; every lock but the one kept is dropped at once (closing the descriptor drops it), also
    when a lock file is refused half-way."""
    held: dict[tuple[str, int], int] = {}  # (device, slot) -> descriptor of each lock this scan holds
    best: tuple[int, str, int] | None = None  # (free slots, device, its lowest free slot)
    try:
        for device in devices:
            free = [slot for slot in range(slots) if _lock_into(held, device, slot, folder, folder_fd)]
            if free and (best is None or len(free) > best[0]):
                best = (len(free), device, free[0])
            for key in [key for key in held if best is None or key != best[1:]]:
                os.close(held.pop(key))
            if best is not None and best[0] == slots:  # an idle device: no other can have more free slots
                break
        if best is None:
            return None
        fd = held.pop(best[1:])
    finally:
        for other in held.values():
            os.close(other)
    _mark_holder(fd)
    return Lease(best[1], folder / _lock_name(best[1], best[2]), fd, best[2])


def _lock_into(held: dict[tuple[str, int], int], device: str, slot: int, folder: Path, folder_fd: int) -> bool:
    """Try to lock slot ``slot`` of ``device``; on success record its descriptor in ``held``."""
    fd = _try_lock(folder_fd, _lock_name(device, slot), folder)
    if fd is not None:
        held[device, slot] = fd
    return fd is not None

"""The multi-GPU workstation lease, with fake devices (PATCHLESION_GPU_COUNT) and concurrent processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from patchlesion.engine import gpulease
from patchlesion.errors import PatchlesionError

SRC = Path(__file__).resolve().parents[1] / "src"

# A job: lease a device the way `patchlesion train` does, report it, hold it for `hold` seconds.
JOB = """
import json, logging, os, sys, time
from patchlesion.cli.commands import lease_gpu
from patchlesion.engine import gpulease
logging.basicConfig(level=logging.INFO)
lease_gpu("auto")
leased = time.time()
slot = gpulease._held.slot if gpulease._held is not None else None
print(json.dumps({"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "slot": slot, "leased": leased}), flush=True)
time.sleep(float(sys.argv[1]))
print(json.dumps({"released": time.time()}), flush=True)
"""
# The same job calling the lease directly: it starts in a fifth of the time (no pandas), for the tests of many jobs.
LEASE_JOB = JOB.replace("from patchlesion.cli.commands import lease_gpu\n", "").replace('lease_gpu("auto")', "gpulease.lease_device()")


def _env(lock_dir: Path, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]), PATCHLESION_GPU_LOCK_DIR=str(lock_dir), **extra)
    return env


def _job(env: dict, hold: float, script: str = JOB) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, str(hold)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_line(process: subprocess.Popen) -> dict:
    return json.loads(process.stdout.readline())


def test_concurrent_jobs_never_share_a_device(tmp_path):
    # 8 jobs on 3 fake GPUs, all started at once: at most 3 hold a device at any time, never two the same.
    env = _env(tmp_path / "locks", PATCHLESION_GPU_COUNT="3")
    jobs = [_job(env, 0.4) for _ in range(8)]
    intervals = []
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        leased, released = (json.loads(line) for line in out.splitlines())
        intervals.append((leased["device"], leased["leased"], released["released"]))
    assert {device for device, _, _ in intervals} == {"0", "1", "2"}
    for i, (device, start, end) in enumerate(intervals):
        for other, other_start, other_end in intervals[i + 1 :]:
            if device == other:
                assert end <= other_start or other_end <= start, f"device {device} leased twice at once"


def test_lease_respects_cuda_visible_devices_and_is_freed_by_sigkill(tmp_path):
    env = _env(tmp_path / "locks", CUDA_VISIBLE_DEVICES="3,5")
    first, second = _job(env, 60), _job(env, 60)
    try:
        first_device, second_device = _first_line(first)["device"], _first_line(second)["device"]
        assert {first_device, second_device} == {"3", "5"}
        third = subprocess.run([sys.executable, "-c", JOB, "0"], env={**env, "PATCHLESION_GPU_LEASE_TIMEOUT": "0.5"}, capture_output=True, text=True, timeout=60)
        assert third.returncode != 0 and "all of devices 3,5 are leased" in third.stderr
        first.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        first.wait(timeout=30)
        fourth = subprocess.run([sys.executable, "-c", JOB, "0"], env=env, capture_output=True, text=True, timeout=60)
        assert fourth.returncode == 0, fourth.stderr
        assert json.loads(fourth.stdout.splitlines()[0])["device"] == first_device
    finally:
        for job in (first, second):
            if job.poll() is None:
                job.kill()
            job.wait(timeout=30)


def test_a_waiting_job_gets_the_device_when_it_is_released(tmp_path):
    env = _env(tmp_path / "locks", PATCHLESION_GPU_COUNT="2")
    holders = [_job(env, 2.0), _job(env, 2.0)]
    assert {_first_line(h)["device"] for h in holders} == {"0", "1"}
    waiter = subprocess.run([sys.executable, "-c", JOB, "0"], env=env, capture_output=True, text=True, timeout=60)
    assert waiter.returncode == 0 and "waiting for one" in waiter.stderr
    released = [json.loads(holder.communicate(timeout=30)[0].splitlines()[-1])["released"] for holder in holders]
    assert json.loads(waiter.stdout.splitlines()[0])["leased"] >= min(released)


def test_slurm_allocation_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpulease.lease_device() is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and not (tmp_path / "locks").exists()


def test_no_choice_no_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    for count in ("0", "1"):
        monkeypatch.setenv("PATCHLESION_GPU_COUNT", count)
        assert gpulease.lease_device() is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("PATCHLESION_GPU_COUNT", "two")
    with pytest.raises(PatchlesionError, match="PATCHLESION_GPU_COUNT"):
        gpulease.lease_device()


def test_lease_in_process_sets_the_device_and_releases(tmp_path, monkeypatch):
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    lease = gpulease.lease_device()
    try:
        assert lease.device == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert gpulease.lease_device() is lease  # one lease per process
        assert (tmp_path / "locks" / "gpu0.lock").read_text().strip() == str(os.getpid())
    finally:
        lease.release()
    assert gpulease._held is None


# --------------------------------------------------------------------------------------------------
# J jobs per device (PATCHLESION_GPU_JOBS_PER_DEVICE; docs/running.md §2)
# --------------------------------------------------------------------------------------------------


def test_j_jobs_per_device_never_more_and_a_killed_job_frees_its_slot(tmp_path):
    # J = 2 on 2 fake GPUs: 4 holders on distinct (device, slot), 2 per device; a 5th times out; a
    # holder killed with SIGKILL hands its slot to a waiting job.
    env = _env(tmp_path / "locks", PATCHLESION_GPU_COUNT="2", PATCHLESION_GPU_JOBS_PER_DEVICE="2")
    holders = [_job(env, 60, LEASE_JOB) for _ in range(4)]
    waiter = None
    try:
        leases = [_first_line(holder) for holder in holders]
        assert sorted((lease["device"], lease["slot"]) for lease in leases) == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
        assert Counter(lease["device"] for lease in leases) == {"0": 2, "1": 2}
        assert sorted(path.name for path in (tmp_path / "locks").iterdir()) == ["gpu0.lock", "gpu0.slot1.lock", "gpu1.lock", "gpu1.slot1.lock"]
        fifth = subprocess.run([sys.executable, "-c", LEASE_JOB, "0"], env={**env, "PATCHLESION_GPU_LEASE_TIMEOUT": "0.5"}, capture_output=True, text=True, timeout=60)
        assert fifth.returncode != 0 and "all of devices 0,1 are leased (2 job(s) per device" in fifth.stderr
        waiter = _job(env, 0, LEASE_JOB)
        time.sleep(1.0)  # the waiter has found every slot held and polls
        assert waiter.poll() is None
        holders[2].send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        holders[2].wait(timeout=30)
        got = _first_line(waiter)
        assert (got["device"], got["slot"]) == (leases[2]["device"], leases[2]["slot"])
        assert waiter.wait(timeout=30) == 0
    finally:
        for job in [*holders, *([waiter] if waiter else [])]:
            if job.poll() is None:
                job.kill()
            job.wait(timeout=30)


def test_concurrent_jobs_never_exceed_j_per_device(tmp_path):
    # 10 jobs at once on 2 fake GPUs with J = 2: at any moment at most 2 hold each device, never two
    # the same slot, and every slot is used.
    env = _env(tmp_path / "locks", PATCHLESION_GPU_COUNT="2", PATCHLESION_GPU_JOBS_PER_DEVICE="2")
    jobs = [_job(env, 0.5, LEASE_JOB) for _ in range(10)]
    intervals = []
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        leased, released = (json.loads(line) for line in out.splitlines())
        intervals.append((leased["device"], leased["slot"], leased["leased"], released["released"]))
    assert {(device, slot) for device, slot, _, _ in intervals} == {("0", 0), ("0", 1), ("1", 0), ("1", 1)}
    for device, slot, start, _ in intervals:  # who holds a lease at the moment each one starts
        holding = [(d, s) for d, s, other_start, other_end in intervals if other_start <= start < other_end]
        assert sum(d == device for d, _ in holding) <= 2, f"more than 2 jobs on device {device}"
        assert holding.count((device, slot)) == 1, f"slot {slot} of device {device} leased twice at once"


def _hold(folder: Path, *names: str) -> list[int]:
    """Lock the named lock files as another job would (flock locks of separate opens exclude each other)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    fds = [os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o600) for name in names]
    for fd in fds:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fds


@pytest.mark.parametrize(
    ("jobs", "held", "expected"),
    [
        (2, ["gpu0.lock"], ("1", 0, "gpu1.lock")),  # device 1 is idle: it wins over slot 1 of device 0
        (3, ["gpu0.slot1.lock", "gpu0.slot2.lock", "gpu1.lock"], ("1", 1, "gpu1.slot1.lock")),  # 1 free on 0, 2 free on 1
        (2, ["gpu0.lock", "gpu1.slot1.lock"], ("0", 1, "gpu0.slot1.lock")),  # a tie: the first device listed
        (1, ["gpu0.lock"], ("1", 0, "gpu1.lock")),  # J = 1: the one-job-per-device lease and its file names
    ],
)
def test_a_job_takes_the_lowest_free_slot_of_the_least_loaded_device(tmp_path, monkeypatch, jobs, held, expected):
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("PATCHLESION_GPU_JOBS_PER_DEVICE", str(jobs))
    folder = tmp_path / "locks"
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(folder))
    others = _hold(folder, *held)
    lease = gpulease.lease_device()
    try:
        assert (lease.device, lease.slot, lease.lock_path.name) == expected and os.environ["CUDA_VISIBLE_DEVICES"] == expected[0]
        assert lease.lock_path.read_text().strip() == str(os.getpid())
        # every other lock the scan took is dropped again: all the files not held are free
        for path in folder.iterdir():
            if path.name not in (*held, lease.lock_path.name):
                os.close(_hold(folder, path.name)[0])
    finally:
        lease.release()
        for fd in others:
            os.close(fd)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_number_of_jobs_per_device_is_refused(tmp_path, monkeypatch, two_devices, value):
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("PATCHLESION_GPU_JOBS_PER_DEVICE", value)
    monkeypatch.setenv("PATCHLESION_GPU_LEASE_TIMEOUT", "1")  # J = 0 taken at its word would wait forever
    with pytest.raises(PatchlesionError, match=f"PATCHLESION_GPU_JOBS_PER_DEVICE='{value}'.*config key gpu_jobs_per_device"):
        gpulease.lease_device()
    assert gpulease._held is None and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_one_device_takes_no_lock_whatever_j(tmp_path, monkeypatch):
    # nothing to choose: --resources gpu=N alone says how many jobs share the one GPU
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("PATCHLESION_GPU_JOBS_PER_DEVICE", "4")
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpulease.lease_device() is None and not (tmp_path / "locks").exists()


@pytest.mark.slow
def test_the_workflow_gives_its_jobs_gpu_jobs_per_device(tmp_path, monkeypatch):
    # One demo training job on 2 fake GPUs: its lease reads J from config key gpu_jobs_per_device.
    from test_workflow import ROOT, snakemake

    monkeypatch.setenv("PATCHLESION_GPU_COUNT", "2")
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("PATCHLESION_GPU_JOBS_PER_DEVICE", "7")  # the config's value wins in the workflow
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = "tiny-multi_crop-nc9-mean-loss_weighting-k1"
    overrides = ["preset=demo", "synthetic={n_images: 120, image_size: [96, 72], seed: 1}", "image_size=[96, 72]", "crop_size=32",
                 "epochs=1", "validation_every=1", "lr_halving_epochs=[1]", "device=auto", "gpu_jobs_per_device=3"]  # fmt: skip
    result = snakemake("--cores", "1", "--configfile", str(ROOT / "config.yaml"), "--directory", str(tmp_path),
                       f"results/synthetic/runs/{run}/fold1/model.pt", "--config", *overrides)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "results" / "synthetic" / "logs" / "train" / run / "fold1.log").read_text()
    assert "GPU lease: device 0 of 0,1, slot 0 of 3" in log


# --------------------------------------------------------------------------------------------------
# A shared machine: the lock folder is the user's own, lock files are never followed (docs/running.md §2)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def two_devices(monkeypatch):
    monkeypatch.setattr(gpulease, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_planted_lock_file_never_writes_to_its_target(tmp_path, monkeypatch, two_devices, link):
    # Another user (or a stale tool) puts gpu0.lock -> victim into the lock folder: the victim stays as it was.
    folder, victim = tmp_path / "locks", tmp_path / "victim.txt"
    folder.mkdir(mode=0o700)
    victim.write_text("precious\n")
    (folder / "gpu0.lock").symlink_to(victim) if link == "symlink" else os.link(victim, folder / "gpu0.lock")
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(folder))
    with pytest.raises(PatchlesionError, match=f"{folder / 'gpu0.lock'}.*(symbolic link|not a plain file).*rm "):
        gpulease.lease_device()
    assert victim.read_text() == "precious\n" and gpulease._held is None and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_the_default_lock_folder_is_per_user_and_private(tmp_path, monkeypatch, two_devices):
    monkeypatch.delenv("PATCHLESION_GPU_LOCK_DIR", raising=False)
    monkeypatch.setattr(gpulease.tempfile, "tempdir", str(tmp_path))
    lease = gpulease.lease_device()
    try:
        folder = tmp_path / f"patchlesion-gpu-locks-{os.getuid()}"
        assert lease.lock_path == folder / "gpu0.lock"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(lease.lock_path.stat().st_mode) == 0o600
    finally:
        lease.release()


@pytest.mark.parametrize("problem", ["group_writable", "world_writable", "symlink", "not_ours"])
def test_a_lock_folder_others_could_tamper_with_is_refused(tmp_path, monkeypatch, two_devices, problem):
    folder, real = tmp_path / "locks", tmp_path / "real"
    real.mkdir(mode=0o700)
    if problem == "symlink":
        folder.symlink_to(real)
    else:
        folder.mkdir(mode=0o700)
        folder.chmod({"group_writable": 0o770, "world_writable": 0o1777}.get(problem, 0o700))
    if problem == "not_ours":
        uid = os.getuid()
        monkeypatch.setattr(gpulease.os, "getuid", lambda: uid + 1)  # as seen by another user
    monkeypatch.setenv("PATCHLESION_GPU_LOCK_DIR", str(folder))
    words = {"group_writable": "writable by other users.*chmod 700", "world_writable": "writable by other users.*chmod 700",
             "symlink": "not a folder.*rm -r", "not_ours": r"belongs to user id \d+, not to you"}[problem]  # fmt: skip
    with pytest.raises(PatchlesionError, match=f"lock folder {folder} .*{words}.*PATCHLESION_GPU_LOCK_DIR"):
        gpulease.lease_device()
    assert gpulease._held is None and list(real.iterdir()) == []
    assert problem == "symlink" or list(folder.iterdir()) == []

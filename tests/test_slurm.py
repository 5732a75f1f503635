"""The demo through a real single-node SLURM cluster with the project's slurm profile.

Brings up slurmctld + slurmd + munged on localhost (Debian's slurm-wlm, installed with apt-get when
missing; tests/slurm/start-local-slurm.sh), with two fake GPUs (GRES backed by /dev/null) so that the
profile's ``gpu: 1`` requests are schedulable, then runs the demo preset through ``--executor slurm``
using ``profiles/slurm/config.yaml`` with its site placeholders filled in for the test cluster, and
compares every metric with a local run of the same config.

Restriction (time: the full demo takes ~8 min on two idle cores, and would run twice; CI has 20 min
for everything): the target is Table V of the demo preset with ``epochs=2`` on fold 1 only (its 5
runs: 5 training jobs submitted as a job array, 5 evaluation jobs, index and split on the cluster;
synthesize and the table as local rules). Every produced metrics.json and predictions.csv, and the table, are compared with the local run.

Runs only when asked for, with PATCHLESION_TEST_SLURM=1 (as .ci/run does): as root it installs
packages and starts system services, which a plain `pytest` must not do. Skipped, with the reason,
otherwise, and where SLURM cannot be set up: not Linux, not root, or apt-get cannot install the
packages (no package mirror reachable).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "tests" / "slurm" / "start-local-slurm.sh"
FAKE_GPUS = 2
OVERRIDES = ["preset=demo", "epochs=2", "folds=[1]"]
TARGET = "results/synthetic/tables/table_V.csv"
#: The environment variable that asks for the end-to-end test (set to 1).
REQUEST = "PATCHLESION_TEST_SLURM"


def _require_request() -> None:
    """Skip unless the SLURM end-to-end test was asked for: it apt-installs slurm-wlm and starts daemons."""
    if os.environ.get(REQUEST) != "1":
        pytest.skip(f"the SLURM end-to-end test installs and starts a SLURM cluster; run it with {REQUEST}=1 pytest")


def test_slurm_end_to_end_runs_only_when_asked_for(monkeypatch):
    monkeypatch.delenv(REQUEST, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{REQUEST}=1 pytest"):
        _require_request()
    monkeypatch.setenv(REQUEST, "1")
    _require_request()  # asked for: goes on (to the root and apt-get checks)


def test_cluster_profile_for_the_local_test_cluster_keeps_the_real_profile(tmp_path):
    profile = _test_profile(tmp_path)
    real = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["set-resources"]["train"]["gpu"] == 1
    assert profile["set-resources"].keys() == real["set-resources"].keys()
    assert profile["slurm-array-jobs"] == real["slurm-array-jobs"] == "train"


def _test_profile(folder: Path) -> dict:
    """profiles/slurm/config.yaml with the placeholders filled for the 2-core, 20 GB test node: partition
    `debug`, no account (the test cluster has no accounting), requests that fit the node, the same
    thread count as the local run (so the numbers can be compared exactly), and squeue for the status
    (no slurmdbd, so no sacct)."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"].pop("slurm_account")
    profile["default-resources"].update(slurm_partition="debug", mem_mb=1000, runtime=30)
    for resources in profile["set-resources"].values():
        resources.pop("slurm_partition", None)
        for key in ("cpus_per_gpu",):
            if key in resources:
                resources[key] = 1
        if "mem_mb" in resources:
            resources["mem_mb"] = 1500
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    # the first status check after 1 s (the plugin then waits 10 s longer after each check that finds nothing done)
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1, "latency-wait": 5})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def _start_cluster() -> bool:
    """Start the test cluster; returns whether this test started daemons (and should stop them)."""
    if platform.system() != "Linux":
        pytest.skip("the SLURM test cluster needs Linux (Debian's slurm-wlm packages)")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster is installed and started as root; this test does not run as root")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and this machine has no apt-get to install it")
    was_up = subprocess.run(["bash", str(START), "status"], capture_output=True, text=True).stdout.count("up ") >= 3
    result = subprocess.run(
        ["bash", str(START)], capture_output=True, text=True, timeout=900, env={**os.environ, "SLURM_FAKE_GPUS": str(FAKE_GPUS)}
    )
    if result.returncode != 0:
        if "installing" in result.stderr and shutil.which("slurmctld") is None:
            pytest.skip(f"cannot install slurm-wlm with apt-get on this machine: {result.stderr.strip()[-500:]}")
        pytest.fail(f"the SLURM test cluster did not start:\n{result.stdout}\n{result.stderr}")
    return not was_up


def _snakemake(workdir: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env["PATH"] = os.environ.get("PATCHLESION_TEST_REAL_PATH", env["PATH"])  # the real scontrol (tests/conftest.py)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config.yaml"), *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def _metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    for key in ("provenance", "model"):  # where and how it ran, not what it computed
        metrics.pop(key)
    return metrics


@pytest.mark.slow
def test_demo_through_slurm_equals_the_local_demo(tmp_path):
    _require_request()
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="install the slurm extra: pip install -e '.[slurm]'")
    started = _start_cluster()
    try:
        cluster, local = tmp_path / "cluster", tmp_path / "local"
        cluster.mkdir(), local.mkdir()
        _test_profile(tmp_path / "profile")
        result = _snakemake(cluster, "--profile", str(tmp_path / "profile"), "--workflow-profile", "none", TARGET, "--config", *OVERRIDES)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        result = _snakemake(local, "--cores", "2", TARGET, "--config", *OVERRIDES)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    finally:
        if started:
            subprocess.run(["bash", str(START), "stop"], capture_output=True, timeout=120)

    runs = cluster / "results" / "synthetic" / "runs"
    produced = sorted(path.relative_to(runs) for path in runs.glob("*/fold*/metrics.json"))
    assert len(produced) == 5  # Table V of the demo: 5 runs x fold 1
    array_tasks = 0
    for relative in produced:
        assert _metrics(runs / relative) == _metrics(local / "results" / "synthetic" / "runs" / relative), relative
        pd.testing.assert_frame_equal(
            pd.read_csv(runs / relative.with_name("predictions.csv")),
            pd.read_csv(local / "results" / "synthetic" / "runs" / relative.with_name("predictions.csv")),
        )
        # Training ran as a SLURM job on an allocated (fake) GPU, evaluation too.
        machine = json.loads((runs / relative.with_name("run.json")).read_text())["machine"]
        assert machine.get("SLURM_JOB_ID") and machine.get("CUDA_VISIBLE_DEVICES") in {str(i) for i in range(FAKE_GPUS)}
        array_tasks += "SLURM_ARRAY_TASK_ID" in machine
        assert json.loads((runs / relative).read_text())["provenance"]["machine"].get("SLURM_JOB_ID")
        assert not (cluster / "results" / "synthetic" / "checkpoints" / relative.parent).exists()
    # The training jobs that became ready together went out as a job array (a lone job cannot be one).
    assert array_tasks >= len(produced) - 1
    pd.testing.assert_frame_equal(pd.read_csv(cluster / TARGET), pd.read_csv(local / TARGET))
    logs = cluster / "results" / "slurm_logs"
    assert any((logs / "rule_train").rglob("*.log")) and any((logs / "rule_evaluate").rglob("*.log"))

"""The execution profiles: SLURM cluster (profiles/slurm) and multi-GPU workstation (profiles/workstation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
WORKSTATION = yaml.safe_load((ROOT / "profiles" / "workstation" / "config.yaml").read_text())


def test_slurm_profile_requests_one_gpu_per_training_and_evaluation_job():
    assert SLURM["executor"] == "slurm"
    for rule in ("train", "evaluate"):
        resources = SLURM["set-resources"][rule]
        assert resources["gpu"] == 1 and resources["cpus_per_gpu"] >= 1 and resources["mem_mb"] >= 1000
        assert "attempt" in str(resources["runtime"])  # a retry after a wall-time kill gets more time
        assert resources["slurm_partition"] == "PATCHLESION_GPU_PARTITION"
    assert SLURM["default-resources"]["slurm_account"] == "PATCHLESION_ACCOUNT"
    assert SLURM["default-resources"]["slurm_partition"] == "PATCHLESION_PARTITION"
    assert SLURM["retries"] >= 1 and SLURM["rerun-incomplete"] is True
    assert SLURM["slurm-array-jobs"] == "train" and SLURM["slurm-keep-successful-logs"] is True
    assert SLURM["slurm-logdir"] == "results/slurm_logs"


def test_no_global_gpu_limit_reaches_a_cluster_run():
    # `gpu` is a global resource: a limit would let one GPU job run at a time on the whole cluster.
    assert "resources" not in SLURM
    # profiles/default/ would be loaded automatically on top of --profile profiles/slurm.
    assert not (ROOT / "profiles" / "default").exists() and not (ROOT / "workflow" / "profiles" / "default").exists()


def test_workstation_profile_limits_gpu_jobs():
    assert WORKSTATION["resources"]["gpu"] >= 1 and WORKSTATION["cores"] == "all"
    assert "executor" not in WORKSTATION


def _rule_blocks() -> dict[str, str]:
    """Rule (and checkpoint) name -> its text, from every workflow/rules/*.smk."""
    blocks = {}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        name = None
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] in ("rule", "checkpoint") and line.endswith(":"):  # also inside `if`
                name = words[1].rstrip(":")
                blocks[name] = ""
            elif name is not None:
                blocks[name] += line + "\n"
    return blocks


def test_every_set_resources_rule_exists():
    rules = set(_rule_blocks())
    assert set(SLURM["set-resources"]) <= rules and set(SLURM["set-threads"]) <= rules


def test_every_gpu_rule_gets_a_gpu_on_the_cluster():
    gpu_rules = {name for name, text in _rule_blocks().items() if "gpu=1" in text.replace(" ", "")}
    assert {"train", "evaluate", "official_test"} <= gpu_rules
    for rule in gpu_rules:
        resources = SLURM["set-resources"].get(rule, {})
        assert resources.get("gpu") == 1 and resources.get("slurm_partition") == "PATCHLESION_GPU_PARTITION", rule


@pytest.mark.parametrize("profile", ["slurm", "workstation"])
def test_profiles_plan_the_demo(tmp_path, profile):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config.yaml"),
               "--directory", str(tmp_path), "--profile", str(ROOT / "profiles" / profile), "--config", "preset=demo"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train" in result.stdout

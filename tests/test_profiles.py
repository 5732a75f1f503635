"""The execution profiles: SLURM cluster (profiles/slurm), multi-GPU workstation (profiles/workstation) and the
workflow profile that Snakemake loads by itself (profiles/default)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
WORKSTATION = yaml.safe_load((ROOT / "profiles" / "workstation" / "config.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
PLACEHOLDERS = ("PATCHLESION_ACCOUNT", "PATCHLESION_PARTITION", "PATCHLESION_GPU_PARTITION")


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
    # profiles/default/ is loaded automatically on top of --profile profiles/slurm, and wins key by key:
    # it only shows failed jobs' logs, a key neither machine profile sets.
    assert DEFAULT == {"show-failed-logs": True}
    assert not set(DEFAULT) & (set(SLURM) | set(WORKSTATION))
    assert not (ROOT / "workflow" / "profiles" / "default").exists()


def test_slurm_profile_comment_names_every_placeholder():
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert "fill in the three placeholders" in text
    assert all(text.count(placeholder) >= 2 for placeholder in PLACEHOLDERS)  # explained, then used


def test_workstation_profile_limits_gpu_jobs():
    assert WORKSTATION["resources"]["gpu"] >= 1 and WORKSTATION["cores"] == "all"
    assert "executor" not in WORKSTATION


def _rule_blocks() -> dict[str, str]:
    """Rule (and checkpoint) name -> its text, from every workflow/rules/*.smk; a rule made with
    ``use rule A as B with:`` gets A's text and its own."""
    blocks, copies = {}, {}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        name = None
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] in ("rule", "checkpoint") and line.endswith(":"):  # also inside `if`
                name = words[1].rstrip(":")
                blocks[name] = ""
            elif words[:2] == ["use", "rule"] and words[3:4] == ["as"] and line.endswith("with:"):
                name = words[4]
                blocks[name], copies[name] = "", words[2]
            elif name is not None:
                blocks[name] += line + "\n"
    for name, original in copies.items():
        blocks[name] = blocks[original] + blocks[name]
    return blocks


def test_every_set_resources_rule_exists():
    rules = set(_rule_blocks())
    assert set(SLURM["set-resources"]) <= rules and set(SLURM["set-threads"]) <= rules


def test_the_cost_plan_times_with_the_threads_and_device_the_training_jobs_get():
    threads, resources = SLURM["set-threads"], SLURM["set-resources"]
    assert threads["cost_plan"] == threads["train"]
    assert resources["cost_plan"]["slurm_partition"] == resources["train"]["slurm_partition"] and resources["cost_plan"]["gpu"] == 1


def test_every_gpu_rule_gets_a_gpu_on_the_cluster():
    gpu_rules = {name for name, text in _rule_blocks().items() if "gpu=1" in text.replace(" ", "")}
    assert {"train", "evaluate", "evaluate_derm7pt", "official_test"} <= gpu_rules
    for rule in gpu_rules:
        resources = SLURM["set-resources"].get(rule, {})
        assert resources.get("gpu") == 1 and resources.get("slurm_partition") == "PATCHLESION_GPU_PARTITION", rule


def _plan_demo(tmp_path, profile: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config.yaml"),
               "--directory", str(tmp_path), "--profile", str(profile), "--config", "preset=demo"]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("profile", ["slurm", "workstation"])
def test_profiles_plan_the_demo_beside_the_workflow_profile(tmp_path, profile):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    folder = ROOT / "profiles" / profile
    if profile == "slurm":  # as a user fills it in
        text = (folder / "config.yaml").read_text()
        for placeholder, value in zip(PLACEHOLDERS, ("lab42", "cpu", "gpu")):
            text = text.replace(placeholder, value)
        folder = tmp_path / "profile"
        folder.mkdir()
        (folder / "config.yaml").write_text(text)
    result = _plan_demo(tmp_path, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train" in result.stdout
    assert "workflow specific profile" in result.stderr and "profiles/default" in result.stderr


def test_unfilled_slurm_placeholders_stop_the_run_at_planning(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    result = _plan_demo(tmp_path, ROOT / "profiles" / "slurm")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(placeholder in errors[0] for placeholder in PLACEHOLDERS)
    assert "slurm_partition of train, evaluate, evaluate_derm7pt, official_test" in errors[0] and "profiles/slurm/config.yaml" in errors[0]
    assert "Job stats" not in result.stdout and not (tmp_path / "results").exists()

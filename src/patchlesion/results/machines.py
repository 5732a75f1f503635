"""The machines behind a report's numbers, from the provenance that training (``run.json``) and
evaluation (``metrics.json``) jobs record (:mod:`patchlesion.provenance`).

Numbers are bit-identical only when they are recomputed on the same machine with the same thread
count and library versions (docs/running.md §9), so the report says which machine(s) they came from.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

__all__ = ["job_machines", "machine_description", "machines_section"]

#: The versions that decide a result's last bits, in the order they are shown.
VERSIONS = (
    ("python", "Python"), ("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "NumPy"), ("pandas", "pandas"),
    ("scikit-learn", "scikit-learn"), ("pillow", "Pillow"), ("pretrainedmodels", "pretrainedmodels"),
)  # fmt: skip


def job_machines(runs: Path) -> list[tuple[str, str, str]]:
    """``(job, machine description, host name)`` of every fold's training and evaluation under ``runs``
    (``<run>/fold<k>/run.json`` and ``metrics.json``; one evaluation job evaluates every fold of its run
    and records each), in path order; files without provenance are skipped."""
    jobs = []
    for path in sorted(runs.glob("*/fold*/*.json")):
        if path.name not in ("run.json", "metrics.json"):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if path.name == "metrics.json":
            record = record.get("provenance") or {}
        if "machine" in record:
            job = f"{path.parent.parent.name} {path.parent.name} {'training' if path.name == 'run.json' else 'evaluation'}"
            jobs.append((job, machine_description(record), str(record["machine"].get("hostname", "?"))))
    return jobs


def machine_description(record: dict) -> str:
    """One line naming what a bit-identical rerun must match: CPU (model, identification, the SIMD
    kernels torch used), cores seen, torch threads, GPU with CUDA and cuDNN, and library versions."""
    machine, versions = record.get("machine", {}), record.get("versions", {})
    cpu = machine.get("cpu_model") or (machine.get("device_name") if machine.get("device") == "cpu" else None) or "unknown CPU"
    details = ", ".join(str(machine[key]) for key in ("cpu_id", "cpu_capability") if machine.get(key))
    text = f"{cpu}" + (f" ({details})" if details else "")
    threads = machine.get("torch_threads", "?")
    text += f", {machine.get('cores_available', machine.get('cores', '?'))} cores seen, {threads} torch thread{'' if threads == 1 else 's'}"
    gpu = machine.get("gpu_model") or (machine.get("device_name") if str(machine.get("device", "")).startswith("cuda") else None)
    if gpu:
        text += f", GPU {gpu} (CUDA {machine.get('cuda')}, cuDNN {machine.get('cudnn')})"
    else:
        text += ", no GPU"
    shown = [f"{label} {versions[key]}" for key, label in VERSIONS if versions.get(key)]
    return text + ("; " + ", ".join(shown) if shown else "; library versions not recorded")


def machines_section(folders: list[Path]) -> list[str]:
    """REPORT.md's "Machine" section for the runs under ``<folder>/runs`` of each of ``folders``."""
    jobs = [job for folder in folders for job in job_machines(folder / "runs")]
    lines = ["## Machine", ""]
    if not jobs:
        return lines + ["No `run.json` or `metrics.json` with provenance was found, so the machine is not known.", ""]
    counts = Counter(machine for _, machine, _ in jobs)
    hosts = len({host for _, _, host in jobs})
    if len(counts) == 1:
        where = "one machine" if hosts == 1 else f"{hosts} hosts of one kind (bit-identity is tested within one host only)"
        text = (
            f"{'The one training or evaluation' if len(jobs) == 1 else f'All {len(jobs)} fold trainings and evaluations'} behind these numbers "
            f"ran on {where}: {next(iter(counts))}. "
            "Rerun there with the same settings, threads and library versions, the numbers are bit-identical; "
            "another CPU, thread count or library version gives close, not equal ones (docs/running.md §9)."
        )
        return [*lines, text, ""]
    text = (
        f"The {len(jobs)} fold trainings and evaluations behind these numbers ran on {len(counts)} different machines. "
        "Numbers are bit-identical only when recomputed on the machine that made them, so a rerun will give close, "
        "not equal numbers (docs/running.md §9)."
    )
    lines += [text, "", "| machine | trainings and evaluations | hosts | e.g. |", "|---|---|---|---|"]
    for machine, count in counts.most_common():
        example = next(job for job, where, _ in jobs if where == machine)
        on = len({host for _, where, host in jobs if where == machine})
        lines.append(f"| {machine} | {count} | {on} | {example} |")
    return [*lines, ""]

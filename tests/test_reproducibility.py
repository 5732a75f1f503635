"""What docs/running.md §9 promises: one job run twice on one machine, with the same settings and
threads, gives bit-identical outputs; run.json and REPORT.md name the machine the numbers came from."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from patchlesion.cli import main
from patchlesion.results.report import write_report

SRC = Path(__file__).resolve().parents[1] / "src"
# Ordered crops with attention, patch dropout and loss weighting: model initialisation, the sampler,
# crops, flips, jitter and patch dropout all draw random numbers.
RUN = "tiny-ordered-nc4-mean-loss_weighting-k1-att_initial-pd0.2"
THREADS = 3  # not the core count of the machines we test on, so a recorded default would show
GEOMETRY = ["--image-size", "64", "48", "--crop-size", "24", "--device", "cpu", "--threads", str(THREADS)]
SETTINGS = ["--epochs", "3", "--batch-size", "6", "--learning-rate", "0.003", "--lr-halving-epochs", "2",
            "--validation-every", "1", *GEOMETRY]  # fmt: skip
#: What may differ between two runs of one job: how long it took.
TIMING = {"run.json": {"wall_seconds", "epoch_seconds"}, "history.csv": {"seconds"}}


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """The data, and one training job run twice, each time in a fresh process with another
    string-hash seed (so no set or dict order can leak into the result); each model evaluated."""
    root = tmp_path_factory.mktemp("twice")
    assert main(["synthesize", "--out", str(root / "data"), "--n-images", "90", "--image-size", "64", "48", "--seed", "4"]) == 0
    assert main(["index", "--data-dir", str(root / "data"), "--out", str(root / "index.csv")]) == 0
    assert main(["split", "--index", str(root / "index.csv"), "--out", str(root / "split.csv")]) == 0
    data = ["--index", str(root / "index.csv"), "--split", str(root / "split.csv"), "--fold", "1", "--run", RUN]
    for name, hash_seed in (("a", "1"), ("b", "2")):
        out = root / name
        _run(["train", *data, "--out-dir", str(out), *SETTINGS], hash_seed)
        evaluation = ["evaluate", *data, "--model", str(out / "model.pt"), "--predictions", str(out / "predictions.csv"),
                      "--metrics", str(out / "metrics.json"), *GEOMETRY]  # fmt: skip
        assert main(evaluation) == 0
    return root


def _run(arguments: list[str], hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "patchlesion.cli", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr


def _state_bytes(path: Path) -> dict[str, tuple]:
    """Every tensor of a state dict as (dtype, shape, raw bytes): equal only if bit-equal (-0.0 != 0.0)."""
    state = torch.load(path, weights_only=True)
    return {key: (value.dtype, tuple(value.shape), value.contiguous().view(-1).view(torch.uint8).numpy().tobytes()) for key, value in state.items()}


def _csv_without(path: Path, columns: set[str]) -> list[list[str]]:
    """The CSV's cells as written (strings, not parsed numbers), without the given columns."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if name not in columns]
    return [[row[i] for i in keep] for row in rows]


def test_one_job_twice_gives_bit_identical_outputs(twice):
    a, b = twice / "a", twice / "b"
    for name in ("model.pt", "model_last.pt"):
        first, second = _state_bytes(a / name), _state_bytes(b / name)
        assert first.keys() == second.keys() and first, name
        differing = [key for key in first if first[key] != second[key]]
        assert not differing, f"{name}: tensors differ: {differing[:5]}"
    # The only columns of history.csv that may differ are timings; everything else byte-equal.
    history = _csv_without(a / "history.csv", TIMING["history.csv"])
    assert history[0] == ["epoch", "learning_rate", "train_loss", "val_mc_sensitivity", "val_mc_specificity", "val_f1", "val_accuracy", "best"]
    assert len(history) == 1 + 3 and history == _csv_without(b / "history.csv", TIMING["history.csv"])
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    record_a, record_b = (json.loads((folder / "run.json").read_text()) for folder in (a, b))
    for key in TIMING["run.json"]:
        assert record_a.pop(key) is not None and record_b.pop(key) is not None
    assert record_a == record_b  # settings, seed, provenance: the same machine, the same record
    metrics_a, metrics_b = (json.loads((folder / "metrics.json").read_text()) for folder in (a, b))
    for metrics in (metrics_a, metrics_b):
        metrics["provenance"].pop("wall_seconds")
        metrics.pop("model"), metrics["provenance"].pop("training")  # the paths of each copy's model.pt and run.json
    assert metrics_a == metrics_b


def _cpuinfo_model_name() -> str:
    """The first "model name" of /proc/cpuinfo, read here independently of patchlesion.provenance."""
    match = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), flags=re.MULTILINE)
    return match.group(1).strip()


@pytest.mark.skipif(platform.system() != "Linux", reason="reads the CPU model from /proc/cpuinfo (Linux)")
def test_run_json_and_report_name_the_machine(twice):
    record = json.loads((twice / "a" / "run.json").read_text())
    machine, versions = record["machine"], record["versions"]
    cpu = _cpuinfo_model_name()
    assert machine["cpu_model"] == cpu and machine["device_name"] == cpu and machine["gpu_model"] is None
    assert machine["torch_threads"] == THREADS  # --threads, not the machine's default
    assert machine["cores"] == os.cpu_count() and machine["cores_available"] == len(os.sched_getaffinity(0))
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cuda"] is None and machine["cudnn"] is None, "CUDA was not used"
    assert versions["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    for package in ("torch", "torchvision", "numpy", "pandas", "scikit-learn", "pillow", "pretrainedmodels"):
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = None
        assert versions[package] == installed, package

    # REPORT.md: the machine of the jobs behind the tables, one sentence when there is one machine.
    results = twice / "results"
    fold = results / "synthetic" / "runs" / RUN / "fold1"
    shutil.copytree(twice / "a", fold)
    text = write_report(results, "synthetic", "demo", results / "REPORT.md")
    section = text.split("## Machine")[1].split("## Skipped")[0]
    assert "All 2 fold trainings and evaluations behind these numbers ran on one machine" in section
    assert cpu in section and f"{len(os.sched_getaffinity(0))} cores seen, {THREADS} torch threads, no GPU" in section
    assert f"torch {metadata.version('torch')}" in section and f"NumPy {metadata.version('numpy')}" in section
    assert f"Python {versions['python']}" in section and "docs/running.md §9" in section


def test_report_lists_every_machine_when_runs_came_from_several(twice, tmp_path):
    results = tmp_path / "results"
    for run, threads in (("tiny-multi_crop-nc9-mean-none", 1), ("tiny-downsampling-nc1-mean-none", 4)):
        for fold in (1, 2):
            folder = results / "synthetic" / "runs" / run / f"fold{fold}"
            folder.mkdir(parents=True)
            record = json.loads((twice / "a" / "run.json").read_text())
            record["machine"]["torch_threads"] = threads
            (folder / "run.json").write_text(json.dumps(record))
    text = write_report(results, "synthetic", "demo", results / "REPORT.md")
    section = text.split("## Machine")[1].split("## Skipped")[0]
    assert "The 4 fold trainings and evaluations behind these numbers ran on 2 different machines" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "torch thread" in line]
    assert len(rows) == 2 and sorted(re.search(r"(\d+) torch threads?,", row).group(1) for row in rows) == ["1", "4"]
    assert all("| 2 | 1 |" in row for row in rows), "two trainings on one host each"

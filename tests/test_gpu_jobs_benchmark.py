"""benchmarks/gpu_jobs.py: the arithmetic worked by hand, the skip without a GPU, and its concurrent
jobs run for real on the CPU with a tiny model (docs/performance.md §6)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_jobs_benchmark", ROOT / "benchmarks" / "gpu_jobs.py")
gpu_jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_jobs)

#: The smallest real run: the tiny CNN on 2 crops of 16 px, batch 2, 2 timed steps per job.
TINY = ["--device", "cpu", "--force", "--backbone", "tiny", "--crop-size", "16", "--n-crops", "2", "--batch", "2", "--steps", "2"]


def test_aggregate_rate_is_all_images_over_the_whole_span():
    # two jobs of 150 images: the first runs 10.0-40.0 s, the second 10.5-41.0 s -> 300 images in 31 s
    jobs = [{"images": 150, "start": 10.0, "end": 40.0}, {"images": 150, "start": 10.5, "end": 41.0}]
    assert gpu_jobs.aggregate_rate(jobs) == pytest.approx(300 / 31)  # 9.677, not 150/30 + 150/30.5 = 9.918


@pytest.mark.parametrize(
    ("rates", "margin", "best"),
    [
        ({1: 100.0, 2: 180.0, 4: 185.0}, 0.05, 2),  # 0.95 x 185 = 175.75 <= 180: J = 4 is not worth it
        ({1: 100.0, 2: 180.0, 4: 200.0}, 0.05, 4),  # 0.95 x 200 = 190 > 180
        ({1: 100.0, 2: 100.0}, 0.0, 1),  # a tie: the smaller J
        ({1: 100.0, 2: None, 4: 90.0}, 0.05, 1),  # J = 2 failed (e.g. out of memory)
        ({1: None, 2: None}, 0.05, None),
    ],
)
def test_best_j_is_the_smallest_within_the_margin_of_the_highest(rates, margin, best):
    assert gpu_jobs.best_jobs(rates, margin) == best


@pytest.mark.parametrize("argv", [[], ["--device", "cpu"]])
def test_without_a_gpu_it_says_it_was_skipped(monkeypatch, capsys, argv):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(gpu_jobs, "run_concurrently", lambda *args: pytest.fail("no job may start"))
    assert gpu_jobs.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_jobs: skipped: no CUDA device") and "J=" not in out


def test_two_jobs_run_side_by_side_and_start_timing_together(monkeypatch, capsys):
    runs, run = [], gpu_jobs.run_concurrently
    monkeypatch.setattr(gpu_jobs, "run_concurrently", lambda *args: runs.append(run(*args)) or runs[-1])
    assert gpu_jobs.main([*TINY, "--jobs", "2"]) == 0
    [reports] = runs
    assert [report["images"] for report in reports] == [4, 4]  # 2 steps x batch 2 each
    assert min(report["start"] for report in reports) >= max(report["ready"] for report in reports)  # both warm before either times
    rate = 8 / (max(report["end"] for report in reports) - min(report["start"] for report in reports))
    out = capsys.readouterr().out
    assert f"J=2: {rate:8.2f} images/s in all, {rate / 2:8.2f} per job" in out
    assert out.strip().endswith("best J: 2  (config: gpu_jobs_per_device=2; snakemake --resources gpu=<GPUs x 2>)")


def test_a_job_that_fails_is_reported_and_left_out(capsys):
    assert gpu_jobs.main([*TINY, "--backbone", "resnet9000", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "J=1: failed (exit status 1: " in out and "resnet9000" in out and "best J: none" in out


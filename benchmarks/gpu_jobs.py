"""Several training jobs on one GPU (issue 13): aggregate training throughput of J concurrent jobs.

    python benchmarks/gpu_jobs.py                      # on a GPU: J = 1, 2, 4 on the first device, 1-3 minutes
    python benchmarks/gpu_jobs.py --jobs 1 2 3 4 6 --steps 80 --device cuda:1
    python benchmarks/gpu_jobs.py --device cpu --force --backbone tiny --crop-size 32 --steps 3   # the orchestration on a CPU

The paper's batch (5 images x 9 crops of 224 px) leaves most of a modern GPU idle, so several
training jobs may share one (``gpu_jobs_per_device``, docs/running.md §2). For each J this starts J
training processes on one device at once, as the workflow's jobs would run. Each builds the model
(default: DenseNet121, Ordered-Crop NC = 9, initial attention, batch 5, random weights,
``amp``/``channels_last`` = auto, one CPU thread as a workflow job) and a pool of synthetic batches
on the device (no data set, no download; the input pipeline's augmentation is not included), takes
warm-up steps, says it is ready, waits until all J are, then times ``--steps`` optimizer steps.

Aggregate throughput of J = all images of the J jobs / (the last job's end - the first job's start).
Per J it prints that, the images/s of one job, the speed-up over the smallest J and the peak memory
of a job (CUDA allocator, reserved: a job needs this plus the CUDA context, about 0.5 GB). The last
line is ``best J: <J>``: the smallest J within ``--margin`` (5 %) of the highest aggregate, since
more jobs cost memory and give each job's results later. A J whose jobs fail (out of memory) is
reported and left out. Without a CUDA device it prints that it was skipped and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # run from a checkout without installing

READY, GO = "ready", "go"


def aggregate_rate(results: list[dict]) -> float:
    """Images/s of jobs that ran side by side: all their images over the span from the first start
    to the last end (each result: ``images``, ``start``, ``end`` in seconds of one clock)."""
    span = max(result["end"] for result in results) - min(result["start"] for result in results)
    return sum(result["images"] for result in results) / span


def best_jobs(rates: dict[int, float | None], margin: float = 0.05) -> int | None:
    """The smallest J whose aggregate images/s is within ``margin`` of the highest (None: J failed)."""
    measured = {jobs: rate for jobs, rate in rates.items() if rate is not None}
    if not measured:
        return None
    highest = max(measured.values())
    return min(jobs for jobs, rate in measured.items() if rate >= (1 - margin) * highest)


class JobsFailed(RuntimeError):
    """A job of a concurrent run ended before reporting (e.g. out of GPU memory)."""


def run_concurrently(jobs: int, worker_options: list[str], timeout: float) -> list[dict]:
    """Start ``jobs`` worker processes, let them start timing together once all are warm, and
    return their reports; raise JobsFailed with the last line a failed worker wrote."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker_options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="patchlesion-gpu-jobs-") as tmp:
        logs = [open(Path(tmp) / f"job{k}.log", "w+") for k in range(jobs)]  # stderr of each job (closed below)
        workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env) for log in logs]
        deadline = time.monotonic() + timeout
        try:
            for worker, log in zip(workers, logs):
                if worker.stdout.readline().strip() != READY:
                    raise JobsFailed(_last_line(worker, log))
            for worker in workers:  # all warm: start timing together
                worker.stdin.write(GO + "\n")
                worker.stdin.flush()
            reports = []
            for worker, log in zip(workers, logs):
                line = worker.stdout.readline()
                if worker.wait(timeout=max(1.0, deadline - time.monotonic())) != 0 or not line.strip():
                    raise JobsFailed(_last_line(worker, log))
                reports.append(json.loads(line))
            return reports
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait()
            for log in logs:
                log.close()


def _last_line(worker: subprocess.Popen, log) -> str:
    worker.wait()
    log.seek(0)
    lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    return f"exit status {worker.returncode}: {lines[-1] if lines else 'no output'}"


def worker(args: argparse.Namespace) -> None:
    """One training job: warm up, report ready, wait for go, time ``args.steps`` steps, report."""
    import torch

    from patchlesion.engine.accel import Acceleration
    from patchlesion.engine.settings import TrainSettings
    from patchlesion.method.classes import CLASSES
    from patchlesion.method.model import build_model
    from patchlesion.method.runs import RunSpec

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = RunSpec(backbone=args.backbone, strategy="ordered", n_crops=args.n_crops, attention="initial", patch_dropout=0.1)
    accel = Acceleration.from_settings(TrainSettings(), device)
    torch.manual_seed(0)
    model = build_model(spec, len(CLASSES)).to(device)
    forward, scaler = accel.prepare(model), accel.grad_scaler()
    optimizer = torch.optim.Adam(model.parameters(), lr=1.25e-5)
    criterion = torch.nn.CrossEntropyLoss()
    pool = [accel.input(torch.rand(args.batch, args.n_crops, 3, args.crop_size, args.crop_size, device=device)) for _ in range(4)]
    targets = torch.randint(0, len(CLASSES), (args.batch,), device=device)

    def step(k: int) -> None:
        with accel.autocast():
            loss = criterion(forward(pool[k % len(pool)]), targets)  # crops (B, N, 3, s, s) -> logits (B, classes)
        optimizer.zero_grad(set_to_none=True)
        accel.backward_step(loss, optimizer, scaler)
        loss.item()  # as the training loop: one synchronisation per step

    for k in range(args.warm_up):  # cuDNN autotuning, allocator, lazy initialisation
        step(k)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    ready = time.time()
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        return
    start = time.time()
    for k in range(args.steps):
        step(k)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.time()
    peak = torch.cuda.max_memory_reserved(device) / 1e9 if device.type == "cuda" else 0.0
    total = torch.cuda.get_device_properties(device).total_memory / 1e9 if device.type == "cuda" else 0.0
    report = {"images": args.steps * args.batch, "ready": ready, "start": start, "end": end, "peak_gb": peak, "device_gb": total}
    print(json.dumps(report), flush=True)


def worker_options(args: argparse.Namespace, device: str, steps: int, warm_up: int) -> list[str]:
    """The command-line options of each worker process."""
    shape = ["--backbone", args.backbone, "--n-crops", str(args.n_crops), "--crop-size", str(args.crop_size), "--batch", str(args.batch)]
    return ["--device", device, *shape, "--threads", str(args.threads), "--steps", str(steps), "--warm-up", str(warm_up)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--jobs", type=int, nargs="+", default=[1, 2, 4], metavar="J", help="numbers of concurrent jobs to measure (default 1 2 4)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per job (default 40 on CUDA, 2 on the CPU)")
    parser.add_argument("--warm-up", type=int, default=None, help="untimed steps per job first (default 5 on CUDA, 1 on the CPU)")
    parser.add_argument("--device", default="auto", help="auto (the first CUDA device), cuda, cuda:1, ...; cpu only with --force")
    parser.add_argument("--force", action="store_true", help="run on the CPU too (to check the orchestration; the figures mean little)")
    parser.add_argument("--backbone", default="densenet121", help="densenet121 (default), inception_v3, se_resnext50, tiny")
    parser.add_argument("--n-crops", type=int, default=9, help="crops per image, NC (default 9)")
    parser.add_argument("--crop-size", type=int, default=224, help="crop size in pixels (default 224)")
    parser.add_argument("--batch", type=int, default=5, help="images per batch (default 5, the paper's)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per job (default 1, as a workflow job)")
    parser.add_argument(
        "--margin", type=float, default=0.05, help="best J: the smallest within this fraction of the highest (default 0.05)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds one J may take (default 600)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure each J and print the best; the exit status (0 also when skipped: no CUDA device)."""
    args = parse_args(argv)
    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device in ("auto", "cpu") and not args.force:
        print("gpu_jobs: skipped: no CUDA device here (it measures J training jobs sharing one GPU; "
              "--device cpu --force runs it on the CPU to check the orchestration)")  # fmt: skip
        return 0
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        print(f"gpu_jobs: error: --device {device}, but CUDA is not available here; use --device auto.", file=sys.stderr)
        return 2
    device = "cpu" if device == "auto" else device
    steps = args.steps or (40 if on_cuda else 2)
    warm_up = args.warm_up if args.warm_up is not None else (5 if on_cuda else 1)
    name = torch.cuda.get_device_name(torch.device(device)) if on_cuda else "CPU"
    print(f"gpu_jobs: {args.backbone}, Ordered-Crop NC = {args.n_crops}, initial attention, batch {args.batch}, "
          f"{args.crop_size} px; {steps} timed steps per job after {warm_up}; device {device} ({name}), torch {torch.__version__}", flush=True)  # fmt: skip
    options = worker_options(args, device, steps, warm_up)
    rates: dict[int, float | None] = {}
    for jobs in sorted(set(args.jobs)):
        started = time.monotonic()
        try:
            reports = run_concurrently(jobs, options, args.timeout)
        except (JobsFailed, subprocess.TimeoutExpired) as error:
            rates[jobs] = None
            print(f"J={jobs}: failed ({error})", flush=True)
            continue
        rates[jobs] = aggregate_rate(reports)
        baseline = rates[min(rates)] if rates[min(rates)] else None
        speedup = f", {rates[jobs] / baseline:.2f}x J={min(rates)}" if baseline else ""
        memory = f"; peak per job {max(r['peak_gb'] for r in reports):.2f} GB of {reports[0]['device_gb']:.0f} GB" if on_cuda else ""
        print(f"J={jobs}: {rates[jobs]:8.2f} images/s in all, {rates[jobs] / jobs:8.2f} per job{speedup}{memory} "
              f"({time.monotonic() - started:.0f} s with start-up)", flush=True)  # fmt: skip
    best = best_jobs(rates, args.margin)
    if best is None:
        print("best J: none (every J failed)")
        return 1
    print(f"best J: {best}  (config: gpu_jobs_per_device={best}; snakemake --resources gpu=<GPUs x {best}>)")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        worker(parse_args(sys.argv[1:]))
    else:
        sys.exit(main())

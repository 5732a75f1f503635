"""Input pipeline and training-step benchmark (issue 7), measured in one run on one machine.

    python benchmarks/loader.py                       # CPU or the first CUDA device
    python benchmarks/loader.py --images 400 --workers 4 --rounds 5 --train-steps 20

It writes its own 600x450 JPEGs (the synthetic HAM10000-like generator) into a temporary folder and
measures, alternating the two paths round by round so that both see the same machine load:

(a) loader throughput, images/s, of Ordered-Crop training batches of 5 images x 9 crops x 3 x 224 x
    224 with flips, brightness/saturation jitter and patch dropout (p_d = 0.1):
    - baseline, the released code's approach: a torch DataLoader with W worker processes, each
      sample a PIL decode of the JPEG, torchvision's RandomHorizontalFlip, RandomVerticalFlip and
      ColorJitter on the PIL image, ToTensor, the 9 crops copied into a zero tensor unless dropped;
    - ours: the decoded uint8 cache (``patchlesion prepare``), held once as planar uint8 on the
      device as training does (RAM, or GPU memory when it fits), flips, jitter, crops and patch
      dropout as tensor operations (on the GPU when there is one; on the CPU spread over W forked
      processes that write into one shared-memory batch);
(b) training-step throughput (images/s) of DenseNet121, NC = 9, batch 5, initial attention, from
    random weights: eager fp32 against our setting (``amp``/``channels_last`` = auto: bfloat16
    autocast and channels-last on CUDA; on the CPU also the opt-in channels-last and bfloat16);
(c) peak memory: resident set size of the main process and of the loader workers, and the CUDA
    allocator's peak per training setting.

The last line is ``loader speedup: <ratio>x`` (median images/s of ours over the baseline's).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from patchlesion.data.cache import ImageCache, prepare_cache  # noqa: E402
from patchlesion.data.ham10000 import read_dataset  # noqa: E402
from patchlesion.data.synthetic import MIN_IMAGES_PER_CLASS, REAL_IMAGES_PER_CLASS, make_synthetic_ham10000  # noqa: E402
from patchlesion.engine.accel import Acceleration  # noqa: E402
from patchlesion.engine.batches import TrainingInput  # noqa: E402
from patchlesion.engine.settings import TrainSettings
from patchlesion.method.classes import CLASSES  # noqa: E402
from patchlesion.method.crops import crop_grid  # noqa: E402
from patchlesion.method.model import build_model  # noqa: E402
from patchlesion.method.runs import RunSpec  # noqa: E402
from patchlesion.method.strategies import get_strategy  # noqa: E402

IMAGE_SIZE = (600, 450)
CROP = 224
N_CROPS = 9
BATCH = 5
PATCH_DROPOUT = 0.1
#: Paper grid (README "Job counts"): training jobs, epochs, training and validation images per fold.
GRID_JOBS, EPOCHS, TRAIN_IMAGES, VAL_IMAGES, VALIDATIONS = 216, 50, 5003, 2501, 11


class ReleasedCodeDataset(torch.utils.data.Dataset):
    """Per-sample PIL decode and PIL/torchvision augmentation, as the authors' ``ISICDataset_custom``
    with ordered crops and patch dropout (docs/method.md §3.2, §6): the baseline."""

    def __init__(self, paths: list[str]):
        from torchvision import transforms

        self.paths = paths
        self.augment = transforms.Compose([
            transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(),
            transforms.ColorJitter(brightness=32 / 255, saturation=0.5), transforms.ToTensor(),
        ])  # fmt: skip
        self.grid = crop_grid(N_CROPS, IMAGE_SIZE, CROP)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            whole = self.augment(image.convert("RGB"))  # (3, H, W) float in [0, 1]
        crops = torch.zeros(N_CROPS, 3, CROP, CROP)
        keep = torch.rand(N_CROPS) >= PATCH_DROPOUT
        for k, (row, col) in enumerate(self.grid):
            if keep[k]:
                crops[k] = whole[:, row : row + CROP, col : col + CROP]
        return crops, 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline_epoch(loader, device: torch.device) -> float:
    """Images/s of one pass of the baseline DataLoader (batches moved to the device)."""
    started, seen = time.perf_counter(), 0
    for crops, _ in loader:
        crops = crops.to(device, non_blocking=True)
        seen += len(crops)
    _sync(device)
    return seen / (time.perf_counter() - started)


def our_epoch(batches: TrainingInput, n_images: int, generator: torch.Generator, device: torch.device) -> float:
    """Images/s of one pass of our input over the cache in random order."""
    order = torch.randperm(n_images, generator=generator)
    started = time.perf_counter()
    for _, crops in batches.iterate(order, BATCH, generator):  # as the training loop consumes it
        assert crops.shape[1:] == (N_CROPS, 3, CROP, CROP)
    _sync(device)
    return n_images / (time.perf_counter() - started)


def step_throughput(device: torch.device, setting: dict, steps: int, batches: TrainingInput, generator) -> tuple[float, float]:
    """Images/s of DenseNet121 NC = 9 training steps under ``setting`` (TrainSettings fields), and the
    CUDA allocator's peak in GB (0 on the CPU)."""
    spec = RunSpec(backbone="densenet121", strategy="ordered", n_crops=N_CROPS, attention="initial", patch_dropout=PATCH_DROPOUT)
    accel = Acceleration.from_settings(TrainSettings(**setting), device)
    torch.manual_seed(0)
    model = build_model(spec, len(CLASSES)).to(device)
    forward, scaler = accel.prepare(model), accel.grad_scaler()
    optimizer = torch.optim.Adam(model.parameters(), lr=1.25e-5)
    criterion = torch.nn.CrossEntropyLoss()
    batches.channels_last = accel.channels_last
    target = torch.randint(0, len(CLASSES), (BATCH,), generator=generator).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings, warm_up = [], 2 if device.type == "cuda" else 1  # cuDNN autotuning, compilation, allocator
    for step in range(steps + warm_up):
        started = time.perf_counter()
        crops = batches(torch.randint(0, len(batches.images), (BATCH,), generator=generator), generator)
        with accel.autocast():
            loss = criterion(forward(crops), target)
        optimizer.zero_grad(set_to_none=True)
        accel.backward_step(loss, optimizer, scaler)
        loss.item()
        if step >= warm_up:
            timings.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else 0.0
    batches.channels_last = False
    return BATCH / statistics.median(timings), peak


def _rss_gb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1e6  # kB on Linux


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cores} CPU cores ({cpu}), torch {torch.__version__}"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser.add_argument("--images", type=int, default=200, help="synthetic 600x450 JPEGs to load (default 200)")
    parser.add_argument("--workers", type=int, default=cores, help="DataLoader workers of the baseline = our threads (default: the cores)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per path (default 3)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps per setting (default 2 on the CPU, 20 on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--skip-training", action="store_true", help="only the loader benchmark (a)")
    args = parser.parse_args(argv)
    fewest = MIN_IMAGES_PER_CLASS * len(REAL_IMAGES_PER_CLASS)  # the synthetic set's smallest size
    if args.images < fewest:
        parser.error(f"--images {args.images}: the synthetic set needs at least {fewest} images ({MIN_IMAGES_PER_CLASS} of each class)")
    for option, value in (("--rounds", args.rounds), ("--train-steps", args.train_steps)):
        if value is not None and value < 1:
            parser.error(f"{option} {value}: give 1 or more")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    workers = max(1, args.workers)
    print(f"machine: {_machine(device)}; device {device}; {workers} workers/threads", flush=True)

    with tempfile.TemporaryDirectory(prefix="patchlesion-bench-") as tmp:
        started = time.perf_counter()
        make_synthetic_ham10000(Path(tmp) / "data", n_images=args.images, image_size=IMAGE_SIZE, seed=0)
        index = read_dataset(Path(tmp) / "data", verify_images=False)
        jpeg_mb = sum(Path(p).stat().st_size for p in index["path"]) / len(index) / 1e3
        print(f"wrote {len(index)} JPEGs of {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} (mean {jpeg_mb:.0f} kB) in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        prepare_cache(index, IMAGE_SIZE, Path(tmp) / "cache", threads=workers)
        print(f"prepare: decoded them into the uint8 cache in {time.perf_counter() - started:.2f} s", flush=True)

        generator = torch.Generator().manual_seed(0)
        spec = RunSpec(backbone="densenet121", strategy="ordered", n_crops=N_CROPS, attention="initial", patch_dropout=PATCH_DROPOUT)
        source = ImageCache(Path(tmp) / "cache").select(list(index["image_id"]))
        started = time.perf_counter()
        ours = TrainingInput(source, get_strategy("ordered"), spec, CROP, device, processes=workers if device.type == "cpu" else 0)
        where = "not resident: batches read from the cache" if ours.resident is None else f"resident on {ours.resident.device}"
        print(f"training images loaded from the cache ({where}) in {time.perf_counter() - started:.2f} s", flush=True)
        dataset = ReleasedCodeDataset(list(index["path"]))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=True,
            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

        threads = torch.get_num_threads()
        baseline_rates, our_rates = [], []
        baseline_epoch(loader, device)  # warm-up: starts the workers, fills the page cache
        torch.set_num_threads(1)  # our CPU path parallelises over samples, not inside each operation
        our_epoch(ours, len(index), generator, device)  # warm-up: starts the sample processes
        for round_ in range(args.rounds):
            torch.set_num_threads(threads)
            baseline_rates.append(baseline_epoch(loader, device))
            torch.set_num_threads(1)
            our_rates.append(our_epoch(ours, len(index), generator, device))
            print(f"round {round_ + 1}: baseline {baseline_rates[-1]:7.1f} images/s   ours {our_rates[-1]:7.1f} images/s", flush=True)
        torch.set_num_threads(threads)
        baseline, fast = statistics.median(baseline_rates), statistics.median(our_rates)
        ours.close()
        worker_rss = _rss_gb(resource.RUSAGE_CHILDREN)
        del loader
        print(f"(a) loader, {BATCH} images x {N_CROPS} crops x 3 x {CROP} x {CROP}, augmentation + patch dropout, {workers} workers:")
        print(f"    baseline (PIL decode + PIL/torchvision per sample, DataLoader): {baseline:8.1f} images/s (median of {args.rounds})")
        print(f"    ours (uint8 cache + batched tensor ops on {device.type}):          {fast:8.1f} images/s (median of {args.rounds})")

        if not args.skip_training:
            steps = args.train_steps or (20 if device.type == "cuda" else 2)
            if device.type == "cuda":
                settings = {"fp32 eager": {"amp": "false", "channels_last": "false"}, "ours (auto)": {}}
            else:  # auto is fp32 eager on the CPU; the opt-in switches show what they would give
                settings = {"fp32 eager = ours (auto)": {"amp": "false", "channels_last": "false"},
                            "channels_last + bf16 (opt-in)": {"channels_last": "true", "amp": "true"}}  # fmt: skip
            print(f"(b) training steps, DenseNet121 NC = {N_CROPS}, batch {BATCH}, {steps} timed steps each:")
            rates = {}
            for name, setting in settings.items():
                described = Acceleration.from_settings(TrainSettings(**setting), device).describe()
                rates[name], peak = step_throughput(device, setting, steps, ours, generator)
                extra = f", CUDA peak {peak:.2f} GB" if device.type == "cuda" else ""
                print(f"    {name:30s} {rates[name]:7.2f} images/s  ({described}){extra}", flush=True)
            eager, best = rates[next(iter(settings))], rates[list(settings)[-1]]
            print(f"    training-step speedup of {list(settings)[-1]} over fp32 eager: {best / eager:.2f}x")
            rates["ours (auto)"] = rates.get("ours (auto)", eager)
            per_image = 1 / rates["ours (auto)"]
            epoch_s = TRAIN_IMAGES * per_image
            hours = GRID_JOBS * (EPOCHS * epoch_s + VALIDATIONS * VAL_IMAGES * per_image / 3) / 3600
            unit = "GPU" if device.type == "cuda" else "CPU"
            print(f"    projected: {epoch_s / 60:.1f} min per HAM10000 training epoch ({TRAIN_IMAGES} images); paper grid "
                  f"({GRID_JOBS} jobs x {EPOCHS} epochs, DenseNet121-priced, validation at 1/3 the cost) "
                  f"~{hours:,.0f} {unit}-hours")  # fmt: skip
        print(f"(c) peak memory: main process RSS {_rss_gb(resource.RUSAGE_SELF):.2f} GB, largest loader worker RSS {worker_rss:.2f} GB")
    ratio = fast / baseline
    print(f"loader speedup: {ratio:.1f}x")
    return ratio


if __name__ == "__main__":
    main()

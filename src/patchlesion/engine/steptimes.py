"""Step times of a grid's model shapes, measured on this machine's device: the input of the cost
plan (:mod:`patchlesion.engine.cost`; docs/performance.md §8).

Each distinct shape is timed through the code the jobs run: training steps through
:func:`patchlesion.engine.training.train_step` on batches from
:class:`patchlesion.engine.batches.TrainingInput` (augmentation and crops included), evaluation
batches through :func:`patchlesion.engine.inference.predict_probabilities`, the resume checkpoint
through :func:`patchlesion.engine.checkpoint.save_checkpoint`. The images are random uint8 rows of
the configured size held as the decoded cache holds them (step times do not depend on the pixels).
A job's fixed start-up (interpreter, imports, model build, model file) is the wall time of a
``python`` subprocess that does just that. On the CPU, the shapes are timed side by side, one
process per ``threads`` cores: a CPU machine runs its jobs that way (one per core at the workflow's
one thread), so the times include their contention for memory.

What is the same computation is timed once (docs/performance.md §8): an evaluation batch is split
into the backbone's forward over its crops, timed once per backbone and crops per batch
(:func:`patchlesion.engine.cost.forward_shape`) on the very tensor the backbone receives, and the
rest (input crops, normalisation, attention, head), timed per shape through ``predict_probabilities``
with the backbone replaced by a stand-in that returns its features (:class:`_Replay`); a checkpoint
write is timed once per set of tensors written (:func:`patchlesion.engine.cost.checkpoint_shape`).

Warm-up before timing: on CUDA three full steps per shape (lazy initialisation, cuDNN, the caching
allocator); on the CPU one training step of two images (one crop each with the plain strategies,
whose batch norm needs two values per channel when a backbone's last feature map is 1 x 1), once per
process, which touches the lazy initialisation at a fraction of the cost (a later shape's first timed step also allocates Adam's
moments, docs/performance.md §8; one full step per shape with ``compile``, which compiles again for
another batch size). An evaluation batch's rest is warmed up by the call that computes the
stand-in's features, which also runs the backbone once on the CPU. Each time
is the median of the timed steps (robust to a busy machine); by default as many steps as fit in
about :data:`TARGET_SECONDS`, at least one and at most :data:`MAX_STEPS`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from patchlesion.data.cache import CachedImages
from patchlesion.engine.accel import Acceleration, resolve_device
from patchlesion.engine.batches import TrainingInput
from patchlesion.engine.checkpoint import save_checkpoint, training_state
from patchlesion.engine.cost import StepTimes, checkpoint_shape, distinct_shapes, evaluation_shape, forward_shape, training_shape
from patchlesion.engine.inference import evaluation_batch_images, load_state, predict_probabilities, save_state
from patchlesion.engine.memory import keep_freed_memory
from patchlesion.engine.optim import Adam
from patchlesion.engine.settings import TrainSettings
from patchlesion.engine.training import train_step
from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import make_loss
from patchlesion.method.classes import CLASSES
from patchlesion.method.model import build_model
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import get_strategy

__all__ = ["MAX_STEPS", "TARGET_SECONDS", "measure", "side_by_side", "startup_probe", "startup_seconds", "timing_tasks"]

log = logging.getLogger("patchlesion")

#: Timed steps per shape by default: as many as fit in about this many seconds ...
TARGET_SECONDS = 2.0
#: ... but at most this many.
MAX_STEPS = 30
#: Full-size warm-up steps on CUDA (the CPU warms up on two images, see the module's docstring).
CUDA_WARM_UP = 3
#: Timed checkpoint writes per training shape (the median is used: one write can hit a busy disk).
CHECKPOINT_WRITES = 3
#: Images whose resident copy is timed for the per-image loading time.
LOAD_SAMPLE = 32
#: Whether this process has made a training step (on the CPU its lazy initialisation is then done).
_TRAINED_HERE = False


def measure(specs: list[RunSpec], settings: TrainSettings, steps: int | None = None, threads: int | None = None) -> StepTimes:
    """Time every distinct training, checkpoint, forward and evaluation shape of ``specs`` on
    ``settings.device``, each once; ``steps``: timed steps (and evaluation batches) per shape, None
    for the default; ``threads``: CPU threads per job. On the CPU the shapes are timed side by side,
    one process per ``threads`` cores (:func:`side_by_side`), as a CPU machine runs its jobs."""
    device = resolve_device(settings.device)
    times = StepTimes({}, {}, {}, {}, {})
    tasks = timing_tasks(specs, settings)
    arguments = [(spec, parts, settings, steps, threads) for spec, parts in tasks]
    with contextlib.ExitStack() as stack:
        workers = side_by_side(device, threads)
        if workers > 1:  # a fresh interpreter per worker: no threads or CUDA state inherited
            # each worker starts as a job does (the command's own process did in start_job)
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=keep_freed_memory))
            results = pool.map(_time_shape, *zip(*arguments))
        else:
            results = (_time_shape(*a) for a in arguments)
        for (spec, _), result in zip(tasks, results):  # in order, each as soon as it is measured
            keys = {"train": training_shape(spec, settings), "checkpoint": checkpoint_shape(spec), "forward": forward_shape(spec),
                    "rest": evaluation_shape(spec)}  # fmt: skip
            store = {"train": times.train_step, "checkpoint": times.checkpoint, "forward": times.eval_forward, "rest": times.eval_rest}
            for part, (seconds, count) in result.items():
                store[part][keys[part]], times.steps[part, keys[part]] = seconds, count
            train, forward = keys["train"], keys["forward"]
            log.info("%s: training %.4g s/step (batch %d, median of %d), evaluation %.4g s/batch (%d images: backbone %.4g s for %d crops, "
                     "median of %d; the rest %.4g s, median of %d)", "-".join(map(str, keys["rest"])), times.train_step[train], train[-1],
                     times.steps["train", train], times.eval_batch(spec), evaluation_batch_images(spec.n_crops), times.eval_forward[forward],
                     forward[1], times.steps["forward", forward], times.eval_rest[keys["rest"]], times.steps["rest", keys["rest"]])  # fmt: skip
    times.load_per_image = _time_loading(settings, device)
    for backbone in dict.fromkeys(spec.backbone for spec in specs):
        for kind in ("train", "evaluate"):
            times.startup[backbone, kind] = startup_seconds(backbone, kind, str(device), threads)
            log.info("%s: %s job start-up %.2f s (process, imports, model build, model file)", backbone, kind, times.startup[backbone, kind])
    return times


def timing_tasks(specs: list[RunSpec], settings: TrainSettings) -> list[tuple[RunSpec, tuple[str, ...]]]:
    """The first run of each evaluation shape and what is timed on its model: always the rest of
    its evaluation batch; the training step, checkpoint write and backbone forward only where their
    shape is new (the same computation is timed once, under the first run that has it)."""
    tasks, seen = [], set()
    for spec in distinct_shapes(specs).values():
        keys = {"train": training_shape(spec, settings), "checkpoint": checkpoint_shape(spec), "forward": forward_shape(spec)}
        tasks.append((spec, (*(part for part, key in keys.items() if (part, key) not in seen), "rest")))
        seen.update(keys.items())
    return tasks


def side_by_side(device: torch.device, threads: int | None) -> int:
    """Shapes timed at once: on the CPU, one per ``threads`` cores of this process (1 when the
    thread count is PyTorch's default, all cores); one on an accelerator."""
    if device.type != "cpu" or not threads:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // threads)


def _time_shape(spec: RunSpec, parts: tuple[str, ...], settings: TrainSettings, steps: int | None, threads: int | None) -> dict:
    """``{part: (seconds, timed steps)}`` of the ``parts`` of :func:`timing_tasks` on ``spec``'s model."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(settings.device)
    torch.manual_seed(0)
    model = build_model(spec, len(CLASSES)).to(device)
    times = {}
    if "train" in parts:
        with tempfile.TemporaryDirectory(prefix="patchlesion-cost-") as scratch:
            times |= _time_training(spec, settings, model, device, steps, Path(scratch) / "resume.pt" if "checkpoint" in parts else None)
    return times | _time_evaluation(spec, settings, model, device, steps, with_forward="forward" in parts)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fake_images(n: int, image_size: tuple[int, int], seed: int = 0) -> CachedImages:
    """``n`` random uint8 images of ``image_size`` (W, H) as the decoded cache serves them."""
    width, height = image_size
    rows = np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    return CachedImages(rows, np.arange(n))


def _timed(step, device: torch.device, warm_up, steps: int | None) -> tuple[float, int]:
    """Median seconds of ``step()`` (synchronised) after ``warm_up()``, and the number of timed steps."""
    warm_up()
    _sync(device)
    durations: list[float] = []
    while not durations or len(durations) < (steps or min(MAX_STEPS, max(1, math.ceil(TARGET_SECONDS / durations[0])))):
        started = time.perf_counter()
        step()
        _sync(device)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), len(durations)


def _time_training(
    spec: RunSpec, settings: TrainSettings, model: torch.nn.Module, device: torch.device, steps: int | None, checkpoint: Path | None
) -> dict:
    """``{"train": (seconds per optimizer step, timed steps)}`` of one training shape and, unless
    ``checkpoint`` is None, ``{"checkpoint": (seconds per write of the resume checkpoint, timed writes)}``."""
    strategy = get_strategy(spec.strategy)
    batch = settings.images_per_batch(strategy.plain)
    accel = Acceleration.from_settings(settings, device)
    labels = torch.arange(batch) % len(CLASSES)
    stand_in = SimpleNamespace(
        train_labels=labels, device=device, accel=accel, forward=accel.prepare(model), scaler=accel.grad_scaler(),
        criterion=make_loss(spec.balancing, labels.numpy(), len(CLASSES), spec.k, device,
                            train_dx_types=np.full(batch, "histo"), diagnosis_scope=spec.diagnosis_scope),
        optimizer=Adam(model.parameters(), lr=settings.learning_rate),
    )  # fmt: skip
    inputs = TrainingInput(_fake_images(batch, settings.image_size), strategy, spec, settings.crop_size, device, accel.channels_last)
    generator = torch.Generator().manual_seed(0)
    model.train()

    def run(size: int) -> None:
        for idx, crops in inputs.iterate(torch.arange(size), size, generator):
            train_step(stand_in, idx, crops).item()  # .item(), as the training loop's loss sum

    global _TRAINED_HERE

    def warm_up() -> None:
        if device.type == "cuda" or settings.compile:  # every shape: cuDNN's choices; torch.compile compiles again for another batch size
            for _ in range(CUDA_WARM_UP if device.type == "cuda" else 1):
                run(batch)
        elif not _TRAINED_HERE:  # the CPU: once per process
            run(min(batch, 2))

    times = {"train": _timed(lambda: run(batch), device, warm_up, steps)}
    _TRAINED_HERE = True
    if checkpoint is None:
        return times
    best = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
    stateful = {"model": model, "optimizer": stand_in.optimizer}

    def write() -> None:
        save_checkpoint(checkpoint, training_state(settings_hash="cost", epoch=1, stateful=stateful, generator=generator, history=[],
                                                   best=0.0, best_model=best))  # fmt: skip

    return times | {"checkpoint": _timed(write, device, lambda: None, CHECKPOINT_WRITES)}


class _Replay(torch.nn.Module):
    """Stands in for the backbone while the rest of an evaluation batch is timed: returns, for every
    crop, the backbone's features of the batch's first crop (computed at the first call, a warm-up)
    and keeps the tensor it was given, on which the backbone's own forward is then timed."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone
        self.features: torch.Tensor | None = None
        self.crops: torch.Tensor | None = None

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            self.features = self.backbone(crops[:1]).expand(len(crops), -1).contiguous()  # (B*N, F)
        self.crops = crops  # (B*N, 3, s, s)
        return self.features


def _time_evaluation(
    spec: RunSpec, settings: TrainSettings, model: torch.nn.Module, device: torch.device, steps: int | None, with_forward: bool
) -> dict:
    """``{"rest": (seconds, timed batches)}``: one evaluation batch of ``spec`` without the backbone's
    forward, and with ``with_forward`` ``{"forward": (seconds, timed batches)}``: that forward."""
    images = _fake_images(evaluation_batch_images(spec.n_crops), settings.image_size)
    backbone = model.backbone
    model.backbone = replay = _Replay(backbone)
    warm_ups = CUDA_WARM_UP if device.type == "cuda" else 1  # on the CPU the one that computes the stand-in's features

    def predict() -> None:
        predict_probabilities(model, images, spec, settings, device)

    try:
        times = {"rest": _timed(predict, device, lambda: [predict() for _ in range(warm_ups)], steps)}
    finally:
        model.backbone = backbone
    if not with_forward:
        return times
    accel = Acceleration.from_settings(settings, device)

    @torch.no_grad()
    def forward() -> None:
        with accel.autocast():  # as predict_probabilities calls it
            backbone(replay.crops)

    # the CPU has just run this backbone on one crop (the stand-in's features): no more warm-up
    times["forward"] = _timed(forward, device, lambda: [forward() for _ in range(warm_ups if device.type == "cuda" else 0)], steps)
    return times


def _time_loading(settings: TrainSettings, device: torch.device) -> float:
    """Seconds to hold one training image resident on the device, as a training job's set-up does."""
    images = _fake_images(LOAD_SAMPLE, settings.image_size, seed=1)
    spec = RunSpec(backbone="tiny", strategy="downsample", n_crops=1)
    started = time.perf_counter()
    TrainingInput(images, get_strategy("downsample"), spec, settings.crop_size, device)
    _sync(device)
    return (time.perf_counter() - started) / LOAD_SAMPLE


def startup_seconds(backbone: str, kind: str, device: str, threads: int | None = None) -> float:
    """Wall seconds of a ``python`` process that starts as a ``kind`` job (train or evaluate) does:
    imports the command, then :func:`startup_probe` (the model of ``backbone`` on ``device`` ...)."""
    # the process imports the command first, as a job's does (python -m patchlesion.cli)
    code = f"import patchlesion.cli; from patchlesion.engine.steptimes import startup_probe; startup_probe({backbone!r}, {kind!r}, {device!r}, {threads!r})"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise PatchlesionError(f"the start-up probe of {backbone} on {device} failed: {result.stderr.strip().splitlines()[-1:]}")
    return seconds


def startup_probe(backbone: str, kind: str, device: str, threads: int | None = None) -> None:
    """What a ``kind`` job does before its first step, without the data (after importing the command,
    :func:`startup_seconds`): the engine's imports, the model on the device, its weights written and
    read back (the model files), and for training the Adam optimizer (:class:`patchlesion.engine.optim.Adam`)."""
    import patchlesion.engine.evaluate
    import patchlesion.engine.training  # noqa: F401

    if threads:
        torch.set_num_threads(threads)
    target = torch.device(device)
    model = build_model(RunSpec(backbone=backbone), len(CLASSES)).to(target)
    if kind == "train":
        Adam(model.parameters())
    with tempfile.TemporaryDirectory(prefix="patchlesion-probe-") as scratch:
        save_state(model, Path(scratch) / "model.pt")
        load_state(model, Path(scratch) / "model.pt")
    _sync(target)

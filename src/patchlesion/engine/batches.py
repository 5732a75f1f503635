"""Training input batch by batch: images from the decoded cache (or decoded in memory), augmented
crops made by the input strategy on the training device.

The training images are held once as planar uint8 on the device (in GPU memory when they fit, else
read batch by batch from the cache into pinned memory and copied without blocking); flips, colour
jitter, cropping and patch dropout run there as tensor operations. On the CPU they run in reused
buffers, sample by sample so that each image stays in the CPU cache. Random numbers are drawn on the CPU from the run's one
generator in both cases, so a run's augmentation is the same on either device and the generator's
state is all a checkpoint needs.
"""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from patchlesion.data.cache import CachedImages, ImageCache
from patchlesion.data.images import load_indexed
from patchlesion.engine.accel import to_channels_last
from patchlesion.method.strategies import InputStrategy, Workspace

__all__ = ["TrainingInput", "image_source"]


def image_source(
    index: pd.DataFrame, image_ids: list[str], image_size: tuple[int, int], cache: str | Path | None = None, resize: str = "stretch"
):
    """The images ``image_ids`` as something indexable by batch positions giving ``(B, 3, H, W)``
    uint8: a view of the prepared cache when ``cache`` names one, else decoded into memory; brought
    to ``image_size`` as ``resize`` says (:data:`patchlesion.data.RESIZES`)."""
    if cache is not None:
        prepared = ImageCache(cache)
        prepared.check(image_size, resize)
        return prepared.select(list(image_ids))
    return load_indexed(index, list(image_ids), image_size, resize)


def _sample_worker(connection, strategy: InputStrategy, resident: torch.Tensor, outs: list[torch.Tensor], n_crops: int, crop_size: int) -> None:
    """Loop of one sample process: augment the (slot, position, draw) jobs it is sent into the
    shared batch buffer they name, and acknowledge each message once it is done."""
    torch.set_num_threads(1)
    workspace = Workspace()
    while True:
        message = connection.recv()
        if message is None:
            return
        buffer, jobs = message
        for slot, position, draw in jobs:
            strategy.sample_into(outs[buffer][slot], resident[position], n_crops, crop_size, draw, workspace)
        connection.send(True)


class _SampleProcesses:
    """Worker processes (forked: they share the resident images) that augment the samples of
    Ordered-Crop batches into shared-memory batch buffers, like a DataLoader's workers but without
    collating or copying batches between processes.

    Two buffers, so that the next batch is augmented while the current one is used
    (:meth:`TrainingInput.iterate`). Samples go to the workers round-robin across batches, so a
    batch size that is not a multiple of the worker count evens out over consecutive batches."""

    BUFFERS = 2

    def __init__(self, processes: int, strategy: InputStrategy, resident: torch.Tensor, shape: tuple[int, ...], n_crops: int, crop_size: int):
        context = multiprocessing.get_context("fork")
        self.outs = [torch.empty(shape, dtype=torch.float32).share_memory_() for _ in range(self.BUFFERS)]
        self.connections, self.processes = [], []
        self._next_worker = 0
        self._pending: collections.deque[list] = collections.deque()  # per submission: the busy connections
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_sample_worker, args=(child, strategy, resident, self.outs, n_crops, crop_size), daemon=True)
            process.start()
            child.close()
            self.connections.append(parent)
            self.processes.append(process)

    @property
    def out(self) -> torch.Tensor:
        return self.outs[0]

    def submit(self, buffer: int, jobs: list[tuple]) -> None:
        """Start augmenting ``jobs`` into ``outs[buffer]`` (returns at once; see :meth:`wait`)."""
        count = len(self.connections)
        shares = [[] for _ in range(count)]
        for j, job in enumerate(jobs):
            shares[(self._next_worker + j) % count].append(job)
        self._next_worker = (self._next_worker + len(jobs)) % count
        busy = []
        for connection, share in zip(self.connections, shares):
            if share:
                connection.send((buffer, share))
                busy.append(connection)
        self._pending.append(busy)

    def wait(self) -> None:
        """Block until the oldest submission not yet waited for is complete."""
        for connection in self._pending.popleft():
            connection.recv()

    def drain(self) -> None:
        """Wait for every submission still in flight."""
        while self._pending:
            self.wait()

    def run(self, jobs: list[tuple]) -> None:
        """Augment ``jobs`` into ``outs[0]`` and wait for them."""
        self.drain()
        self.submit(0, jobs)
        self.wait()

    def close(self) -> None:
        for connection, process in zip(self.connections, self.processes):
            try:
                connection.send(None)
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=5)
        self.connections, self.processes = [], []


class TrainingInput:
    """``batches(positions, generator)``: the augmented training crops ``(B, N, 3, s, s)`` of the
    images at ``positions`` of ``images``, on ``device`` (valid until the next call)."""

    def __init__(
        self,
        images,
        strategy: InputStrategy,
        spec,
        crop_size: int,
        device: torch.device,
        channels_last: bool = False,
        threads: int = 1,
        resident: bool = True,
        processes: int = 0,
    ):
        """``threads``: threads over the samples of a batch (CPU); ``processes``: forked processes
        over the samples of an Ordered-Crop batch instead (CPU, resident images); ``resident``:
        hold the images once on the device (see :meth:`_make_resident`)."""
        self.images, self.strategy, self.spec, self.crop_size = images, strategy, spec, crop_size
        self.device, self.channels_last = torch.device(device), channels_last
        self.workspace = Workspace(threads if self.device.type == "cpu" else 1)
        self._host: torch.Tensor | None = None  # (B, H, W, 3) uint8 read buffer, pinned for CUDA
        self._copied = None  # CUDA event: the last host-to-device copy from _host has finished
        self.resident = self._make_resident() if resident else None
        # Ordered-Crop on the CPU can spread the samples of a batch over forked processes (no GIL);
        # the random draws stay in this process, so the batch equals the in-process one.
        self._processes = None
        self._process_count = processes if self.device.type == "cpu" and self.resident is not None and strategy.per_sample_draws else 0

    def close(self) -> None:
        """Stop the sample processes, if any; later batches are made in this process."""
        self._process_count = 0
        if self._processes is not None:
            self._processes.close()
            self._processes = None

    def _make_resident(self) -> torch.Tensor | None:
        """The images once as one planar ``(N, 3, H, W)`` uint8 tensor on the device: in RAM on the
        CPU (as the decoding path always did), in GPU memory when they take under 40 % of what is
        free there (HAM10000's training part is 4 GB), else None (batches read from the cache)."""
        n, _, height, width = self.images.shape
        size = n * 3 * height * width
        if isinstance(self.images, torch.Tensor) and self.device.type == "cpu":
            return self.images.contiguous()  # decoded in memory already: no second copy
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if size > 0.4 * free:
                return None
        elif self.device.type != "cpu":
            return None
        resident = torch.empty((n, 3, height, width), dtype=torch.uint8, device=self.device)
        for start in range(0, n, 64):  # cache rows are (H, W, 3): transposed once here, not every epoch
            stop = min(n, start + 64)
            resident[start:stop].copy_(self.images[start:stop])
        return resident

    def read(self, positions) -> torch.Tensor:
        """uint8 images ``(B, 3, H, W)`` at ``positions`` on the device (channels-last strides when
        they come from the cache)."""
        positions = positions.numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
        if self.resident is not None:
            index = torch.from_numpy(positions).to(self.device)
            if self.device.type != "cpu":
                return self.resident.index_select(0, index)
            out = self.workspace.get("batch_u8", (len(positions), *self.resident.shape[1:]), torch.uint8, self.device)
            return torch.index_select(self.resident, 0, index, out=out)
        if not isinstance(self.images, CachedImages):
            batch = self.images[torch.as_tensor(positions)]
            return batch.to(self.device, non_blocking=True) if self.device.type != "cpu" else batch
        _, _, height, width = self.images.shape
        size = len(positions)
        if self._host is None or self._host.shape[0] < size:
            self._host = torch.empty((size, height, width, 3), dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        if self._copied is not None:
            self._copied.synchronize()  # the previous batch's copy must be done before the buffer is refilled
        host = self._host[:size]
        self.images.read_hwc(positions, out=host.numpy())
        batch = host.permute(0, 3, 1, 2)  # (B, 3, H, W)
        if self.device.type == "cpu":
            return batch
        batch = batch.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()
        return batch

    def _sample_processes(self, size: int) -> _SampleProcesses:
        """The sample processes, started (again) with buffers for batches of ``size``."""
        if self._processes is None or self._processes.out.shape[0] < size:  # started at the first batch
            if self._processes is not None:
                self._processes.close()
            shape = (size, self.spec.n_crops, 3, self.crop_size, self.crop_size)
            self._processes = _SampleProcesses(self._process_count, self.strategy, self.resident, shape, self.spec.n_crops, self.crop_size)
        return self._processes

    def _jobs(self, positions, generator: torch.Generator) -> list[tuple]:
        positions = positions.tolist() if isinstance(positions, torch.Tensor) else list(positions)
        draws = self.strategy.draws(len(positions), self.spec, generator)
        return [(slot, position, draw) for slot, (position, draw) in enumerate(zip(positions, draws))]

    def _finish(self, crops: torch.Tensor) -> torch.Tensor:
        return to_channels_last(crops) if self.channels_last else crops

    def __call__(self, positions, generator: torch.Generator) -> torch.Tensor:
        if self._process_count > 1:
            processes = self._sample_processes(len(positions))
            processes.run(self._jobs(positions, generator))
            return self._finish(processes.out[: len(positions)])
        crops = self.strategy.training_input(self.read(positions), self.spec, self.crop_size, generator, workspace=self.workspace)
        return self._finish(crops)

    def iterate(self, order, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(positions, crops)`` of consecutive batches of ``order`` (the last one may be smaller).

        The same batches and random draws, in the same order, as calling the object batch by batch;
        with sample processes the next batch is augmented while the caller uses this one (each
        batch's crops are valid until the next step of the iteration)."""
        starts = range(0, len(order), batch_size)
        if self._process_count <= 1:
            for start in starts:
                positions = order[start : start + batch_size]
                yield positions, self(positions, generator)
            return
        processes = self._sample_processes(batch_size)
        processes.drain()
        in_flight: collections.deque[tuple] = collections.deque()

        def submit(k: int) -> None:
            positions, buffer = order[starts[k] : starts[k] + batch_size], k % _SampleProcesses.BUFFERS
            processes.submit(buffer, self._jobs(positions, generator))  # draws in batch order
            in_flight.append((positions, buffer))

        try:
            for k in range(min(_SampleProcesses.BUFFERS, len(starts))):
                submit(k)
            for k in range(len(starts)):
                positions, buffer = in_flight.popleft()
                processes.wait()
                yield positions, self._finish(processes.outs[buffer][: len(positions)])
                if k + _SampleProcesses.BUFFERS < len(starts):
                    submit(k + _SampleProcesses.BUFFERS)  # into the buffer the caller has just finished with
        finally:
            processes.drain()

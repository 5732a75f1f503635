"""Training input batch by batch: images from the decoded cache (or decoded in memory), augmented
crops made by the input strategy on the training device.

On a GPU the uint8 images travel (pinned, non-blocking) and flips, colour jitter, cropping and patch
dropout run there as tensor operations; on the CPU they run in reused buffers, sample by sample so
that each image stays in the CPU cache. Random numbers are drawn on the CPU from the run's one
generator in both cases, so a run's augmentation is the same on either device and the generator's
state is all a checkpoint needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from patchlesion.accel import to_channels_last
from patchlesion.cache import CachedImages, ImageCache
from patchlesion.strategies import InputStrategy, Workspace

__all__ = ["TrainingInput", "image_source"]


def image_source(index: pd.DataFrame, image_ids: list[str], image_size: tuple[int, int], cache: str | Path | None = None):
    """The images ``image_ids`` as something indexable by batch positions giving ``(B, 3, H, W)``
    uint8: a view of the prepared cache when ``cache`` names one, else decoded into memory."""
    if cache is not None:
        prepared = ImageCache(cache)
        prepared.check(image_size)
        return prepared.select(list(image_ids))
    from patchlesion.training import load_images

    return load_images(index, list(image_ids), image_size)


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
    ):
        self.images, self.strategy, self.spec, self.crop_size = images, strategy, spec, crop_size
        self.device, self.channels_last = torch.device(device), channels_last
        self.workspace = Workspace(threads if self.device.type == "cpu" else 1)
        self._host: torch.Tensor | None = None  # (B, H, W, 3) uint8 read buffer, pinned for CUDA
        self._copied = None  # CUDA event: the last host-to-device copy from _host has finished

    def read(self, positions) -> torch.Tensor:
        """uint8 images ``(B, 3, H, W)`` at ``positions`` on the device (channels-last strides when
        they come from the cache)."""
        positions = positions.numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
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

    def __call__(self, positions, generator: torch.Generator) -> torch.Tensor:
        crops = self.strategy.training_input(self.read(positions), self.spec, self.crop_size, generator, workspace=self.workspace)
        return to_channels_last(crops) if self.channels_last else crops

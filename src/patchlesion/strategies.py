"""Input-strategy axis (Sec. II-D): how crops are cut from an image in training and at evaluation.

Every strategy turns a batch of whole images ``(B, 3, H, W)`` (uint8) into model input
``(B, N, 3, s, s)`` (float in [0, 1]) and says how evaluation combines the crops:
``"softmax_mean"`` (each crop classified on its own, probabilities averaged: Multi-Crop) or
``"model"`` (the model aggregates the crops itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from patchlesion.augment import augment
from patchlesion.crops import crop_grid, cut_crops, random_crop_positions

__all__ = ["STRATEGIES", "InputStrategy", "MultiCrop", "get_strategy"]


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


@dataclass(frozen=True)
class InputStrategy:
    """Base class: subclasses implement ``training_input`` and ``evaluation_input``."""

    name: str = ""
    combine: str = "model"

    def training_input(
        self, images: torch.Tensor, n_crops: int, crop_size: int, generator: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError

    def evaluation_input(self, images: torch.Tensor, n_crops: int, crop_size: int) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class MultiCrop(InputStrategy):
    """Multi-Crop (Sec. II-D): one random crop per image in training, then flips and colour jitter;
    ``n_crops`` ordered crops at evaluation, softmax probabilities averaged over crops."""

    name: str = "multi_crop"
    combine: str = "softmax_mean"

    def training_input(self, images, n_crops, crop_size, generator):
        batch, _, height, width = images.shape
        positions = random_crop_positions(batch, 1, (width, height), crop_size, generator)
        crops = cut_crops(images, positions.to(images.device), crop_size)[:, 0]  # (B, 3, s, s)
        return augment(_to_float(crops), generator).unsqueeze(1)  # (B, 1, 3, s, s)

    def evaluation_input(self, images, n_crops, crop_size):
        batch, _, height, width = images.shape
        grid = torch.tensor(crop_grid(n_crops, (width, height), crop_size), device=images.device)
        crops = cut_crops(images, grid.expand(batch, -1, -1), crop_size)  # (B, N, 3, s, s)
        return _to_float(crops)


STRATEGIES: dict[str, InputStrategy] = {s.name: s for s in (MultiCrop(),)}


def get_strategy(name: str) -> InputStrategy:
    """Look up an input strategy by name."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown input strategy {name!r}; choose one of {', '.join(STRATEGIES)}.") from None

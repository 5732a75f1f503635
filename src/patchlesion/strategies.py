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

    def training_input(self, images: torch.Tensor, spec, crop_size: int, generator: torch.Generator) -> torch.Tensor:
        """Augmented training crops ``(B, N, 3, s, s)`` of uint8 images ``(B, 3, H, W)``; ``spec`` is
        the run (:class:`patchlesion.runs.RunSpec`: n_crops, patch_dropout, centre_crop)."""
        raise NotImplementedError

    def evaluation_input(self, images: torch.Tensor, spec, crop_size: int) -> torch.Tensor:
        """Evaluation crops ``(B, N, 3, s, s)`` of uint8 images ``(B, 3, H, W)`` (no randomness)."""
        raise NotImplementedError

    def check(self, spec) -> None:
        """Raise PatchlesionError if ``spec`` combines this strategy with settings it cannot use."""
        from patchlesion.errors import PatchlesionError

        if self.combine == "softmax_mean" and (spec.aggregation != "mean" or spec.attention != "none"):
            raise PatchlesionError(
                f"run {spec.name}: {self.name} classifies every crop on its own (the plain model), so it needs "
                "aggregation 'mean' and attention 'none'; use strategy 'ordered' for GRU or attention models."
            )
        if spec.patch_dropout and self.name != "ordered":
            raise PatchlesionError(f"run {spec.name}: patch dropout applies to Ordered-Crop training only (strategy 'ordered').")


@dataclass(frozen=True)
class MultiCrop(InputStrategy):
    """Multi-Crop (Sec. II-D): one random crop per image in training, then flips and colour jitter;
    ``n_crops`` ordered crops at evaluation, softmax probabilities averaged over crops."""

    name: str = "multi_crop"
    combine: str = "softmax_mean"

    def training_input(self, images, spec, crop_size, generator):
        batch, _, height, width = images.shape
        positions = random_crop_positions(batch, 1, (width, height), crop_size, generator)
        crops = cut_crops(images, positions.to(images.device), crop_size)[:, 0]  # (B, 3, s, s)
        return augment(_to_float(crops), generator).unsqueeze(1)  # (B, 1, 3, s, s)

    def evaluation_input(self, images, spec, crop_size):
        batch, _, height, width = images.shape
        grid = torch.tensor(crop_grid(spec.n_crops, (width, height), crop_size), device=images.device)
        crops = cut_crops(images, grid.expand(batch, -1, -1), crop_size)  # (B, N, 3, s, s)
        return _to_float(crops)


STRATEGIES: dict[str, InputStrategy] = {s.name: s for s in (MultiCrop(),)}


def get_strategy(name: str) -> InputStrategy:
    """Look up an input strategy by name."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown input strategy {name!r}; choose one of {', '.join(STRATEGIES)}.") from None

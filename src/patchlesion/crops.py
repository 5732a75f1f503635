"""Crop geometry: the ordered crop grid of Multi-Crop evaluation and Ordered-Crop training (Sec. II-D).

Pure functions; positions are top-left corners ``(row, col)`` in pixels of an image of size
``(width, height)``. For 600x450 images and 224 px crops they equal the authors' code exactly
(reference table in ``tests/test_crops.py``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["crop_grid", "cut_crops", "random_crop_positions"]


def crop_grid(n_crops: int, image_size: tuple[int, int], crop_size: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``n_crops`` ordered crops (Sec. II-D, "ordered cropping"), row-major.

    A perfect square n = g*g gives a g x g grid whose first and last crops touch the image borders
    and whose steps are ``(size - crop) / (g - 1)`` truncated to whole pixels, as in the authors'
    code. n = 5 is the paper's special case: the 2 x 2 corner grid plus the image centre.
    """
    width, height = image_size
    if crop_size > min(width, height):
        raise ValueError(f"crop size {crop_size} is larger than the image ({width}x{height}).")
    if n_crops == 5:
        corners = crop_grid(4, image_size, crop_size)
        centre = (height // 2 - crop_size // 2, width // 2 - crop_size // 2)
        return corners + [centre]
    per_axis = math.isqrt(n_crops)
    if per_axis * per_axis != n_crops or n_crops < 1:
        raise ValueError(f"n_crops must be 5 or a perfect square (1, 4, 9, 16, 25, ...), got {n_crops}.")
    if per_axis == 1:
        return [((height - crop_size) // 2, (width - crop_size) // 2)]
    rows = [int(i * (height - crop_size) / (per_axis - 1)) for i in range(per_axis)]
    cols = [int(j * (width - crop_size) / (per_axis - 1)) for j in range(per_axis)]
    return [(row, col) for row in rows for col in cols]


def cut_crops(images: torch.Tensor, positions: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Cut one crop per (image, position): ``(B, C, H, W)`` and ``(B, N, 2)`` -> ``(B, N, C, s, s)``.

    Gathers with advanced indexing, so all crops of a batch are cut in one tensor operation.
    """
    batch, channels = images.shape[:2]
    n_crops = positions.shape[1]
    offsets = torch.arange(crop_size, device=images.device)
    rows = positions[..., 0, None] + offsets  # (B, N, s)
    cols = positions[..., 1, None] + offsets  # (B, N, s)
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, None, :, None]
    # images[b, c, row, col] with row (B,N,1,s,1) and col (B,N,1,1,s) broadcast to (B,N,C,s,s)
    crops = images[b[..., None], c[..., None], rows[:, :, None, :, None], cols[:, :, None, None, :]]
    return crops


def random_crop_positions(
    batch: int, n_crops: int, image_size: tuple[int, int], crop_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Uniformly random top-left corners, ``(B, N, 2)``: torchvision's RandomCrop, per crop."""
    width, height = image_size
    rows = torch.randint(0, height - crop_size + 1, (batch, n_crops), generator=generator)
    cols = torch.randint(0, width - crop_size + 1, (batch, n_crops), generator=generator)
    return torch.stack([rows, cols], dim=-1)

"""Crop geometry: the ordered crop grid of Multi-Crop evaluation and Ordered-Crop training (Sec. II-D).

Pure functions; positions are top-left corners ``(row, col)`` in pixels of an image of size
``(width, height)``; boxes are ``(top, left, height, width)`` in pixels. For 600x450 images and 224 px crops they equal the authors' code exactly
(reference table in ``tests/test_crops.py``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["crop_grid", "centre_box", "cut_crops", "random_crop_positions", "random_resized_boxes", "resize_boxes"]


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
    per_axis = math.isqrt(max(n_crops, 0))
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


def centre_box(image_size: tuple[int, int], box_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Centred box ``(top, left, h, w)`` of ``box_size = (h, w)``, clamped to the image; offsets as
    torchvision's ``CenterCrop`` (``round((size - box) / 2)``)."""
    width, height = image_size
    h, w = min(int(box_size[0]), height), min(int(box_size[1]), width)
    return int(round((height - h) / 2.0)), int(round((width - w) / 2.0)), h, w


def random_resized_boxes(
    batch: int,
    image_size: tuple[int, int],
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    attempts: int = 10,
) -> torch.Tensor:
    """Boxes ``(B, 4)`` = ``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params``, batched.

    Per sample: up to ``attempts`` draws of an area fraction ~ U(scale) and a log aspect ratio
    ~ U(log ratio); the first draw whose rounded box fits the image is placed uniformly at random;
    if none fits, the centre crop of the largest box within ``ratio`` (torchvision's fallback).
    All attempts are drawn at once from ``generator`` (same distribution, other draw order).
    """
    width, height = image_size
    area = float(width * height)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    fraction = scale[0] + (scale[1] - scale[0]) * torch.rand(batch, attempts, generator=generator, dtype=torch.float64)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(batch, attempts, generator=generator, dtype=torch.float64))
    w = torch.round(torch.sqrt(area * fraction * aspect)).long()  # (B, attempts); round half to even, as Python's round
    h = torch.round(torch.sqrt(area * fraction / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none fits)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]  # (B,)
    found = fits.any(dim=1)

    # torchvision's fallback: whole image, cut to the nearest ratio bound if its aspect lies outside
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = int(round(height * max(ratio))), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))

    # uniform integer offsets in [0, size - box] (torch.randint with a per-sample upper bound)
    u_top, u_left = torch.rand(2, batch, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u_top * (height - h + 1)).long(), (height - h) // 2)
    left = torch.where(found, (u_left * (width - w + 1)).long(), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def _resize_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int, dtype, device) -> torch.Tensor:
    """Weights ``(B, out, in)`` that resize the span ``[start, start + length)`` of an axis to ``out_size``
    samples with antialiased bilinear interpolation, as ``interpolate(mode="bilinear", antialias=True)``
    (triangle filter stretched by the downscale factor, weights normalised per output sample)."""
    start = start.to(device=device, dtype=torch.float64)[:, None, None]  # (B, 1, 1)
    length = length.to(device=device, dtype=torch.float64)[:, None, None]
    scale = length / out_size  # input pixels per output pixel
    support = scale.clamp(min=1.0)  # triangle half-width in input pixels
    centre = scale * (torch.arange(out_size, device=device, dtype=torch.float64)[None, :, None] + 0.5)  # (1|B, out, 1)
    j = torch.arange(in_size, device=device, dtype=torch.float64)[None, None, :] - start  # (B, 1, in), box coordinates
    weights = (1.0 - ((j + 0.5 - centre) / support).abs()).clamp(min=0.0)
    weights = weights * ((j >= 0) & (j < length))  # only pixels inside the box
    return (weights / weights.sum(dim=-1, keepdim=True)).to(dtype)


def resize_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut one box per image and resize it to ``size x size`` (bilinear, antialiased), batched:
    float ``(B, C, H, W)`` and ``(B, 4)`` boxes ``(top, left, h, w)`` -> ``(B, C, size, size)``.

    Equals ``interpolate(images[b, :, top:top+h, left:left+w], size, mode="bilinear",
    antialias=True)`` per image, as two batched matrix products with separable weights.
    """
    _, _, height, width = images.shape
    boxes = boxes.to(images.device)
    rows = _resize_weights(boxes[:, 0], boxes[:, 2], height, size, images.dtype, images.device)  # (B, s, H)
    cols = _resize_weights(boxes[:, 1], boxes[:, 3], width, size, images.dtype, images.device)  # (B, s, W)
    resized = torch.einsum("bchw,bjw->bchj", images, cols)  # (B, C, H, s)
    return torch.einsum("bih,bchj->bcij", rows, resized)  # (B, C, s, s)

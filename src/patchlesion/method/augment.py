"""Online data augmentation of the authors' code (Sec. II-G): flips on both axes, brightness and
saturation jitter in random order. Batched tensor operations with one random draw per sample.

The colour operations follow torchvision's definitions (``adjust_brightness``: scale and clamp;
``adjust_saturation``: blend with the ITU-R 601 grey image and clamp), so one sample here is
distributed exactly as ``ColorJitter(brightness=32/255, saturation=0.5)`` after two random flips.
"""

from __future__ import annotations

import torch

__all__ = [
    "BRIGHTNESS", "SATURATION", "augment", "random_flips", "flip_", "flip_draws", "color_jitter", "jitter_factors",
    "apply_color_jitter", "apply_color_jitter_", "augment_into", "grey",
]  # fmt: skip

#: ColorJitter arguments of the authors' code: brightness factor ~ U[1 - 32/255, 1 + 32/255].
BRIGHTNESS = 32.0 / 255.0
#: saturation factor ~ U[0.5, 1.5].
SATURATION = 0.5


def flip_draws(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample horizontal and vertical flip decisions ``(B,)`` (RandomHorizontalFlip and
    RandomVerticalFlip, p = 0.5 each), drawn on the CPU from ``generator``."""
    horizontal = torch.rand(batch, generator=generator) < 0.5
    vertical = torch.rand(batch, generator=generator) < 0.5
    return horizontal, vertical


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``(B, C, H, W)`` horizontally and vertically, each with probability 0.5."""
    horizontal, vertical = (d.to(images.device) for d in flip_draws(images.shape[0], generator))
    images = torch.where(horizontal[:, None, None, None], images.flip(-1), images)
    return torch.where(vertical[:, None, None, None], images.flip(-2), images)


def flip_(images: torch.Tensor, horizontal: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Flip, in place, the samples of ``(B, C, H, W)`` marked in the CPU bool tensors ``horizontal``
    and ``vertical`` (any dtype and memory layout; only flipped samples are touched)."""
    for i in torch.nonzero(horizontal | vertical).flatten().tolist():
        dims = [dim for dim, flip in ((-1, horizontal[i]), (-2, vertical[i])) if flip]
        images[i].copy_(images[i].flip(dims))
    return images


def grey(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """ITU-R 601 luma of float ``(B, 3, H, W)`` as ``(B, 1, H, W)`` (torchvision's ``rgb_to_grayscale``)."""
    out = torch.mul(images[:, 0:1], 0.2989, out=out)
    return out.add_(images[:, 1:2], alpha=0.587).add_(images[:, 2:3], alpha=0.114)


def jitter_factors(batch: int, generator: torch.Generator, brightness: float = BRIGHTNESS, saturation: float = SATURATION):
    """Draw ColorJitter's per-sample brightness and saturation factors and application order."""
    b = 1 - brightness + 2 * brightness * torch.rand(batch, generator=generator)
    s = 1 - saturation + 2 * saturation * torch.rand(batch, generator=generator)
    brightness_first = torch.rand(batch, generator=generator) < 0.5
    return b, s, brightness_first


def apply_color_jitter(
    images: torch.Tensor, b: torch.Tensor, s: torch.Tensor, brightness_first: torch.Tensor
) -> torch.Tensor:
    """Apply per-sample brightness factors ``b`` and saturation factors ``s`` in the given order."""
    return apply_color_jitter_(images.clone(memory_format=torch.contiguous_format), b, s, brightness_first)


def apply_color_jitter_(
    images: torch.Tensor,
    b: torch.Tensor,
    s: torch.Tensor,
    brightness_first: torch.Tensor,
    grey_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """In place: per-sample brightness ``b`` and saturation ``s`` on float ``(B, 3, H, W)`` in [0, 1].

    Both orders in one pass over the batch: brightness with factor ``b`` (brightness first) or 1,
    then saturation, then brightness with 1 or ``b``. Multiplying by 1 and clamping values already
    in [0, 1] changes nothing, so each sample gets exactly its own order without computing both.
    ``grey_out`` is an optional ``(B, 1, H, W)`` buffer for the luma.
    """
    shape = (images.shape[0], 1, 1, 1)
    first = brightness_first.view(-1)
    one = torch.ones_like(b)
    before = torch.where(first, b, one).to(images.device, images.dtype).view(shape)
    after = torch.where(first, one, b).to(images.device, images.dtype).view(shape)
    keep = s.to(images.device, images.dtype).view(shape)
    images.mul_(before).clamp_(0.0, 1.0)
    luma = grey(images, out=grey_out)
    images.lerp_(luma, 1.0 - keep).clamp_(0.0, 1.0)  # s * x + (1 - s) * grey, as torchvision's _blend
    return images.mul_(after).clamp_(0.0, 1.0)


def color_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample brightness and saturation jitter of float images in [0, 1], in random order."""
    return apply_color_jitter(images, *jitter_factors(images.shape[0], generator))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The authors' augmentation of ``(B, C, H, W)`` floats in [0, 1]: flips, then colour jitter."""
    return color_jitter(random_flips(images, generator), generator)


def augment_into(
    out: torch.Tensor,
    image: torch.Tensor,
    horizontal: bool,
    vertical: bool,
    b: float,
    s: float,
    brightness_first: bool,
    grey_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One uint8 image ``(3, H, W)`` (any memory layout) -> float ``out`` ``(3, H, W)`` in [0, 1]:
    the flips, then brightness ``b`` and saturation ``s`` in the given order (the authors'
    augmentation with its random draws already made; see :func:`augment`).

    The fast form of the same arithmetic: the image is converted to float once and worked on in
    the 0..255 range, the 1/255 scaling is folded into the multiplications, and a clamp runs only
    where a factor above 1 can leave [0, 1] (brightness b <= 1 and saturation s <= 1 are convex
    or shrinking maps of [0, 1]). Each sample's buffers stay in the CPU cache between the steps,
    which is what makes this several times faster than whole-batch passes.
    """
    dims = [dim for dim, flip in ((-1, horizontal), (-2, vertical)) if flip]
    source = image.flip(dims) if dims else image  # exact; on uint8, a quarter of the bytes of float
    luma = grey_out
    out.copy_(source)  # uint8 -> float, and channels-last -> planar, in one pass
    if brightness_first:
        out.mul_(b)  # 255 * (b x)
        if b > 1:
            out.clamp_(max=255.0)
        luma = torch.mul(out[0], 0.2989, out=luma).add_(out[1], alpha=0.587).add_(out[2], alpha=0.114)
        out.mul_(s / 255.0).add_(luma, alpha=(1.0 - s) / 255.0)  # s y + (1 - s) grey(y), back in [0, 1]
        if s > 1:
            out.clamp_(0.0, 1.0)
        return out
    luma = torch.mul(out[0], 0.2989, out=luma).add_(out[1], alpha=0.587).add_(out[2], alpha=0.114)
    if s > 1:
        out.mul_(s / 255.0).add_(luma, alpha=(1.0 - s) / 255.0).clamp_(0.0, 1.0).mul_(b)
    else:
        out.mul_(s * b / 255.0).add_(luma, alpha=(1.0 - s) * b / 255.0)  # b (s x + (1 - s) grey(x))
    if b > 1:
        out.clamp_(max=1.0)
    return out

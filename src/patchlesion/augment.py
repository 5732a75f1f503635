"""Online data augmentation of the authors' code (Sec. II-G): flips on both axes, brightness and
saturation jitter in random order. Batched tensor operations with one random draw per sample.

The colour operations follow torchvision's definitions (``adjust_brightness``: scale and clamp;
``adjust_saturation``: blend with the ITU-R 601 grey image and clamp), so one sample here is
distributed exactly as ``ColorJitter(brightness=32/255, saturation=0.5)`` after two random flips.
"""

from __future__ import annotations

import torch

__all__ = ["BRIGHTNESS", "SATURATION", "augment", "random_flips", "color_jitter", "jitter_factors", "apply_color_jitter"]

#: ColorJitter arguments of the authors' code: brightness factor ~ U[1 - 32/255, 1 + 32/255].
BRIGHTNESS = 32.0 / 255.0
#: saturation factor ~ U[0.5, 1.5].
SATURATION = 0.5


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``(B, C, H, W)`` horizontally and vertically, each with probability 0.5."""
    batch = images.shape[0]
    horizontal = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    vertical = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    images = torch.where(horizontal[:, None, None, None], images.flip(-1), images)
    return torch.where(vertical[:, None, None, None], images.flip(-2), images)


def _grey(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


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
    shape = (images.shape[0], 1, 1, 1)
    b, s = b.to(images.device, images.dtype).view(shape), s.to(images.device, images.dtype).view(shape)

    def bright(x: torch.Tensor) -> torch.Tensor:
        return (x * b).clamp(0.0, 1.0)

    def saturate(x: torch.Tensor) -> torch.Tensor:
        return (s * x + (1 - s) * _grey(x)).clamp(0.0, 1.0)

    first = brightness_first.to(images.device).view(shape)
    return torch.where(first, saturate(bright(images)), bright(saturate(images)))


def color_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample brightness and saturation jitter of float images in [0, 1], in random order."""
    return apply_color_jitter(images, *jitter_factors(images.shape[0], generator))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The authors' augmentation of ``(B, C, H, W)`` floats in [0, 1]: flips, then colour jitter."""
    return color_jitter(random_flips(images, generator), generator)

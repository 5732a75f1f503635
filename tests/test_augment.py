"""Augmentation (Sec. II-G): same operations and distributions as torchvision's per-image transforms."""

import torch
from torchvision.transforms.v2 import functional as F

from patchlesion.method.augment import BRIGHTNESS, SATURATION, apply_color_jitter, augment, jitter_factors, random_flips


def test_colour_ops_equal_torchvision_per_sample():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 8, 10, generator=generator)
    b = torch.tensor([0.9, 1.1, 1.0, 0.88, 1.12, 1.05])
    s = torch.tensor([0.5, 1.5, 1.0, 0.7, 1.3, 0.6])
    first = torch.tensor([True, False, True, False, True, False])
    out = apply_color_jitter(images, b, s, first)
    for i in range(6):
        if first[i]:
            expected = F.adjust_saturation(F.adjust_brightness(images[i], b[i].item()), s[i].item())
        else:
            expected = F.adjust_brightness(F.adjust_saturation(images[i], s[i].item()), b[i].item())
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_jitter_factor_distributions():
    b, s, first = jitter_factors(200_000, torch.Generator().manual_seed(0))
    assert b.min() >= 1 - BRIGHTNESS and b.max() <= 1 + BRIGHTNESS
    assert s.min() >= 1 - SATURATION and s.max() <= 1 + SATURATION
    # uniform: mean at the centre, variance width^2 / 12 (3-sigma bounds for n = 200000)
    assert abs(b.mean() - 1) < 3 * (2 * BRIGHTNESS / 12**0.5) / 200_000**0.5
    assert abs(s.var() - (2 * SATURATION) ** 2 / 12) < 0.002
    assert abs(first.float().mean() - 0.5) < 0.005


def test_flips_are_exact_and_each_happen_half_the_time():
    images = torch.arange(4 * 5, dtype=torch.float32).view(1, 1, 4, 5).expand(4000, 3, 4, 5)
    flipped = random_flips(images, torch.Generator().manual_seed(0))
    horizontal = (flipped[:, 0, 0, 0] == images[0, 0, 0, -1]) | (flipped[:, 0, 0, 0] == images[0, 0, -1, -1])
    vertical = (flipped[:, 0, 0, 0] == images[0, 0, -1, 0]) | (flipped[:, 0, 0, 0] == images[0, 0, -1, -1])
    assert abs(horizontal.float().mean() - 0.5) < 0.03 and abs(vertical.float().mean() - 0.5) < 0.03
    for image in flipped[:20]:
        assert any(torch.equal(image, candidate) for candidate in (
            images[0], images[0].flip(-1), images[0].flip(-2), images[0].flip(-1).flip(-2)))


def test_augment_is_deterministic_per_generator_and_stays_in_range():
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    a = augment(images, torch.Generator().manual_seed(5))
    b = augment(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1

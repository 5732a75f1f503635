"""The batched augmentation has the distributions of the released code's per-image pipeline.

Reference: each image on its own through torchvision's RandomHorizontalFlip, RandomVerticalFlip and
ColorJitter(brightness=32/255, saturation=0.5) (on the float tensor, and on the PIL image as the
released code), then the ordered crops and patch dropout drawn per crop (docs/method.md §3.2, §6); for
Multi-Crop, torchvision's RandomCrop first. Per-sample statistics of 1000 samples from each path
are compared with two-sample Kolmogorov-Smirnov tests at fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchlesion.method.crops import crop_grid, random_crop_positions
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import Workspace, get_strategy

stats = pytest.importorskip("scipy.stats")
transforms = pytest.importorskip("torchvision.transforms")

WIDTH, HEIGHT, CROP, SAMPLES, P_D = 40, 30, 16, 1000, 0.2
ALPHA = 1e-3  # a fixed-seed test: a real difference gives p-values far below this


def _image() -> torch.Tensor:
    """A colourful uint8 image ``(3, H, W)`` with structure along both axes, so flips show."""
    rows = torch.linspace(0, 1, HEIGHT)[:, None]
    cols = torch.linspace(0, 1, WIDTH)[None, :]
    red, green, blue = 40 + 200 * cols * torch.ones_like(rows), 30 + 180 * rows * torch.ones_like(cols), 120 + 100 * (rows - cols).abs()
    return torch.stack([red, green, blue]).round().clamp(0, 255).to(torch.uint8)


def _summaries(crops: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample statistics of ``(S, N, 3, s, s)`` crops in [0, 1]: brightness of crop 0, horizontal
    and vertical asymmetry (flips), colourfulness (saturation) and the number of dropped crops."""
    first = crops[:, 0]
    kept = crops.flatten(2).amax(2) > 0  # (S, N)
    whole = crops.mean(dim=(1, 3, 4))  # (S, 3)
    return {
        "brightness": first.mean(dim=(1, 2, 3)).numpy(),
        "left_right": (first[..., : CROP // 2].mean(dim=(1, 2, 3)) - first[..., CROP // 2 :].mean(dim=(1, 2, 3))).numpy(),
        "top_bottom": (first[..., : CROP // 2, :].mean(dim=(1, 2, 3)) - first[..., CROP // 2 :, :].mean(dim=(1, 2, 3))).numpy(),
        "colourfulness": (crops.amax(dim=2) - crops.amin(dim=2)).mean(dim=(1, 2, 3)).numpy(),
        "red_minus_blue": (whole[:, 0] - whole[:, 2]).numpy(),
        "dropped": (~kept).sum(1).numpy().astype(float),
    }


def _reference_ordered(pil: bool, seed: int, saturation: float = 0.5) -> torch.Tensor:
    """The released code's Ordered-Crop sample, image by image."""
    torch.manual_seed(seed)
    flips_and_jitter = transforms.Compose([
        transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(),
        transforms.ColorJitter(brightness=32 / 255, saturation=saturation),
    ])  # fmt: skip
    image = _image()
    grid = crop_grid(9, (WIDTH, HEIGHT), CROP)
    out = torch.zeros(SAMPLES, 9, 3, CROP, CROP)
    for i in range(SAMPLES):
        if pil:
            augmented = transforms.functional.to_tensor(flips_and_jitter(transforms.functional.to_pil_image(image)))
        else:
            augmented = flips_and_jitter(image.float() / 255)
        keep = torch.rand(9) >= P_D
        for k, (row, col) in enumerate(grid):
            if keep[k]:
                out[i, k] = augmented[:, row : row + CROP, col : col + CROP]
    return out


def _ours(strategy: str, seed: int, **fields) -> torch.Tensor:
    spec = RunSpec(backbone="tiny", strategy=strategy, **fields)
    images = _image().expand(5, -1, -1, -1)
    generator, workspace = torch.Generator().manual_seed(seed), Workspace()
    batches = [get_strategy(strategy).training_input(images, spec, CROP, generator, workspace=workspace).clone() for _ in range(SAMPLES // 5)]
    return torch.cat(batches)


@pytest.fixture(scope="module")
def ordered():
    return _ours("ordered", seed=11, patch_dropout=P_D)


@pytest.mark.parametrize("pil", [False, True], ids=["tensor-reference", "pil-reference"])
def test_ordered_training_matches_the_per_image_pipeline(ordered, pil):
    ours, reference = _summaries(ordered), _summaries(_reference_ordered(pil, seed=5))
    for name in ours:
        a, b = ours[name], reference[name]
        if pil and name != "dropped":
            b = b + (np.random.default_rng(0).random(b.shape) - 0.5) * 1e-9  # no ties from 8-bit levels
            # PIL stores every step in 8 bits (truncating): allow that half-level shift in the mean
            assert abs(a.mean() - b.mean()) < 1.5 / 255 + 4 * a.std() / np.sqrt(len(a)), name
            assert abs(a.std() - b.std()) / b.std() < 0.1, name
        else:
            assert stats.ks_2samp(a, b).pvalue > ALPHA, (name, stats.ks_2samp(a, b))


def test_dropped_crops_per_sample_are_binomial(ordered):
    dropped = _summaries(ordered)["dropped"].astype(int)
    observed = np.bincount(dropped, minlength=10)
    expected = stats.binom.pmf(np.arange(10), 9, P_D) * len(dropped)
    pooled = [observed[:4].tolist() + [observed[4:].sum()], expected[:4].tolist() + [expected[4:].sum()]]
    assert stats.chisquare(pooled[0], pooled[1]).pvalue > ALPHA


def test_multi_crop_training_matches_random_crop_then_augmentation():
    ours = _ours("multi_crop", seed=3)
    torch.manual_seed(8)
    reference_pipeline = transforms.Compose([
        transforms.RandomCrop(CROP), transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(),
        transforms.ColorJitter(brightness=32 / 255, saturation=0.5),
    ])  # fmt: skip
    image = _image().float() / 255
    reference = torch.stack([reference_pipeline(image) for _ in range(SAMPLES)]).unsqueeze(1)
    a, b = _summaries(ours), _summaries(reference)
    for name in ("brightness", "left_right", "top_bottom", "colourfulness", "red_minus_blue"):
        assert stats.ks_2samp(a[name], b[name]).pvalue > ALPHA, name


def test_random_crop_positions_match_torchvision_random_crop():
    ours = random_crop_positions(4000, 1, (WIDTH, HEIGHT), CROP, torch.Generator().manual_seed(0))[:, 0]
    torch.manual_seed(1)
    theirs = torch.tensor([transforms.RandomCrop.get_params(torch.empty(3, HEIGHT, WIDTH), (CROP, CROP))[:2] for _ in range(4000)])
    for axis, size in ((0, HEIGHT), (1, WIDTH)):
        assert ours[:, axis].min() == 0 and ours[:, axis].max() == size - CROP
        assert stats.ks_2samp(ours[:, axis].numpy(), theirs[:, axis].numpy()).pvalue > ALPHA
        counts = np.bincount(ours[:, axis].numpy(), minlength=size - CROP + 1)
        assert stats.chisquare(counts).pvalue > ALPHA  # uniform over every position


def test_a_wrong_distribution_is_detected(ordered):
    """The tests above can fail: the reference with half the saturation range is told apart."""
    narrow = _summaries(_reference_ordered(pil=False, seed=5, saturation=0.25))
    assert stats.ks_2samp(_summaries(ordered)["colourfulness"], narrow["colourfulness"]).pvalue < ALPHA

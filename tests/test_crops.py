"""Crop grid (docs/method.md §3.1) and batched crop cutting."""

import pytest
import torch

from patchlesion.method.crops import crop_grid, cut_crops, random_crop_positions

# Top-left (row, col) of each crop on 600x450 images with 224 px crops, in model order (docs/method.md §3.1).
PAPER_GRIDS = {
    5: [(0, 0), (0, 376), (226, 0), (226, 376), (113, 188)],
    9: [(0, 0), (0, 188), (0, 376), (113, 0), (113, 188), (113, 376), (226, 0), (226, 188), (226, 376)],
    16: [(r, c) for r in (0, 75, 150, 226) for c in (0, 125, 250, 376)],
}


@pytest.mark.parametrize("n_crops", [5, 9, 16])
def test_grid_equals_authors_table(n_crops):
    assert crop_grid(n_crops, (600, 450), 224) == PAPER_GRIDS[n_crops]


def test_grid_for_demo_geometry_covers_image():
    grid = crop_grid(9, (200, 150), 64)
    assert grid == [(r, c) for r in (0, 43, 86) for c in (0, 68, 136)]
    assert max(r for r, _ in grid) + 64 == 150 and max(c for _, c in grid) + 64 == 200


def test_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="perfect square"):
        crop_grid(7, (600, 450), 224)
    with pytest.raises(ValueError, match="larger than the image"):
        crop_grid(9, (200, 150), 224)
    assert crop_grid(1, (600, 450), 224) == [(113, 188)]


def test_cut_crops_matches_slicing():
    images = torch.arange(2 * 3 * 12 * 16, dtype=torch.float32).view(2, 3, 12, 16)
    positions = torch.tensor([[[0, 0], [4, 10]], [[8, 3], [2, 2]]])
    crops = cut_crops(images, positions, 4)
    assert crops.shape == (2, 2, 3, 4, 4)
    for b in range(2):
        for n in range(2):
            r, c = positions[b, n].tolist()
            assert torch.equal(crops[b, n], images[b, :, r : r + 4, c : c + 4])


def test_random_positions_stay_inside_and_cover_range():
    generator = torch.Generator().manual_seed(0)
    positions = random_crop_positions(2000, 1, (200, 150), 64, generator)
    assert positions[..., 0].min() == 0 and positions[..., 0].max() == 150 - 64
    assert positions[..., 1].min() == 0 and positions[..., 1].max() == 200 - 64

"""Property tests of the ordered crop grid (docs/method.md §3.1) for any image and crop size.

Which grids cover the image: a g x g grid (g >= 2) steps (size - crop) / (g - 1) per axis, truncated,
so consecutive crops are floor or ceil of that apart. If the step is at most the crop, no gap opens
(crop is whole, so ceil(step) <= crop); if it is larger, the g - 1 steps add up to more than
(g - 1) crops and one gap is wider than a crop. So the grid covers the image exactly when
g * crop >= width and g * crop >= height. NC = 1 is the centre crop, covering only a square image of
the crop's size; NC = 5 covers the four corners and the centre (paper Sec. II-D), not necessarily
everything (87 % of a 600x450 image with 224 px crops).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from patchlesion.method.crops import crop_grid

SIZES = st.integers(1, 320)
VALID_N = st.sampled_from((1, 4, 5, 9, 16, 25, 36))


def _mask(positions, crop: int, width: int, height: int) -> np.ndarray:
    """Pixels covered by the crops, computed independently of crop_grid's arithmetic."""
    covered = np.zeros((height, width), dtype=bool)
    for row, col in positions:
        covered[row : row + crop, col : col + crop] = True
    return covered


@settings(max_examples=300)
@given(width=SIZES, height=SIZES, crop=SIZES, n_crops=VALID_N)
@example(width=600, height=450, crop=224, n_crops=5)  # the paper's NC = 5: 87.0 % covered (docs/method.md §3.1)
def test_grid_positions_lie_inside_and_cover_where_the_method_says(width, height, crop, n_crops):
    if crop > min(width, height):
        with pytest.raises(ValueError, match="larger than the image"):
            crop_grid(n_crops, (width, height), crop)
        return
    positions = crop_grid(n_crops, (width, height), crop)
    assert len(positions) == n_crops
    assert all(isinstance(v, int) for p in positions for v in p)
    assert all(0 <= row <= height - crop and 0 <= col <= width - crop for row, col in positions), "a crop outside the image"
    covered = _mask(positions, crop, width, height)
    if n_crops == 5:
        assert positions[:4] == crop_grid(4, (width, height), crop)
        assert covered[0, 0] and covered[0, -1] and covered[-1, 0] and covered[-1, -1], "a corner not covered"
        row, col = positions[4]
        assert abs(row + crop / 2 - height / 2) <= 1 and abs(col + crop / 2 - width / 2) <= 1, "fifth crop off the centre"
        return
    per_axis = math.isqrt(n_crops)
    if per_axis == 1:
        assert covered.all() == (crop == width == height)
        return
    rows, cols = [r for r, _ in positions[::per_axis]], [c for _, c in positions[:per_axis]]
    assert positions == [(r, c) for r in rows for c in cols], "not a row-major g x g grid"
    assert rows == sorted(rows) and cols == sorted(cols)
    assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, height - crop, width - crop), "first and last crops touch the borders"
    assert covered.all() == (per_axis * crop >= width and per_axis * crop >= height)


@settings(max_examples=60)
@given(n_crops=st.integers(-40, 40).filter(lambda n: n != 5 and not (n >= 1 and math.isqrt(n) ** 2 == n)), crop=st.integers(1, 64))
@example(n_crops=-1, crop=16)  # found by hypothesis: math.isqrt's "must be nonnegative" instead of the grid's message
def test_other_crop_counts_are_refused_with_the_rule(n_crops, crop):
    with pytest.raises(ValueError, match="n_crops must be 5 or a perfect square"):
        crop_grid(n_crops, (128, 96), crop)

"""Input strategies (Sec. II-D; docs/method.md §3): Downsampling, Single-Crop, Multi-Crop, Ordered-Crop with
patch dropout. Exact checks against slicing and ``interpolate``, statistical checks of the random parts."""

import math

import pytest
import torch
import torch.nn.functional as F

from patchlesion.errors import PatchlesionError
from patchlesion.method.crops import crop_grid, random_resized_boxes, resize_boxes
from patchlesion.method.runs import RunSpec
from patchlesion.method.strategies import STRATEGIES, get_strategy

CROP = 16
WIDTH, HEIGHT = 40, 30  # small stand-in for 600x450


def _images(batch=4, seed=0, height=HEIGHT, width=WIDTH):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=generator, dtype=torch.uint8)


def _spec(strategy, **fields):
    return RunSpec(backbone="tiny", strategy=strategy, **fields)


def _resize(images, size):
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _dropped(crops):
    """``(B, N)`` bool: crops that are all zero."""
    return crops.flatten(2).amax(dim=2) == 0


# ---------------------------------------------------------------- registry, shapes, determinism

def test_registry_holds_all_four_strategies():
    assert set(STRATEGIES) == {"multi_crop", "downsample", "single_crop", "ordered"}
    for name, strategy in STRATEGIES.items():
        assert get_strategy(name) is strategy and strategy.name == name
    assert {n: s.combine for n, s in STRATEGIES.items()} == {
        "multi_crop": "softmax_mean", "downsample": "softmax_mean", "single_crop": "softmax_mean", "ordered": "model",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown input strategy"):
        get_strategy("nope")


@pytest.mark.parametrize(
    ("name", "fields", "n_train", "n_eval"),
    [
        ("multi_crop", {}, 1, 9),
        ("downsample", {}, 1, 1),
        ("single_crop", {}, 1, 1),
        ("single_crop", {"centre_crop": "paper"}, 1, 1),
        ("ordered", {"patch_dropout": 0.3}, 9, 9),
        ("ordered", {"n_crops": 5}, 5, 5),
    ],
)
def test_shapes_range_and_determinism(name, fields, n_train, n_eval):
    strategy, spec, images = get_strategy(name), _spec(name, **fields), _images()
    train = strategy.training_input(images, spec, CROP, torch.Generator().manual_seed(1))
    assert train.shape == (4, n_train, 3, CROP, CROP) and train.dtype == torch.float32
    assert train.min() >= 0 and train.max() <= 1
    again = strategy.training_input(images, spec, CROP, torch.Generator().manual_seed(1))
    other = strategy.training_input(images, spec, CROP, torch.Generator().manual_seed(2))
    assert torch.equal(train, again) and not torch.equal(train, other)

    evaluation = strategy.evaluation_input(images, spec, CROP)
    assert evaluation.shape == (4, n_eval, 3, CROP, CROP) and evaluation.dtype == torch.float32
    assert evaluation.min() >= 0 and evaluation.max() <= 1
    assert torch.equal(evaluation, strategy.evaluation_input(images, spec, CROP))
    assert images.dtype == torch.uint8 and torch.equal(images, _images())  # input untouched


# ---------------------------------------------------------------- exact evaluation inputs

@pytest.mark.parametrize("n_crops", [5, 9, 16])
def test_ordered_evaluation_equals_grid_slicing(n_crops):
    images = _images()
    crops = get_strategy("ordered").evaluation_input(images, _spec("ordered", n_crops=n_crops), CROP)
    grid = crop_grid(n_crops, (WIDTH, HEIGHT), CROP)
    for k, (row, col) in enumerate(grid):
        assert torch.equal(crops[:, k], images[:, :, row : row + CROP, col : col + CROP].float() / 255)


def test_downsample_equals_interpolate_of_whole_image():
    images = _images()
    evaluation = get_strategy("downsample").evaluation_input(images, _spec("downsample"), CROP)
    torch.testing.assert_close(evaluation[:, 0], _resize(images.float() / 255, CROP))


def test_single_crop_code_centre_crop_is_1_5_crop_size_square():
    images = _images()
    evaluation = get_strategy("single_crop").evaluation_input(images, _spec("single_crop"), CROP)
    side = 24  # 1.5 x 16; centred as torchvision's CenterCrop: top (30-24)/2 = 3, left (40-24)/2 = 8
    expected = _resize(images[:, :, 3 : 3 + side, 8 : 8 + side].float() / 255, CROP)
    assert torch.equal(evaluation[:, 0], expected)


def test_single_crop_code_centre_crop_for_paper_geometry_and_clamp():
    strategy, spec = get_strategy("single_crop"), _spec("single_crop")
    assert strategy.centre_box((1, 3, 450, 600), spec, 224) == (57, 132, 336, 336)
    # a 24 px square on a 20 px high image: the height is clamped to the image, the width kept
    assert strategy.centre_box((1, 3, 20, 40), spec, 16) == (0, 8, 20, 24)
    images = _images(height=20)
    evaluation = strategy.evaluation_input(images, spec, CROP)
    assert torch.equal(evaluation[:, 0], _resize(images[:, :, :, 8:32].float() / 255, CROP))


def test_single_crop_paper_centre_crop_covers_85_percent():
    strategy, spec = get_strategy("single_crop"), _spec("single_crop", centre_crop="paper")
    top, left, h, w = strategy.centre_box((1, 3, 450, 600), spec, 224)
    assert (h, w) == (382, 510) and (top, left) == (34, 45)  # 85 % of each side, centred
    assert abs(h / 450 - 0.85) < 0.002 and abs(w / 600 - 0.85) < 0.002
    images = _images(height=40, width=60)
    evaluation = strategy.evaluation_input(images, spec, CROP)
    # 85 % of 40 x 60 = 34 x 51; offsets (40-34)/2 = 3, round((60-51)/2) = round(4.5) = 4
    expected = _resize(images[:, :, 3 : 3 + 34, 4 : 4 + 51].float() / 255, CROP)
    assert torch.equal(evaluation[:, 0], expected)


# ---------------------------------------------------------------- Single-Crop training: RandomResizedCrop

def test_resize_boxes_equals_interpolate_per_box():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, HEIGHT, WIDTH, generator=generator)
    boxes = random_resized_boxes(32, (WIDTH, HEIGHT), generator)
    boxes[0] = torch.tensor([0, 0, HEIGHT, WIDTH])  # whole image
    boxes[1] = torch.tensor([5, 7, 4, 6])  # upscaling
    resized = resize_boxes(images, boxes, CROP)
    for b, (top, left, h, w) in enumerate(boxes.tolist()):
        expected = _resize(images[b : b + 1, :, top : top + h, left : left + w], CROP)[0]
        torch.testing.assert_close(resized[b], expected, rtol=0, atol=1e-5)


def _torchvision_boxes(count, image_size, seed):
    from torchvision.transforms import RandomResizedCrop

    width, height = image_size
    image = torch.empty(3, height, width)
    torch.manual_seed(seed)
    scale, ratio = (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0)
    return torch.tensor([RandomResizedCrop.get_params(image, scale, ratio) for _ in range(count)])


def _check_inside(boxes, image_size):
    width, height = image_size
    top, left, h, w = boxes.unbind(1)
    assert (h > 0).all() and (w > 0).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()


def _box_statistics(boxes, image_size):
    width, height = image_size
    top, left, h, w = boxes.double().unbind(1)
    return {
        "area": h * w / (width * height),
        "aspect": w / h,
        "centre_row": (top + h / 2) / height,
        "centre_col": (left + w / 2) / width,
    }


def _ks_distance(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    points = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a.sort().values, points, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b.sort().values, points, right=True).double() / len(b)
    return (cdf_a - cdf_b).abs().max().item()


@pytest.mark.parametrize("image_size", [(600, 450), (80, 20)])
def test_random_resized_boxes_match_torchvision_statistics(image_size):
    pytest.importorskip("torchvision")
    count = 6000
    ours = random_resized_boxes(count, image_size, torch.Generator().manual_seed(0))
    theirs = _torchvision_boxes(count, image_size, seed=0)
    _check_inside(ours, image_size)
    _check_inside(theirs, image_size)
    # two independent samples of the same distribution: means within 4 standard errors, and the
    # KS distance below its critical value at alpha = 1e-4 (sqrt(-ln(alpha / 2) / 2) = 2.23)
    stats_ours, stats_theirs = _box_statistics(ours, image_size), _box_statistics(theirs, image_size)
    for stat in stats_ours:
        a, b = stats_ours[stat], stats_theirs[stat]
        assert abs(a.mean() - b.mean()).item() < 4 * math.sqrt((a.var() + b.var()).item() / count), stat
        assert _ks_distance(a, b) < 2.23 * math.sqrt(2 / count), stat
    # the fallback (no fitting box in 10 attempts) is taken as often and gives the same box
    fallback = {(80, 20): (0, 26, 20, 27), (600, 450): (0, 0, 450, 600)}[image_size]
    rate_ours = (ours == torch.tensor(fallback)).all(1).double().mean().item()
    rate_theirs = (theirs == torch.tensor(fallback)).all(1).double().mean().item()
    p = max((rate_ours + rate_theirs) / 2, 1e-3)
    assert abs(rate_ours - rate_theirs) < 4 * math.sqrt(2 * p * (1 - p) / count)
    if image_size == (80, 20):
        assert rate_ours > 0.05  # the wide image really exercises the fallback


def test_random_resized_boxes_fallback_equals_torchvision_exactly():
    pytest.importorskip("torchvision")
    for image_size in [(1000, 10), (10, 1000)]:  # no attempt can fit: always torchvision's centre fallback
        ours = random_resized_boxes(50, image_size, torch.Generator().manual_seed(0))
        theirs = _torchvision_boxes(50, image_size, seed=0)
        assert torch.equal(ours, theirs)


def test_single_crop_training_is_resized_random_box_then_augmentation():
    # a constant grey image stays constant under resize and flips; only brightness changes it
    images = torch.full((200, 3, HEIGHT, WIDTH), 128, dtype=torch.uint8)
    train = get_strategy("single_crop").training_input(images, _spec("single_crop"), CROP, torch.Generator().manual_seed(0))
    per_sample = train.flatten(1)
    assert (per_sample.amax(1) - per_sample.amin(1)).max() < 1e-5
    factor = per_sample[:, 0] / (128 / 255)
    assert factor.min() >= 1 - 32 / 255 - 1e-5 and factor.max() <= 1 + 32 / 255 + 1e-5
    assert factor.std() > 0.02  # colour jitter applied per sample


# ---------------------------------------------------------------- Ordered-Crop training: augmentation order

def test_ordered_training_augments_whole_image_before_cropping():
    batch = 64
    images = torch.zeros(batch, 3, HEIGHT, WIDTH, dtype=torch.uint8)
    images[..., WIDTH // 2 :] = 255  # left half black, right half white
    spec = _spec("ordered")
    crops = get_strategy("ordered").training_input(images, spec, CROP, torch.Generator().manual_seed(0))
    grid = crop_grid(9, (WIDTH, HEIGHT), CROP)
    reference = torch.stack([images[0, :, r : r + CROP, c : c + CROP] for r, c in grid]) > 0  # (N, 3, s, s)
    flipped_reference = torch.stack([images[0].flip(-1)[:, r : r + CROP, c : c + CROP] for r, c in grid]) > 0
    bright = crops > 0  # brightness jitter keeps white non-zero and black zero
    flipped = bright[:, 0].all(dim=(1, 2, 3))  # crop 0 (top left) is white only if the whole image was flipped
    assert 0 < flipped.sum() < batch
    for b in range(batch):
        assert torch.equal(bright[b], flipped_reference if flipped[b] else reference)
    assert not bright[~flipped, 0].any() and bright[flipped, 0].all()


def test_ordered_training_equals_augment_then_grid_crops():
    from patchlesion.method.augment import augment

    images = _images(8)
    crops = get_strategy("ordered").training_input(images, _spec("ordered"), CROP, torch.Generator().manual_seed(3))
    augmented = augment(images.float() / 255, torch.Generator().manual_seed(3))
    for k, (row, col) in enumerate(crop_grid(9, (WIDTH, HEIGHT), CROP)):
        # the same draws and arithmetic up to float rounding (the fast path folds 1/255 into its factors)
        torch.testing.assert_close(crops[:, k], augmented[:, :, row : row + CROP, col : col + CROP], rtol=0, atol=2e-6)


# ---------------------------------------------------------------- patch dropout

def _ordered_training(batch, patch_dropout, seed=0):
    images = torch.full((batch, 3, 24, 24), 255, dtype=torch.uint8)  # never black after jitter
    spec = _spec("ordered", patch_dropout=patch_dropout)
    return get_strategy("ordered").training_input(images, spec, 8, torch.Generator().manual_seed(seed))


def test_patch_dropout_rate_and_independence():
    batch, p = 2000, 0.3
    crops = _ordered_training(batch, p)
    dropped = _dropped(crops)  # (B, 9)
    assert dropped.shape == (batch, 9)
    # a crop is either dropped entirely or untouched (no rescaling of survivors)
    assert (crops.flatten(2).amin(2)[~dropped] > 0.8).all()
    assert crops.max() <= 1.0
    sigma = math.sqrt(p * (1 - p) / dropped.numel())
    assert abs(dropped.double().mean().item() - p) < 4 * sigma
    per_position = dropped.double().mean(0)  # each crop position on its own
    assert (per_position - p).abs().max() < 4 * math.sqrt(p * (1 - p) / batch)
    # pairs of positions are dropped together as often as independence predicts (p^2)
    both = (dropped[:, :, None] & dropped[:, None, :]).double().mean(0)
    off_diagonal = both[~torch.eye(9, dtype=torch.bool)]
    assert (off_diagonal - p * p).abs().max() < 4 * math.sqrt(p * p * (1 - p * p) / batch)
    # samples differ: many distinct drop patterns, and consecutive samples are uncorrelated
    assert len({tuple(row) for row in dropped.tolist()}) > 200
    same_as_next = (dropped[1:] == dropped[:-1]).double().mean().item()
    assert abs(same_as_next - (p * p + (1 - p) ** 2)) < 0.03


def test_patch_dropout_can_drop_every_crop_and_is_off_at_zero():
    all_dropped = _dropped(_ordered_training(500, 0.9)).all(1)
    assert all_dropped.any()  # no guarantee that one crop survives (0.9^9 = 39 %)
    assert not _dropped(_ordered_training(500, 0.0)).any()


def test_patch_dropout_never_at_evaluation():
    images = torch.full((500, 3, 24, 24), 255, dtype=torch.uint8)
    spec = _spec("ordered", patch_dropout=0.5)
    evaluation = get_strategy("ordered").evaluation_input(images, spec, 8)
    assert not _dropped(evaluation).any() and torch.equal(evaluation, torch.ones_like(evaluation))


# ---------------------------------------------------------------- check

@pytest.mark.parametrize("name", ["multi_crop", "downsample", "single_crop"])
@pytest.mark.parametrize(
    "fields", [{"aggregation": "gru"}, {"attention": "initial"}, {"attention": "end"}, {"patch_dropout": 0.2}]
)
def test_check_rejects_model_settings_for_plain_strategies(name, fields):
    with pytest.raises(PatchlesionError):
        STRATEGIES[name].check(_spec(name, **fields))


@pytest.mark.parametrize("name", ["multi_crop", "downsample", "single_crop", "ordered"])
def test_check_accepts_plain_settings(name):
    n_crops = 1 if name in ("downsample", "single_crop") else 9
    STRATEGIES[name].check(_spec(name, n_crops=n_crops))


@pytest.mark.parametrize("name", ["downsample", "single_crop"])
def test_check_rejects_several_crops_for_one_input_strategies(name):
    with pytest.raises(PatchlesionError, match="n_crops"):
        STRATEGIES[name].check(_spec(name, n_crops=9))


@pytest.mark.parametrize(
    "fields",
    [
        {"aggregation": "gru", "attention": "initial", "patch_dropout": 0.2},
        {"aggregation": "mean", "attention": "dual", "patch_dropout": 0.1},
        {"aggregation": "gru"},
    ],
)
def test_check_accepts_model_settings_for_ordered(fields):
    STRATEGIES["ordered"].check(_spec("ordered", **fields))


# ---------------------------------------------------------------- device

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["multi_crop", "downsample", "single_crop", "ordered"])
def test_strategies_run_on_the_images_device_and_match_cpu(name):
    strategy, spec, images = get_strategy(name), _spec(name, patch_dropout=0.3 if name == "ordered" else 0.0), _images()
    cpu = strategy.training_input(images, spec, CROP, torch.Generator().manual_seed(0))
    gpu = strategy.training_input(images.cuda(), spec, CROP, torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)
    evaluation = strategy.evaluation_input(images.cuda(), spec, CROP)
    assert evaluation.device.type == "cuda"
    torch.testing.assert_close(evaluation.cpu(), strategy.evaluation_input(images, spec, CROP), rtol=0, atol=1e-4)

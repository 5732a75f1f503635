"""Tests of patchlesion.data.splits on the real HAM10000 table (shipped CSV) and on a small synthetic table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from patchlesion.data.splits import (
    check_split,
    fold_parts,
    load_published_table,
    published_split,
    select,
    split_summary,
    stratified_split,
)
from patchlesion.errors import SplitError
from patchlesion.method.classes import CLASSES

N_HAM = 10015


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    """The real HAM10000 metadata columns (image_id, lesion_id, dx, dx_type) from the shipped CSV."""
    table = load_published_table()
    assert len(table) == N_HAM
    return table.drop(columns="part")


@pytest.fixture(scope="module")
def strat0(meta) -> pd.DataFrame:
    return stratified_split(meta, seed=0)


@pytest.fixture(scope="module")
def published(meta) -> pd.DataFrame:
    return published_split(meta)


def _synthetic_meta(n_images: int = 150, seed: int = 0) -> pd.DataFrame:
    """~150 images, 7 classes, lesions of 1-6 images; every class has >= 5 lesions."""
    rng = np.random.default_rng(seed)
    dxs = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    rows, lesion = [], 0
    while len(rows) < n_images:
        # first 35 lesions: 5 per class round-robin; then NV-heavy like HAM10000
        dx = dxs[lesion % 7] if lesion < 35 else rng.choice(dxs, p=[0.1, 0.5, 0.1, 0.05, 0.15, 0.05, 0.05])
        for _ in range(int(rng.integers(1, 7))):
            rows.append((f"IMG_{len(rows):04d}", f"LES_{lesion:04d}", dx))
        lesion += 1
    return pd.DataFrame(rows, columns=["image_id", "lesion_id", "dx"])


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return _synthetic_meta()


def _leaked_lesions(meta: pd.DataFrame, split: pd.DataFrame) -> int:
    merged = meta.merge(split, on="image_id")
    return int((merged.groupby("lesion_id")["part"].nunique() > 1).sum())


# ---------------------------------------------------------------- stratified split, real table


def test_stratified_covers_every_image_once(meta, strat0):
    assert list(strat0.columns) == ["image_id", "part"]
    assert strat0["part"].dtype.kind == "i"
    assert strat0["image_id"].is_unique
    assert list(strat0["image_id"]) == list(meta["image_id"])  # meta's row order
    assert set(strat0["part"]) == {0, 1, 2, 3}


def test_stratified_equal_sizes(strat0):
    sizes = strat0["part"].value_counts().sort_index()
    assert sizes.sum() == N_HAM
    # Sec. II-A: four equally-sized parts -> each within +-1% of n/4
    assert (abs(sizes - N_HAM / 4) <= 0.01 * N_HAM / 4).all(), sizes.to_dict()


def test_stratified_same_class_distribution(meta, strat0):
    summary = split_summary(meta, strat0)
    totals = summary.loc["total", list(CLASSES)]
    for part in range(4):
        counts = summary.loc[part, list(CLASSES)]
        target = totals / 4
        # tolerance: each class count within +-max(2, 3% of its target) images of total/4
        tol = np.maximum(2, 0.03 * target)
        assert (abs(counts - target) <= tol).all(), (part, counts.to_dict(), target.to_dict())


def test_stratified_no_lesion_leak(meta, strat0):
    assert _leaked_lesions(meta, strat0) == 0
    check_split(meta, strat0)
    summary = split_summary(meta, strat0)
    assert summary.loc[[0, 1, 2, 3], "lesions"].sum() == summary.loc["total", "lesions"] == 7470


def test_stratified_deterministic_and_seed_dependent(meta, strat0):
    again = stratified_split(meta, seed=0)
    pd.testing.assert_frame_equal(again, strat0)
    other = stratified_split(meta, seed=1)
    assert (other["part"] != strat0["part"]).mean() > 0.5  # a genuinely different partition
    assert _leaked_lesions(meta, other) == 0


# ---------------------------------------------------------------- published split


EXPECTED_PUBLISHED = {  # MEL, NV, BCC, AKIEC, BKL, DF, VASC
    0: (280, 1677, 129, 84, 275, 30, 36),
    1: (279, 1678, 129, 82, 275, 30, 38),
    2: (280, 1677, 129, 82, 275, 29, 36),
    3: (274, 1673, 127, 79, 274, 26, 32),
}


def test_published_sizes_and_class_counts(meta, published):
    assert list(published["image_id"]) == list(meta["image_id"])
    sizes = published["part"].value_counts().sort_index()
    assert sizes.to_dict() == {0: 2511, 1: 2511, 2: 2508, 3: 2485}
    summary = split_summary(meta, published)
    for part, counts in EXPECTED_PUBLISHED.items():
        assert tuple(summary.loc[part, list(CLASSES)]) == counts
    assert _leaked_lesions(meta, published) == 0


def test_published_missing_images_raise(meta):
    dropped = meta.iloc[[5, 17, 4000]]["image_id"].tolist()
    with pytest.raises(SplitError) as exc:
        published_split(meta.drop(index=[5, 17, 4000]))
    msg = str(exc.value)
    assert "3 of the published split" in msg
    assert any(i in msg for i in dropped)
    assert "split: stratified" in msg


def test_published_unknown_images_raise(meta):
    extra = pd.DataFrame([{"image_id": "ISIC_9999999", "lesion_id": "HAM_9999999", "dx": "nv"}])
    with pytest.raises(SplitError, match=r"1 of the metadata's .*ISIC_9999999.*split: stratified"):
        published_split(pd.concat([meta, extra], ignore_index=True))


def test_published_checks_meta_lesions(meta, published):
    # give an image in part 1 the lesion id of an image in part 0: the published split now leaks
    a = published.index[published["part"] == 0][0]
    b = published.index[published["part"] == 1][0]
    bad = meta.copy()
    bad.loc[b, "lesion_id"] = bad.loc[a, "lesion_id"]
    with pytest.raises(SplitError, match=bad.loc[a, "lesion_id"]):
        published_split(bad)


# ---------------------------------------------------------------- check_split


def test_check_split_detects_lesion_leak(meta, strat0):
    leaky = strat0.copy()
    lesion = meta.groupby("lesion_id").size().loc[lambda s: s >= 2].index[0]
    idx = meta.index[meta["lesion_id"] == lesion]
    old = int(leaky.loc[idx[0], "part"])
    new = (old + 1) % 4
    leaky.loc[idx[0], "part"] = new
    with pytest.raises(SplitError) as exc:
        check_split(meta, leaky)
    msg = str(exc.value)
    assert lesion in msg
    assert str(sorted([old, new])) in msg


def test_a_split_that_lists_the_test_images_again_as_validation_part_passes_only_with_once_false(small):
    # derm7pt's split: no validation set, so its test images (part 0) are listed again as part 1
    # (docs/data.md §8.2); a training job reads it with once=False.
    good = stratified_split(small, seed=0)
    test = good[good["part"] == 0]
    derm7pt_like = pd.concat([good[good["part"] != 1], test.assign(part=1)], ignore_index=True)
    meta = small[small["image_id"].isin(derm7pt_like["image_id"])]
    with pytest.raises(SplitError, match="more than once"):
        check_split(meta, derm7pt_like)
    check_split(meta, derm7pt_like, once=False)  # part 0 is not "empty" although part 1 repeats its images
    with pytest.raises(SplitError, match=r"more than once.*IMG_"):  # twice in one part is wrong either way
        check_split(meta, pd.concat([derm7pt_like, test.iloc[[0]]], ignore_index=True), once=False)


def test_check_split_detects_bad_images_and_parts(small):
    good = stratified_split(small, seed=0)
    check_split(small, good)
    with pytest.raises(SplitError, match=r"no part for 1 image.*IMG_0003"):
        check_split(small, good.drop(index=3))
    with pytest.raises(SplitError, match=r"more than once.*IMG_0000"):
        check_split(small, pd.concat([good, good.iloc[[0]]], ignore_index=True))
    with pytest.raises(SplitError, match=r"not in the metadata.*IMG_X"):
        check_split(small, pd.concat([good, pd.DataFrame({"image_id": ["IMG_X"], "part": [0]})]))
    out_of_range = good.copy()
    out_of_range.loc[0, "part"] = 4
    with pytest.raises(SplitError, match=r"outside the integers 0..3.*IMG_0000"):
        check_split(small, out_of_range)
    with pytest.raises(SplitError, match="lacks column"):
        check_split(small, good.rename(columns={"part": "fold"}))


# ---------------------------------------------------------------- folds and selection


def test_fold_parts():
    assert fold_parts(1) == ((2, 3), 1)
    assert fold_parts(2) == ((1, 3), 2)
    assert fold_parts(3) == ((1, 2), 3)
    for bad in (0, 4, -1, "1", 1.0, True):
        with pytest.raises(ValueError):
            fold_parts(bad)


def test_select_partitions_everything(published):
    everything = set(published["image_id"])
    test = select(published, 1, "test")
    assert len(test) == 2511
    for fold in (1, 2, 3):
        train, val = select(published, fold, "train"), select(published, fold, "val")
        assert select(published, fold, "test") == test
        assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
        assert set(train) | set(val) | set(test) == everything
        assert len(train) + len(val) + len(test) == N_HAM
        assert set(val) == set(published.loc[published["part"] == fold, "image_id"])
    with pytest.raises(ValueError):
        select(published, 1, "validation")


# ---------------------------------------------------------------- small synthetic data


def test_small_every_class_in_every_part(small):
    n_lesions = small.groupby("dx")["lesion_id"].nunique()
    assert len(small) >= 150 and (n_lesions >= 5).all() and len(n_lesions) == 7
    for seed in range(5):
        split = stratified_split(small, seed=seed)
        check_split(small, split)
        summary = split_summary(small, split)
        assert (summary.loc[[0, 1, 2, 3], list(CLASSES)] > 0).all().all(), (seed, summary)
        sizes = summary.loc[[0, 1, 2, 3], "images"]
        assert (abs(sizes - len(small) / 4) <= 0.1 * len(small) / 4).all(), (seed, sizes.to_dict())


def test_small_deterministic_seeded_and_order_independent(small):
    a = stratified_split(small, seed=3)
    pd.testing.assert_frame_equal(a, stratified_split(small, seed=3))
    assert not a["part"].equals(stratified_split(small, seed=4)["part"])
    shuffled = small.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = stratified_split(shuffled, seed=3)
    assert list(b["image_id"]) == list(shuffled["image_id"])
    assert dict(zip(a["image_id"], a["part"])) == dict(zip(b["image_id"], b["part"]))


def test_small_rare_class_is_fine(small):
    # a class with only 2 lesions cannot be in every part; the split still works, silently
    rare = pd.DataFrame(
        {"image_id": ["R1", "R2", "R3"], "lesion_id": ["RL1", "RL1", "RL2"], "dx": ["vasc", "vasc", "vasc"]}
    )
    meta = pd.concat([small[small["dx"] != "vasc"], rare], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = stratified_split(meta, seed=0)
    check_split(meta, split)
    assert split.loc[split["image_id"].isin(["R1", "R2"]), "part"].nunique() == 1


def test_too_few_lesions_or_bad_meta_raise(small):
    tiny = pd.DataFrame({"image_id": list("abcd"), "lesion_id": ["l1", "l1", "l2", "l3"], "dx": ["nv"] * 4})
    with pytest.raises(SplitError, match="only 3 distinct lesion_id"):
        stratified_split(tiny)
    with pytest.raises(SplitError, match="lacks column.*lesion_id"):
        stratified_split(small.drop(columns="lesion_id"))
    nolesion = small.copy()
    nolesion.loc[7, "lesion_id"] = None
    with pytest.raises(SplitError, match=r"empty lesion_id.*IMG_0007"):
        stratified_split(nolesion)
    dup = pd.concat([small, small.iloc[[2]]], ignore_index=True)
    with pytest.raises(SplitError, match=r"more than once.*IMG_0002"):
        stratified_split(dup)

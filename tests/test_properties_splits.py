"""Property tests of the stratified 4-way split (src/patchlesion/data/splits.py) on random
class/lesion tables: a partition of the images into lesion-disjoint parts of about a quarter each,
stratified by class, deterministic for a seed and independent of the table's row order.

The tolerance is derived from how scikit-learn's StratifiedGroupKFold assigns a lesion whose images
all have one class c: to the part holding the fewest images of c (adding s to the smallest of k
counts minimises their standard deviation, the only term that changes). So, by induction over the
lesions, the largest and smallest count of c over the parts differ by at most S_c, the size of c's
largest lesion, and every part's count of c is within (k - 1) / k * S_c of n_c / k; a part's size is
within the sum of these over the classes of n / k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from patchlesion.data.splits import N_PARTS, stratified_split
from patchlesion.errors import SplitError
from patchlesion.method.classes import DX_TO_CLASS


@st.composite
def lesion_tables(draw, one_class_per_lesion: bool = True) -> pd.DataFrame:
    """A HAM10000-like table: lesions of 1-6 images, each lesion of one class (HAM10000's case) or
    with images of several classes (a malformed table, still to be split or refused cleanly)."""
    classes = draw(st.lists(st.sampled_from(tuple(DX_TO_CLASS)), min_size=1, max_size=7, unique=True))
    n_lesions = draw(st.integers(1, 60))
    rows = []
    for lesion in range(n_lesions):
        size = draw(st.integers(1, 6))
        dx = draw(st.sampled_from(classes))
        for _ in range(size):
            rows.append({"lesion_id": f"HAM_{lesion:07d}", "dx": dx if one_class_per_lesion else draw(st.sampled_from(classes))})
    numbers = draw(st.permutations(range(len(rows))))  # image ids in no particular relation to lesions
    for row, number in zip(rows, numbers):
        row["image_id"] = f"ISIC_{number:07d}"
    return pd.DataFrame(rows)[["image_id", "lesion_id", "dx"]]


def _split_or_none(meta: pd.DataFrame, seed: int) -> pd.DataFrame | None:
    """The split, or None where it is refused with a SplitError for one of the three reasons there are."""
    try:
        return stratified_split(meta, seed=seed)
    except SplitError as error:
        message = str(error)
    too_few_lesions = meta["lesion_id"].nunique() < N_PARTS and "distinct lesion_id" in message
    too_few_of_every_class = meta["dx"].value_counts().max() < N_PARTS and f"cannot make a stratified {N_PARTS}-part split" in message
    assert too_few_lesions or too_few_of_every_class or "no images in part" in message, message
    return None


def _check_partition(meta: pd.DataFrame, split: pd.DataFrame) -> None:
    assert list(split["image_id"]) == list(meta["image_id"]), "one row per image, in the table's order"
    assert split["part"].isin(range(N_PARTS)).all() and set(split["part"]) == set(range(N_PARTS))
    parts_of_lesion = meta.assign(part=split["part"].to_numpy()).groupby("lesion_id")["part"].nunique()
    assert (parts_of_lesion == 1).all(), "a lesion in two parts"


@settings(max_examples=60)
@given(meta=lesion_tables(), seed=st.integers(0, 2**31 - 1))
def test_split_is_a_stratified_lesion_disjoint_partition_of_quarters(meta, seed):
    split = _split_or_none(meta, seed)
    if split is None:
        return
    _check_partition(meta, split)
    table = meta.assign(part=split["part"].to_numpy())
    counts = pd.crosstab(table["part"], table["dx"])  # (part, class) image counts
    largest = table.groupby(["dx", "lesion_id"]).size().groupby("dx").max()  # S_c
    slack = (N_PARTS - 1) / N_PARTS * largest
    deviation = (counts - counts.sum() / N_PARTS).abs()
    assert (deviation <= slack + 1e-9).all(axis=None), f"class counts per part\n{counts}\nallowed deviation\n{slack}"
    sizes = counts.sum(axis=1)
    assert ((sizes - len(meta) / N_PARTS).abs() <= slack.sum() + 1e-9).all(), f"part sizes {sizes.tolist()} of {len(meta)} images"


@settings(max_examples=25)
@given(meta=lesion_tables(one_class_per_lesion=False), seed=st.integers(0, 2**31 - 1), order=st.randoms(use_true_random=False))
def test_split_is_deterministic_and_independent_of_row_order(meta, seed, order):
    """Also for lesions whose images have several classes: a partition or a SplitError, nothing else."""
    split = _split_or_none(meta, seed)
    if split is None:
        return
    _check_partition(meta, split)
    again = stratified_split(meta, seed=seed)
    pd.testing.assert_frame_equal(split, again)
    shuffled = meta.iloc[order.sample(range(len(meta)), len(meta))].reset_index(drop=True)
    part_of = dict(zip(split["image_id"], split["part"]))
    resplit = stratified_split(shuffled, seed=seed)
    assert [part_of[i] for i in resplit["image_id"]] == list(resplit["part"])


def test_the_derived_bound_is_tight_enough_to_catch_an_unstratified_split():
    """The bound is not vacuous: parts by image number (not by class) break it on a plain table."""
    meta = pd.DataFrame({"image_id": [f"ISIC_{i:07d}" for i in range(40)], "lesion_id": [f"HAM_{i:07d}" for i in range(40)],
                         "dx": ["nv"] * 20 + ["mel"] * 20})  # fmt: skip
    by_number = np.arange(40) * N_PARTS // 40  # parts 0,0,...,3: nv fills parts 0-1, mel parts 2-3
    counts = pd.crosstab(by_number, meta["dx"])
    assert ((counts - counts.sum() / N_PARTS).abs() > (N_PARTS - 1) / N_PARTS * 1).any(axis=None)
    split = stratified_split(meta, seed=0)
    counts = pd.crosstab(split["part"], meta["dx"])
    assert ((counts - counts.sum() / N_PARTS).abs() <= (N_PARTS - 1) / N_PARTS).all(axis=None)

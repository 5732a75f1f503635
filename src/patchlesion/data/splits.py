"""Data splits: four lesion-disjoint parts; part 0 is the held-out test set, parts 1-3 the CV folds.

A *split* is a DataFrame with columns ``image_id`` and ``part`` (int, ``0..n_parts-1``).
Part 0 is the held-out test set; fold ``k`` in ``{1, 2, 3}`` validates on part ``k`` and trains
on the two other parts among ``1..3`` (Sec. II-A, three-fold cross-validation).
The one exception is derm7pt's split (:mod:`patchlesion.data.derm7pt`, fold 1 only): it lists the test
images in part 0 and again in part 1, because the paper has no validation set there and the authors'
code validates on the test set; :func:`select` reads it like any other split.

``meta`` is a HAM10000-style metadata table with at least ``image_id``, ``lesion_id`` and ``dx``
(lower-case HAM codes), i.e. the columns of ``HAM10000_metadata.csv``; or, with a ``description``
(:class:`~patchlesion.data.description.DatasetDescription`), any image index with ``image_id``, the
description's label column and its group column (without one each image is its own group).
"""

from __future__ import annotations

import warnings
from importlib import resources

import numpy as np
import pandas as pd

from patchlesion.data.description import DatasetDescription
from patchlesion.errors import SplitError
from patchlesion.method.classes import CLASSES, DX_TO_CLASS

#: Number of parts of every split used by the pipeline (1 test part + 3 cross-validation parts).
N_PARTS = 4
#: The cross-validation folds; fold k validates on part k.
FOLDS: tuple[int, ...] = (1, 2, 3)
#: Roles accepted by :func:`select`.
ROLES: tuple[str, ...] = ("train", "val", "test")

#: Package resource with the authors' published HAM10000 split.
PUBLISHED_SPLIT_RESOURCE = "data/authors_ham_split.csv"
#: Published part name -> our part number.
PUBLISHED_PART_TO_INT: dict[str, int] = {"test": 0, "val0": 1, "val1": 2, "val2": 3}

_META_COLUMNS = ("image_id", "lesion_id", "dx")
_MAX_NAMED = 5


def _few(values) -> str:
    """Up to five values, comma-separated, with '...' if there are more."""
    values = list(values)
    text = ", ".join(str(v) for v in values[:_MAX_NAMED])
    return text + (", ..." if len(values) > _MAX_NAMED else "")


def _described(meta: pd.DataFrame, description: DatasetDescription | None) -> pd.DataFrame:
    """meta with HAM10000's column names: a description's label column as ``dx`` and its group
    column as ``lesion_id`` (the image id where it has none); meta as it is without a description."""
    if description is None:
        return meta
    wanted = ["image_id", description.label_column, *([description.group_column] if description.group_column else [])]
    missing = [c for c in wanted if c not in meta.columns]
    if missing:
        raise SplitError(
            f"the index of dataset {description.name} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, meta.columns))}); "
            "a split needs the image id, the label and, where the dataset has one, the lesion group"
        )
    return pd.DataFrame({
        "image_id": meta["image_id"], "dx": meta[description.label_column],
        "lesion_id": meta[description.group_column or "image_id"],
    })  # fmt: skip


def _validated_meta(meta: pd.DataFrame, description: DatasetDescription | None = None) -> pd.DataFrame:
    """Check meta's columns and image ids; return image_id/lesion_id/dx as strings (same row order)."""
    meta = _described(meta, description)
    missing = [c for c in _META_COLUMNS if c not in meta.columns]
    if missing:
        raise SplitError(
            f"metadata lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, meta.columns))}); "
            "a split needs image_id, lesion_id and dx as in HAM10000_metadata.csv"
        )
    if len(meta) == 0:
        raise SplitError("metadata has no rows; cannot split an empty dataset")
    for col in _META_COLUMNS:
        empty = meta[col].isna() | (meta[col].astype(str).str.strip() == "")
        if empty.any():
            rows = [f"row {i} ({meta['image_id'].iloc[i]})" for i in np.flatnonzero(empty.to_numpy())]
            hint = " (use the image_id if each image is its own lesion)" if col == "lesion_id" else ""
            raise SplitError(
                f"metadata has {int(empty.sum())} row(s) with an empty {col}: {_few(rows)}; fill in {col}{hint}"
            )
    out = meta.loc[:, list(_META_COLUMNS)].astype(str).reset_index(drop=True)
    dup = out["image_id"][out["image_id"].duplicated()].unique()
    if len(dup):
        raise SplitError(
            f"metadata lists {len(dup)} image id(s) more than once: {_few(dup)}; each image must have one row"
        )
    return out


def stratified_split(
    meta: pd.DataFrame, n_parts: int = N_PARTS, seed: int = 0, description: DatasetDescription | None = None
) -> pd.DataFrame:
    """Lesion-grouped, class-stratified split (Sec. II-A: four equally-sized parts with the same class distribution).

    No lesion_id is in two parts; the result is deterministic per ``seed`` and independent of
    meta's row order. Any number of classes from 2 up; a ``description`` names the label and group
    columns (see the module docstring). Returns ``image_id, part`` in meta's row order.
    """
    # scikit-learn's StratifiedGroupKFold (shuffle=True, random_state=seed) does this directly and
    # is balanced enough, so no hand-written assignment is needed. Measured on the real HAM10000
    # table (10015 images, 7470 lesions; sklearn 1.9.1), seeds 0..9: part sizes 2503..2505
    # (max deviation 0.05% of n/4, requirement 1%), every class count within 0.75 images of
    # its target count/4. On synthetic 150-image data (7 classes, lesions of 1-6 images) every
    # class with >= 4 lesions lands in every part (200 random tables checked).
    # Its output depends only on the sorted unique lesion ids / dx codes, not on row order.
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 2:
        raise ValueError(f"n_parts must be an integer >= 2, got {n_parts!r}")
    m = _validated_meta(meta, description)
    n_lesions = m["lesion_id"].nunique()
    if n_lesions < n_parts:
        raise SplitError(
            f"metadata has only {n_lesions} distinct lesion_id(s); a lesion-disjoint split into "
            f"{n_parts} parts needs at least {n_parts}"
        )
    from sklearn.model_selection import StratifiedGroupKFold  # here: a training job reads splits without it

    sgkf = StratifiedGroupKFold(n_splits=int(n_parts), shuffle=True, random_state=seed)
    fold_of = np.full(len(m), -1, dtype=int)
    with warnings.catch_warnings():
        # "least populated class has only k members": rare classes then simply miss some parts.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            for k, (_, test_idx) in enumerate(sgkf.split(m, m["dx"], groups=m["lesion_id"])):
                fold_of[test_idx] = k
        except ValueError as exc:  # e.g. every class smaller than n_parts
            counts = m["dx"].value_counts()
            if counts.iloc[0] < n_parts:
                raise SplitError(
                    f"cannot make a stratified {n_parts}-part split: every class has fewer than {n_parts} images (the largest, "
                    f"{counts.index[0]}, has {counts.iloc[0]}); each part needs images of each class, so add images"
                ) from exc
            raise SplitError(f"cannot make a stratified {n_parts}-part split of this metadata: {exc}") from exc
    # Number the parts by content, not by sklearn's fold order: part 0 is the part holding the
    # alphabetically first image id, part 1 the next, and so on.
    first_image = {k: m["image_id"][fold_of == k].min() for k in range(n_parts)}
    renumber = {k: i for i, k in enumerate(sorted(first_image, key=first_image.__getitem__))}
    part = np.array([renumber[k] for k in fold_of], dtype=int)
    split = pd.DataFrame({"image_id": m["image_id"], "part": part})
    check_split(meta, split, n_parts=n_parts, description=description)
    return split


def load_published_table() -> pd.DataFrame:
    """The authors' published HAM10000 split as shipped (image_id, lesion_id, dx, dx_type, part)."""
    ref = resources.files("patchlesion").joinpath(PUBLISHED_SPLIT_RESOURCE)
    with ref.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str)


def published_split(meta: pd.DataFrame) -> pd.DataFrame:
    """The authors' published HAM10000 split (test, val0, val1, val2 -> parts 0, 1, 2, 3), checked against meta.

    Raises SplitError if meta and the published split do not hold the same images, or if the split
    puts one of meta's lesions into two parts. Returns ``image_id, part`` in meta's row order.
    """
    m = _validated_meta(meta)
    pub = load_published_table()
    bad = sorted(set(pub["part"]) - set(PUBLISHED_PART_TO_INT))
    if bad:  # only if the shipped file was edited
        raise SplitError(
            f"package file patchlesion/{PUBLISHED_SPLIT_RESOURCE} has unknown part name(s) {_few(bad)}; "
            f"expected {', '.join(PUBLISHED_PART_TO_INT)} (reinstall patchlesion)"
        )
    part_of = dict(zip(pub["image_id"], pub["part"].map(PUBLISHED_PART_TO_INT)))
    not_published = [i for i in m["image_id"] if i not in part_of]
    meta_ids = set(m["image_id"])
    not_in_meta = sorted(i for i in part_of if i not in meta_ids)
    problems = []
    if not_published:
        problems.append(
            f"{len(not_published)} of the metadata's {len(m)} images are not in the published split "
            f"(e.g. {_few(not_published)})"
        )
    if not_in_meta:
        problems.append(
            f"{len(not_in_meta)} of the published split's {len(part_of)} images are missing from the "
            f"metadata (e.g. {_few(not_in_meta)})"
        )
    if problems:
        raise SplitError(
            "the authors' published split (patchlesion/data/authors_ham_split.csv) covers exactly the "
            f"10015 HAM10000 images, but {'; '.join(problems)}. Use the complete HAM10000 metadata, or set "
            "`split: stratified` in the config for other datasets or subsets."
        )
    split = pd.DataFrame({"image_id": m["image_id"], "part": m["image_id"].map(part_of).astype(int)})
    check_split(meta, split, n_parts=N_PARTS)
    return split


def check_split(
    meta: pd.DataFrame, split: pd.DataFrame, n_parts: int = N_PARTS, once: bool = True, description: DatasetDescription | None = None
) -> None:
    """Raise SplitError unless split assigns every image of meta to exactly one part and no lesion spans two parts.

    ``once=False`` accepts an image listed in two parts: derm7pt's split lists its test images again as
    the validation part, since derm7pt has no validation set (docs/data.md §8.2)."""
    m = _validated_meta(meta, description)
    missing_cols = [c for c in ("image_id", "part") if c not in split.columns]
    if missing_cols:
        raise SplitError(
            f"split lacks column(s) {', '.join(missing_cols)}; a split has columns image_id and part"
        )
    ids = split["image_id"].astype(str)
    dup = ids[ids.duplicated()].unique() if once else ids[(split[["image_id", "part"]].astype(str)).duplicated()].unique()
    if len(dup):
        raise SplitError(f"split lists {len(dup)} image id(s) more than once: {_few(dup)}")
    meta_ids, split_ids = set(m["image_id"]), set(ids)
    missing = [i for i in m["image_id"] if i not in split_ids]
    if missing:
        raise SplitError(
            f"split has no part for {len(missing)} image(s) of the metadata: {_few(missing)}; "
            "regenerate the split for this metadata"
        )
    unknown = [i for i in ids if i not in meta_ids]
    if unknown:
        raise SplitError(
            f"split lists {len(unknown)} image(s) that are not in the metadata: {_few(unknown)}; "
            "regenerate the split for this metadata"
        )
    parts = pd.to_numeric(split["part"], errors="coerce")
    bad = ~(parts.notna() & (parts == parts.round()) & (parts >= 0) & (parts < n_parts))
    if bad.any():
        rows = [f"{i} (part {p!r})" for i, p in zip(ids[bad.to_numpy()], split["part"][bad.to_numpy()])]
        raise SplitError(
            f"split has {int(bad.sum())} image(s) with a part outside the integers 0..{n_parts - 1}: {_few(rows)}"
        )
    part_of = dict(zip(ids, parts.astype(int)))
    empty = sorted(set(range(n_parts)) - set(parts.astype(int)))
    if empty:
        raise SplitError(f"split has no images in part(s) {_few(empty)}; every part 0..{n_parts - 1} needs images")
    lesion_parts = m.assign(part=m["image_id"].map(part_of)).groupby("lesion_id")["part"].unique()
    leaks = lesion_parts[lesion_parts.map(len) > 1]
    if len(leaks):
        named = [f"{lesion} in parts {sorted(int(p) for p in ps)}" for lesion, ps in leaks.items()]
        raise SplitError(
            f"split puts {len(leaks)} lesion(s) into more than one part (images of one lesion must stay "
            f"together): {_few(named)}"
        )


def fold_parts(fold: int) -> tuple[tuple[int, int], int]:
    """(training parts, validation part) of cross-validation fold 1, 2 or 3."""
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or int(fold) not in FOLDS:
        raise ValueError(f"fold must be one of {FOLDS}, got {fold!r}")
    fold = int(fold)
    train = tuple(p for p in FOLDS if p != fold)
    return (train[0], train[1]), fold


def select(split: pd.DataFrame, fold: int, role: str) -> list[str]:
    """Image ids of a fold's "train" or "val" parts, or of the "test" part (part 0), in split order."""
    train, val = fold_parts(fold)
    if role == "train":
        wanted: tuple[int, ...] = train
    elif role == "val":
        wanted = (val,)
    elif role == "test":
        wanted = (0,)
    else:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    mask = split["part"].astype(int).isin(wanted)
    return split.loc[mask, "image_id"].astype(str).tolist()


def split_summary(meta: pd.DataFrame, split: pd.DataFrame, description: DatasetDescription | None = None) -> pd.DataFrame:
    """Per-part class counts (Table I order, or the description's class order), image and lesion counts, plus a "total" row."""
    m = _validated_meta(meta, description)
    part_of = dict(zip(split["image_id"].astype(str), split["part"].astype(int)))
    m = m.assign(part=m["image_id"].map(part_of), cls=m["dx"].map(lambda d: DX_TO_CLASS.get(d, d) if description is None else d))
    m = m[m["part"].notna()].astype({"part": int})
    order = CLASSES if description is None else description.classes.names
    extra = sorted(set(m["cls"]) - set(order))
    columns = list(order) + extra
    counts = pd.crosstab(m["part"], m["cls"]).reindex(columns=columns, fill_value=0)
    parts = sorted(set(m["part"]))
    counts = counts.reindex(parts, fill_value=0)
    counts["images"] = m.groupby("part").size().reindex(parts, fill_value=0)
    counts["lesions"] = m.groupby("part")["lesion_id"].nunique().reindex(parts, fill_value=0)
    total = counts.sum()
    total["lesions"] = m["lesion_id"].nunique()
    counts.index = counts.index.astype(object)
    counts.loc["total"] = total
    counts.index.name = "part"
    counts.columns.name = None
    return counts.astype(int)

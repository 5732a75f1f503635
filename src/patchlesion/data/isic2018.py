"""ISIC 2018 Task 3 files turned into HAM10000 metadata (Sec. II-A; Codella et al. 2019).

The ISIC 2018 challenge publishes the same 10,015 training images as HAM10000, with the labels as a
one-hot table (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``, values 0.0/1.0) and the lesion ids and
ground-truth types in a separate ``LesionGroupings`` table. Its official test set (1,511 images on
Dataverse, 1,512 on the ISIC site) has one-hot labels only.

Conventions for what the test labels do not say (documented in the README):

* ``lesion_id`` = the image id (each test image counts as its own lesion; the test set is never
  split, so no grouping is needed);
* ``dx_type`` = ``unknown`` (:data:`patchlesion.method.classes.DX_TYPE_UNKNOWN`), which the reader accepts
  but diagnosis-guided loss weighting refuses, so such a table can be evaluated on, not trained with
  that balancing.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from patchlesion.errors import DatasetError
from patchlesion.method.classes import CLASSES, DX_TO_CLASS, DX_TYPE_UNKNOWN

__all__ = ["CONFIRM_TYPE_TO_DX_TYPE", "METADATA_COLUMNS", "read_table", "onehot_to_dx", "training_metadata", "test_metadata"]

#: ISIC 2018 ``diagnosis_confirm_type`` -> HAM10000 ``dx_type`` (one to one).
CONFIRM_TYPE_TO_DX_TYPE: dict[str, str] = {
    "histopathology": "histo",
    "serial imaging showing no change": "follow_up",
    "single image expert consensus": "consensus",
    "confocal microscopy with consensus dermoscopy": "confocal",
}
METADATA_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
_CLASS_TO_DX = {name: dx for dx, name in DX_TO_CLASS.items()}
_IMAGE_ID = re.compile(r"^ISIC_\d{7}$")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or tab-separated table as strings (BOM and surrounding blanks/quotes removed)."""
    path = Path(path)
    try:
        sep = "\t" if path.suffix == ".tab" else None
        table = pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the table ({error}).") from error
    table.columns = [str(c).strip().strip('"') for c in table.columns]
    for column in table.columns:
        table[column] = table[column].str.strip().str.strip('"')
    return table


def _image_ids(path: Path, table: pd.DataFrame, column: str) -> pd.Series:
    ids = table[column].str.replace(r"\.jpe?g$", "", regex=True, case=False)
    bad = ids.index[~ids.str.match(_IMAGE_ID)]
    if len(bad):
        raise DatasetError(f"{path}, line {bad[0] + 2}: {column} {table.at[bad[0], column]!r} is not of the form ISIC_xxxxxxx.")
    return ids


def onehot_to_dx(path: str | Path, table: pd.DataFrame) -> pd.DataFrame:
    """``image_id`` and HAM ``dx`` from a one-hot ground-truth table (``image`` + the 7 class columns).

    Extra columns (e.g. ``score_weight``) are ignored. Every row must have exactly one class set
    to 1 (``1``, ``1.0``); otherwise the line is named.
    """
    path = Path(path)
    missing = [c for c in ("image", *CLASSES) if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; an ISIC 2018 Task 3 ground-truth table has "
            f"image,{','.join(CLASSES)}."
        )
    try:
        values = table[list(CLASSES)].astype(float)
    except ValueError as error:
        raise DatasetError(f"{path}: a class column holds a non-number ({error}).") from error
    ones = values.eq(1.0)
    valid = ones.sum(axis=1).eq(1) & (values.eq(0.0) | ones).all(axis=1)
    if not valid.all():
        row = valid.index[~valid][0]
        raise DatasetError(
            f"{path}, line {row + 2}: image {table.at[row, 'image']} must have exactly one class set to 1 "
            f"and the others 0 (got {values.loc[row].to_dict()})."
        )
    frame = pd.DataFrame({"image_id": _image_ids(path, table, "image"), "dx": ones.idxmax(axis=1).map(_CLASS_TO_DX)})
    duplicated = frame["image_id"].duplicated()
    if duplicated.any():
        raise DatasetError(f"{path}: image {frame['image_id'][duplicated].iloc[0]} is listed more than once.")
    return frame


def training_metadata(ground_truth: str | Path, groupings: str | Path) -> pd.DataFrame:
    """HAM10000 metadata from the ISIC 2018 training ground truth and lesion groupings.

    ``dx_type`` comes from ``diagnosis_confirm_type`` (:data:`CONFIRM_TYPE_TO_DX_TYPE`); age, sex
    and localization are not in these files and stay empty.
    """
    labels = onehot_to_dx(ground_truth, read_table(ground_truth))
    groupings = Path(groupings)
    table = read_table(groupings)
    missing = [c for c in ("image", "lesion_id", "diagnosis_confirm_type") if c not in table.columns]
    if missing:
        raise DatasetError(f"{groupings}: missing column(s) {', '.join(missing)}; expected image,lesion_id,diagnosis_confirm_type.")
    confirm = table["diagnosis_confirm_type"].str.lower()
    unknown = confirm.index[~confirm.isin(CONFIRM_TYPE_TO_DX_TYPE)]
    if len(unknown):
        row = unknown[0]
        raise DatasetError(
            f"{groupings}, line {row + 2}: unknown diagnosis_confirm_type {table.at[row, 'diagnosis_confirm_type']!r}; "
            f"known: {', '.join(CONFIRM_TYPE_TO_DX_TYPE)}."
        )
    lesions = pd.DataFrame(
        {"image_id": _image_ids(groupings, table, "image"), "lesion_id": table["lesion_id"], "dx_type": confirm.map(CONFIRM_TYPE_TO_DX_TYPE)}
    )
    merged = labels.merge(lesions, on="image_id", how="left", indicator=True)
    orphans = merged.loc[merged["_merge"] == "left_only", "image_id"]
    if len(orphans):
        raise DatasetError(f"{groupings}: {len(orphans)} image(s) of {Path(ground_truth).name} have no lesion grouping, e.g. {orphans.iloc[0]}.")
    merged = merged.drop(columns="_merge").assign(age="", sex="", localization="")
    return merged[list(METADATA_COLUMNS)].sort_values("image_id").reset_index(drop=True)


def test_metadata(path: str | Path) -> pd.DataFrame:
    """HAM10000 metadata for the ISIC 2018 test set from its ground-truth table.

    A one-hot table gets ``lesion_id`` = image id and ``dx_type`` = ``unknown`` (see the module
    docstring). A table already in HAM10000 layout (``image_id``, ``dx`` ...) is kept, with those two
    columns filled the same way where absent or empty.
    """
    path = Path(path)
    table = read_table(path)
    if "image_id" in table.columns and "dx" in table.columns:
        frame = table.copy()
        frame["image_id"] = _image_ids(path, frame, "image_id")
        frame["dx"] = frame["dx"].str.lower()
    else:
        frame = onehot_to_dx(path, table)
    for column in METADATA_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame["lesion_id"] = frame["lesion_id"].where(frame["lesion_id"] != "", frame["image_id"])
    frame["dx_type"] = frame["dx_type"].where(frame["dx_type"] != "", DX_TYPE_UNKNOWN)
    extra = [c for c in frame.columns if c not in METADATA_COLUMNS]
    return frame[list(METADATA_COLUMNS) + extra].sort_values("image_id").reset_index(drop=True)

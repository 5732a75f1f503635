"""Reading a HAM10000-format directory: metadata table plus ``ISIC_xxxxxxx.jpg`` images (Sec. II-A).

Works for the real dataset in any of its published layouts (Harvard Dataverse
``HAM10000_images_part_1/2`` folders, the ISIC 2018 ``ISIC2018_Task3_Training_Input`` folder, or
all images in one folder) and for the synthetic dataset of :mod:`patchlesion.data.synthetic`.
Every problem is reported as a :class:`~patchlesion.errors.DatasetError` that names the file.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from patchlesion.errors import DatasetError
from patchlesion.method.classes import CLASSES, DX_TO_CLASS, DX_TYPE_UNKNOWN, DX_TYPES

__all__ = [
    "METADATA_NAMES",
    "REQUIRED_COLUMNS",
    "find_metadata",
    "find_images",
    "read_metadata",
    "read_dataset",
]

#: File names under which HAM10000's metadata is published (CSV upload, Dataverse's tabular export).
METADATA_NAMES: tuple[str, ...] = ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata")
REQUIRED_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "dx_type")
#: Image ids: HAM10000's and ISIC's ``ISIC_xxxxxxx``, and ``SPC_xxxx`` (a derm7pt case number) for the
#: converted derm7pt dataset (:mod:`patchlesion.data.derm7pt`).
_IMAGE_ID = re.compile(r"^(ISIC_\d{7}|SPC_\d{4})$")


def find_metadata(root: str | Path) -> Path:
    """Locate the metadata table at the root of, or anywhere below, a HAM10000 directory."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: dataset directory not found. Point `ham10000_dir` at the folder that holds "
            "HAM10000_metadata.csv and the ISIC_*.jpg images."
        )
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    found = sorted(p for name in METADATA_NAMES for p in root.rglob(name) if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(
            f"{root}: no metadata table found (looked for {', '.join(METADATA_NAMES)} in the folder and "
            "below it). Download HAM10000_metadata from the HAM10000 Dataverse record and put it there."
        )
    raise DatasetError(
        f"{root}: several metadata tables found ({', '.join(map(str, found))}); keep exactly one."
    )


def find_images(root: str | Path) -> dict[str, Path]:
    """Map image id -> JPEG path for every ``ISIC_xxxxxxx.jpg`` or ``SPC_xxxx.jpg`` (any case) below ``root``."""
    images: dict[str, Path] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg") or not path.is_file():
            continue
        if not _IMAGE_ID.match(path.stem):
            continue
        if path.stem in images:
            raise DatasetError(
                f"image {path.stem} found twice: {images[path.stem]} and {path}. "
                "Remove one copy (for example an extra unpacked archive) so each image exists once."
            )
        images[path.stem] = path
    return images


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Read and validate a HAM10000 metadata table (7- or 8-column layout, CSV or tab-separated)."""
    path = Path(path)
    try:
        sep = "\t" if path.suffix == ".tab" else None
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") must not glue itself to "lesion_id";
        # index_col=False: data rows with one field more than the header must not shift the columns.
        # Blank lines are kept as empty rows and dropped below, so that row r is line r + 2 of the file.
        table = pd.read_csv(
            path, sep=sep, engine="python", dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False,
            skip_blank_lines=False,
        )  # fmt: skip
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: cannot read the metadata table: it is not UTF-8 text ({error}); save it as UTF-8.") from error
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read the metadata table ({error}).") from error
    table.columns = [c.strip().strip('"') for c in table.columns]
    # pandas renames a repeated header "dx" to "dx.1"; " dx" and "dx" repeat only after stripping.
    repeated = [c for c in REQUIRED_COLUMNS if list(table.columns).count(c) > 1 or f"{c}.1" in table.columns]
    if repeated:
        raise DatasetError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header; keep one of each.")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; a HAM10000 metadata table has "
            "lesion_id,image_id,dx,dx_type,age,sex,localization."
        )
    table = table[~table.fillna("").apply(lambda column: column.str.strip() == "").all(axis=1)]  # blank lines
    if table.empty:
        raise DatasetError(f"{path}: the metadata table has no rows.")
    short = table[list(REQUIRED_COLUMNS)].isna()  # a row with fewer fields than the header
    if short.any(axis=None):
        row = short.any(axis=1).idxmax()
        absent = [c for c in REQUIRED_COLUMNS if short.at[row, c]]
        raise DatasetError(
            f"{path}, line {row + 2}: the row has fewer fields than the header (no {', '.join(absent)}). Complete or remove it."
        )
    for column in REQUIRED_COLUMNS:
        table[column] = table[column].str.strip().str.strip('"')
    _check_values(path, table, "dx", tuple(DX_TO_CLASS))
    _check_values(path, table, "dx_type", (*DX_TYPES, DX_TYPE_UNKNOWN))
    bad_ids = table.loc[~table["image_id"].str.match(_IMAGE_ID), "image_id"]
    if len(bad_ids):
        row = bad_ids.index[0] + 2  # +1 for the header, +1 for 1-based line numbers
        raise DatasetError(f"{path}, line {row}: image_id {bad_ids.iloc[0]!r} is not of the form ISIC_xxxxxxx (or SPC_xxxx, a converted derm7pt case).")
    duplicated = table.loc[table["image_id"].duplicated(), "image_id"]
    if len(duplicated):
        raise DatasetError(f"{path}: image_id {duplicated.iloc[0]} is listed more than once.")
    empty_lesion = table.index[table["lesion_id"] == ""]
    if len(empty_lesion):
        raise DatasetError(f"{path}, line {empty_lesion[0] + 2}: empty lesion_id.")
    return table.reset_index(drop=True)


def _check_values(path: Path, table: pd.DataFrame, column: str, allowed: tuple[str, ...]) -> None:
    bad = table.index[~table[column].isin(allowed)]
    if len(bad):
        row = bad[0]
        raise DatasetError(
            f"{path}, line {row + 2}: unknown {column} {table.at[row, column]!r} for image "
            f"{table.at[row, 'image_id']}; allowed values: {', '.join(allowed)}."
        )


def read_dataset(root: str | Path, verify_images: bool = True) -> pd.DataFrame:
    """Index a HAM10000-format directory: one row per image, sorted by image id.

    Columns: image_id, lesion_id, dx, dx_type, class_name, label (index into ``CLASSES``), path,
    width, height. With ``verify_images`` every JPEG is decoded once, so a truncated or corrupt
    file is reported here, before any training job starts.
    """
    metadata_path = find_metadata(root)
    table = read_metadata(metadata_path)
    images = find_images(root)
    missing = [i for i in table["image_id"] if i not in images]
    if missing:
        raise DatasetError(
            f"{metadata_path}: {len(missing)} image(s) listed in the metadata have no JPEG below {root}, "
            f"e.g. {missing[0]}.jpg. Unpack every image archive (both HAM10000_images_part_1 and _2) there."
        )
    table = table.sort_values("image_id").reset_index(drop=True)
    table["class_name"] = table["dx"].map(DX_TO_CLASS)
    table["label"] = table["class_name"].map(CLASSES.index).astype(int)
    table["path"] = [str(images[i]) for i in table["image_id"]]
    sizes = [_image_size(Path(p), verify_images) for p in table["path"]]
    table["width"] = [w for w, _ in sizes]
    table["height"] = [h for _, h in sizes]
    columns = ["image_id", "lesion_id", "dx", "dx_type", "class_name", "label", "path", "width", "height"]
    return table[columns]


def _image_size(path: Path, decode: bool) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                raise DatasetError(f"{path}: not a JPEG file (PIL reads it as {image.format}).")
            if decode:
                image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(
            f"{path}: unreadable JPEG ({error}). Replace the file with an intact copy from the archive."
        ) from error

"""Folder datasets: any labelled image folder through the paper's grid (docs/own-data.md §1;
its checks: docs/own-data.md §4).

A folder dataset is a folder of JPEG or PNG images (any size, flat or nested) and a CSV with one row
per image: the image (its id, the file name without extension, found anywhere below the folder; or
its path relative to the folder), its class by name, and optionally its lesion group and diagnosis
type. :class:`FolderDataset` describes one (from config, ``datasets: {NAME: {...}}``);
:func:`index_folder` checks it as strictly as HAM10000's reader (:mod:`patchlesion.data.ham10000`)
and returns the image index in the columns the rest of the pipeline reads, with the
:class:`~patchlesion.data.description.DatasetDescription` that goes with it.

Every problem is one :class:`~patchlesion.errors.DatasetError` naming the file and line, the image
or the class: an unknown label, an image listed twice, a missing, unreadable or ambiguous image, a
class without images, a diagnosis type without a diagnosis factor.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image, UnidentifiedImageError

from patchlesion.data.description import DatasetDescription
from patchlesion.errors import DatasetError, PatchlesionError
from patchlesion.method.balancing import DIAGNOSIS_FACTORS
from patchlesion.method.classes import ClassSet

__all__ = ["IMAGE_SUFFIXES", "INDEX_COLUMNS", "FolderDataset", "find_folder_images", "index_folder", "read_labels"]

#: Image files a folder dataset may hold (any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: Columns of a folder dataset's index (``lesion_id`` and ``dx_type`` only when the CSV has them).
INDEX_COLUMNS: tuple[str, ...] = ("image_id", "lesion_id", "dx_type", "class_name", "label", "path", "width", "height")


@dataclass(frozen=True)
class FolderDataset:
    """One folder dataset: its ``name``, image folder ``root``, labels CSV (``labels``, relative to
    ``root`` unless absolute), ``classes`` (label order, benign ones) and the CSV's columns: the
    image (an id or a relative path), the class name, and the optional lesion group and diagnosis type."""

    name: str
    root: Path
    classes: ClassSet
    labels: Path = Path("labels.csv")
    image_column: str = "image_id"
    label_column: str = "label"
    group_column: str | None = None
    diagnosis_type_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "labels", Path(self.labels))
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            raise PatchlesionError(f"dataset {self.name}: column {repeated[0]!r} is given for two roles; each role needs its own column.")

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV columns this dataset reads: image, label, and the group and diagnosis type where given."""
        return tuple(c for c in (self.image_column, self.label_column, self.group_column, self.diagnosis_type_column) if c)

    @property
    def labels_path(self) -> Path:
        """The labels CSV (``labels`` below ``root`` unless it is absolute)."""
        return self.labels if self.labels.is_absolute() else self.root / self.labels

    def description(self) -> DatasetDescription:
        """The description of this dataset's index (:func:`index_folder`'s columns)."""
        return DatasetDescription(
            self.name, self.classes, label_column="class_name", group_column="lesion_id" if self.group_column else None,
            diagnosis_type_column="dx_type" if self.diagnosis_type_column else None,
        )  # fmt: skip


def read_labels(dataset: FolderDataset) -> pd.DataFrame:
    """The labels CSV, checked: the columns exist once each, no row is short, no image is listed
    twice, every label is a class. Returns its rows (stripped strings) with ``line``, the line of the file."""
    path = dataset.labels_path
    try:
        table = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False, skip_blank_lines=False, engine="python",
            sep="\t" if path.suffix.lower() in (".tsv", ".tab") else ",",
        )  # fmt: skip
    except FileNotFoundError:
        raise DatasetError(f"{path}: the labels CSV of dataset {dataset.name} is not there; set datasets/{dataset.name}/labels.") from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text ({error}); save the labels CSV as UTF-8.") from error
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read the labels CSV ({error}).") from error
    table.columns = [str(c).strip().strip('"') for c in table.columns]
    for column in dataset.columns:
        if list(table.columns).count(column) > 1 or f"{column}.1" in table.columns:
            raise DatasetError(f"{path}: column {column!r} appears more than once in the header; keep one.")
    missing = [c for c in dataset.columns if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{path}: no column(s) {', '.join(map(repr, missing))} (the header has {', '.join(map(repr, table.columns))}); "
            f"rename the column or set datasets/{dataset.name}'s column options (docs/own-data.md §3)."
        )
    table["line"] = table.index + 2  # +1 for the header, +1 for 1-based line numbers
    blank = table[list(dataset.columns)].fillna("").apply(lambda column: column.str.strip() == "").all(axis=1)
    table = table[~blank]
    if table.empty:
        raise DatasetError(f"{path}: the labels CSV has no rows.")
    short = table[list(dataset.columns)].isna().any(axis=1)
    if short.any():
        raise DatasetError(f"{path}, line {table.loc[short, 'line'].iloc[0]}: the row has fewer fields than the header. Complete or remove it.")
    for column in dataset.columns:
        table[column] = table[column].str.strip()
    for column in (dataset.image_column, dataset.label_column):
        empty = table[column] == ""
        if empty.any():
            raise DatasetError(f"{path}, line {table.loc[empty, 'line'].iloc[0]}: empty {column}.")
    unknown = ~table[dataset.label_column].isin(dataset.classes.names)
    if unknown.any():
        row = table[unknown].iloc[0]
        raise DatasetError(
            f"{path}, line {row['line']}: image {row[dataset.image_column]!r} has label {row[dataset.label_column]!r}, which is not one "
            f"of dataset {dataset.name}'s classes ({', '.join(dataset.classes.names)}); fix the label or add the class to "
            f"datasets/{dataset.name}/classes."
        )
    if dataset.diagnosis_type_column:
        bad = ~table[dataset.diagnosis_type_column].isin(DIAGNOSIS_FACTORS)
        if bad.any():
            row = table[bad].iloc[0]
            raise DatasetError(
                f"{path}, line {row['line']}: diagnosis type {row[dataset.diagnosis_type_column]!r} of image {row[dataset.image_column]!r} "
                f"is not one of {', '.join(DIAGNOSIS_FACTORS)} (the types diagnosis-guided weighting has a factor for)."
            )
    return table.reset_index(drop=True)


def find_folder_images(root: str | Path) -> dict[str, list[Path]]:
    """Every JPEG or PNG file below ``root``, by file name without extension (a name may occur more than once)."""
    images: dict[str, list[Path]] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.setdefault(path.stem, []).append(path)
    return images


def _is_path(value: str) -> bool:
    return "/" in value or "\\" in value or PurePosixPath(value).suffix.lower() in IMAGE_SUFFIXES


def _locate(dataset: FolderDataset, row: pd.Series, images: dict[str, list[Path]]) -> tuple[str, Path]:
    """(image id, file) of one CSV row: a relative path inside the folder, or an id found once below it."""
    value, where = row[dataset.image_column], f"{dataset.labels_path}, line {row['line']}"
    if _is_path(value):
        relative = PurePosixPath(value.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            raise DatasetError(f"{where}: image path {value!r} must be relative to {dataset.root} and stay inside it.")
        path = dataset.root.joinpath(*relative.parts)
        if not path.is_file():
            raise DatasetError(f"{where}: image {value!r} not found ({path} does not exist); fix the path or add the file.")
        return str(relative.with_suffix("")), path
    found = images.get(value, [])
    if not found:
        raise DatasetError(
            f"{where}: image {value!r} not found: no {value}.jpg, .jpeg or .png below {dataset.root}; add the file or fix the id."
        )
    if len(found) > 1:
        raise DatasetError(f"{where}: image {value!r} is ambiguous: {found[0]} and {found[1]}; give the row a relative path, or keep one file.")
    return value, found[0]


def _image_size(path: Path, where: str, decode: bool) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "PNG"):
                raise DatasetError(f"{where}: {path} is not a JPEG or PNG file (PIL reads it as {image.format}).")
            if decode:
                image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{where}: {path} is not a readable image ({error}); replace it with an intact copy.") from error


def index_folder(dataset: FolderDataset, verify_images: bool = True) -> pd.DataFrame:
    """Index a folder dataset: one row per labelled image, sorted by image id.

    Columns :data:`INDEX_COLUMNS`: ``lesion_id`` only with a group column (an empty group: the image's
    own id), ``dx_type`` only with a diagnosis-type column; ``label`` is the class's index in
    ``dataset.classes``. With ``verify_images`` every image is decoded once, so a corrupt file is
    reported here, before any training job starts. Every class must have at least one image.
    """
    if not dataset.root.is_dir():
        raise DatasetError(f"{dataset.root}: the image folder of dataset {dataset.name} is not there; set datasets/{dataset.name}/dir.")
    table = read_labels(dataset)
    images = find_folder_images(dataset.root)
    located = [_locate(dataset, row, images) for _, row in table.iterrows()]
    table["image_id"] = [image_id for image_id, _ in located]
    table["path"] = [str(path) for _, path in located]
    for key, what in (("image_id", "image"), ("path", "file")):
        repeated = table[table[key].duplicated(keep=False)]
        if len(repeated):
            lines = ", ".join(str(line) for line in repeated["line"].iloc[:2])
            raise DatasetError(f"{dataset.labels_path}, lines {lines}: {what} {repeated[key].iloc[0]!r} is listed twice; keep one row per image.")
    counts = table[dataset.label_column].value_counts()
    empty = [name for name in dataset.classes.names if counts.get(name, 0) == 0]
    if empty:
        raise DatasetError(
            f"{dataset.labels_path}: class {empty[0]} of dataset {dataset.name} has no images; remove it from datasets/{dataset.name}/classes "
            f"or label images with it (the grid needs every class in every split part)."
        )
    table["class_name"] = table[dataset.label_column]
    table["label"] = table["class_name"].map(dataset.classes.index).astype(int)
    columns = ["image_id"]
    if dataset.group_column:
        table["lesion_id"] = table[dataset.group_column].where(table[dataset.group_column] != "", table["image_id"])
        columns.append("lesion_id")
    if dataset.diagnosis_type_column:
        table["dx_type"] = table[dataset.diagnosis_type_column]
        columns.append("dx_type")
    sizes = [_image_size(Path(p), f"{dataset.labels_path}, line {line}", verify_images) for p, line in zip(table["path"], table["line"])]
    table["width"] = [w for w, _ in sizes]
    table["height"] = [h for _, h in sizes]
    columns += ["class_name", "label", "path", "width", "height"]
    return table.sort_values("image_id").reset_index(drop=True)[columns]

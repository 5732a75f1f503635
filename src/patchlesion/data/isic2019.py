"""The ISIC 2019 training set as a folder dataset: its images plus one ``labels.csv`` (docs/data.md §11).

ISIC publishes the 25,331 training images of the 2019 challenge as ``ISIC_2019_Training_Input.zip``,
their labels as a one-hot table (``ISIC_2019_Training_GroundTruth.csv``:
``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``, values 0.0/1.0; UNK, the test set's out-of-distribution
class, is 0 for every training image) and the lesion ids in ``ISIC_2019_Training_Metadata.csv``
(``image,age_approx,anatom_site_general,lesion_id,sex``). The folder dataset they become
(:func:`patchlesion.data.acquire.isic2019.convert_isic2019` writes it) holds

* the images, JPEG files below the output folder, named as in the archive (``ISIC_0000000.jpg``, and
  ``ISIC_0000000_downsampled.jpg`` for some images: the image id is the file stem, exactly);
* ``labels.csv`` (UTF-8): ``image_id,label,lesion_id``, one row per image, sorted by image id;
  ``lesion_id`` is empty where the metadata has none (the image is then its own group).

Here the tables are read and checked (:func:`read_labels`) before an image is touched: a missing
column, a row that is not exactly one of the eight classes, an UNK image, an image listed twice,
metadata and ground truth that list different images, a file that is not UTF-8: each stops the
conversion with the file and line. :func:`match_images` finds every labelled image among the
archive's or folder's files.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from patchlesion.errors import DatasetError
from patchlesion.method.classes import ClassSet

__all__ = ["BENIGN_CLASSES", "CLASSES", "CLASS_SET", "LABELS_COLUMNS", "LABELS_FILENAME", "check_jpeg", "match_images", "read_labels"]

#: ISIC 2019's eight training classes in the ground truth's column order (label index = position).
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
#: The benign ones, the scope of diagnosis-guided weighting (Sec. II-F; docs/method.md §5.2): as in
#: HAM10000; actinic keratoses (AK, pre-malignant) and squamous cell carcinomas (SCC) are not benign.
BENIGN_CLASSES: tuple[str, ...] = ("NV", "BKL", "DF", "VASC")
CLASS_SET = ClassSet(CLASSES, BENIGN_CLASSES)
#: The ground truth's ninth column: the test set's unknown class, never set for a training image.
UNKNOWN_CLASS = "UNK"
LABELS_FILENAME = "labels.csv"
LABELS_COLUMNS: tuple[str, ...] = ("image_id", "label", "lesion_id")
_IMAGE_SUFFIXES = (".jpg", ".jpeg")
_IMAGE_ID = re.compile(r"^ISIC_\d{7}(_downsampled)?$")
_JPEG_START = b"\xff\xd8\xff"


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> list[tuple[int, dict[str, str]]]:
    """The rows of a UTF-8 CSV table as (line number, {column: value}); blanks around values removed."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the {what} ({error.strerror}).") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); download the {what} again, or save it as UTF-8."
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetError(f"{path}, line 1: missing column(s) {', '.join(missing)}; the {what} needs {','.join(columns)}.")
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise DatasetError(f"{path}, line {reader.line_num}: {len(fields)} fields where the header has {len(header)}.")
            rows.append((reader.line_num, dict(zip(header, (field.strip() for field in fields)))))
    except csv.Error as error:
        raise DatasetError(f"{path}, line {reader.line_num}: not a valid CSV table ({error}).") from error
    if not rows:
        raise DatasetError(f"{path}: the {what} has no rows.")
    return rows


def _image_id(path: Path, line: int, value: str) -> str:
    if not _IMAGE_ID.match(value):
        raise DatasetError(f"{path}, line {line}: image {value!r} is not of the form ISIC_xxxxxxx or ISIC_xxxxxxx_downsampled.")
    return value


def _read_ground_truth(path: Path) -> dict[str, tuple[str, int]]:
    """Image id -> (class, line) from the one-hot ground truth; every row exactly one class."""
    labels: dict[str, tuple[str, int]] = {}
    for line, row in _read_csv(path, ("image", *CLASSES), "ISIC 2019 ground truth"):
        image = _image_id(path, line, row["image"])
        where = f"{path}, line {line}: image {image}"
        values = {}
        for column in (*CLASSES, UNKNOWN_CLASS):
            try:
                values[column] = float(row.get(column, "0"))  # a table without UNK is all known classes
            except ValueError:
                raise DatasetError(f"{where}: {column} is {row[column]!r}, not 0 or 1.") from None
        if values[UNKNOWN_CLASS] == 1.0:
            raise DatasetError(f"{where} is labelled {UNKNOWN_CLASS}, which no training image is; is this the training ground truth?")
        ones = [c for c in CLASSES if values[c] == 1.0]
        if len(ones) != 1 or not all(value in (0.0, 1.0) for value in values.values()):
            got = ", ".join(f"{c}={row[c]}" for c in (*CLASSES, UNKNOWN_CLASS) if c in row)
            raise DatasetError(f"{where} must have exactly one of {','.join(CLASSES)} set to 1 and the others 0 (got {got}).")
        if image in labels:
            raise DatasetError(f"{where} is listed twice (also on line {labels[image][1]}).")
        labels[image] = (ones[0], line)
    return labels


def read_labels(ground_truth: str | Path, metadata: str | Path) -> pd.DataFrame:
    """``image_id, label, lesion_id`` (sorted by image id) from the ISIC 2019 ground truth and metadata.

    Both tables must list the same images, each once. ``lesion_id`` is empty where the metadata has none.
    """
    ground_truth, metadata = Path(ground_truth), Path(metadata)
    labels = _read_ground_truth(ground_truth)
    lesions: dict[str, tuple[str, int]] = {}
    for line, row in _read_csv(metadata, ("image", "lesion_id"), "ISIC 2019 metadata"):
        image = _image_id(metadata, line, row["image"])
        if image in lesions:
            raise DatasetError(f"{metadata}, line {line}: image {image} is listed twice (also on line {lesions[image][1]}).")
        if image not in labels:
            raise DatasetError(
                f"{metadata}, line {line}: image {image} is not in {ground_truth}; "
                "the metadata and the ground truth must come from the same ISIC 2019 training release."
            )
        lesions[image] = (row["lesion_id"], line)
    orphans = [image for image in labels if image not in lesions]
    if orphans:
        raise DatasetError(
            f"{metadata}: {len(orphans)} image(s) of {ground_truth} have no row, e.g. {orphans[0]} "
            f"(line {labels[orphans[0]][1]} there); the two tables must come from the same ISIC 2019 training release."
        )
    table = pd.DataFrame(
        [(image, label, lesions[image][0]) for image, (label, _) in labels.items()], columns=list(LABELS_COLUMNS)
    )
    return table.sort_values("image_id").reset_index(drop=True)


def match_images(labels: pd.DataFrame, names: Iterable[str], source: Path) -> tuple[dict[str, str], list[str]]:
    """Find the images of ``labels`` among the file ``names`` (relative paths in ``source``, a zip or a
    folder): image id (the file stem) -> name, and the ids of the JPEGs that ``labels`` does not list.

    An image of ``labels`` that is not there, or a stem found twice, is an error.
    """
    found: dict[str, str] = {}
    for name in sorted(names):
        stem, suffix = os.path.splitext(name.replace("\\", "/").rsplit("/", 1)[-1])
        if suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if stem in found:
            raise DatasetError(f"{source}: image {stem} is there twice, as {found[stem]} and {name}; keep one of them.")
        found[stem] = name
    wanted = set(labels["image_id"])
    missing = sorted(wanted - set(found))
    if missing:
        raise DatasetError(
            f"{source}: {len(missing)} image(s) of the ground truth are not in it, e.g. {missing[0]}; "
            "is it the training-image archive of the same ISIC 2019 release?"
        )
    return {image: found[image] for image in sorted(wanted)}, sorted(set(found) - wanted)


def check_jpeg(path: Path, source: Path) -> None:
    """Refuse an image file that does not start with the JPEG signature (decoding is the index's job)."""
    with open(path, "rb") as file:
        if file.read(len(_JPEG_START)) != _JPEG_START:
            raise DatasetError(f"{source}: {path.name} is not a JPEG file; download the archive again.")

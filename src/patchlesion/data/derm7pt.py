"""derm7pt, the seven-point checklist dataset (SPC), as a HAM10000-format dataset (Sec. II-A, Table IV).

derm7pt (Kawahara et al., IEEE JBHI 2019) needs a registration at https://derm.cs.sfu.ca; its
``release_v0`` folder holds ``meta/meta.csv`` (one row per case), the official split
``meta/{train,valid,test}_indexes.csv`` (0-based rows of meta.csv) and ``images/<folder>/<file>``.
The conversion follows the authors' ``gen_sevenpoint.py`` (docs/method.md §8), without its bugs:

* only each case's dermoscopic image (column ``derm``) is used; clinical images are ignored;
* the diagnosis is mapped to a HAM10000 class by substring, in the authors' priority order
  (:data:`DIAGNOSIS_RULES`); melanosis and miscellaneous match nothing and are dropped, which leaves
  987 images: MEL 252, NV 575, BCC 42, BKL 69, DF 20, VASC 29, no AKIEC (Table I);
* image paths are matched case-insensitively (the meta lists ``FCl/Fcl068.jpg`` for a file in
  ``FCL/``, and 52 files end in ``.JPG``), which the released loader got wrong;
* every image is resized to 600×450 (bicubic), as the paper says and the released code does not.

The output folder is read by :func:`patchlesion.data.ham10000.read_dataset` like HAM10000 itself:
``HAM10000_metadata.csv`` plus ``SPC_<case number, 4 digits>.jpg`` images (image ids such as
``SPC_0042``; the reader accepts this form besides ``ISIC_xxxxxxx``). Each case is its own lesion.
``dx_type`` comes from the case's ``management`` (excision → histo, clinical follow up →
follow_up, no further examination → consensus); only diagnosis-guided weighting reads it.

``split.csv`` (image_id, part) uses the pipeline's parts (see :mod:`patchlesion.data.splits`), for fold 1:

* part 0, the test set: the official test cases (``official``, the default: train + valid vs test,
  as the paper says) or the authors' test set (``authors``: their ``indices_sp.pkl``, whose
  off-by-one case matching gives a different split, docs/method.md §8, shipped as
  ``patchlesion/data/authors_sp_split.csv``);
* part 1, fold 1's validation part: the same test images again. The paper has no validation set
  for SPC and the authors' code validates on the test set, so the best-validation model is chosen
  on the test set; the workflow therefore reports the last model (``test_checkpoint: derm7pt: last``)
  and part 1 only draws the validation curve;
* parts 2 and 3, fold 1's training images: part 2 those of the official train list, part 3 the rest
  (official valid; with ``authors`` also official test cases the authors trained on).

Only fold 1 exists on derm7pt (the authors train a single model, ``numCV = 1``).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from patchlesion.errors import DatasetError

__all__ = [
    "DIAGNOSIS_RULES",
    "MANAGEMENT_TO_DX_TYPE",
    "SPLITS",
    "convert_release",
    "diagnosis_class",
    "image_id",
    "read_release",
    "spc_split",
]

#: Diagnosis substring -> HAM10000 class, tested in this order (the authors' gen_sevenpoint.py).
DIAGNOSIS_RULES: tuple[tuple[str, str], ...] = (
    ("basal cell", "BCC"),
    ("nevus", "NV"),
    ("dermatofibroma", "DF"),
    ("lentigo", "BKL"),
    ("melanoma", "MEL"),
    ("seborrheic keratosis", "BKL"),
    ("vascular lesion", "VASC"),
)

#: derm7pt ``management`` -> HAM10000 ``dx_type`` (how the diagnosis was most likely established).
MANAGEMENT_TO_DX_TYPE: dict[str, str] = {
    "excision": "histo",
    "clinical follow up": "follow_up",
    "no further examination": "consensus",
}

#: Which cases form the test set: the official derm7pt split or the authors' (docs/method.md §8).
SPLITS: tuple[str, ...] = ("official", "authors")

#: The split parts of the official index files.
OFFICIAL_PARTS: tuple[str, ...] = ("train", "valid", "test")

_REQUIRED_COLUMNS: tuple[str, ...] = ("case_num", "diagnosis", "management", "derm")
_AUTHORS_SPLIT_RESOURCE = "data/authors_sp_split.csv"
_CLASS_TO_DX = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc"}


def diagnosis_class(diagnosis: str) -> str | None:
    """HAM10000 class of a derm7pt diagnosis string (``"clark nevus"`` -> ``"NV"``); None: dropped."""
    text = str(diagnosis).strip().lower()
    for substring, name in DIAGNOSIS_RULES:
        if substring in text:
            return name
    return None


def image_id(case_num: int) -> str:
    """The image id of a derm7pt case in the converted dataset: ``SPC_0042`` for case 42."""
    return f"SPC_{int(case_num):04d}"


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(
            f"{path}: {what} not found. Point `derm7pt_dir` (or --release) at the unpacked derm7pt "
            "release_v0 folder, the one that holds meta/ and images/."
        )
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the {what} ({error}).") from error


def _row_lines(path: Path) -> list[int]:
    """The file line of each data row as :func:`_read_csv` numbers the rows: pandas skips blank lines,
    so row r is not always on line r + 2 (derm7pt's index files count rows the same way)."""
    text = path.read_text(encoding="utf-8-sig").splitlines()
    return [number for number, line in enumerate(text, start=1) if line.strip()][1:]


def _official_parts(meta_dir: Path, n_rows: int) -> list[str]:
    """Official part (train/valid/test) of every meta.csv row, from the three index files."""
    part_of: dict[int, str] = {}
    for part in OFFICIAL_PARTS:
        path = meta_dir / f"{part}_indexes.csv"
        table = _read_csv(path, f"official {part} index file")
        if "indexes" not in table.columns:
            raise DatasetError(f"{path}: no column 'indexes' (the 0-based rows of meta.csv); found {', '.join(table.columns)}.")
        for line, value in zip(_row_lines(path), table["indexes"]):
            try:
                row = int(str(value).strip())
            except ValueError:
                raise DatasetError(f"{path}, line {line}: {value!r} is not a row number.") from None
            if not 0 <= row < n_rows:
                raise DatasetError(f"{path}, line {line}: row {row} is outside meta.csv's rows 0..{n_rows - 1}.")
            if row in part_of:
                raise DatasetError(f"{path}, line {line}: row {row} is already in the official {part_of[row]} list.")
            part_of[row] = part
    missing = [row for row in range(n_rows) if row not in part_of]
    if missing:
        raise DatasetError(
            f"{meta_dir}: meta.csv row(s) {', '.join(map(str, missing[:5]))} are in none of train/valid/test_indexes.csv; "
            "use the index files of the same release as meta.csv."
        )
    return [part_of[row] for row in range(n_rows)]


def _image_files(images_dir: Path) -> dict[str, list[Path]]:
    """Lower-cased path relative to ``images/`` -> the files with that name (any case)."""
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: image folder not found; the derm7pt release_v0 folder has images/<folder>/<file>.")
    files: dict[str, list[Path]] = {}
    for path in images_dir.rglob("*"):
        if path.is_file():
            files.setdefault(path.relative_to(images_dir).as_posix().lower(), []).append(path)
    return files


def _resolve(images_dir: Path, files: dict[str, list[Path]], relative: str, where: str) -> Path:
    """The file of a meta.csv image path: exact if it exists, else the one file matching it case-insensitively."""
    exact = images_dir / relative
    if exact.is_file():
        return exact
    matches = files.get(relative.lower(), [])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DatasetError(f"{where}: image {relative} not found below {images_dir} (also not with other letter case).")
    raise DatasetError(f"{where}: image {relative} matches {len(matches)} files that differ only in letter case; keep one.")


def _authors_parts() -> dict[str, str]:
    """Lower-cased derm7pt image path -> the authors' part (train/test/unused), from the shipped table."""
    ref = resources.files("patchlesion").joinpath(_AUTHORS_SPLIT_RESOURCE)
    with ref.open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle, dtype=str)
    return dict(zip(table["derm_path"].str.lower(), table["authors_part"]))


def read_release(release: str | Path) -> pd.DataFrame:
    """Read a derm7pt ``release_v0`` folder: one row per case with a HAM10000 class.

    Columns: image_id, case_num, diagnosis, class_name, dx, dx_type, management, sex, location, derm
    (the meta.csv path), path (the image file found), official_part (train/valid/test) and
    authors_part (train/test/unused in the authors' split; empty if the case is not in it). Cases
    whose diagnosis maps to no class are left out (see :data:`DIAGNOSIS_RULES`).
    """
    release = Path(release)
    if not release.is_dir():
        raise DatasetError(f"{release}: derm7pt release folder not found; point `derm7pt_dir` at the unpacked release_v0.")
    meta_path = release / "meta" / "meta.csv"
    meta = _read_csv(meta_path, "derm7pt meta table")
    meta.columns = [c.strip() for c in meta.columns]
    missing = [c for c in _REQUIRED_COLUMNS if c not in meta.columns]
    if missing:
        raise DatasetError(f"{meta_path}: missing column(s) {', '.join(missing)}; is this derm7pt's release_v0/meta/meta.csv?")
    if meta.empty:
        raise DatasetError(f"{meta_path}: no rows.")
    official = _official_parts(release / "meta", len(meta))
    images_dir = release / "images"
    files = _image_files(images_dir)
    authors = _authors_parts()
    rows, seen, lines = [], {}, _row_lines(meta_path)
    for row, record in enumerate(meta.to_dict("records")):
        line = f"{meta_path}, line {lines[row]}"
        try:
            case_num = int(str(record["case_num"]).strip())
        except ValueError:
            raise DatasetError(f"{line}: case_num {record['case_num']!r} is not a number.") from None
        if case_num in seen:
            raise DatasetError(f"{line}: case_num {case_num} is also on line {seen[case_num]}.")
        seen[case_num] = lines[row]
        class_name = diagnosis_class(record["diagnosis"])
        if class_name is None:
            continue
        management = str(record["management"]).strip().lower()
        if management not in MANAGEMENT_TO_DX_TYPE:
            raise DatasetError(
                f"{line}: unknown management {record['management']!r}; expected one of {', '.join(MANAGEMENT_TO_DX_TYPE)}."
            )
        derm = str(record["derm"]).strip()
        if not derm:
            raise DatasetError(f"{line}: case {case_num} has no dermoscopic image (empty derm column).")
        rows.append(
            {
                "image_id": image_id(case_num),
                "case_num": case_num,
                "diagnosis": str(record["diagnosis"]).strip(),
                "class_name": class_name,
                "dx": _CLASS_TO_DX[class_name],
                "dx_type": MANAGEMENT_TO_DX_TYPE[management],
                "management": management,
                "sex": str(record.get("sex", "")).strip(),
                "location": str(record.get("location", "")).strip(),
                "derm": derm,
                "path": _resolve(images_dir, files, derm, line),
                "official_part": official[row],
                "authors_part": authors.get(derm.lower(), ""),
            }
        )
    if not rows:
        raise DatasetError(f"{meta_path}: no case has a diagnosis of the HAM10000 classes.")
    return pd.DataFrame(rows)


def spc_split(cases: pd.DataFrame, split: str = "official") -> pd.DataFrame:
    """The pipeline split (image_id, part) of the converted cases; see the module docstring for the parts."""
    if split not in SPLITS:
        raise DatasetError(f"unknown derm7pt split {split!r}; choose one of {', '.join(SPLITS)}.")
    if split == "official":
        test = cases["official_part"] == "test"
        used = pd.Series(True, index=cases.index)
    else:
        unknown = cases.loc[cases["authors_part"] == "", "derm"]
        if len(unknown):
            raise DatasetError(
                f"the authors' split (patchlesion/{_AUTHORS_SPLIT_RESOURCE}) has no part for {len(unknown)} image(s), "
                f"e.g. {unknown.iloc[0]}; it covers derm7pt release_v0 only. Use `derm7pt_split: official`."
            )
        test = cases["authors_part"] == "test"
        used = cases["authors_part"] != "unused"
    train = used & ~test
    parts = [
        pd.DataFrame({"image_id": cases.loc[test, "image_id"], "part": 0}),
        pd.DataFrame({"image_id": cases.loc[test, "image_id"], "part": 1}),
        pd.DataFrame({"image_id": cases.loc[train, "image_id"], "part": (cases.loc[train, "official_part"] != "train").map({False: 2, True: 3})}),
    ]
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["part", "image_id"], kind="stable").reset_index(drop=True)


def convert_release(
    release: str | Path,
    out: str | Path,
    split: str = "official",
    image_size: tuple[int, int] = (600, 450),
) -> pd.DataFrame:
    """Convert derm7pt ``release_v0`` into a HAM10000-format folder ``out`` (docs/method.md §8).

    Writes ``out/HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, age, sex, localization,
    then diagnosis, management, derm, official_part, authors_part), ``out/images/SPC_xxxx.jpg``
    resized to ``image_size = (W, H)`` and ``out/split.csv``. Returns the metadata table.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown derm7pt split {split!r}; choose one of {', '.join(SPLITS)}.")
    cases = read_release(release)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for record in cases.to_dict("records"):
        target = out / "images" / f"{record['image_id']}.jpg"
        try:
            with Image.open(record["path"]) as image:
                image = image.convert("RGB")
                if image.size != tuple(image_size):
                    image = image.resize(tuple(image_size), Image.Resampling.BICUBIC)
                image.save(target, format="JPEG", quality=95)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise DatasetError(f"{record['path']}: unreadable image of case {record['case_num']} ({error}).") from error
    metadata = pd.DataFrame(
        {
            "lesion_id": cases["image_id"],
            "image_id": cases["image_id"],
            "dx": cases["dx"],
            "dx_type": cases["dx_type"],
            "age": "",
            "sex": cases["sex"],
            "localization": cases["location"],
            "diagnosis": cases["diagnosis"],
            "management": cases["management"],
            "derm": cases["derm"],
            "official_part": cases["official_part"],
            "authors_part": cases["authors_part"],
        }
    ).sort_values("image_id")
    metadata.to_csv(out / "HAM10000_metadata.csv", index=False)
    spc_split(cases, split).to_csv(out / "split.csv", index=False)
    return metadata.reset_index(drop=True)

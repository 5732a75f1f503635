"""The seven HAM10000 diagnoses and the diagnosis types (Sec. II-A, Table I)."""

from __future__ import annotations

#: Class order of the paper's Table I and of the authors' ground-truth files (label index = position).
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

#: HAM10000 metadata ``dx`` code -> class name.
DX_TO_CLASS: dict[str, str] = {
    "mel": "MEL",
    "nv": "NV",
    "bcc": "BCC",
    "akiec": "AKIEC",
    "bkl": "BKL",
    "df": "DF",
    "vasc": "VASC",
}

#: HAM10000 metadata ``dx_type`` values: how the ground truth was established.
DX_TYPES: tuple[str, ...] = ("histo", "follow_up", "consensus", "confocal")

#: ``dx_type`` of images whose ground-truth type is not published (the ISIC 2018 test set gives
#: one-hot classes only). Accepted by the metadata reader, refused by diagnosis-guided weighting.
DX_TYPE_UNKNOWN = "unknown"

#: Benign classes (the paper applies diagnosis-guided weighting to benign cases, Sec. II-F).
BENIGN_CLASSES: tuple[str, ...] = ("NV", "BKL", "DF", "VASC")


def class_index(name: str) -> int:
    """Label index of a class name (``"MEL"`` -> 0)."""
    return CLASSES.index(name)

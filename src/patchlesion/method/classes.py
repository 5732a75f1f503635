"""Class sets: the seven HAM10000 diagnoses and the diagnosis types (Sec. II-A, Table I), and
:class:`ClassSet`, any dataset's classes in label order with its benign ones."""

from __future__ import annotations

from dataclasses import dataclass

from patchlesion.errors import PatchlesionError

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


@dataclass(frozen=True)
class ClassSet:
    """The classes a model tells apart, in label order (label index = position), and which of them
    are benign (the scope of diagnosis-guided weighting, Sec. II-F). Any count from 2 up."""

    names: tuple[str, ...]
    benign: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "benign", tuple(str(n) for n in self.benign))
        if len(self.names) < 2:
            raise PatchlesionError(f"a class set needs at least two classes, got {list(self.names)}; list every class of the dataset.")
        bad = sorted({n for n in self.names if not n.strip() or "," in n} | {n for n in self.names if self.names.count(n) > 1})
        if bad:
            raise PatchlesionError(f"class names must be unique, non-empty and without commas; fix {', '.join(map(repr, bad))}.")
        unknown = [n for n in self.benign if n not in self.names]
        if unknown:
            raise PatchlesionError(
                f"benign class(es) {', '.join(unknown)} are not among the classes {', '.join(self.names)}; name benign classes from that list."
            )

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Label index of a class name."""
        return self.names.index(name)

    def to_dict(self) -> dict:
        """``{"classes": [...], "benign": [...]}``, as run.json records it."""
        return {"classes": list(self.names), "benign": list(self.benign)}

    @classmethod
    def from_dict(cls, record: dict) -> ClassSet:
        """The class set :meth:`to_dict` wrote."""
        return cls(tuple(record["classes"]), tuple(record.get("benign", ())))


#: HAM10000's seven diagnoses and its benign classes (also derm7pt's and the synthetic data's).
HAM10000_CLASSES = ClassSet(CLASSES, BENIGN_CLASSES)

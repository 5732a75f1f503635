"""Dataset descriptions: what sets one labelled image collection apart for the grid (issue 15).

A :class:`DatasetDescription` names a dataset, its classes in label order and the benign ones
(:class:`~patchlesion.method.classes.ClassSet`), and the columns of its image index that carry the
label, the lesion group (optional: without it each image is its own group, so the split keeps
nothing together) and the diagnosis type (optional: without it diagnosis-guided weighting is
refused, :meth:`DatasetDescription.check_balancing`). HAM10000, derm7pt and the synthetic data are
three such descriptions (:data:`DESCRIPTIONS`); they share HAM10000's classes and columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from patchlesion.errors import PatchlesionError
from patchlesion.method.balancing import BALANCINGS, DIAGNOSIS_FACTORS
from patchlesion.method.classes import HAM10000_CLASSES, ClassSet

__all__ = ["DERM7PT", "DESCRIPTIONS", "HAM10000", "SYNTHETIC", "DatasetDescription", "load_description"]


@dataclass(frozen=True)
class DatasetDescription:
    """One dataset: ``name``, ``classes`` (label order, benign ones), and its index's ``label_column``
    (class names), ``group_column`` (lesion ids, or None) and ``diagnosis_type_column`` (HAM10000's
    ``dx_type`` values, or None)."""

    name: str
    classes: ClassSet
    label_column: str = "class_name"
    group_column: str | None = "lesion_id"
    diagnosis_type_column: str | None = "dx_type"

    def labels(self, index: pd.DataFrame) -> np.ndarray:
        """Label indices of an index's rows, from its label column; an unknown class name is an error naming the image."""
        names = index[self.label_column].astype(str)
        unknown = ~names.isin(self.classes.names)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise PatchlesionError(
                f"image {index['image_id'].iloc[row]}: class {names.iloc[row]!r} is not one of dataset {self.name}'s "
                f"classes {', '.join(self.classes.names)}; fix the label or add the class to the dataset's class list."
            )
        return names.map(self.classes.index).to_numpy(dtype=int)

    def groups(self, index: pd.DataFrame) -> pd.Series:
        """Each image's lesion group: the group column, or the image id itself when there is none."""
        column = self.group_column if self.group_column is not None else "image_id"
        return index[column].astype(str)

    def diagnosis_types(self, index: pd.DataFrame) -> np.ndarray | None:
        """Each image's diagnosis type, or None when the dataset has no diagnosis-type column."""
        if self.diagnosis_type_column is None:
            return None
        return index[self.diagnosis_type_column].astype(str).to_numpy(dtype=object)

    def check_balancing(self, balancing: str) -> None:
        """Refuse a balancing scheme the dataset cannot serve: diagnosis-guided weighting (Sec. II-F)
        needs how each image's ground truth was established."""
        if BALANCINGS[balancing].diagnosis_factors and self.diagnosis_type_column is None:
            raise PatchlesionError(
                f"dataset {self.name} has no diagnosis types (no diagnosis-type column), so balancing '{balancing}' "
                "cannot weight each image by how its diagnosis was established; give the dataset a diagnosis-type column "
                f"(values {', '.join(DIAGNOSIS_FACTORS)}) or drop the runs with '{balancing}'."
            )

    def to_dict(self) -> dict:
        """A JSON-ready record (run.json keeps it); :meth:`from_dict` reads it back."""
        return {
            "name": self.name, **self.classes.to_dict(), "label_column": self.label_column,
            "group_column": self.group_column, "diagnosis_type_column": self.diagnosis_type_column,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, record: dict) -> DatasetDescription:
        """The description :meth:`to_dict` wrote."""
        try:
            return cls(
                name=str(record["name"]), classes=ClassSet.from_dict(record), label_column=record.get("label_column", "class_name"),
                group_column=record.get("group_column"), diagnosis_type_column=record.get("diagnosis_type_column"),
            )  # fmt: skip
        except (KeyError, TypeError) as error:
            raise PatchlesionError(f"a dataset description needs a name and classes; got {record!r}.") from error


HAM10000 = DatasetDescription("ham10000", HAM10000_CLASSES)
#: derm7pt converted to HAM10000 format (docs/data.md §8): the same seven classes, AKIEC without images.
DERM7PT = DatasetDescription("derm7pt", HAM10000_CLASSES)
#: The synthetic HAM10000-like data (docs/data.md §9).
SYNTHETIC = DatasetDescription("synthetic", HAM10000_CLASSES)
#: The known datasets by name.
DESCRIPTIONS: dict[str, DatasetDescription] = {d.name: d for d in (HAM10000, DERM7PT, SYNTHETIC)}


def load_description(value: str | Path) -> DatasetDescription:
    """A known dataset's description by name, or one read from a JSON file (:meth:`DatasetDescription.to_dict`)."""
    if str(value) in DESCRIPTIONS:
        return DESCRIPTIONS[str(value)]
    path = Path(value)
    if path.suffix != ".json":
        raise PatchlesionError(f"unknown dataset {str(value)!r}; choose one of {', '.join(DESCRIPTIONS)} or give a description .json file.")
    try:
        return DatasetDescription.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise PatchlesionError(f"{path}: cannot read the dataset description ({error}).") from error

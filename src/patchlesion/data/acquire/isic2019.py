"""Writing the ISIC 2019 training set to disk as a folder dataset (docs/data.md §11.2).

The tables are read and checked first (:func:`patchlesion.data.isic2019.read_labels`), then every
labelled image is found by name in the zip or folder; only then is anything written: the images,
unpacked safely from the zip (:func:`patchlesion.data.acquire.archives.extract_zip`, its folder
kept) or hard-linked (else copied) from a folder, and ``labels.csv``, all in ``<out>.staging``,
renamed to ``<out>`` when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from patchlesion.data.acquire.archives import check_zip, extract_zip, staging_directory
from patchlesion.data.isic2019 import CLASSES, LABELS_FILENAME, check_jpeg, match_images, read_labels
from patchlesion.errors import DatasetError

__all__ = ["convert_isic2019"]

log = logging.getLogger(__name__)


def convert_isic2019(images: str | Path, ground_truth: str | Path, metadata: str | Path, out: str | Path) -> pd.DataFrame:
    """Write the ISIC 2019 training set to ``out`` as a folder dataset; return its labels table.

    ``images`` is ``ISIC_2019_Training_Input.zip`` or a folder holding the images. Every image of the
    ground truth must be there; images that it does not list are left out (their number is logged).
    """
    images, out = Path(images), Path(out)
    labels = read_labels(ground_truth, metadata)
    if images.is_dir():
        names = [str(p.relative_to(images)) for p in images.rglob("*") if p.is_file()]
    elif images.is_file():
        names = [info.filename for info in check_zip(images)]
    else:
        raise DatasetError(f"{images}: no such file or folder; give ISIC_2019_Training_Input.zip or the folder it unpacks to.")
    found, extra = match_images(labels, names, images)
    with staging_directory(out) as stage:
        if images.is_dir():
            written = [_link_or_copy(images / name, stage / name) for name in found.values()]
        else:
            written = extract_zip(images, stage)
        for path in written:  # the zip's member names may be spelled otherwise (./, \\): its images are found by stem
            if path.stem in found:
                check_jpeg(path, images)
            elif path.stem in extra and path.suffix.lower() in (".jpg", ".jpeg"):
                path.unlink()
        labels.to_csv(stage / LABELS_FILENAME, index=False, encoding="utf-8", lineterminator="\n")
    if extra:
        log.info("%d image(s) in %s are not in the ground truth and were left out, e.g. %s", len(extra), images.name, extra[0])
    grouped = labels["lesion_id"].ne("")
    log.info(
        "ISIC 2019 ready in %s: %d images, %s; %d lesions, %d images without a lesion id",
        out, len(labels), labels["label"].value_counts().reindex(CLASSES, fill_value=0).to_dict(),
        labels.loc[grouped, "lesion_id"].nunique(), int((~grouped).sum()),
    )  # fmt: skip
    return labels


def _link_or_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)
    return target

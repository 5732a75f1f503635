"""Getting HAM10000 and the ISIC 2018 Task 3 test set onto disk, verified, in HAM10000 format, and
the ISIC 2019 training set as a folder dataset (:func:`download_isic2019`, docs/data.md §11).

Two sources (config key ``download: source``):

* ``dataverse`` (default): the Harvard Dataverse record doi:10.7910/DVN/DBW86T. Its native API lists
  every file with id, size and MD5; files are resolved by name and each download is checked
  against the listed MD5 before it is unpacked.
* ``isic2018``: the ISIC 2018 challenge files (Task 3 training input, ground truth and lesion
  groupings; the test input and ground truth). ISIC publishes no checksums: pin MD5s in the
  config (``download: isic2018: md5:``) to have them checked; otherwise the transfer length and
  every zip member's CRC-32 are checked and the MD5 is logged so that it can be pinned.

Raw downloads are kept in a downloads folder (``resources/downloads/``), so a rerun resumes an
interrupted transfer and does not fetch a verified file twice. The dataset is assembled in
``<out>.staging`` (see :func:`patchlesion.data.acquire.archives.staging_directory`), checked with the same
reader the pipeline uses, and only then renamed to ``<out>``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from patchlesion.data import isic2018, isic2019
from patchlesion.data.acquire import dataverse
from patchlesion.data.acquire.archives import Limits, extract_zip, refuse_existing, staging_directory
from patchlesion.data.acquire.download import Expected, download, local_name
from patchlesion.data.acquire.isic2019 import convert_isic2019
from patchlesion.data.ham10000 import find_images, read_dataset
from patchlesion.errors import DatasetError, PatchlesionError

__all__ = [
    "DownloadSettings", "MANUAL_HAM10000", "MANUAL_ISIC2018_TEST", "MANUAL_ISIC2019", "download_ham10000", "download_isic2018_test",
    "download_isic2019",
]  # fmt: skip

log = logging.getLogger(__name__)

MANUAL_HAM10000 = (
    "To get HAM10000 by hand (e.g. on an offline machine): download HAM10000_images_part_1.zip, "
    "HAM10000_images_part_2.zip and HAM10000_metadata from https://doi.org/10.7910/DVN/DBW86T, unpack "
    "them into one folder and run with --config ham10000_dir=/path/to/that/folder; or run the demo on "
    "synthetic data: --config preset=demo."
)
MANUAL_ISIC2018_TEST = (
    "To get the ISIC 2018 Task 3 test set by hand: download the test images zip and the test ground-truth "
    "table from https://doi.org/10.7910/DVN/DBW86T (or https://challenge.isic-archive.com/data/#2018), and run "
    "`patchlesion download-isic2018-test --from-files IMAGES.zip GROUND_TRUTH --out DIR`, then "
    "--config isic2018_test_dir=DIR. The paper's tables do not need it: --config official_test=false leaves it out."
)
MANUAL_ISIC2019 = (
    "To get ISIC 2019 by hand: download ISIC_2019_Training_Input.zip, ISIC_2019_Training_GroundTruth.csv and "
    "ISIC_2019_Training_Metadata.csv from https://challenge.isic-archive.com/data/#2019 and run `patchlesion convert-isic2019 "
    "--images ISIC_2019_Training_Input.zip --ground-truth ISIC_2019_Training_GroundTruth.csv --metadata ISIC_2019_Training_Metadata.csv --out DIR`."
)
METADATA_FILENAME = "HAM10000_metadata.csv"
#: Share of ground-truth images that may be absent from the image archive (ISIC_0035068 is in the
#: ISIC ground truth but not in Dataverse's 1,511 test images) before the download is refused.
MAX_MISSING_FRACTION = 0.01


@dataclass(frozen=True)
class DownloadSettings:
    """Where the data comes from (config block ``download``); the defaults are the real servers."""

    source: str = "dataverse"
    timeout: float = 60
    retries: int = 3
    #: No downloaded file may be larger (GiB); a file the record lists as larger is not fetched (docs/data.md §8.5).
    max_file_gib: float = 8.0
    dataverse_server: str = "https://dataverse.harvard.edu"
    dataverse_doi: str = "doi:10.7910/DVN/DBW86T"
    #: Every one of these files is needed; a name matches with or without its extension.
    dataverse_images: tuple[str, ...] = ("HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip")
    #: Candidate names, the first one the record has is used.
    dataverse_metadata: tuple[str, ...] = ("HAM10000_metadata",)
    dataverse_test_images: tuple[str, ...] = ("ISIC2018_Task3_Test_Images.zip", "ISIC2018_Task3_Test_Input.zip")
    dataverse_test_ground_truth: tuple[str, ...] = ("ISIC2018_Task3_Test_GroundTruth",)
    isic2018_url: str = "https://isic-challenge-data.s3.amazonaws.com/2018/"
    isic2018_images: str = "ISIC2018_Task3_Training_Input.zip"
    isic2018_ground_truth: str = "ISIC2018_Task3_Training_GroundTruth.zip"
    isic2018_lesion_groupings: str = "ISIC2018_Task3_Training_LesionGroupings.csv"
    isic2018_test_images: str = "ISIC2018_Task3_Test_Input.zip"
    isic2018_test_ground_truth: str = "ISIC2018_Task3_Test_GroundTruth.zip"
    isic2018_md5: dict[str, str] = field(default_factory=dict)
    isic2019_url: str = "https://isic-challenge-data.s3.amazonaws.com/2019/"
    isic2019_images: str = "ISIC_2019_Training_Input.zip"
    isic2019_ground_truth: str = "ISIC_2019_Training_GroundTruth.csv"
    isic2019_metadata: str = "ISIC_2019_Training_Metadata.csv"
    isic2019_md5: dict[str, str] = field(default_factory=dict)
    #: The cap of the ISIC 2019 files, in place of ``max_file_gib``: its image zip (about 9.1 GB) is larger (docs/data.md §11).
    isic2019_max_file_gib: float = 12.0

    @classmethod
    def from_config(cls, block: dict | None) -> DownloadSettings:
        """Settings from the config's ``download`` block (nested ``dataverse`` / ``isic2018`` maps)."""
        block = dict(block or {})
        flat = {key: block.pop(key) for key in ("source", "timeout", "retries", "max_file_gib") if key in block}
        for group in ("dataverse", "isic2018", "isic2019"):
            for key, value in (block.pop(group, None) or {}).items():
                flat[f"{group}_{key}"] = value
        if block:
            raise PatchlesionError(f"config key 'download': unknown key(s) {', '.join(block)}.")
        known = {f.name for f in fields(cls)}
        unknown = [key for key in flat if key not in known]
        if unknown:
            raise PatchlesionError(f"config key 'download': unknown key(s) {', '.join(unknown)}.")
        for key, value in flat.items():
            if isinstance(value, list):
                flat[key] = tuple(value)
            elif isinstance(value, str) and key.startswith("dataverse_") and key not in ("dataverse_server", "dataverse_doi"):
                flat[key] = (value,)
        return cls(**flat)

    def __post_init__(self) -> None:
        if self.source not in ("dataverse", "isic2018"):
            raise PatchlesionError(f"config key 'download/source': {self.source!r}; choose dataverse or isic2018.")
        for key, value in (("download/max_file_gib", self.max_file_gib), ("download/isic2019/max_file_gib", self.isic2019_max_file_gib)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise PatchlesionError(f"config key '{key}' (--max-file-gib): {value!r}; give a size in GiB above 0, e.g. 8.")

    def limits(self, group: str = "") -> dict:
        """The size cap of one download of ``group`` (``isic2019`` has its own), as :func:`download`
        takes it, with the setting that raises it."""
        gib, key = (self.isic2019_max_file_gib, "isic2019: max_file_gib") if group == "isic2019" else (self.max_file_gib, "max_file_gib")
        return {"max_bytes": int(gib * (1 << 30)), "limit_key": f"config key download: {key} (now {gib:g}; --max-file-gib on the command line)"}


#: Bounds on what one archive may unpack to (the defaults fit a 1.4 GB HAM10000 image part).
LIMITS = Limits()


# --------------------------------------------------------------------------------------------------
# HAM10000
# --------------------------------------------------------------------------------------------------


def download_ham10000(out: str | Path, downloads: str | Path, settings: DownloadSettings = DownloadSettings()) -> Path:
    """Download, verify and unpack HAM10000 into ``out`` (a HAM10000-format directory); return it."""
    out, downloads = Path(out), Path(downloads)
    if settings.source == "dataverse":
        metadata, archives = _ham10000_from_dataverse(downloads, settings)
        with staging_directory(out) as stage:
            for archive in archives:
                extract_zip(archive, stage, LIMITS)
            # Under a name the reader looks for: the upload is a CSV, Dataverse's archival form a .tab.
            shutil.copyfile(metadata, stage / ("HAM10000_metadata.tab" if metadata.suffix == ".tab" else METADATA_FILENAME))
            _check(stage, "HAM10000", MANUAL_HAM10000)
    else:
        ground_truth, groupings, images = _ham10000_from_isic2018(downloads, settings)
        with tempfile.TemporaryDirectory(dir=downloads) as scratch:
            gt_csv = _single_table(ground_truth, Path(scratch))
            table = isic2018.training_metadata(gt_csv, groupings)
            with staging_directory(out) as stage:
                extract_zip(images, stage, LIMITS)
                table.to_csv(stage / METADATA_FILENAME, index=False)
                _check(stage, "HAM10000", MANUAL_HAM10000)
    log.info("HAM10000 ready in %s", out)
    return out


def _ham10000_from_dataverse(downloads: Path, settings: DownloadSettings) -> tuple[Path, list[Path]]:
    doi = settings.dataverse_doi
    files = dataverse.dataset_files(
        settings.dataverse_server, doi, manual=MANUAL_HAM10000, timeout=settings.timeout, retries=settings.retries
    )
    wanted = [dataverse.resolve(files, name, doi=doi, what="HAM10000 image archive", key="images") for name in settings.dataverse_images]
    wanted.append(dataverse.resolve(files, settings.dataverse_metadata, doi=doi, what="HAM10000 metadata", key="metadata"))
    paths = [_fetch_dataverse(settings, file, downloads, MANUAL_HAM10000) for file in wanted]
    return paths[-1], paths[:-1]


def _fetch_dataverse(settings: DownloadSettings, file: dataverse.DataverseFile, downloads: Path, manual: str) -> Path:
    return dataverse.fetch_file(
        settings.dataverse_server, file, downloads, manual=manual, timeout=settings.timeout, retries=settings.retries, **settings.limits()
    )


def _fetch_isic(settings: DownloadSettings, key: str, downloads: Path, manual: str, group: str = "isic2018") -> Path:
    """Download the ISIC file that config key ``download: <group>: <key>`` names, under that name's last component."""
    name = getattr(settings, f"{group}_{key}")
    target = downloads / local_name(name, f"download: {group}: {key}")
    md5 = getattr(settings, f"{group}_md5").get(name)
    expected = Expected("md5", md5) if md5 else None
    if expected is None:
        log.warning("no MD5 pinned for %s (ISIC publishes none): only its length and zip CRCs are checked", name)
    url = getattr(settings, f"{group}_url").rstrip("/") + "/" + name
    return download(
        url, target, expected, what=name, manual=manual, timeout=settings.timeout, retries=settings.retries, **settings.limits(group)
    )


def _ham10000_from_isic2018(downloads: Path, settings: DownloadSettings) -> tuple[Path, Path, Path]:
    keys = ("ground_truth", "lesion_groupings", "images")
    ground_truth, groupings, images = (_fetch_isic(settings, key, downloads, MANUAL_HAM10000) for key in keys)
    return ground_truth, groupings, images


def _single_table(path: Path, scratch: Path) -> Path:
    """``path`` itself for a CSV/tab table; for a zip, its one ``.csv`` member extracted (safely) to ``scratch``."""
    if not zipfile.is_zipfile(path):
        return path
    extracted = extract_zip(path, scratch / path.stem, LIMITS)
    tables = [p for p in extracted if p.suffix.lower() in (".csv", ".tab") and not p.name.startswith("._")]
    if len(tables) != 1:
        raise DatasetError(
            f"{path}: expected exactly one .csv table inside, found {len(tables)} ({', '.join(p.name for p in tables) or 'none'})."
        )
    return tables[0]


def _check(stage: Path, what: str, manual: str) -> pd.DataFrame:
    """Validate the assembled directory with the pipeline's own reader before it is published."""
    try:
        return read_dataset(stage, verify_images=False)
    except DatasetError as error:
        raise DatasetError(f"the downloaded {what} files do not form a complete dataset: {error} {manual}") from error


# --------------------------------------------------------------------------------------------------
# ISIC 2018 Task 3 official test set
# --------------------------------------------------------------------------------------------------


def download_isic2018_test(out: str | Path, downloads: str | Path, settings: DownloadSettings = DownloadSettings()) -> Path:
    """Download the ISIC 2018 Task 3 test images and ground truth into ``out`` in HAM10000 format."""
    downloads = Path(downloads)
    if settings.source == "dataverse":
        doi = settings.dataverse_doi
        files = dataverse.dataset_files(
            settings.dataverse_server, doi, manual=MANUAL_ISIC2018_TEST, timeout=settings.timeout, retries=settings.retries
        )
        images_file = dataverse.resolve(files, settings.dataverse_test_images, doi=doi, what="ISIC 2018 test images", key="test_images")
        truth_file = dataverse.resolve(
            files, settings.dataverse_test_ground_truth, doi=doi, what="ISIC 2018 test ground truth", key="test_ground_truth"
        )
        images = _fetch_dataverse(settings, images_file, downloads, MANUAL_ISIC2018_TEST)
        truth = _fetch_dataverse(settings, truth_file, downloads, MANUAL_ISIC2018_TEST)
    else:
        images = _fetch_isic(settings, "test_images", downloads, MANUAL_ISIC2018_TEST)
        truth = _fetch_isic(settings, "test_ground_truth", downloads, MANUAL_ISIC2018_TEST)
    return isic2018_test_from_files(images, truth, out, scratch=downloads)


def isic2018_test_from_files(images: str | Path, ground_truth: str | Path, out: str | Path, scratch: str | Path | None = None) -> Path:
    """Turn a test-image zip and a ground-truth table (CSV, .tab or a zip holding one) into ``out``.

    Ground-truth images absent from the archive are dropped with a warning (Dataverse's copy has
    1,511 of the 1,512 images; ISIC_0035068 is unscored), up to :data:`MAX_MISSING_FRACTION`.
    """
    images, ground_truth, out = Path(images), Path(ground_truth), Path(out)
    scratch_root = Path(scratch) if scratch is not None else out.parent
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as tmp:
        table = isic2018.test_metadata(_single_table(ground_truth, Path(tmp)))
        with staging_directory(out) as stage:
            extract_zip(images, stage, LIMITS)
            present = find_images(stage)
            missing = table.loc[~table["image_id"].isin(present), "image_id"]
            if len(missing) > MAX_MISSING_FRACTION * len(table):
                raise DatasetError(
                    f"{images}: {len(missing)} of the {len(table)} images of {ground_truth.name} are not in the archive "
                    f"(e.g. {missing.iloc[0]}); is it the matching test-image archive?"
                )
            if len(missing):
                log.warning("%d ground-truth image(s) not in %s, left out: %s", len(missing), images.name, ", ".join(missing))
                table = table[table["image_id"].isin(present)]
            table.to_csv(stage / METADATA_FILENAME, index=False)
            index = _check(stage, "ISIC 2018 test", MANUAL_ISIC2018_TEST)
    log.info("ISIC 2018 Task 3 test set ready in %s: %d images, %s", out, len(index), index["dx"].value_counts().to_dict())
    return out


# --------------------------------------------------------------------------------------------------
# ISIC 2019 training set (a folder dataset: images + labels.csv)
# --------------------------------------------------------------------------------------------------


def download_isic2019(out: str | Path, downloads: str | Path, settings: DownloadSettings = DownloadSettings()) -> Path:
    """Download the ISIC 2019 training files and write them to ``out`` as a folder dataset (docs/data.md §11).

    The two tables are fetched and checked first, so that a wrong one stops the download before the
    image archive (about 9.1 GB) is fetched.
    """
    out, downloads = Path(out), Path(downloads)
    refuse_existing(out)
    tables = [_fetch_isic(settings, key, downloads, MANUAL_ISIC2019, "isic2019") for key in ("ground_truth", "metadata")]
    try:
        isic2019.read_labels(*tables)
        images = _fetch_isic(settings, "images", downloads, MANUAL_ISIC2019, "isic2019")
        convert_isic2019(images, *tables, out)
    except DatasetError as error:
        raise DatasetError(f"the downloaded ISIC 2019 files do not form a complete dataset: {error} {MANUAL_ISIC2019}") from error
    return out

"""Harvard Dataverse: a dataset's file list (ids, sizes, MD5s) and name-resolved, verified downloads.

HAM10000 and the ISIC 2018 Task 3 test set are published on one Dataverse record,
doi:10.7910/DVN/DBW86T. Numeric file ids change whenever a file is replaced (the metadata was for
version 4), so nothing is hard-coded: the record's current file list is read from the native API
(``/api/datasets/:persistentId/?persistentId=<doi>``) and files are looked up by name.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from patchlesion.data.acquire.download import DownloadError, Expected, download, fetch_bytes

__all__ = ["DataverseFile", "dataset_files", "resolve", "fetch_file", "dataset_url"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataverseFile:
    """One file of a Dataverse dataset version, as the native API describes it.

    ``filename`` is the stored name (``HAM10000_metadata.tab`` for an ingested table),
    ``original_name`` the uploaded one (``HAM10000_metadata.csv``) when Dataverse converted it.
    ``md5`` is the checksum of the uploaded original; ``original_size`` its size when converted.
    """

    id: int
    filename: str
    size: int | None
    md5: str | None
    original_name: str | None = None
    original_size: int | None = None

    @property
    def tabular(self) -> bool:
        """Whether Dataverse ingested the file into a ``.tab`` table (download it with ?format=original)."""
        return self.original_name is not None or self.filename.endswith(".tab")

    def names(self) -> set[str]:
        """Every name the file can be asked for by: stored and uploaded names, each with and without extension."""
        names = {self.filename, PurePosixPath(self.filename).stem}
        if self.original_name:
            names |= {self.original_name, PurePosixPath(self.original_name).stem}
        return {name.lower() for name in names}

    def download_name(self) -> str:
        """The local file name: the uploaded original's name for converted tables."""
        return self.original_name or (self.filename if not self.tabular else PurePosixPath(self.filename).stem + ".csv")


def dataset_url(server: str, doi: str) -> str:
    """The native-API address of the latest version of dataset ``doi`` on ``server``."""
    pid = doi if doi.startswith(("doi:", "hdl:")) else f"doi:{doi}"
    return f"{server.rstrip('/')}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(pid, safe=':/')}"


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _md5(data_file: dict) -> str | None:
    if data_file.get("md5"):
        return str(data_file["md5"]).lower()
    checksum = data_file.get("checksum") or {}
    if str(checksum.get("type", "")).upper() == "MD5" and checksum.get("value"):
        return str(checksum["value"]).lower()
    return None


def parse_files(document: dict, where: str) -> list[DataverseFile]:
    """The files of the latest version in a native-API dataset document."""
    try:
        entries = document["data"]["latestVersion"]["files"]
    except (KeyError, TypeError):
        raise DownloadError(f"{where}: the answer is not a Dataverse dataset record (no data.latestVersion.files).") from None
    files = []
    for entry in entries:
        data_file = (entry or {}).get("dataFile") or {}
        file_id, name = _int(data_file.get("id")), data_file.get("filename") or entry.get("label")
        if file_id is None or not name:
            continue
        files.append(
            DataverseFile(
                id=file_id, filename=str(name), size=_int(data_file.get("filesize")), md5=_md5(data_file),
                original_name=data_file.get("originalFileName"), original_size=_int(data_file.get("originalFileSize")),
            )
        )  # fmt: skip
    return files


def dataset_files(server: str, doi: str, *, manual: str = "", timeout: float = 60, retries: int = 3) -> list[DataverseFile]:
    """Read the current file list of dataset ``doi`` from ``server``'s native API."""
    url = dataset_url(server, doi)
    body = fetch_bytes(url, what=f"Dataverse record {doi}", manual=manual, timeout=timeout, retries=retries)
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DownloadError(f"{url}: the Dataverse answer is not JSON ({error}).{' ' + manual if manual else ''}") from None
    files = parse_files(document, url)
    if not files:
        raise DownloadError(f"{url}: the Dataverse record {doi} lists no files.{' ' + manual if manual else ''}")
    return files


def resolve(files: list[DataverseFile], candidates: list[str] | str, *, doi: str, what: str) -> DataverseFile:
    """The first file matching one of ``candidates`` (case-insensitive; with or without extension).

    Raises :class:`DownloadError` listing every file name the record has when none matches.
    """
    candidates = [candidates] if isinstance(candidates, str) else list(candidates)
    for candidate in candidates:
        matches = [f for f in files if candidate.lower() in f.names()]
        if len(matches) == 1:
            return matches[0]
        exact = [f for f in matches if candidate.lower() in (f.filename.lower(), (f.original_name or "").lower())]
        if len(exact) == 1:
            return exact[0]
        if matches:
            raise DownloadError(
                f"Dataverse record {doi}: the name {candidate!r} of the {what} matches several files "
                f"({', '.join(f.filename for f in matches)}); give the full file name in the config."
            )
    listing = ", ".join(sorted(f.filename for f in files))
    raise DownloadError(
        f"Dataverse record {doi} has no file named {' or '.join(map(repr, candidates))} (the {what}). "
        f"Its files are: {listing}. Set the right name in config.yaml under download: dataverse:."
    )


def fetch_file(
    server: str,
    file: DataverseFile,
    folder: str | os.PathLike,
    *,
    manual: str = "",
    timeout: float = 60,
    retries: int = 3,
    require_checksum: bool = True,
) -> Path:
    """Download one Dataverse file into ``folder`` (resumable), verified against the record's MD5.

    Ingested tables are fetched as uploaded (``?format=original``); the MD5 Dataverse lists is that
    of the original. Other files are also checked against the listed size, which bounds the transfer. A record entry without an MD5 is refused unless ``require_checksum`` is false.
    """
    url = f"{server.rstrip('/')}/api/access/datafile/{file.id}" + ("?format=original" if file.tabular else "")
    if file.md5 is None and require_checksum:
        raise DownloadError(f"Dataverse lists no MD5 for {file.filename} (file id {file.id}); refusing an unverifiable download.")
    # For an ingested table the listed MD5 is that of the uploaded original (IQSS/dataverse#7275),
    # hence ?format=original; its listed sizes are not consistent across Dataverse's APIs
    # (IQSS/dataverse.harvard.edu#396), so only the MD5 is checked there.
    size = None if file.tabular else file.size
    expected = Expected("md5", file.md5, size=size) if file.md5 else None
    target = Path(folder) / file.download_name()
    return download(url, target, expected, what=file.download_name(), manual=manual, timeout=timeout, retries=retries)

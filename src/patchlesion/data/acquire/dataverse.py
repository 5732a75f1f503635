"""Harvard Dataverse: a dataset's file list (ids, sizes, MD5s) and name-resolved, verified downloads.

HAM10000 and the ISIC 2018 Task 3 test set are published on one Dataverse record,
doi:10.7910/DVN/DBW86T. Numeric file ids change whenever a file is replaced (the metadata was for
version 4), so nothing is hard-coded: the record's current file list is read from the native API
(``/api/datasets/:persistentId/?persistentId=<doi>``) and files are looked up by name.

The server's file names are matched against the configured ones and never used as paths: a file is
saved under the name the config gives (its extension aside), and a matching record entry whose name
has a folder part, ``..`` or NUL is refused (docs/data.md §8.5).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from patchlesion.data.acquire.download import MAX_BYTES, DownloadError, Expected, download, fetch_bytes, local_name, plain_name

__all__ = ["DataverseFile", "dataset_files", "resolve", "fetch_file", "dataset_url"]

log = logging.getLogger(__name__)

#: An extension taken from a server's file name for the local copy: a dot and at most 10 letters/digits.
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def _shown(name: str) -> str:
    """A server's file name as shown in a message: quoted and escaped unless every character is printable."""
    return name if name.isprintable() else repr(name)


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DataverseFile:
    """One file of a Dataverse dataset version, as the native API describes it.

    ``filename`` is the stored name (``HAM10000_metadata.tab`` for an ingested table),
    ``original_name`` the uploaded one (``HAM10000_metadata.csv``) when Dataverse converted it.
    ``md5`` is the checksum of the uploaded original; ``original_size`` its size when converted.
    ``local_name`` is set by :func:`resolve`: the configured name the file is saved under.
    """

    id: int
    filename: str
    size: int | None
    md5: str | None
    original_name: str | None = None
    original_size: int | None = None
    local_name: str | None = None

    @property
    def tabular(self) -> bool:
        """Whether Dataverse ingested the file into a ``.tab`` table (download it with ?format=original)."""
        return self.original_name is not None or self.filename.endswith(".tab")

    def server_names(self) -> list[str]:
        """The stored and (for a converted table) the uploaded name, as the server gives them."""
        return [name for name in (self.filename, self.original_name) if name]

    def names(self) -> set[str]:
        """Every name the file can be asked for by: the last component of the stored and uploaded
        names, each with and without extension (so that an entry named ``../x.csv`` is found, and refused)."""
        names = set()
        for name in self.server_names():
            base = _basename(name)
            names |= {base, PurePosixPath(base).stem}
        return {name.lower() for name in names}

    def content_suffix(self) -> str:
        """The extension of what the access API sends: the uploaded original's for a converted table
        (``.csv`` when the record names none), else the stored file's; ``""`` unless it is a short plain one."""
        if self.tabular:
            suffix = PurePosixPath(self.original_name).suffix if self.original_name else ".csv"
        else:
            suffix = PurePosixPath(self.filename).suffix
        return suffix if _SUFFIX.fullmatch(suffix) else ""


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


def resolve(files: list[DataverseFile], candidates: list[str] | str, *, doi: str, what: str, key: str = "") -> DataverseFile:
    """The first file matching one of ``candidates`` (case-insensitive; with or without extension),
    with its ``local_name`` set: the candidate's own name plus the extension of what the server sends.
    Record entries that match no candidate are ignored. ``key`` is the config key under
    ``download: dataverse:`` that gave the candidates.

    Raises :class:`DownloadError` listing every file name the record has when none matches, and when
    the matching entry's name on the server is not a plain file name (docs/data.md §8.5).
    """
    candidates = [candidates] if isinstance(candidates, str) else list(candidates)
    bases = [local_name(candidate, f"download: dataverse: {key}" if key else "download: dataverse") for candidate in candidates]
    for candidate, base in zip(candidates, bases):
        matches = [f for f in files if base.lower() in f.names()]
        exact = [f for f in matches if base.lower() in {_basename(name).lower() for name in f.server_names()}]
        if len(matches) == 1 or len(exact) == 1:
            return _checked(matches[0] if len(matches) == 1 else exact[0], base, doi=doi, what=what)
        if matches:
            raise DownloadError(
                f"Dataverse record {doi}: the name {candidate!r} of the {what} matches several files "
                f"({', '.join(_shown(f.filename) for f in matches)}); give the full file name in the config."
            )
    listing = ", ".join(sorted(_shown(f.filename) for f in files))
    raise DownloadError(
        f"Dataverse record {doi} has no file named {' or '.join(map(repr, candidates))} (the {what}). "
        f"Its files are: {listing}. Set the right name in config.yaml under download: dataverse:."
    )


def _checked(file: DataverseFile, base: str, *, doi: str, what: str) -> DataverseFile:
    """``file`` with its local name (``base``, the configured name), after checking its names on the server."""
    for name in file.server_names():
        if plain_name(name) is None:
            raise DownloadError(
                f"Dataverse record {doi} lists the {what} (file id {file.id}) under the name {name!r}, which is not a plain "
                f"file name (it has a folder part, '..' or NUL); refused, since a server's file names are never used as paths. "
                f"Check download: dataverse: server in config.yaml, or get the file by hand."
            )
    exact = base.lower() in {name.lower() for name in file.server_names()}
    stem = PurePosixPath(base).stem if exact else base  # the configured name with its extension, if it gave one
    return dataclasses.replace(file, local_name=stem + file.content_suffix())


def fetch_file(
    server: str,
    file: DataverseFile,
    folder: str | os.PathLike,
    *,
    manual: str = "",
    timeout: float = 60,
    retries: int = 3,
    require_checksum: bool = True,
    max_bytes: int = MAX_BYTES,
    limit_key: str = "",
) -> Path:
    """Download one :func:`resolve`-d Dataverse file into ``folder`` under its ``local_name``
    (resumable), verified against the record's MD5 and at most ``max_bytes`` long.

    Ingested tables are fetched as uploaded (``?format=original``); the MD5 Dataverse lists is that
    of the original. Other files are also checked against the listed size, which bounds the transfer. A record entry without an MD5 is refused unless ``require_checksum`` is false.
    """
    url = f"{server.rstrip('/')}/api/access/datafile/{file.id}" + ("?format=original" if file.tabular else "")
    if file.md5 is None and require_checksum:
        raise DownloadError(f"Dataverse lists no MD5 for {file.filename} (file id {file.id}); refusing an unverifiable download.")
    # For an ingested table the listed MD5 is that of the uploaded original (IQSS/dataverse#7275),
    # hence ?format=original; its listed sizes are not consistent across Dataverse's APIs
    # (IQSS/dataverse.harvard.edu#396), so only the MD5 is checked there.
    if file.local_name is None or plain_name(file.local_name) is None:
        raise ValueError(f"Dataverse file {file.id} has no local name; resolve() it first")
    size = None if file.tabular else file.size
    expected = Expected("md5", file.md5, size=size) if file.md5 else None
    return download(
        url, Path(folder) / file.local_name, expected, what=file.local_name, manual=manual, timeout=timeout, retries=retries,
        max_bytes=max_bytes, limit_key=limit_key,
    )  # fmt: skip

"""Safe extraction of downloaded zip archives, and a staging folder that appears only when complete.

A downloaded archive is extracted only after its checksum matched (the caller's job, see
:mod:`patchlesion.data.acquire.download`), and even then every member is checked *before* anything is written:
no absolute path or drive letter, no ``..`` component, no symbolic link, device, FIFO or socket,
no encrypted or duplicated member, and bounded member count, member size, total size and
compression ratio (a zip bomb is refused up front; the ratio rule counts every member and the
archive as a whole, docs/data.md §8.5). Files are written with exclusive creation below the
destination only, and each one's byte count is checked while it is copied.

:func:`staging_directory` builds a dataset in ``<out>.staging`` and renames it to ``<out>`` only
when everything succeeded, so an interrupted or refused extraction never leaves a half-filled
dataset directory for the pipeline to pick up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from patchlesion.errors import PatchlesionError

__all__ = ["ArchiveError", "Limits", "check_zip", "extract_zip", "refuse_existing", "staging_directory"]

log = logging.getLogger(__name__)

_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


class ArchiveError(PatchlesionError):
    """An archive is damaged or unsafe to extract; nothing of it was kept."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one archive may unpack to (the rule: docs/data.md §8.5).

    The defaults leave room for the largest archive used here (a HAM10000 image part: 5,015 JPEGs,
    about 1.4 GB; JPEGs barely compress, ratio about 1) while refusing anything out of proportion.
    Compression ratios: every member's bytes beyond ``max_ratio`` times its compressed size count
    towards one budget of ``ratio_slack_bytes`` for the whole archive, and the archive as a whole
    may unpack to at most ``max_total_ratio`` times its compressed size plus that budget. The budget
    lets small, well-compressing files (CSV tables, a LICENSE) through, but not many of them.
    """

    max_members: int = 100_000
    max_member_bytes: int = 256 << 20
    max_total_bytes: int = 16 << 30
    max_ratio: float = 200.0  # uncompressed / compressed size of one member
    max_total_ratio: float = 20.0  # total uncompressed / total compressed size of the archive
    ratio_slack_bytes: int = 8 << 20  # bytes beyond those ratios allowed in all (small text files)


def _member_kind(info: zipfile.ZipInfo) -> str | None:
    """A refused member type ("symbolic link", "device file", ...) or None for a file/directory."""
    mode = info.external_attr >> 16
    if not mode:
        return None  # made on a system without Unix modes: plain file or directory
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file"
    return None


def _safe_relative(name: str) -> PurePosixPath | None:
    """The member's path relative to the destination, or None if it could escape it."""
    if not name or "\x00" in name:
        return None
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or _DRIVE.match(name) or any(part == ".." for part in path.parts):
        return None
    parts = [part for part in path.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def check_zip(archive: str | os.PathLike, limits: Limits = Limits()) -> list[zipfile.ZipInfo]:
    """Check every member of a zip archive without extracting anything; return the file members.

    Raises :class:`ArchiveError` naming the archive and the first offending member.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise ArchiveError(f"{archive}: not a readable zip archive ({error}). Delete it and download it again.") from error
    if len(infos) > limits.max_members:
        raise ArchiveError(f"{archive}: {len(infos)} members, more than the allowed {limits.max_members}; refused.")
    files, seen, total, compressed, excess = [], set(), 0, 0, 0
    for info in infos:
        where = f"{archive}: member {info.filename!r}"
        relative = _safe_relative(info.filename)
        if relative is None:
            raise ArchiveError(f"{where} has an absolute or parent-directory ('..') path; the archive is refused.")
        kind = _member_kind(info)
        if kind is not None:
            raise ArchiveError(f"{where} is a {kind}; only regular files and folders are extracted, the archive is refused.")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{where} is encrypted; the archive is refused.")
        key = relative.as_posix().lower()
        if key in seen:
            raise ArchiveError(f"{where} occurs twice; the archive is refused.")
        seen.add(key)
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise ArchiveError(
                f"{where} unpacks to {info.file_size} bytes, more than the allowed {limits.max_member_bytes}; refused."
            )
        # every member counts, however small: its bytes beyond max_ratio x its compressed size use up the budget
        excess += max(0, info.file_size - int(limits.max_ratio * info.compress_size))
        if excess > limits.ratio_slack_bytes:
            raise ArchiveError(
                f"{where}: up to this member the archive unpacks to {excess} bytes more than a compression ratio of "
                f"{limits.max_ratio:g} per member allows, and at most {limits.ratio_slack_bytes} are allowed (a zip bomb?); refused."
            )
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_total_bytes:
            raise ArchiveError(f"{archive}: unpacks to more than the allowed {limits.max_total_bytes} bytes; refused.")
        files.append(info)
    size = archive.stat().st_size  # the real size: members claiming overlapping data cannot inflate it
    if compressed > size:
        raise ArchiveError(f"{archive}: its members claim {compressed} compressed bytes in a {size}-byte file (overlapping members); refused.")
    if total > limits.max_total_ratio * size + limits.ratio_slack_bytes:
        raise ArchiveError(
            f"{archive}: unpacks to {total} bytes from a {size}-byte archive, more than {limits.max_total_ratio:g} times its size "
            f"plus {limits.ratio_slack_bytes} bytes (a zip bomb?); the archive is refused."
        )
    return files


def extract_zip(archive: str | os.PathLike, destination: str | os.PathLike, limits: Limits = Limits()) -> list[Path]:
    """Extract the regular files of a checked zip archive below ``destination``; return their paths.

    All members are checked first (:func:`check_zip`); then each file is created exclusively (an
    existing file is never overwritten), its byte count capped at its declared size and its CRC-32
    verified by :mod:`zipfile`. ``destination`` should be a staging folder that the caller discards
    on error (see :func:`staging_directory`).
    """
    archive, destination = Path(archive), Path(destination)
    files = check_zip(archive, limits)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    written: list[Path] = []
    with zipfile.ZipFile(archive) as zf:
        for info in files:
            relative = _safe_relative(info.filename)
            target = root.joinpath(*relative.parts)
            if root not in target.parents:
                raise ArchiveError(f"{archive}: member {info.filename!r} would be written outside {destination}; refused.")
            target.parent.mkdir(parents=True, exist_ok=True)
            # A symlinked folder inside the destination could redirect the write; there must be none.
            if target.parent.resolve() != target.parent:
                raise ArchiveError(f"{archive}: member {info.filename!r}: {target.parent} is not a plain folder; refused.")
            try:
                with zf.open(info) as source, open(target, "xb") as out:
                    copied = 0
                    while chunk := source.read(_CHUNK):
                        copied += len(chunk)
                        if copied > info.file_size:
                            raise ArchiveError(f"{archive}: member {info.filename!r} is longer than it declares; refused.")
                        out.write(chunk)
            except FileExistsError:
                raise ArchiveError(
                    f"{archive}: member {info.filename!r} would overwrite {target}, which already exists; refused."
                ) from None
            except (zipfile.BadZipFile, EOFError, zlib.error) as error:
                raise ArchiveError(
                    f"{archive}: member {info.filename!r} is damaged ({error}). Delete the archive and download it again."
                ) from error
            written.append(target)
    log.info("extracted %d files from %s", len(written), archive.name)
    return written


def refuse_existing(out: str | os.PathLike) -> None:
    """Raise :class:`PatchlesionError` when ``out`` exists and is not an empty folder (nothing is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PatchlesionError(f"{out} already exists and is not empty; delete it first, or use it as it is.")


@contextlib.contextmanager
def staging_directory(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty ``<out>.staging`` folder; on success rename it to ``out``, on error delete it.

    Refuses to start when ``out`` already exists and is not empty (nothing is overwritten).
    """
    out = Path(out)
    refuse_existing(out)
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.replace(staging, out)

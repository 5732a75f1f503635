"""Checksum-verified HTTP downloads that resume, retry and never leave a wrong file in place.

Used for every file the workflow fetches (ImageNet weights, the HAM10000 and ISIC 2018 archives).
A file is streamed to ``<target>.partial`` with an explicit ``User-Agent`` (Harvard Dataverse's
firewall answers 403 to Python's default one), a per-operation timeout, and up to ``retries``
retries on network errors and HTTP 5xx/408/429 with exponential backoff. After a cut connection the
next attempt asks for the rest with an HTTP ``Range`` request and appends it (a server that ignores
the range and sends the whole file again is handled too). Only when the size and the checksum match
is the file renamed atomically to its final name, so a half-written or wrong file never appears
there. A ``.partial`` left behind by a failed run is resumed by the next run. Every download is
capped at ``max_bytes`` (and at the expected size when one is known), whatever the server announces
(docs/data.md §8.5); local file names come from the caller, never from the server.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from patchlesion import __version__
from patchlesion.errors import PatchlesionError
from patchlesion.files import file_digest  # noqa: F401 (re-exported)

__all__ = [
    "MAX_BYTES",
    "USER_AGENT",
    "DownloadError",
    "Expected",
    "download",
    "fetch_bytes",
    "file_digest",
    "local_name",
    "plain_name",
]

log = logging.getLogger(__name__)

USER_AGENT = f"patchlesion/{__version__}"
#: Seconds before the first retry; doubled after each failed attempt (tests set it near 0).
BACKOFF_BASE = 2.0
#: Cap on one download when the caller gives none (the default of config key ``download: max_file_gib``):
#: a few GiB above the largest file fetched, the ISIC 2018 training-image zip of about 2.7 GB (docs/data.md §8.5).
MAX_BYTES = 8 << 30
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(PatchlesionError):
    """A download failed for good (HTTP client error, checksum mismatch, retries exhausted).

    ``status`` is the HTTP status code when the server answered with an error, else ``None``.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must look like: its digest (``md5`` or ``sha256``) and size.

    With ``prefix=True`` the digest is only the first hex digits (torch.hub's file-name convention).
    ``size`` (bytes), when known, also bounds the download: a server sending more is cut off.
    """

    algorithm: str
    digest: str
    size: int | None = None
    prefix: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ("md5", "sha256"):
            raise ValueError(f"unsupported checksum algorithm {self.algorithm!r}")
        if not re.fullmatch(r"[0-9a-fA-F]+", self.digest or ""):
            raise ValueError(f"not a hex digest: {self.digest!r}")

    def matches(self, actual: str) -> bool:
        """Whether a hex digest of this algorithm is the expected one."""
        want = self.digest.lower()
        return actual.startswith(want) if self.prefix else actual == want

    def describe(self) -> str:
        """The expected digest as shown in error messages."""
        kind = "MD5" if self.algorithm == "md5" else "SHA-256"
        return f"{kind} {self.digest}" + ("... (prefix)" if self.prefix else "")


def plain_name(name: str) -> str | None:
    """``name`` when it is a file name of its own, else None: no folder part (``/`` or ``\\``), not
    ``.`` or ``..``, no NUL, not empty. A name from a server passes this before it is used at all."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        return None
    return name


def local_name(name: str, key: str) -> str:
    """The local file name for a configured file ``name`` (config key ``key``): its last path component.

    Raises :class:`PatchlesionError` when that is no file name (empty, ``.``, ``..``, NUL).
    """
    base = plain_name(str(name).replace("\\", "/").rsplit("/", 1)[-1])
    if base is None:
        raise PatchlesionError(f"config key '{key}': {name!r} does not end in a file name; give the file's name, e.g. HAM10000_metadata.csv.")
    return base


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 26 else f"{n} bytes"


def _request(url: str, start: int = 0, accept: str | None = None) -> urllib.request.Request:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    if accept:
        headers["Accept"] = accept
    return urllib.request.Request(url, headers=headers)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    # Not every OSError: a full disk while writing the .partial is not cured by waiting.
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError))


def _http_message(url: str, exc: urllib.error.HTTPError) -> str:
    hint = {
        401: "the server asks for a login",
        403: "access refused (licence terms not accepted, a firewall, or a changed URL)",
        404: "no such file at this address (the record or its file ids may have changed)",
        410: "the file was removed",
    }.get(exc.code, exc.reason)
    return f"HTTP {exc.code} ({hint}) for {url}"


class _TooLarge(Exception):
    """More bytes than allowed: ``args`` are the byte count and whether the server only announced it."""


def _stream_once(url: str, partial: Path, timeout: float, expected: Expected | None, max_bytes: int) -> None:
    """One attempt: (re)start or resume ``partial`` from ``url`` until the server stops sending;
    :class:`_TooLarge` as soon as the file would exceed the expected size or ``max_bytes``."""
    limit = max_bytes if expected is None or expected.size is None else min(expected.size, max_bytes)
    start = partial.stat().st_size if partial.is_file() else 0
    if start > limit:
        partial.unlink()  # larger than the file can be: not a prefix of it
        start = 0
    if expected is not None and expected.size is not None and start == expected.size:
        return  # complete already (e.g. a run killed between the last byte and the rename)
    try:
        response = urllib.request.urlopen(_request(url, start), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the range starts beyond the file: our partial is wrong
            log.warning("server refused to resume %s at byte %d; starting again", url, start)
            partial.unlink(missing_ok=True)
            raise ConnectionError(f"HTTP 416 for a resume of {url}") from None
        raise
    with response:
        mode, offset = "wb", 0
        if start and response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                raise http.client.HTTPException(
                    f"unexpected Content-Range {response.headers.get('Content-Range')!r} for a resume at byte {start}"
                )
            mode, offset = "ab", start
            log.info("resuming %s at byte %d", url, start)
        elif start:
            log.info("server ignored the Range request for %s; downloading it again from the start", url)
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        if announced is not None and offset + announced > limit:
            raise _TooLarge(offset + announced, True)
        received = 0  # counted as it arrives: a missing or wrong Content-Length does not lift the limit
        with open(partial, mode) as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                if offset + received > limit:
                    raise _TooLarge(offset + received, False)
            out.flush()
            os.fsync(out.fileno())
    if announced is not None and received < announced:
        raise http.client.IncompleteRead(b"", announced - received)


def download(
    url: str,
    target: str | os.PathLike,
    expected: Expected | None,
    *,
    what: str = "file",
    manual: str = "",
    timeout: float = 60,
    retries: int = 3,
    backoff: float | None = None,
    max_bytes: int = MAX_BYTES,
    limit_key: str = "",
) -> Path:
    """Download ``url`` to ``target`` unless a file with the ``expected`` checksum is already there.

    ``what`` names the file in messages; ``manual`` is appended to every error (how to get the file
    by hand). Without ``expected`` (a source that publishes no checksum) only the transfer length is
    checked and the MD5 is logged so that it can be pinned. Returns ``target``. No file may exceed
    ``max_bytes``; ``limit_key`` names the setting that raises it in the error message.

    Raises :class:`DownloadError` on HTTP 4xx (naming URL and status; not retried), on a checksum or
    size mismatch (the download is discarded; a resumed one is fetched once more from scratch, since
    an old ``.partial`` may have been the bad part), on a file larger than allowed (the ``.partial``
    is removed), and when all attempts failed (the ``.partial`` is kept so that the next run resumes it).

    (Longer than our usual functions on purpose: one retry loop whose state -- the attempt, the last
    error, whether the one fresh retry after a resumed transfer was used -- every branch reads and
    changes; split up, that state would travel through several functions.)
    """
    target = Path(target)
    suffix = f" {manual}" if manual else ""
    algorithm = expected.algorithm if expected is not None else "md5"
    if target.is_file():
        if expected is None or _verified(target, expected):
            return target
        log.warning("%s exists but does not match %s; downloading it again", target, expected.describe())
    raise_it = f" If the file really is that large, raise {limit_key}." if limit_key else ""
    if expected is not None and expected.size is not None and expected.size > max_bytes:
        raise DownloadError(
            f"the {what} at {url} is listed as {expected.size} bytes, more than the limit of {_gib(max_bytes)} for one file; "
            f"nothing was downloaded.{raise_it}{suffix}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    base = BACKOFF_BASE if backoff is None else backoff

    last_error: BaseException | None = None
    fresh_retry_used = False
    attempt = 0
    while attempt <= retries:
        if attempt and last_error is not None:
            _back_off(base, attempt, retries, f"download of {url}", last_error)
        attempt += 1
        resumed = partial.is_file() and partial.stat().st_size > 0
        try:
            _stream_once(url, partial, timeout, expected, max_bytes)
        except _TooLarge as exc:
            partial.unlink(missing_ok=True)
            count, only_announced = exc.args
            sent = f"announces {count} bytes" if only_announced else f"sent {count} bytes so far"
            if expected is not None and expected.size is not None and expected.size <= max_bytes:
                raise DownloadError(
                    f"downloading the {what} from {url}: the server {sent}, more than the expected "
                    f"{expected.size} bytes; the download was discarded.{suffix}"
                ) from None
            raise DownloadError(
                f"downloading the {what} from {url}: the server {sent}, more than the limit of {_gib(max_bytes)} "
                f"for one file; the download was stopped and {partial.name} removed.{raise_it}{suffix}"
            ) from None
        except Exception as exc:
            last_error = _retry_or_raise(exc, url, f"downloading the {what}", suffix)
            continue
        actual = file_digest(partial, algorithm)
        size = partial.stat().st_size
        if expected is not None and not (expected.matches(actual) and (expected.size is None or size == expected.size)):
            partial.unlink(missing_ok=True)
            if resumed and not fresh_retry_used:
                log.warning("resumed download of %s does not verify; fetching it once more from the start", url)
                fresh_retry_used, last_error = True, None
                continue
            size_note = f" ({size} bytes, expected {expected.size})" if expected.size not in (None, size) else ""
            raise DownloadError(
                f"{target}: {expected.describe().split()[0]} mismatch for the {what} downloaded from {url}: expected "
                f"{expected.describe()}, got {actual}{size_note}; the download was discarded.{suffix}"
            )
        if expected is None:
            log.info("%s: %d bytes, MD5 %s (no published checksum to compare with)", target, size, actual)
        os.replace(partial, target)
        return target
    raise DownloadError(
        f"downloading the {what} from {url} failed after {_attempts(retries + 1)} (last error: {last_error}); "
        f"the partial download {partial} is kept and will be resumed by the next run.{suffix}"
    )


def _back_off(base: float, attempt: int, retries: int, what: str, error: BaseException) -> None:
    """Sleep before retry ``attempt`` (1, 2, ...): ``base``, then twice as long each time."""
    delay = base * 2 ** (attempt - 1)
    log.warning("%s failed (%s); retry %d/%d in %.1f s", what, error, attempt, retries, delay)
    time.sleep(delay)


def _retry_or_raise(exc: Exception, url: str, action: str, suffix: str) -> Exception:
    """``exc`` when it is worth a retry; else raise: an HTTP error as a :class:`DownloadError` naming
    the URL and status, anything else as it is."""
    if _retryable(exc):
        return exc
    if isinstance(exc, urllib.error.HTTPError):
        raise DownloadError(f"{action} failed: {_http_message(url, exc)}.{suffix}", exc.code) from None
    raise exc


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("s" if n != 1 else "")


def _verified(path: Path, expected: Expected) -> bool:
    if expected.size is not None and path.stat().st_size != expected.size:
        return False
    return expected.matches(file_digest(path, expected.algorithm))


def fetch_bytes(
    url: str,
    *,
    what: str,
    manual: str = "",
    timeout: float = 60,
    retries: int = 3,
    backoff: float | None = None,
    max_bytes: int = 64 << 20,
) -> bytes:
    """GET a small document (an API answer) into memory, with the same retries; at most ``max_bytes``."""
    suffix = f" {manual}" if manual else ""
    base = BACKOFF_BASE if backoff is None else backoff
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            _back_off(base, attempt, retries, f"request to {url}", last_error)
        try:
            with urllib.request.urlopen(_request(url, accept="application/json"), timeout=timeout) as response:
                body = response.read(max_bytes + 1)
                length = response.headers.get("Content-Length")
        except Exception as exc:
            last_error = _retry_or_raise(exc, url, f"reading the {what}", suffix)
            continue
        if len(body) > max_bytes:
            raise DownloadError(f"the {what} at {url} is larger than {max_bytes} bytes; refusing to read it.{suffix}")
        if length and length.isdigit() and len(body) < int(length):
            last_error = http.client.IncompleteRead(body, int(length) - len(body))
            continue
        return body
    raise DownloadError(f"reading the {what} from {url} failed after {_attempts(retries + 1)} (last error: {last_error}).{suffix}")

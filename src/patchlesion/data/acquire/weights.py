"""Downloading the backbones' ImageNet weights into the local cache of :mod:`patchlesion.method.weights`
(the ``fetch_weights`` rule and ``patchlesion fetch-weights``); training jobs only read that cache."""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from pathlib import Path

from patchlesion import __version__  # noqa: F401 (re-exported for the User-Agent tests)
from patchlesion.data.acquire.download import USER_AGENT, DownloadError, Expected, download  # noqa: F401
from patchlesion.errors import PatchlesionError
from patchlesion.files import file_digest
from patchlesion.method.timm_backbones import WEIGHT_SUFFIXES, is_timm, timm_model, weight_sources
from patchlesion.method.weights import PRETRAINED, how_to_get, read_record, weight_file, weights_path, weights_target, write_record

__all__ = ["BACKOFF_BASE", "fetch_weights", "main_fetch"]

#: Seconds before the first retry; doubled after each failed attempt (tests set it near 0).
BACKOFF_BASE = 2.0


def fetch_weights(
    name: str,
    home: str | os.PathLike | None = None,
    url: str | None = None,
    timeout: float = 60,
    retries: int = 3,
    backoff: float | None = None,
) -> Path:
    """Make sure backbone ``name``'s checkpoint is in the cache; return its path.

    If the file already exists with the right hash, nothing is downloaded. Otherwise it is
    fetched from ``url`` (default: the entry's URL in :data:`PRETRAINED`) by
    :func:`patchlesion.data.acquire.download.download`: explicit ``User-Agent``, a per-operation ``timeout`` in
    seconds, up to ``retries`` retries on network errors and HTTP 5xx, waiting ``backoff * 2**k``
    seconds (default :data:`BACKOFF_BASE`), resuming a cut transfer with an HTTP Range request.
    The download is streamed to ``<file>.partial`` in the cache folder, verified against the
    SHA-256 prefix (and full hash when known) and only then renamed atomically to its final name,
    so a half-written or wrong file never appears under that name.

    Raises :class:`PatchlesionError` on a hash mismatch (naming the file, expected and actual
    hash), on HTTP 403/404 and other client errors (naming the URL and status and the path where
    the file may be placed by hand), and when all attempts failed.

    A timm backbone's weights come from :func:`_fetch_timm`.
    """
    if is_timm(name):
        return _fetch_timm(name, home, [url] if url else None, timeout, retries, backoff)
    entry = weight_file(name)
    target = weights_path(name, home)
    url = url or entry.url
    expected = Expected("sha256", entry.sha256 or entry.hash_prefix, prefix=entry.sha256 is None)
    return download(
        url, target, expected, what=f"{name} weights", manual=how_to_get(name, target, url),
        timeout=timeout, retries=retries, backoff=BACKOFF_BASE if backoff is None else backoff,
    )  # fmt: skip


#: torch.hub's file names end in the first hex digits of the file's SHA-256 (timm's release files too).
_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.\w+$")


def _fetch_timm(name: str, home, urls: list[str] | None, timeout: float, retries: int, backoff: float | None) -> Path:
    """Fetch ``timm:<model>``'s weights to ``<home>/timm/<model>.<ext>`` and record their SHA-256
    beside them (:func:`patchlesion.method.weights.weights_target`). A record that exists already
    pins the checksum the download must have; else a torch.hub-style file name's hash prefix is
    checked, and the Hugging Face Hub's files are recorded as they come (trust on first use). The
    candidate ``urls`` (default: :func:`~patchlesion.method.timm_backbones.weight_sources`) are
    tried in turn while the server answers 404."""
    record = weights_target(name, home)
    pinned = read_record(record) if record.is_file() else None
    candidates = urls or weight_sources(name)
    for i, url in enumerate(candidates):
        suffix = Path(urllib.parse.urlsplit(url).path).suffix
        if suffix not in WEIGHT_SUFFIXES:
            raise PatchlesionError(f"{url}: the {name} weights are not in a format the cache reads ({', '.join(WEIGHT_SUFFIXES)}).")
        target = record.with_name(pinned[1] if pinned else timm_model(name) + suffix)
        prefix = _HUB_HASH.search(url)
        expected = Expected("sha256", pinned[0]) if pinned else Expected("sha256", prefix.group(1), prefix=True) if prefix else None
        try:
            download(
                url, target, expected, what=f"{name} weights", manual=how_to_get(name, record, url), timeout=timeout,
                retries=retries, backoff=BACKOFF_BASE if backoff is None else backoff,
            )  # fmt: skip
        except DownloadError as error:
            if error.status == 404 and i + 1 < len(candidates):
                continue
            raise
        write_record(record, file_digest(target, "sha256"), target.name)
        return target
    raise PatchlesionError(f"no source of the {name} weights to fetch.")


def main_fetch(names: list[str], home: str | os.PathLike | None = None) -> None:
    """Fetch the weights of each backbone in ``names`` (all known ones if empty); print the paths.

    Meant for a ``fetch-weights`` CLI subcommand; errors propagate as :class:`PatchlesionError`.
    """
    for name in names or sorted(PRETRAINED):
        path = fetch_weights(name, home)
        print(f"{name}: {path}", file=sys.stdout)

"""Downloading the backbones' ImageNet weights into the local cache of :mod:`patchlesion.method.weights`
(the ``fetch_weights`` rule and ``patchlesion fetch-weights``); training jobs only read that cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from patchlesion import __version__  # noqa: F401 (re-exported for the User-Agent tests)
from patchlesion.data.acquire.download import USER_AGENT, Expected, download  # noqa: F401
from patchlesion.method.weights import PRETRAINED, how_to_get, weight_file, weights_path

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
    """
    entry = weight_file(name)
    target = weights_path(name, home)
    url = url or entry.url
    expected = Expected("sha256", entry.sha256 or entry.hash_prefix, prefix=entry.sha256 is None)
    return download(
        url, target, expected, what=f"{name} weights", manual=how_to_get(name, target, url),
        timeout=timeout, retries=retries, backoff=BACKOFF_BASE if backoff is None else backoff,
    )  # fmt: skip


def main_fetch(names: list[str], home: str | os.PathLike | None = None) -> None:
    """Fetch the weights of each backbone in ``names`` (all known ones if empty); print the paths.

    Meant for a ``fetch-weights`` CLI subcommand; errors propagate as :class:`PatchlesionError`.
    """
    for name in names or sorted(PRETRAINED):
        path = fetch_weights(name, home)
        print(f"{name}: {path}", file=sys.stdout)

"""File digests, shared by the downloads, the weight cache and the decoded-image cache."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_digest"]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest (``md5`` or ``sha256``) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

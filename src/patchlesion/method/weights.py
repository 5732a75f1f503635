"""ImageNet-pretrained weights: a local, checksummed cache in torch.hub's layout.

The three backbones of the paper start from ImageNet weights published as single ``.pth`` files:
torchvision's DenseNet121 and InceptionV3 and Cadene's ``pretrainedmodels`` SE-ResNeXt50. They are
kept under ``$TORCH_HOME/hub/checkpoints/<file>`` (torch.hub's cache layout, so an existing torch
cache can be reused by pointing ``TORCH_HOME`` at it), default ``resources/torch``.

:func:`patchlesion.data.acquire.weights.fetch_weights` downloads a file once (streamed to ``<file>.partial``, verified, then
atomically renamed), :func:`load_pretrained_state` reads it without any network access. Every file
is verified against the torch.hub convention: the SHA-256 of the file starts with the 8 hex digits
in its name (``densenet121-a639ec97.pth``); when the full SHA-256 is known it is checked too.
On an offline cluster, copy the files into the cache folder by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from patchlesion.errors import PatchlesionError
from patchlesion.files import file_digest

__all__ = [
    "PRETRAINED",
    "WeightFile",
    "file_sha256",
    "how_to_get",
    "load_pretrained_state",
    "torch_home",
    "verify_weights",
    "weight_file",
    "weights_path",
]


@dataclass(frozen=True)
class WeightFile:
    """Where a pretrained checkpoint comes from and how to recognise it.

    ``hash_prefix`` is the torch.hub convention: the first hex digits of the file's SHA-256, also
    embedded in the file name. ``sha256``, when known, is the full digest and is checked as well.
    """

    url: str
    file: str
    hash_prefix: str
    sha256: str | None = None


PRETRAINED: dict[str, WeightFile] = {
    "densenet121": WeightFile(
        url="https://download.pytorch.org/models/densenet121-a639ec97.pth",
        file="densenet121-a639ec97.pth",
        hash_prefix="a639ec97",
    ),
    "inception_v3": WeightFile(
        url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        file="inception_v3_google-0cc3c7bd.pth",
        hash_prefix="0cc3c7bd",
        sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef",
    ),
    "se_resnext50": WeightFile(
        url="http://data.lip6.fr/cadene/pretrainedmodels/se_resnext50_32x4d-a260b3a4.pth",
        file="se_resnext50_32x4d-a260b3a4.pth",
        hash_prefix="a260b3a4",
    ),
}


def weight_file(name: str) -> WeightFile:
    """The weight file of backbone ``name``; an error lists the backbones that have one."""
    try:
        return PRETRAINED[name]
    except KeyError:
        known = ", ".join(sorted(PRETRAINED))
        raise PatchlesionError(
            f"no pretrained weights are known for backbone {name!r}; known: {known}"
        ) from None


def torch_home(default: str | os.PathLike = "resources/torch") -> Path:
    """The weight cache root: ``$TORCH_HOME`` if set (and non-empty), else ``default``."""
    env = os.environ.get("TORCH_HOME")
    return Path(env) if env else Path(default)


def weights_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where backbone ``name``'s checkpoint lives: ``<home>/hub/checkpoints/<file>``.

    ``home`` defaults to :func:`torch_home`. This is torch.hub's layout, so an existing torch
    cache (``~/.cache/torch``) can be reused as ``home``.
    """
    root = Path(home) if home is not None else torch_home()
    return root / "hub" / "checkpoints" / weight_file(name).file


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 digest of the file at ``path``, read in 1 MiB chunks."""
    return file_digest(path, "sha256")


def _hash_ok(entry: WeightFile, actual: str) -> bool:
    if not actual.startswith(entry.hash_prefix.lower()):
        return False
    return entry.sha256 is None or actual == entry.sha256.lower()


def _expected(entry: WeightFile) -> str:
    if entry.sha256:
        return entry.sha256
    return f"{entry.hash_prefix}... (SHA-256 prefix)"


def verify_weights(name: str, path: str | os.PathLike) -> None:
    """Check the file at ``path`` against backbone ``name``'s SHA-256 prefix (and full hash).

    Raises :class:`PatchlesionError` naming the file, the expected and the actual hash.
    """
    entry = weight_file(name)
    actual = file_sha256(path)
    if not _hash_ok(entry, actual):
        raise PatchlesionError(
            f"{path}: SHA-256 mismatch for the {name} weights: expected {_expected(entry)}, "
            f"got {actual}. The file is corrupted or not the expected checkpoint; delete it and "
            f"run `patchlesion fetch-weights {name}` again."
        )


def how_to_get(name: str, path: Path, url: str) -> str:
    """The sentence every missing- or bad-weights error ends with: how to put the file at ``path``."""
    return (
        f"Download it with `snakemake {path}` (the workflow's fetch_weights rule) or "
        f"`patchlesion fetch-weights {name} --torch-home {path.parents[2]}`, or "
        f"(e.g. on an offline cluster) download {url} elsewhere and copy it to {path}."
    )


def load_pretrained_state(name: str, home: str | os.PathLike | None = None) -> dict:
    """Load backbone ``name``'s ImageNet state dict from the cache, on the CPU, without network.

    The file's SHA-256 prefix (and full hash when known) is verified before loading, and it is
    read with ``torch.load(map_location="cpu", weights_only=True)``. The keys are returned as
    stored: e.g. torchvision's old DenseNet checkpoint still needs its ``norm.1``-style keys
    remapped by the caller. Raises :class:`PatchlesionError` if the file is missing (saying where it
    is expected and how to get it), corrupted or unreadable.
    """
    import torch

    entry = weight_file(name)
    path = weights_path(name, home)
    if not path.is_file():
        raise PatchlesionError(
            f"pretrained {name} weights not found at {path}. " + how_to_get(name, path, entry.url)
        )
    verify_weights(name, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise PatchlesionError(f"{path}: cannot load the {name} weights: {exc}") from exc
    if not isinstance(state, dict):
        raise PatchlesionError(
            f"{path}: expected a state dict for the {name} weights, got {type(state).__name__}"
        )
    return state

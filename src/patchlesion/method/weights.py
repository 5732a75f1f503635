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

A timm backbone's weights (``timm:<model>``, :mod:`patchlesion.method.timm_backbones`) are kept as
``$TORCH_HOME/timm/<model>.<ext>`` (safetensors from the Hugging Face Hub, or timm's ``.pth``) beside
the record ``<model>.sha256`` of their SHA-256 in ``sha256sum`` format, written when they are
fetched (or pinned beforehand: a record that exists is what the download must match). The record is
what the workflow asks for; every load checks the checkpoint against it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from patchlesion.errors import PatchlesionError
from patchlesion.files import file_digest
from patchlesion.method.timm_backbones import FAMILY, is_timm, timm_model

__all__ = [
    "PRETRAINED",
    "WeightFile",
    "backbone_of_target",
    "file_sha256",
    "has_weights",
    "how_to_get",
    "load_pretrained_state",
    "read_record",
    "torch_home",
    "verify_weights",
    "weight_file",
    "weights_path",
    "weights_target",
    "write_record",
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


def has_weights(name: str) -> bool:
    """Whether backbone ``name`` starts from ImageNet weights when ``pretrained`` (``tiny`` does not;
    a timm model does, and fetching says so if timm publishes none)."""
    return name in PRETRAINED or is_timm(name)


def weights_target(name: str, home: str | os.PathLike | None = None) -> Path:
    """The file that says backbone ``name``'s weights are cached (the workflow's fetch_weights
    output): the checkpoint of a paper backbone; the SHA-256 record ``<home>/timm/<model>.sha256``
    of a timm backbone, which names its checkpoint."""
    root = Path(home) if home is not None else torch_home()
    if is_timm(name):
        return root / FAMILY / f"{timm_model(name)}.sha256"
    return root / "hub" / "checkpoints" / weight_file(name).file


def backbone_of_target(relative: str) -> str:
    """The backbone whose :func:`weights_target` is ``relative`` to the cache root (the inverse)."""
    if relative.startswith(FAMILY + "/") and relative.endswith(".sha256"):
        return f"{FAMILY}:{relative[len(FAMILY) + 1 : -len('.sha256')]}"
    return next(name for name, entry in PRETRAINED.items() if relative == f"hub/checkpoints/{entry.file}")


def weights_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where backbone ``name``'s checkpoint lives: ``<home>/hub/checkpoints/<file>`` (torch.hub's
    layout, so an existing torch cache such as ``~/.cache/torch`` can be reused as ``home``); for a
    timm backbone, the file its SHA-256 record names. ``home`` defaults to :func:`torch_home`.
    """
    target = weights_target(name, home)
    if not is_timm(name):
        return target
    if not target.is_file():
        raise PatchlesionError(f"pretrained {name} weights not found: no record {target}. " + how_to_get(name, target, None))
    return target.with_name(read_record(target)[1])


_RECORD = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9_.]+)\n?")


def read_record(path: Path) -> tuple[str, str]:
    """The SHA-256 and the checkpoint's file name in a timm weights record (``sha256sum`` format)."""
    match = _RECORD.fullmatch(Path(path).read_text())
    if not match:
        raise PatchlesionError(
            f"{path}: not a SHA-256 record; expected one line '<64 hex digits>  <file name>' (as sha256sum writes it). "
            "Delete it and fetch the weights again."
        )
    return match.group(1), match.group(2)


def write_record(path: Path, sha256: str, file: str) -> None:
    """Write a timm weights record atomically (its presence says the checkpoint beside it is complete)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{sha256}  {file}\n")
    os.replace(partial, path)


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


def verify_weights(name: str, path: str | os.PathLike, home: str | os.PathLike | None = None) -> None:
    """Check the file at ``path`` against backbone ``name``'s SHA-256 prefix (and full hash), or a
    timm backbone's against its record in ``home``.

    Raises :class:`PatchlesionError` naming the file, the expected and the actual hash.
    """
    actual = file_sha256(path)
    if is_timm(name):
        expected = read_record(weights_target(name, home))[0]
        ok = actual == expected
    else:
        ok, expected = _hash_ok(weight_file(name), actual), _expected(weight_file(name))
    if not ok:
        raise PatchlesionError(
            f"{path}: SHA-256 mismatch for the {name} weights: expected {expected}, "
            f"got {actual}. The file is corrupted or not the expected checkpoint; delete it and "
            f"run `patchlesion fetch-weights {name}` again."
        )


def how_to_get(name: str, path: Path, url: str | None) -> str:
    """The sentence every missing- or bad-weights error ends with: how to put the file at ``path``
    (a timm backbone's: its record; ``url`` None: not known without timm)."""
    home = path.parents[1] if is_timm(name) else path.parents[2]
    fetch = f"Download it with `snakemake {path}` (the workflow's fetch_weights rule) or `patchlesion fetch-weights {name} --torch-home {home}`"
    if url is None:
        return f"{fetch}, or (e.g. on an offline cluster) copy the folder {path.parent} (checkpoint and .sha256 record) from a machine that fetched it."
    return f"{fetch}, or (e.g. on an offline cluster) download {url} elsewhere and copy it to {path}."


def load_pretrained_state(name: str, home: str | os.PathLike | None = None) -> dict:
    """Load backbone ``name``'s ImageNet state dict from the cache, on the CPU, without network.

    The file's SHA-256 prefix (and full hash when known) is verified before loading, and it is
    read with ``torch.load(map_location="cpu", weights_only=True)``. The keys are returned as
    stored: e.g. torchvision's old DenseNet checkpoint still needs its ``norm.1``-style keys
    remapped by the caller. Raises :class:`PatchlesionError` if the file is missing (saying where it
    is expected and how to get it), corrupted or unreadable.
    """
    import torch

    path = weights_path(name, home)
    url = None if is_timm(name) else weight_file(name).url
    if not path.is_file():
        raise PatchlesionError(f"pretrained {name} weights not found at {path}. " + how_to_get(name, weights_target(name, home), url))
    verify_weights(name, path, home)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and safetensors errors come in many types
        raise PatchlesionError(f"{path}: cannot load the {name} weights: {exc}") from exc
    if not isinstance(state, dict):
        raise PatchlesionError(
            f"{path}: expected a state dict for the {name} weights, got {type(state).__name__}"
        )
    return state

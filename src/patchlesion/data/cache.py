"""Decoded-image cache: every image of a dataset decoded once into one uint8 array on disk.

``patchlesion prepare`` decodes (and resizes, bicubic, as :mod:`patchlesion.data.images`)
the images of an index in index order into ``images.u8``, a raw ``(N, H, W, 3)`` uint8 array that
training and evaluation memory-map, and writes ``manifest.json`` beside it: the image ids in order,
shape, dtype, image size, and a SHA-256 of every source file's bytes plus one digest over all of them.
Both files are written under temporary names and renamed into place, so a killed job never leaves a
cache that looks complete. HAM10000 at 600x450 is 8.1 GB; the page cache shares it between all
training jobs on a machine instead of each job holding its own decoded copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from patchlesion.data import RESIZES
from patchlesion.data.images import decode_file
from patchlesion.errors import PatchlesionError

__all__ = ["IMAGES_FILE", "MANIFEST_FILE", "ImageCache", "prepare_cache", "source_digest"]

IMAGES_FILE = "images.u8"
MANIFEST_FILE = "manifest.json"
#: Bumped when the file layout changes, so an old cache is rejected instead of misread.
FORMAT_VERSION = 1


def source_digest(image_ids: list[str], file_digests: list[str]) -> str:
    """One SHA-256 over ``image_id sha256`` lines: changes when any image, or the image order, changes."""
    text = "".join(f"{i} {d}\n" for i, d in zip(image_ids, file_digests))
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_cache(index: pd.DataFrame, image_size: tuple[int, int], out_dir: str | Path, threads: int = 1, resize: str = "stretch") -> dict:
    """Decode every image of ``index`` (in its row order) into ``out_dir/images.u8``, brought to
    ``image_size`` as ``resize`` says (:data:`patchlesion.data.RESIZES`), and write
    ``out_dir/manifest.json``; returns the manifest."""
    if resize not in RESIZES:
        raise PatchlesionError(f"resize {resize!r} is unknown; choose one of {', '.join(RESIZES)}.")
    for column in ("image_id", "path"):
        if column not in index.columns:
            raise PatchlesionError(f"the image index has no {column!r} column; make it with `patchlesion index`.")
    width, height = (int(v) for v in image_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(index)
    shape = (n, height, width, 3)
    partial = out_dir / (IMAGES_FILE + ".partial")
    images = np.memmap(partial, dtype=np.uint8, mode="w+", shape=shape)
    paths = list(index["path"])
    digests = [""] * n

    def decode(path: str) -> tuple[np.ndarray, str]:
        return decode_file(path, (width, height), resize)

    # PIL releases the GIL while decoding and resizing, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, (pixels, digest) in enumerate(pool.map(decode, paths)):
            images[i], digests[i] = pixels, digest
    images.flush()
    del images
    image_ids = [str(i) for i in index["image_id"]]
    manifest = {
        "format_version": FORMAT_VERSION,
        "file": IMAGES_FILE,
        "layout": "NHWC",
        "dtype": "uint8",
        "shape": list(shape),
        "image_size": [width, height],
        "resize": "bicubic (PIL), only where the source size differs",
        "fit": resize,  # stretch or crop to the aspect ratio first (data/images.py)
        "source_sha256": source_digest(image_ids, digests),
        "image_ids": image_ids,
        "file_sha256": digests,
    }
    os.replace(partial, out_dir / IMAGES_FILE)
    manifest_partial = out_dir / (MANIFEST_FILE + ".partial")
    manifest_partial.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(manifest_partial, out_dir / MANIFEST_FILE)
    return manifest


class ImageCache:
    """A prepared cache, memory-mapped read-only: ``cache.select(ids)`` gives an image source whose
    batches are ``(B, 3, H, W)`` uint8 tensors, read from the page cache on demand."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_FILE
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PatchlesionError(
                f"{manifest_path}: cannot read the image cache manifest ({error}); make the cache with `patchlesion prepare`."
            ) from error
        if self.manifest.get("format_version") != FORMAT_VERSION or self.manifest.get("layout") != "NHWC":
            raise PatchlesionError(f"{manifest_path}: cache format {self.manifest.get('format_version')!r} is not "
                                   f"{FORMAT_VERSION}; rebuild it with `patchlesion prepare`.")  # fmt: skip
        self.shape = tuple(self.manifest["shape"])
        images_path = self.directory / self.manifest["file"]
        expected = int(np.prod(self.shape))
        if not images_path.is_file() or images_path.stat().st_size != expected:
            raise PatchlesionError(
                f"{images_path}: missing or not {expected} bytes as {manifest_path} says; rebuild it with `patchlesion prepare`."
            )
        self.images = np.memmap(images_path, dtype=np.uint8, mode="r", shape=self.shape)
        self.position = {image_id: i for i, image_id in enumerate(self.manifest["image_ids"])}

    @property
    def image_size(self) -> tuple[int, int]:
        """``(W, H)`` of the cached images."""
        return tuple(self.manifest["image_size"])

    @property
    def resize(self) -> str:
        """How the images were brought to the cache's size: ``stretch`` or ``crop`` (a cache made
        before the choice existed is ``stretch``)."""
        return self.manifest.get("fit", "stretch")

    def check(self, image_size: tuple[int, int], resize: str = "stretch") -> None:
        """Raise a clear error if the cache holds another image size, or images resized otherwise, than the run needs."""
        if tuple(image_size) != self.image_size:
            raise PatchlesionError(
                f"{self.directory}: the cache holds {self.image_size[0]}x{self.image_size[1]} images but the run uses "
                f"{image_size[0]}x{image_size[1]}; prepare a cache at that size (patchlesion prepare --image-size)."
            )
        if resize != self.resize:
            raise PatchlesionError(
                f"{self.directory}: the cache's images were resized with resize {self.resize!r} but the run uses resize {resize!r}; "
                f"prepare a cache with that resize (patchlesion prepare --resize {resize})."
            )

    def select(self, image_ids: list[str]) -> CachedImages:
        """The images ``image_ids`` (in that order) as an image source."""
        missing = [i for i in image_ids if i not in self.position]
        if missing:
            raise PatchlesionError(
                f"{self.directory}: image {missing[0]} (and {len(missing) - 1} more) not in the cache; it was made from "
                "another index. Rerun `patchlesion prepare` with the current index."
            )
        return CachedImages(self.images, np.array([self.position[i] for i in image_ids], dtype=np.int64))


class CachedImages:
    """Images of a cache in a chosen order; ``source[idx]`` reads a ``(B, 3, H, W)`` uint8 batch
    (a channels-last view of the ``(B, H, W, 3)`` rows read from the memory map)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray):
        self.images, self.rows = images, rows
        self.shape = (len(rows), 3, images.shape[1], images.shape[2])

    def __len__(self) -> int:
        return len(self.rows)

    def read_hwc(self, positions, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``positions`` as ``(B, H, W, 3)`` uint8 (into ``out`` when given)."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return np.asarray(np.take(self.images, rows, axis=0, out=out))

    def __getitem__(self, positions) -> torch.Tensor:
        if isinstance(positions, slice):
            positions = np.arange(len(self))[positions]
        elif isinstance(positions, torch.Tensor):
            positions = positions.numpy()
        return torch.from_numpy(self.read_hwc(positions)).permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last strides

"""The one home of decoding and resizing an image: every reader of pixels (the dataset index's
checks aside) goes through :func:`decode_file`, so training, the decoded cache, evaluation and
``patchlesion predict`` see the same pixels.

Images are decoded by PIL, converted to RGB and, when their size differs from the asked
``size = (W, H)``, resized with bicubic interpolation (the paper resizes every HAM10000 image to
600x450; docs/method.md §1.3). How an image of another aspect ratio becomes ``size`` is ``resize``
(:data:`RESIZES`): ``stretch`` scales width and height each to the target, as the paper's pipeline
(HAM10000's images are all 600x450, so nothing is distorted there); ``crop`` first cuts the largest
centred box of the target's aspect ratio, so that lesions keep their shape (datasets of mixed sizes,
such as ISIC 2019's; docs/own-data.md §3).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from patchlesion.data import RESIZES
from patchlesion.errors import DatasetError

__all__ = ["RESIZES", "decode_file", "load_image", "load_images", "load_indexed"]


def decode_file(path: str | Path, size: tuple[int, int] | None = None, resize: str = "stretch") -> tuple[np.ndarray, str]:
    """Decode one file to a writable ``(H, W, 3)`` uint8 array, resized (bicubic) to ``size = (W, H)``
    when given and different, as ``resize`` says (:data:`RESIZES`), and return it with the SHA-256 of
    the file's bytes."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}.")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found; rerun the index rule if the dataset moved.") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the image ({error}); rerun the index rule if the dataset moved.") from error
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            if size is not None and image.size != tuple(size):
                if resize == "crop":  # the largest centred box of the target's aspect ratio, then resized
                    image = ImageOps.fit(image, tuple(size), method=Image.Resampling.BICUBIC)
                else:
                    image = image.resize(tuple(size), Image.Resampling.BICUBIC)
            return np.array(image, dtype=np.uint8), digest  # a writable copy (torch.from_numpy needs one)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{path}: unreadable image ({error}). Replace the file with an intact copy.") from error


def load_image(path: str | Path, size: tuple[int, int] | None = None, resize: str = "stretch") -> np.ndarray:
    """Decode one image to a ``(H, W, 3)`` uint8 array, resized (bicubic) to ``size = (W, H)`` if given, as ``resize`` says."""
    return decode_file(path, size, resize)[0]


def load_images(paths: Sequence[str | Path], size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """Decode and resize images into one planar ``(N, 3, H, W)`` uint8 tensor (``size = (W, H)``)."""
    width, height = size
    images = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    for i, path in enumerate(paths):
        images[i] = torch.from_numpy(load_image(path, size, resize)).permute(2, 0, 1)
    return images


def load_indexed(index, image_ids: Sequence[str], size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """:func:`load_images` of the images ``image_ids`` of a dataset index (its ``path`` column)."""
    return load_images(list(index.set_index("image_id").loc[list(image_ids), "path"]), size, resize)
